//! The dispatcher of one shard: the current snapshot, per destination health
//! and call load, selection cursors, probe schedule and outgoing state events.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::health::{
    AdminState, DestState, Health, HealthConfig, Liveness, ProbeOutcome, ProbeRequest, StateChange,
};
use super::hunt::{FailoverConfig, Hunt};
use super::select::{Algorithm, Candidates, SelectionInput, SetRuntime};
use super::sets::{DestKey, Destination, DestinationSets};

/// Most state events waiting for [`Dispatcher::poll_event`]; older ones are
/// dropped (and counted) beyond it.
pub const MAX_PENDING_EVENTS: usize = 1024;

/// A destination on this shard: stable across reloads while the destination
/// stays, never reused for another one (a generation guards the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestId {
    slot: u32,
    gen: u32,
}

impl DestId {
    pub(crate) const NONE: DestId = DestId {
        slot: u32::MAX,
        gen: 0,
    };

    pub(crate) fn new(slot: u32, gen: u32) -> Self {
        DestId { slot, gen }
    }

    /// The slot index (for tables indexed by destination).
    pub fn slot(self) -> u32 {
        self.slot
    }
}

/// Calls on a destination, counted by this shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// INVITEs sent and not yet answered finally.
    pub pending: u32,
    /// Calls answered 2xx and not yet ended (BYE, CANCEL, dialog timeout).
    pub active: u32,
}

impl Load {
    /// Calls counted by algorithm 10: being set up or established.
    pub fn total(&self) -> u32 {
        self.pending.saturating_add(self.active)
    }
}

/// One row of [`Dispatcher::load_snapshot`]; the shell sums rows by key over
/// shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestLoad {
    /// The destination.
    pub key: DestKey,
    /// Its state on this shard.
    pub state: DestState,
    /// Its calls on this shard.
    pub load: Load,
    /// Removed by a reload; kept until its calls end.
    pub removed: bool,
    /// Failures counted against it on this shard: failed probes and
    /// failovers (timeouts or failover codes).
    pub failures: u64,
    /// The round trip of its last answered probe, if this shard probes it.
    pub probe_rtt: Option<Duration>,
}

/// Settings of a dispatcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Probing and thresholds.
    pub health: HealthConfig,
    /// Failover.
    pub failover: FailoverConfig,
}

/// Counters of one dispatcher, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Selections that found no destination (the proxy answers 503).
    pub no_destination: u64,
    /// Probes asked for.
    pub probes_sent: u64,
    /// Probes that failed (bad code or timeout).
    pub probe_failures: u64,
    /// Failovers counted against a destination.
    pub passive_failures: u64,
    /// State events dropped because nobody polled them.
    pub events_dropped: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    gen: u32,
    /// `None`: free.
    key: Option<DestKey>,
    duid: Option<Arc<str>>,
    /// (set index, destination index) in the snapshot; `None`: removed.
    pos: Option<(u32, u32)>,
    flags: u32,
    seed: u64,
    health: Health,
    load: Load,
    failures: u64,
    probe_rtt: Option<Duration>,
}

/// The dispatcher state of one shard. See the [module](super) documentation.
#[derive(Debug)]
pub struct Dispatcher {
    config: DispatcherConfig,
    sets: Arc<DestinationSets>,
    runtime: Vec<SetRuntime>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<DestKey, DestId>,
    events: VecDeque<StateChange>,
    probe_share: (u64, u64),
    /// Probes are sent (RPC `dispatcher.ping_active`).
    probing: bool,
    stats: DispatcherStats,
}

impl Dispatcher {
    /// A dispatcher over `sets`; first probes are spread over one interval.
    pub fn new(now: Instant, sets: Arc<DestinationSets>, config: DispatcherConfig) -> Self {
        let mut d = Dispatcher {
            config,
            sets: Arc::new(DestinationSets::default()),
            runtime: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            events: VecDeque::new(),
            probe_share: (0, 1),
            probing: true,
            stats: DispatcherStats::default(),
        };
        d.reload(now, sets);
        d
    }

    /// This shard probes only the destinations `hash(identity) % shards ==
    /// shard`, so exactly one shard probes each (all shards call this alike).
    pub fn set_probe_share(&mut self, shard: usize, shards: usize) {
        debug_assert!(shard < shards, "shard index within the shard count");
        self.probe_share = (shard as u64, shards.max(1) as u64);
        let config = &self.config.health;
        for slot in self.slots.iter_mut().filter(|s| s.pos.is_some()) {
            slot.health.probed = wants_probes(slot, config, self.probe_share);
        }
    }

    /// Settings.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &DispatcherStats {
        &self.stats
    }

    /// The current snapshot.
    pub fn sets(&self) -> &Arc<DestinationSets> {
        &self.sets
    }

    /// Swaps in `sets`. A destination that stays (same set and duid, else same
    /// set and URI) keeps its id, state and counters; its file flags apply only
    /// if they changed. A removed one takes no calls and is forgotten when its
    /// last call ends. New ones start from their flags.
    pub fn reload(&mut self, now: Instant, sets: Arc<DestinationSets>) {
        let old_live: Vec<DestId> = self.live_ids().collect();
        let old_index = std::mem::take(&mut self.index);
        let old_duids: HashMap<(u32, Arc<str>), DestId> = old_live
            .iter()
            .filter_map(|&id| {
                let s = &self.slots[id.slot as usize];
                Some(((s.key.as_ref()?.set, s.duid.clone()?), id))
            })
            .collect();
        let mut kept = vec![false; self.slots.len()];
        let mut runtime = Vec::with_capacity(sets.sets().len());
        for (si, set) in sets.sets().iter().enumerate() {
            let mut ids = Vec::with_capacity(set.destinations.len());
            for (di, d) in set.destinations.iter().enumerate() {
                let key = DestKey {
                    set: set.id,
                    uri: Arc::from(d.uri.as_str()),
                };
                let by_duid = d
                    .attrs
                    .duid
                    .as_deref()
                    .and_then(|u| old_duids.get(&(set.id, Arc::from(u))));
                let old = by_duid.or_else(|| old_index.get(&key)).copied();
                let pos = (si as u32, di as u32);
                let id = match old.filter(|id| !kept[id.slot as usize]) {
                    Some(id) => {
                        kept[id.slot as usize] = true;
                        self.keep_slot(id, key.clone(), d, pos);
                        id
                    }
                    None => self.alloc_slot(now, key.clone(), d, pos),
                };
                self.index.insert(key, id);
                ids.push(id);
            }
            let mut rt = SetRuntime::new(set, &ids);
            if let Some(old) = self.sets.position(set.id).and_then(|i| self.runtime.get(i)) {
                rt.inherit_cursor(old);
            }
            runtime.push(rt);
        }
        old_live
            .into_iter()
            .filter(|id| !kept[id.slot as usize])
            .for_each(|id| self.retire(id));
        self.sets = sets;
        self.runtime = runtime;
        let live: Vec<DestId> = self.live_ids().collect();
        live.into_iter().for_each(|id| self.refresh(id));
    }

    fn keep_slot(&mut self, id: DestId, key: DestKey, d: &Destination, pos: (u32, u32)) {
        let share = self.probe_share;
        let slot = &mut self.slots[id.slot as usize];
        slot.key = Some(key);
        slot.duid = d.attrs.duid.as_deref().map(Arc::from);
        slot.pos = Some(pos);
        slot.seed = d.seed;
        if slot.flags != d.flags {
            let next_probe = slot.health.next_probe;
            slot.health = Health::from_flags(d.flags, next_probe);
            slot.flags = d.flags;
        }
        slot.health.probed = wants_probes(slot, &self.config.health, share);
    }

    fn alloc_slot(
        &mut self,
        now: Instant,
        key: DestKey,
        d: &Destination,
        pos: (u32, u32),
    ) -> DestId {
        let interval = self.config.health.probe_interval;
        let first_probe = now + interval / 1024 * (d.seed % 1024) as u32;
        let mut slot = Slot {
            gen: 0,
            key: Some(key),
            duid: d.attrs.duid.as_deref().map(Arc::from),
            pos: Some(pos),
            flags: d.flags,
            seed: d.seed,
            health: Health::from_flags(d.flags, first_probe),
            load: Load::default(),
            failures: 0,
            probe_rtt: None,
        };
        slot.health.probed = wants_probes(&slot, &self.config.health, self.probe_share);
        match self.free.pop() {
            Some(i) => {
                slot.gen = self.slots[i as usize].gen.wrapping_add(1);
                self.slots[i as usize] = slot;
                DestId::new(i, self.slots[i as usize].gen)
            }
            None => {
                self.slots.push(slot);
                DestId::new(self.slots.len() as u32 - 1, 0)
            }
        }
    }

    /// Removed by a reload: no calls, no probes; freed once its calls ended.
    fn retire(&mut self, id: DestId) {
        let slot = &mut self.slots[id.slot as usize];
        slot.pos = None;
        slot.health.probe_deadline = None;
        self.maybe_free(id);
    }

    fn maybe_free(&mut self, id: DestId) {
        let slot = &mut self.slots[id.slot as usize];
        if slot.pos.is_none() && slot.key.is_some() && slot.load.total() == 0 {
            slot.key = None;
            self.free.push(id.slot);
        }
    }

    fn live_ids(&self) -> impl Iterator<Item = DestId> + '_ {
        let live = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pos.is_some());
        live.map(|(i, s)| DestId::new(i as u32, s.gen))
    }

    fn slot(&self, id: DestId) -> Option<&Slot> {
        let slot = self.slots.get(id.slot as usize)?;
        (slot.gen == id.gen && slot.key.is_some()).then_some(slot)
    }

    fn slot_mut(&mut self, id: DestId) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        (slot.gen == id.gen && slot.key.is_some()).then_some(slot)
    }

    /// Copies a destination's state into its selection entry.
    fn refresh(&mut self, id: DestId) {
        let Some(slot) = self.slot(id) else { return };
        let Some((si, di)) = slot.pos else { return };
        let (si, di) = (si as usize, di as usize);
        let has_addr = self.sets.sets()[si].destinations[di].target.addr.is_some();
        let eligible = has_addr && slot.health.state().takes_new_calls();
        self.runtime[si].entries[di].eligible = eligible;
    }

    // ----- selection -----

    /// Ranks the destinations of set `set` for one call with `alg`: the first
    /// choice, then up to `max_attempts - 1` failovers. Empty when the set is
    /// unknown or nothing in it takes calls (answer 503). Algorithm 10 is for
    /// initial INVITEs.
    pub fn select(&mut self, set: u32, alg: Algorithm, input: &SelectionInput<'_>) -> Candidates {
        let k = self.config.failover.attempts();
        self.select_n(set, alg, input, k)
    }

    /// [`Dispatcher::select`] with at most `k` destinations.
    pub fn select_n(
        &mut self,
        set: u32,
        alg: Algorithm,
        input: &SelectionInput<'_>,
        k: usize,
    ) -> Candidates {
        let Some(si) = self.sets.position(set) else {
            self.stats.no_destination += 1;
            return Candidates::default();
        };
        let slots = &self.slots;
        let load = |id: DestId| slots[id.slot as usize].load.total();
        let out = self.runtime[si].select(alg, input, k, load);
        if out.is_empty() {
            self.stats.no_destination += 1;
        }
        out
    }

    /// Selects and starts a [`Hunt`] over the result; `track_load` for initial
    /// INVITEs. Call [`Hunt::next_destination`] for the first destination.
    pub fn start_hunt(
        &mut self,
        set: u32,
        alg: Algorithm,
        input: &SelectionInput<'_>,
        track_load: bool,
    ) -> Hunt {
        let candidates = self.select(set, alg, input);
        Hunt::new(candidates, &self.config.failover, track_load)
    }

    /// May a new call go to `id` now?
    pub fn takes_new_calls(&self, id: DestId) -> bool {
        let Some((si, di)) = self.slot(id).and_then(|s| s.pos) else {
            return false;
        };
        self.runtime[si as usize].entries[di as usize].eligible
    }

    // ----- lookups -----

    /// The destination `id` in the current snapshot (`None` once removed).
    pub fn destination(&self, id: DestId) -> Option<&Destination> {
        let (si, di) = self.slot(id)?.pos?;
        Some(&self.sets.sets()[si as usize].destinations[di as usize])
    }

    /// The key of `id` (also after removal, while its calls last).
    pub fn key(&self, id: DestId) -> Option<&DestKey> {
        self.slot(id)?.key.as_ref()
    }

    /// The state of `id`.
    pub fn state(&self, id: DestId) -> Option<DestState> {
        Some(self.slot(id)?.health.state())
    }

    /// The calls on `id` counted by this shard.
    pub fn load(&self, id: DestId) -> Option<Load> {
        Some(self.slot(id)?.load)
    }

    /// The destination with this key in the current snapshot.
    pub fn find(&self, key: &DestKey) -> Option<DestId> {
        self.index.get(key).copied()
    }

    /// The destination of set `set` with this `duid`.
    pub fn find_duid(&self, set: u32, duid: &str) -> Option<DestId> {
        let si = self.sets.position(set)?;
        let dests = &self.sets.sets()[si].destinations;
        let di = dests
            .iter()
            .position(|d| d.attrs.duid.as_deref() == Some(duid))?;
        Some(self.runtime[si].entries[di].id)
    }

    /// Every destination of the current snapshot with its id and state, in set
    /// and file order.
    pub fn destinations(&self) -> impl Iterator<Item = (DestId, &Destination, DestState)> + '_ {
        self.sets
            .sets()
            .iter()
            .zip(&self.runtime)
            .flat_map(move |(set, rt)| {
                set.destinations.iter().zip(&rt.entries).map(move |(d, e)| {
                    let state = self.state(e.id).unwrap_or(DestState::Inactive);
                    (e.id, d, state)
                })
            })
    }

    // ----- call load -----

    /// An attempt was sent to `id` (called by [`Hunt`]).
    pub fn attempt_started(&mut self, id: DestId, track_load: bool) {
        if let Some(slot) = self.slot_mut(id).filter(|_| track_load) {
            slot.load.pending = slot.load.pending.saturating_add(1);
        }
    }

    /// An attempt on `id` ended; `answered` (2xx) makes it an active call
    /// (called by [`Hunt`]).
    pub fn attempt_ended(&mut self, id: DestId, track_load: bool, answered: bool) {
        if let Some(slot) = self.slot_mut(id).filter(|_| track_load) {
            slot.load.pending = slot.load.pending.saturating_sub(1);
            if answered {
                slot.load.active = slot.load.active.saturating_add(1);
            }
        }
        self.maybe_free(id);
    }

    /// A call answered on `id` ended: BYE, CANCEL after 2xx, or dialog timeout.
    pub fn call_ended(&mut self, id: DestId) {
        if let Some(slot) = self.slot_mut(id) {
            slot.load.active = slot.load.active.saturating_sub(1);
        }
        self.maybe_free(id);
    }

    /// Calls per destination on this shard, removed destinations with calls
    /// included.
    pub fn load_snapshot(&self) -> Vec<DestLoad> {
        let in_use = self.slots.iter().filter_map(|s| Some((s.key.clone()?, s)));
        in_use
            .map(|(key, s)| DestLoad {
                key,
                state: s.health.state(),
                load: s.load,
                removed: s.pos.is_none(),
                failures: s.failures,
                probe_rtt: s.probe_rtt,
            })
            .collect()
    }

    // ----- health -----

    /// A failover counted against `id` (timeout or failover code).
    pub fn report_failure(&mut self, id: DestId) {
        if let Some(slot) = self.slot_mut(id) {
            slot.failures += 1;
            self.stats.passive_failures += 1;
        }
        let config = self.config.health.clone();
        self.change_health(id, |h| h.fail(&config));
    }

    /// `id` answered a call with something other than a failover code.
    pub fn report_alive(&mut self, id: DestId) {
        self.change_health(id, Health::alive);
    }

    /// The operator sets `id`'s state (RPC `dispatcher.set_state`): active,
    /// trying and inactive set the liveness and enable it; disabled and
    /// draining keep the liveness underneath. Emits an event. `false` if gone.
    pub fn set_state(&mut self, id: DestId, state: DestState) -> bool {
        let Some(slot) = self.slot(id) else {
            return false;
        };
        let live = slot.health.liveness;
        let (admin, liveness) = match state {
            DestState::Active => (AdminState::Enabled, Liveness::Active),
            DestState::Trying => (AdminState::Enabled, Liveness::Trying),
            DestState::Inactive => (AdminState::Enabled, Liveness::Inactive),
            DestState::Disabled => (AdminState::Disabled, live),
            DestState::Draining => (AdminState::Draining, live),
        };
        self.change_health(id, |h| h.set(admin, liveness));
        true
    }

    /// A state change from another shard: applied without a new event.
    /// `false` when the destination is not in this shard's snapshot.
    pub fn apply_state_change(&mut self, change: &StateChange) -> bool {
        let Some(id) = self.find(&change.key) else {
            return false;
        };
        if let Some(slot) = self.slot_mut(id) {
            slot.health.set(change.admin, change.liveness);
        }
        self.refresh(id);
        true
    }

    /// The next state change to send to the other shards.
    pub fn poll_event(&mut self) -> Option<StateChange> {
        self.events.pop_front()
    }

    fn change_health(&mut self, id: DestId, f: impl FnOnce(&mut Health)) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        let before = (slot.health.admin, slot.health.liveness);
        f(&mut slot.health);
        let after = (slot.health.admin, slot.health.liveness);
        let key = slot.key.clone();
        if before == after || slot.pos.is_none() {
            return;
        }
        self.refresh(id);
        if let Some(key) = key {
            self.emit(StateChange {
                key,
                admin: after.0,
                liveness: after.1,
            });
        }
    }

    fn emit(&mut self, change: StateChange) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(change);
    }

    // ----- probes -----

    /// Are probes sent?
    pub fn probing(&self) -> bool {
        self.probing
    }

    /// Turns probing off (probes in flight still end) or on again; turned
    /// on, the next probes are spread over one interval from `now`.
    pub fn set_probing(&mut self, now: Instant, on: bool) {
        if on && !self.probing {
            let interval = self.config.health.probe_interval;
            for slot in &mut self.slots {
                slot.health.next_probe = now + interval / 1024 * (slot.seed % 1024) as u32;
            }
        }
        self.probing = on;
    }

    /// The next probe due at `now`, if any; call until `None`. The answer
    /// goes to [`Dispatcher::on_probe_result`].
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeRequest> {
        let (interval, timeout) = (
            self.config.health.probe_interval,
            self.config.health.probe_timeout,
        );
        if !self.probing {
            return None;
        }
        let i = self
            .slots
            .iter()
            .position(|s| s.pos.is_some() && s.health.probe_due(now))?;
        let slot = &mut self.slots[i];
        slot.health.probe_deadline = Some(now + timeout.min(interval));
        slot.health.next_probe = now + interval;
        self.stats.probes_sent += 1;
        Some(ProbeRequest {
            id: DestId::new(i as u32, slot.gen),
        })
    }

    /// How the probe of `id` ended. A reply after the probe timeout counts
    /// as a timeout; a result for no probe in flight is ignored.
    pub fn on_probe_result(&mut self, now: Instant, id: DestId, outcome: ProbeOutcome) {
        let config = self.config.health.clone();
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        let Some(deadline) = slot.health.probe_deadline.take() else {
            return;
        };
        if let ProbeOutcome::Response(_) = outcome {
            // The deadline is the send time plus the timeout (`poll_probe`).
            let sent = deadline.checked_sub(config.probe_timeout.min(config.probe_interval));
            slot.probe_rtt = sent.map(|at| now.saturating_duration_since(at));
        }
        let up = matches!(outcome, ProbeOutcome::Response(c) if config.accepted_codes.contains(c));
        if up && now <= deadline {
            self.change_health(id, |h| h.succeed(&config));
        } else {
            slot.failures += 1;
            self.stats.probe_failures += 1;
            self.change_health(id, |h| h.fail(&config));
        }
    }

    /// Fails the probes whose timeout passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<DestId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.health.probe_deadline.is_some_and(|d| d <= now))
            .map(|(i, s)| DestId::new(i as u32, s.gen))
            .collect();
        for id in expired {
            self.on_probe_result(now, id, ProbeOutcome::Timeout);
        }
    }

    /// When [`Dispatcher::poll_probe`] or [`Dispatcher::handle_timeout`] has
    /// work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let live = self.slots.iter().filter(|s| s.pos.is_some());
        if !self.probing {
            // Only the probes still in flight can time out.
            return live.filter_map(|s| s.health.probe_deadline).min();
        }
        live.filter_map(|s| s.health.deadline()).min()
    }
}

fn wants_probes(slot: &Slot, config: &HealthConfig, (shard, shards): (u64, u64)) -> bool {
    Health::wants_probes(slot.flags, config) && slot.seed % shards == shard
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::{parse_list, ListOptions};

    fn dispatcher(text: &str) -> Dispatcher {
        let sets = parse_list(text.as_bytes(), "t.list", &ListOptions::default())
            .unwrap()
            .sets;
        Dispatcher::new(Instant::now(), Arc::new(sets), DispatcherConfig::default())
    }

    #[test]
    fn a_freed_slot_is_reused_with_a_new_generation() {
        let now = Instant::now();
        let mut d = dispatcher("1 sip:10.0.0.1\n1 sip:10.0.0.2\n");
        let key = |uri: &str| DestKey {
            set: 1,
            uri: Arc::from(uri),
        };
        let old = d.find(&key("sip:10.0.0.1")).unwrap();
        let reload = |d: &mut Dispatcher, text: &str| {
            let sets = parse_list(text.as_bytes(), "t", &ListOptions::default())
                .unwrap()
                .sets;
            d.reload(now, Arc::new(sets));
        };
        reload(&mut d, "1 sip:10.0.0.2\n1 sip:10.0.0.3\n");
        assert_eq!(d.state(old), None, "the old id names nothing");
        reload(&mut d, "1 sip:10.0.0.2\n1 sip:10.0.0.3\n1 sip:10.0.0.4\n");
        let new = d.find(&key("sip:10.0.0.4")).unwrap();
        assert_eq!(new.slot(), old.slot(), "slot reused");
        assert_ne!(new, old);
        assert_eq!(d.state(old), None);
    }

    #[test]
    fn unresolved_names_are_not_selected_until_resolved() {
        let mut d = dispatcher("1 sip:pbx.example.net:5080\n");
        let input = SelectionInput {
            call_id: b"c1",
            ..Default::default()
        };
        assert!(d.select(1, Algorithm::CallId, &input).is_empty());
        let resolved = d
            .sets()
            .resolved(|_, port, _| Some(([10, 0, 0, 9], port.unwrap_or(5060)).into()));
        d.reload(Instant::now(), Arc::new(resolved));
        assert_eq!(d.select(1, Algorithm::CallId, &input).len(), 1);
    }
}
