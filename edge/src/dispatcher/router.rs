//! The dispatcher behind the proxy's [`Router`] seam: route rules pick a set
//! and algorithm for each initial request, a [`Hunt`] walks the ranking on
//! failover, answered calls are remembered by Call-ID (bounded, with a
//! dialog timeout) so that their end lowers the call load, and probes are
//! handed to the proxy to send. Still sans-IO: time comes in as `now`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::health::{ProbeOutcome, StateChange};
use super::hunt::{Hunt, HuntVerdict};
use super::select::{Algorithm, SelectionInput};
use super::sets::DestinationSets;
use super::state::{DestId, Dispatcher, DispatcherConfig};
use crate::proxy::{HuntStep, Probe, RouteChoice, Router};
use crate::sip::{HeaderKind, Message, Method};

/// Which set and algorithm an initial request uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// Destination set id.
    pub set: u32,
    /// Selection algorithm.
    pub algorithm: Algorithm,
}

/// Settings of a [`DispatchRouter`] besides the dispatcher's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// The rule of every initial request no method rule names (default set
    /// 1, round-robin).
    pub default_rule: RouteRule,
    /// Rules by method name (upper case), e.g. `MESSAGE` to another set.
    pub method_rules: Vec<(String, RouteRule)>,
    /// An answered call not ended by BYE is forgotten (and its load
    /// released) after this long (default 12 h).
    pub dialog_timeout: Duration,
    /// Most answered calls remembered per shard; beyond it the oldest is
    /// released early (counted).
    pub max_dialogs: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            default_rule: RouteRule {
                set: 1,
                algorithm: Algorithm::RoundRobin,
            },
            method_rules: Vec::new(),
            dialog_timeout: Duration::from_secs(12 * 3600),
            max_dialogs: 100_000,
        }
    }
}

/// Counters of a router.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Calls answered and remembered.
    pub dialogs_started: u64,
    /// Calls ended by a BYE's final response.
    pub dialogs_ended: u64,
    /// Calls released by the dialog timeout.
    pub dialogs_expired: u64,
    /// Calls released early because the table was full.
    pub dialogs_evicted: u64,
}

/// Answered calls by Call-ID: bounded, expiring in insertion order.
#[derive(Debug, Default)]
struct Dialogs {
    map: HashMap<Box<[u8]>, (DestId, u64)>,
    /// (expiry, Call-ID, insertion number); entries whose number no longer
    /// matches the map are stale.
    order: VecDeque<(Instant, Box<[u8]>, u64)>,
    seq: u64,
}

/// The dispatcher of one shard as the proxy's router.
#[derive(Debug)]
pub struct DispatchRouter {
    dispatcher: Dispatcher,
    config: RouterConfig,
    dialogs: Dialogs,
    probes: HashMap<u64, DestId>,
    next_token: u64,
    rng: u64,
    stats: RouterStats,
}

impl DispatchRouter {
    /// A router over `sets`.
    pub fn new(
        now: Instant,
        sets: Arc<DestinationSets>,
        dispatcher: DispatcherConfig,
        config: RouterConfig,
    ) -> Self {
        DispatchRouter {
            dispatcher: Dispatcher::new(now, sets, dispatcher),
            config,
            dialogs: Dialogs::default(),
            probes: HashMap::new(),
            next_token: 1,
            rng: 0x9e37_79b9_7f4a_7c15,
            stats: RouterStats::default(),
        }
    }

    /// Seeds the random choices (algorithm 6); shards should differ.
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// The dispatcher (state, load, sets).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The dispatcher, for operator actions and state from other shards.
    pub fn dispatcher_mut(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Answered calls remembered now.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.map.len()
    }

    /// Swaps in a new snapshot (see [`Dispatcher::reload`]).
    pub fn reload(&mut self, now: Instant, sets: Arc<DestinationSets>) {
        self.dispatcher.reload(now, sets);
    }

    /// The next state change to send to the other shards.
    pub fn poll_event(&mut self) -> Option<StateChange> {
        self.dispatcher.poll_event()
    }

    /// A state change from another shard.
    pub fn apply_state_change(&mut self, change: &StateChange) -> bool {
        self.dispatcher.apply_state_change(change)
    }

    fn rule(&self, request: &Message) -> &RouteRule {
        let method = request.method_name().unwrap_or_default();
        self.config
            .method_rules
            .iter()
            .find(|(m, _)| m.as_bytes().eq_ignore_ascii_case(method))
            .map_or(&self.config.default_rule, |(_, r)| r)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn addr(&self, id: DestId) -> Option<SocketAddr> {
        self.dispatcher.destination(id)?.target.addr
    }

    /// The address of `first`, or of the next destination that has one.
    fn reachable(&mut self, now: Instant, hunt: &mut Hunt, first: DestId) -> Option<SocketAddr> {
        let mut id = first;
        for _ in 0..super::select::MAX_CANDIDATES {
            if let Some(addr) = self.addr(id) {
                return Some(addr);
            }
            id = hunt.next_destination(&mut self.dispatcher, now)?;
        }
        None
    }

    fn step(&mut self, now: Instant, hunt: &mut Hunt, verdict: HuntVerdict) -> HuntStep {
        match verdict {
            HuntVerdict::Provisional | HuntVerdict::Final | HuntVerdict::Answered { .. } => {
                HuntStep::Forward
            }
            HuntVerdict::Ignored => HuntStep::Ignore,
            HuntVerdict::Retry { dest } => match self.reachable(now, hunt, dest) {
                Some(addr) => HuntStep::Retry(addr),
                None => HuntStep::Exhausted(hunt.last_code()),
            },
            HuntVerdict::Exhausted { code } => HuntStep::Exhausted(code),
        }
    }

    fn remember(&mut self, now: Instant, call_id: &[u8], dest: DestId) {
        let d = &mut self.dialogs;
        if d.map.len() >= self.config.max_dialogs.max(1) {
            while let Some((_, key, seq)) = d.order.pop_front() {
                if d.map.get(&key).is_some_and(|&(_, s)| s == seq) {
                    if let Some((old, _)) = d.map.remove(&key) {
                        self.dispatcher.call_ended(old);
                        self.stats.dialogs_evicted += 1;
                    }
                    break;
                }
            }
        }
        if d.order.len() >= 2 * self.config.max_dialogs.max(1) {
            let map = &d.map;
            d.order
                .retain(|(_, k, s)| map.get(k).is_some_and(|&(_, live)| live == *s));
        }
        d.seq += 1;
        let key: Box<[u8]> = call_id.into();
        if let Some((old, _)) = d.map.insert(key.clone(), (dest, d.seq)) {
            // The same Call-ID answered twice (a forked 2xx): count it once.
            self.dispatcher.call_ended(old);
        }
        d.order
            .push_back((now + self.config.dialog_timeout, key, d.seq));
        self.stats.dialogs_started += 1;
    }
}

impl Router for DispatchRouter {
    type Hunt = Hunt;

    fn start(&mut self, now: Instant, request: &Message) -> Option<RouteChoice<Hunt>> {
        let RouteRule { set, algorithm } = self.rule(request).clone();
        let initial = request.to().ok().and_then(|t| t.tag()).is_none();
        let track_load = initial && request.method() == Some(Method::Invite);
        let from = request.from().ok();
        let to = request.to().ok();
        let auth = request
            .auth(HeaderKind::ProxyAuthorization)
            .chain(request.auth(HeaderKind::Authorization))
            .find_map(Result::ok);
        let user = auth.as_ref().and_then(|a| a.username());
        let random = self.random();
        let input = SelectionInput {
            call_id: request.call_id(),
            from_uri: from.as_ref().map_or(&[][..], |f| f.uri().as_bytes()),
            to_uri: to.as_ref().map_or(&[][..], |t| t.uri().as_bytes()),
            ruri: request.request_uri_raw().unwrap_or_default(),
            auth_user: user.as_deref().unwrap_or_default(),
            random,
        };
        let mut hunt = self
            .dispatcher
            .start_hunt(set, algorithm, &input, track_load);
        let Some(first) = hunt.next_destination(&mut self.dispatcher, now) else {
            hunt.on_cancel(&mut self.dispatcher);
            return None;
        };
        match self.reachable(now, &mut hunt, first) {
            Some(dst) => Some(RouteChoice {
                dst,
                hunt: Some(hunt),
            }),
            None => {
                hunt.on_cancel(&mut self.dispatcher);
                None
            }
        }
    }

    fn on_response(&mut self, now: Instant, hunt: &mut Hunt, response: &Message) -> HuntStep {
        let code = response.status_code().unwrap_or(500);
        let verdict = hunt.on_response(&mut self.dispatcher, now, code);
        if let HuntVerdict::Answered { dest } = verdict {
            if hunt.tracks_load() {
                self.remember(now, response.call_id(), dest);
            }
        }
        self.step(now, hunt, verdict)
    }

    fn on_attempt_timeout(&mut self, now: Instant, hunt: &mut Hunt) -> HuntStep {
        let verdict = hunt.on_timeout(&mut self.dispatcher, now);
        self.step(now, hunt, verdict)
    }

    fn attempt_deadline(&self, hunt: &Hunt) -> Option<Instant> {
        hunt.poll_timeout()
    }

    fn end_hunt(&mut self, mut hunt: Hunt) {
        hunt.on_cancel(&mut self.dispatcher);
    }

    fn dialog_ended(&mut self, _now: Instant, call_id: &[u8]) {
        if let Some((dest, _)) = self.dialogs.map.remove(call_id) {
            self.dispatcher.call_ended(dest);
            self.stats.dialogs_ended += 1;
        }
    }

    fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        loop {
            let request = self.dispatcher.poll_probe(now)?;
            let id = request.id;
            let Some(dest) = self.dispatcher.destination(id) else {
                continue;
            };
            let Some(dst) = dest.target.addr else {
                self.dispatcher
                    .on_probe_result(now, id, ProbeOutcome::Timeout);
                continue;
            };
            let probe = Probe {
                token: self.next_token,
                dst,
                uri: dest.uri.clone(),
                from: dest.attrs.ping_from.clone(),
            };
            self.next_token += 1;
            self.probes.insert(probe.token, id);
            return Some(probe);
        }
    }

    fn on_probe_result(&mut self, now: Instant, token: u64, code: Option<u16>) {
        if let Some(id) = self.probes.remove(&token) {
            let outcome = code.map_or(ProbeOutcome::Timeout, ProbeOutcome::Response);
            self.dispatcher.on_probe_result(now, id, outcome);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let dialogs = self.dialogs.order.front().map(|(at, _, _)| *at);
        match (self.dispatcher.poll_timeout(), dialogs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.dispatcher.handle_timeout(now);
        while self
            .dialogs
            .order
            .front()
            .is_some_and(|(at, _, _)| *at <= now)
        {
            let Some((_, key, seq)) = self.dialogs.order.pop_front() else {
                break;
            };
            if self.dialogs.map.get(&key).is_some_and(|&(_, s)| s == seq) {
                if let Some((dest, _)) = self.dialogs.map.remove(&key) {
                    self.dispatcher.call_ended(dest);
                    self.stats.dialogs_expired += 1;
                }
            }
        }
    }
}
