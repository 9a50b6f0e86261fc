//! Selection algorithms (Kamailio numbers): rank a set's destinations for a call.

use super::hash;
use super::sets::DestinationSet;
use super::state::DestId;
use crate::sip::{Scheme, Uri};

/// Most destinations ranked for one call (first choice plus failovers).
pub const MAX_CANDIDATES: usize = 16;

/// A selection algorithm, by Kamailio's number (COMPAT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 0: hash over the Call-ID.
    CallId,
    /// 1: hash over the From URI (user@host, port unless 5060/5061).
    FromUri,
    /// 2: hash over the To URI.
    ToUri,
    /// 3: hash over the Request-URI.
    RequestUri,
    /// 4: round-robin.
    RoundRobin,
    /// 5: hash over the auth username; round-robin without one.
    AuthUser,
    /// 6: random, from the caller's number.
    Random,
    /// 8: priority order, higher first.
    Priority,
    /// 9: weight (`weight` attribute).
    Weight,
    /// 10: call load: least active calls, honouring `maxload`.
    CallLoad,
    /// 11: relative weight (`rweight` attribute) over active destinations.
    RelativeWeight,
}

impl Algorithm {
    /// Every algorithm, in number order.
    pub const ALL: [Algorithm; 11] = [
        Algorithm::CallId,
        Algorithm::FromUri,
        Algorithm::ToUri,
        Algorithm::RequestUri,
        Algorithm::RoundRobin,
        Algorithm::AuthUser,
        Algorithm::Random,
        Algorithm::Priority,
        Algorithm::Weight,
        Algorithm::CallLoad,
        Algorithm::RelativeWeight,
    ];

    /// The algorithm with Kamailio's number `n` (7 and above 11 are not ours).
    pub fn from_number(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.number() == n)
    }

    /// Kamailio's number.
    pub fn number(self) -> u32 {
        match self {
            Algorithm::CallId => 0,
            Algorithm::FromUri => 1,
            Algorithm::ToUri => 2,
            Algorithm::RequestUri => 3,
            Algorithm::RoundRobin => 4,
            Algorithm::AuthUser => 5,
            Algorithm::Random => 6,
            Algorithm::Priority => 8,
            Algorithm::Weight => 9,
            Algorithm::CallLoad => 10,
            Algorithm::RelativeWeight => 11,
        }
    }
}

/// What selection reads of a request: slices of the received message, so
/// the codec's types are not needed. Empty means absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectionInput<'a> {
    /// The Call-ID value.
    pub call_id: &'a [u8],
    /// The From URI (without display name; `<>` are stripped if present).
    pub from_uri: &'a [u8],
    /// The To URI.
    pub to_uri: &'a [u8],
    /// The Request-URI.
    pub ruri: &'a [u8],
    /// The username of the credentials (Authorization / Proxy-Authorization).
    pub auth_user: &'a [u8],
    /// A random number from the caller, for algorithm 6.
    pub random: u64,
}

/// The ranked destinations of one call: the first choice, then failovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidates {
    ids: [DestId; MAX_CANDIDATES],
    len: u8,
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates {
            ids: [DestId::NONE; MAX_CANDIDATES],
            len: 0,
        }
    }
}

impl Candidates {
    /// The destinations, best first.
    pub fn as_slice(&self) -> &[DestId] {
        &self.ids[..usize::from(self.len)]
    }

    /// How many.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// None at all: the set is empty or nothing in it takes calls.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first choice.
    pub fn first(&self) -> Option<DestId> {
        self.as_slice().first().copied()
    }

    fn push(&mut self, id: DestId) {
        debug_assert!(self.len() < MAX_CANDIDATES);
        self.ids[self.len()] = id;
        self.len += 1;
    }
}

/// What selection needs to know of one destination; kept current by the
/// dispatcher on every state change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) id: DestId,
    seed: u64,
    weight: u32,
    rweight: u32,
    pub(crate) maxload: u32,
    /// Takes new calls: active or trying, has an address.
    pub(crate) eligible: bool,
}

/// A set's selection state on one shard: entries and algorithm cursors.
#[derive(Clone, Debug)]
pub(crate) struct SetRuntime {
    pub(crate) entries: Vec<Entry>,
    rr_cursor: usize,
    swrr_weight: Vec<i64>,
    swrr_rweight: Vec<i64>,
    by_priority: Vec<u32>,
    uniform: bool,
}

impl SetRuntime {
    /// Entries for `set`, ids given in destination order.
    pub(crate) fn new(set: &DestinationSet, ids: &[DestId]) -> Self {
        debug_assert_eq!(set.destinations.len(), ids.len());
        let entries: Vec<Entry> = set
            .destinations
            .iter()
            .zip(ids)
            .map(|(d, &id)| Entry {
                id,
                seed: d.seed,
                weight: d.weight(),
                rweight: d.rweight(),
                maxload: d.attrs.maxload,
                eligible: false,
            })
            .collect();
        let mut by_priority: Vec<u32> = (0..entries.len() as u32).collect();
        by_priority.sort_by_key(|&i| std::cmp::Reverse(set.destinations[i as usize].priority));
        let uniform = entries.windows(2).all(|w| w[0].weight == w[1].weight);
        let n = entries.len();
        SetRuntime {
            entries,
            rr_cursor: 0,
            swrr_weight: vec![0; n],
            swrr_rweight: vec![0; n],
            by_priority,
            uniform,
        }
    }

    /// Keeps the round-robin position of the set this one replaces.
    pub(crate) fn inherit_cursor(&mut self, old: &SetRuntime) {
        self.rr_cursor = old.rr_cursor % self.entries.len().max(1);
    }

    /// Ranks up to `k` eligible destinations for a call. `load` gives a
    /// destination's calls (algorithm 10).
    pub(crate) fn select(
        &mut self,
        alg: Algorithm,
        input: &SelectionInput<'_>,
        k: usize,
        load: impl Fn(DestId) -> u32,
    ) -> Candidates {
        let k = k.min(MAX_CANDIDATES);
        let key = match alg {
            Algorithm::CallId => key_of(input.call_id),
            Algorithm::FromUri => uri_key(input.from_uri),
            Algorithm::ToUri => uri_key(input.to_uri),
            Algorithm::RequestUri => uri_key(input.ruri),
            Algorithm::AuthUser => key_of(input.auth_user),
            Algorithm::Random => Some(hash::random_key(input.random)),
            _ => None,
        };
        match alg {
            Algorithm::Random => self.by_rank(key.unwrap_or(0), k, true),
            Algorithm::Priority => self.by_priority(k),
            Algorithm::Weight => self.smooth_weighted(false, k),
            Algorithm::RelativeWeight => self.smooth_weighted(true, k),
            Algorithm::CallLoad => self.least_loaded(k, load),
            Algorithm::RoundRobin => self.round_robin(k),
            _ => match key {
                Some(key) => self.by_rank(key, k, self.uniform),
                None => self.round_robin(k),
            },
        }
    }

    /// Rendezvous order: highest score first (weighted unless all weigh the same).
    fn by_rank(&self, key: u64, k: usize, uniform: bool) -> Candidates {
        if uniform {
            return top_k(&self.entries, k, |e, _| Some(hash::rank(key, e.seed)));
        }
        top_k(&self.entries, k, |e, floor| {
            let rank = hash::rank(key, e.seed);
            // Skip the logarithm when even the bound cannot enter the top k.
            if floor.is_some_and(|f| hash::weighted_score_bound(rank, e.weight) <= f) {
                return None;
            }
            Some(hash::weighted_score(rank, e.weight))
        })
    }

    fn by_priority(&self, k: usize) -> Candidates {
        let mut out = Candidates::default();
        let order = self.by_priority.iter().map(|&i| &self.entries[i as usize]);
        for e in order.filter(|e| e.eligible).take(k) {
            out.push(e.id);
        }
        out
    }

    /// Least calls first; full destinations (`maxload`) are left out.
    fn least_loaded(&self, k: usize, load: impl Fn(DestId) -> u32) -> Candidates {
        top_k(&self.entries, k, |e, _| {
            let calls = load(e.id);
            let full = e.maxload != 0 && calls >= e.maxload;
            (!full).then_some(u32::MAX - calls)
        })
    }

    /// The next eligible destination from the cursor, then the following ones.
    fn round_robin(&mut self, k: usize) -> Candidates {
        let n = self.entries.len();
        if n == 0 {
            return Candidates::default();
        }
        let (out, first) = self.cyclic_from(self.rr_cursor % n, k);
        if let Some(first) = first {
            self.rr_cursor = (first + 1) % n;
        }
        out
    }

    /// Smooth weighted round-robin (nginx): over any window the picks follow
    /// the weights exactly; failovers are the following eligible destinations.
    fn smooth_weighted(&mut self, relative: bool, k: usize) -> Candidates {
        let current = if relative {
            &mut self.swrr_rweight
        } else {
            &mut self.swrr_weight
        };
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let w = i64::from(if relative { e.rweight } else { e.weight });
            if !e.eligible || w == 0 {
                continue;
            }
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        match best {
            Some(b) => {
                current[b] -= total;
                self.cyclic_from(b, k).0
            }
            None => self.round_robin(k),
        }
    }

    /// Up to `k` eligible entries in cyclic order from `start`, and the index
    /// of the first.
    fn cyclic_from(&self, start: usize, k: usize) -> (Candidates, Option<usize>) {
        let n = self.entries.len();
        let mut out = Candidates::default();
        let mut first = None;
        for i in (0..n).map(|step| (start + step) % n) {
            if out.len() == k {
                break;
            }
            if self.entries[i].eligible {
                first.get_or_insert(i);
                out.push(self.entries[i].id);
            }
        }
        (out, first)
    }
}

/// The `k` eligible entries with the highest scores, best first; ties keep
/// set order. `score(entry, floor)` returns `None` to leave an entry out;
/// `floor` is the k-th best score once k are held (a score not above it
/// cannot enter).
fn top_k<S: PartialOrd + Copy + Default>(
    entries: &[Entry],
    k: usize,
    score: impl Fn(&Entry, Option<S>) -> Option<S>,
) -> Candidates {
    let mut top = [(S::default(), DestId::NONE); MAX_CANDIDATES];
    let mut n = 0;
    for e in entries.iter().filter(|e| e.eligible) {
        let floor = (n == k && k > 0).then(|| top[k - 1].0);
        let Some(s) = score(e, floor) else { continue };
        if k == 0 || (n == k && s <= top[k - 1].0) {
            continue;
        }
        let mut j = if n < k { n } else { k - 1 };
        n = (n + 1).min(k);
        while j > 0 && top[j - 1].0 < s {
            top[j] = top[j - 1];
            j -= 1;
        }
        top[j] = (s, e.id);
    }
    let mut out = Candidates::default();
    top[..n].iter().for_each(|&(_, id)| out.push(id));
    out
}

fn key_of(bytes: &[u8]) -> Option<u64> {
    (!bytes.is_empty()).then(|| hash::key(bytes))
}

/// The key of a URI as Kamailio hashes it: user@host, with the port unless
/// it is 5060 or 5061; the raw text when it does not parse as a SIP URI.
fn uri_key(raw: &[u8]) -> Option<u64> {
    let raw = raw
        .strip_prefix(b"<")
        .and_then(|r| r.strip_suffix(b">"))
        .unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let uri = match Uri::parse(raw) {
        Ok(u) if matches!(u.scheme(), Scheme::Sip | Scheme::Sips) => u,
        _ => return Some(hash::key(raw)),
    };
    let user = hash::key(uri.user().unwrap_or_default());
    let mut key = hash::combine(user, hash::key_nocase(uri.host_raw()));
    if let Some(port) = uri.port().filter(|p| !matches!(p, 5060 | 5061)) {
        key = hash::combine(key, u64::from(port));
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                id: DestId::new(i as u32, 0),
                seed: hash::identity_seed(format!("d{i}").as_bytes()),
                weight: 1,
                rweight: 1,
                maxload: 0,
                eligible: true,
            })
            .collect()
    }

    #[test]
    fn top_k_orders_best_first_and_keeps_set_order_on_ties() {
        let e = entries(5);
        let scores = [3u32, 9, 3, 7, 9];
        let c = top_k(&e, 3, |x, _| Some(scores[x.id.slot() as usize]));
        let slots: Vec<u32> = c.as_slice().iter().map(|d| d.slot()).collect();
        assert_eq!(slots, [1, 4, 3]);
    }

    #[test]
    fn pruned_weighted_ranking_equals_a_full_sort() {
        let mut e = entries(50);
        e.iter_mut()
            .enumerate()
            .for_each(|(i, x)| x.weight = 1 + (i as u32 * 7) % 40);
        let rt = SetRuntime {
            entries: e.clone(),
            rr_cursor: 0,
            swrr_weight: vec![],
            swrr_rweight: vec![],
            by_priority: vec![],
            uniform: false,
        };
        for key in (0..2000u64).map(hash::fmix64) {
            let mut all: Vec<(f64, DestId)> = e
                .iter()
                .map(|x| {
                    (
                        hash::weighted_score(hash::rank(key, x.seed), x.weight),
                        x.id,
                    )
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<DestId> = all[..3].iter().map(|&(_, id)| id).collect();
            assert_eq!(rt.by_rank(key, 3, false).as_slice(), want);
        }
    }

    #[test]
    fn top_k_with_zero_k_is_empty() {
        assert!(top_k(&entries(3), 0, |_, _| Some(1u64)).is_empty());
    }

    #[test]
    fn uri_key_ignores_default_ports_params_and_host_case() {
        let a = uri_key(b"sip:alice@Example.net:5060;transport=tcp");
        assert_eq!(a, uri_key(b"<sip:alice@example.net>"));
        assert_ne!(a, uri_key(b"sip:alice@example.net:5080"));
        assert_ne!(a, uri_key(b"sip:bob@example.net"));
        assert_eq!(uri_key(b""), None);
    }

    #[test]
    fn algorithm_numbers_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_number(a.number()), Some(a));
        }
        assert_eq!(Algorithm::from_number(7), None);
        assert_eq!(Algorithm::from_number(12), None);
    }
}
