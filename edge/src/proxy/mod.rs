//! The transaction-stateful proxy of one shard (RFC 3261 section 16), sans-IO:
//! datagrams and time go in as arguments, datagrams to send and the next
//! deadline come out. The runtime shell owns sockets and clocks.
//!
//! The loop a shell runs, after every input:
//! `while let Some(t) = core.poll_transmit() { send(t) }`, then sleep until
//! `core.poll_timeout()` or the next datagram, and call `handle_timeout(now)`.
//!
//! Each forwarded request pairs a server transaction (upstream) with one
//! client transaction (downstream), linked both ways; see
//! [`crate::transaction`]. Not covered: forking (one branch a request), DNS
//! (only literal IP hosts in Route and Request-URI; anything else goes to the
//! [`Router`]), strict next hops (16.6 step 7) and reliable transports.

#![warn(missing_docs)]

mod hunt;
mod request;
mod response;
mod route;
mod stats;

pub use stats::{LatencyHistogram, ProxyStats, SetupLatency, CODE_CLASSES};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sip::{Message, ParseError, ParseLimits};
use crate::transaction::{
    InviteClient, InviteClientState, InviteServer, InviteServerState, NonInviteClient,
    NonInviteClientState, NonInviteServer, NonInviteServerState, TimerConfig, TransactionEvent,
    TransactionTable, TxnId,
};

/// What the proxy needs to know about the transport it runs on and its timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// RFC 3261 T1, the round-trip estimate (default 500 ms).
    pub t1_ms: u64,
    /// RFC 3261 T2, the longest non-INVITE retransmit interval (default 4 s).
    pub t2_ms: u64,
    /// RFC 3261 T4, how long the network may hold a message (default 5 s).
    pub t4_ms: u64,
    /// Timer C, the proxy's INVITE transaction timeout (more than 3 min).
    pub timer_c_ms: u64,
    /// Most live transactions (server and client) on this shard; a new INVITE
    /// beyond it gets 503.
    pub max_transactions: usize,
    /// Retry-After seconds in 503s from overload and shutdown.
    pub retry_after_s: u32,
    /// Add Record-Route (with `lr`) to initial INVITE and SUBSCRIBE.
    pub record_route: bool,
    /// Other addresses that are this proxy (besides the `local` address a
    /// datagram arrived on): a Route or Request-URI naming one is "us".
    pub aliases: Vec<SocketAddr>,
    /// Host names that are this proxy (on any of its ports).
    pub domains: Vec<String>,
    /// Keys the branch and To-tag hashes; the shell should set a random value
    /// per process so peers cannot predict branches.
    pub branch_secret: u64,
    /// Most datagrams queued for [`ProxyCore::poll_transmit`]; more are
    /// dropped and counted.
    pub max_queued_transmits: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            timer_c_ms: 180_000,
            max_transactions: 400_000,
            retry_after_s: 5,
            record_route: true,
            aliases: Vec::new(),
            domains: Vec::new(),
            branch_secret: 0x005e_ed0f_ed9e,
            max_queued_transmits: 65_536,
        }
    }
}

impl ProxyConfig {
    /// The transaction timers of this configuration.
    pub fn timers(&self) -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(self.t1_ms),
            t2: Duration::from_millis(self.t2_ms),
            t4: Duration::from_millis(self.t4_ms),
            timer_c: Duration::from_millis(self.timer_c_ms),
        }
    }
}

/// One datagram to send: from the shard's socket bound at `local`, to `dst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local address (a listen address) whose socket sends it.
    pub local: SocketAddr,
    /// Where it goes.
    pub dst: SocketAddr,
    /// The whole SIP message.
    pub payload: Bytes,
}

/// Where an initial request goes, with the router's failover state for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteChoice<H> {
    /// The first destination.
    pub dst: SocketAddr,
    /// The router's state for trying further destinations (`None`: no
    /// failover, the branch ends the request as it would without a router).
    pub hunt: Option<H>,
}

impl<H> RouteChoice<H> {
    /// One fixed destination, no failover.
    pub fn to(dst: SocketAddr) -> Self {
        RouteChoice { dst, hunt: None }
    }
}

/// What the proxy does after a response to (or the attempt timer of) a
/// request the router hunts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuntStep {
    /// As without a router: forward the response upstream.
    Forward,
    /// Send the request again, on a new branch, to this address; the
    /// response that caused it is not forwarded (a branch that saw a
    /// provisional is cancelled).
    Retry(SocketAddr),
    /// Nothing left to try: the failing response goes upstream, or after a
    /// timeout a response with this code written here.
    Exhausted(u16),
    /// Nothing to do (a stale timer).
    Ignore,
}

/// An OPTIONS health probe the router wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The router's handle, given back with [`Router::on_probe_result`].
    pub token: u64,
    /// Where it goes.
    pub dst: SocketAddr,
    /// The Request-URI and To URI.
    pub uri: String,
    /// The From URI (default `sip:edge@<local address>`).
    pub from: Option<String>,
}

/// Where initial requests go: the seam between the proxy and a router (a
/// fixed next hop, or the dispatcher). The proxy knows nothing of how a
/// router chooses; it keeps the router's per-request [`Router::Hunt`] with
/// the request's server transaction, gives it every response and the
/// attempt timer, and sends new branches and probes when told.
///
/// Every hunt the router hands out comes back exactly once through
/// [`Router::end_hunt`] (answered, failed, cancelled or timed out).
pub trait Router {
    /// The router's state for one request it may fail over.
    type Hunt;

    /// The first destination of an initial (out-of-dialog) request (or one
    /// whose next hop has no IP address), or `None` to refuse it (the proxy
    /// answers 503).
    fn start(&mut self, now: Instant, request: &Message) -> Option<RouteChoice<Self::Hunt>>;

    /// A response (100 included) from the current branch of a hunted request.
    fn on_response(
        &mut self,
        _now: Instant,
        _hunt: &mut Self::Hunt,
        _response: &Message,
    ) -> HuntStep {
        HuntStep::Forward
    }

    /// The attempt timer of [`Router::attempt_deadline`] fired.
    fn on_attempt_timeout(&mut self, _now: Instant, _hunt: &mut Self::Hunt) -> HuntStep {
        HuntStep::Ignore
    }

    /// When the current attempt fails over for lack of any response.
    fn attempt_deadline(&self, _hunt: &Self::Hunt) -> Option<Instant> {
        None
    }

    /// The proxy is done with `hunt`: answered or failed (already reported),
    /// cancelled by the caller, or ended by a transaction timer.
    fn end_hunt(&mut self, _hunt: Self::Hunt) {}

    /// The dialog with this Call-ID ended (a final response to its BYE).
    fn dialog_ended(&mut self, _now: Instant, _call_id: &[u8]) {}

    /// The next probe to send now, if any; called until `None`.
    fn poll_probe(&mut self, _now: Instant) -> Option<Probe> {
        None
    }

    /// How the probe `token` ended: a final response's code, or `None` when
    /// none came (Timer F) or it could not be sent.
    fn on_probe_result(&mut self, _now: Instant, _token: u64, _code: Option<u16>) {}

    /// When [`Router::handle_timeout`] (and [`Router::poll_probe`]) has work.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Runs the router's own timers (probe timeouts, dialog expiry).
    fn handle_timeout(&mut self, _now: Instant) {}
}

/// Routes every initial request to one configured address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop(pub SocketAddr);

impl Router for NextHop {
    type Hunt = ();

    fn start(&mut self, _now: Instant, _request: &Message) -> Option<RouteChoice<()>> {
        Some(RouteChoice::to(self.0))
    }
}

/// A transaction's state machine.
#[derive(Debug)]
enum Machine {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
}

impl Machine {
    /// Still waiting for (or about to send) a final response?
    fn is_unfinished(&self) -> bool {
        match self {
            Machine::InviteServer(s) => s.state() == InviteServerState::Proceeding,
            Machine::NonInviteServer(s) => matches!(
                s.state(),
                NonInviteServerState::Trying | NonInviteServerState::Proceeding
            ),
            Machine::InviteClient(c) => matches!(
                c.state(),
                InviteClientState::Calling | InviteClientState::Proceeding
            ),
            Machine::NonInviteClient(c) => matches!(
                c.state(),
                NonInviteClientState::Trying | NonInviteClientState::Proceeding
            ),
        }
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            Machine::InviteServer(m) => m.poll_transmit(),
            Machine::NonInviteServer(m) => m.poll_transmit(),
            Machine::InviteClient(m) => m.poll_transmit(),
            Machine::NonInviteClient(m) => m.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::InviteServer(m) => m.poll_timeout(),
            Machine::NonInviteServer(m) => m.poll_timeout(),
            Machine::InviteClient(m) => m.poll_timeout(),
            Machine::NonInviteClient(m) => m.poll_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
        }
    }

    fn handle_timeout(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent> {
        match self {
            Machine::InviteServer(m) => m.handle_timeout(now, timers),
            Machine::NonInviteServer(m) => m.handle_timeout(now),
            Machine::InviteClient(m) => m.handle_timeout(now, timers),
            Machine::NonInviteClient(m) => m.handle_timeout(now, timers),
        }
    }
}

/// One transaction of the proxy: its machine, the socket it uses, its peer
/// (response address of a server transaction, next hop of a client one) and
/// the transaction on the other side of the proxy.
#[derive(Debug)]
struct ProxyTxn<H> {
    machine: Machine,
    local: SocketAddr,
    peer: SocketAddr,
    link: Option<TxnId>,
    /// A CANCEL arrived before any provisional: send it when one does (9.1).
    cancel_pending: bool,
    /// Server side of a request the router hunts for: its state.
    hunt: Option<H>,
    /// Server side: branches started so far (names each new branch).
    attempts: u8,
    /// Client side: an OPTIONS probe of the router, by token.
    probe: Option<u64>,
    /// Server side of an initial INVITE: its setup clock, until a 2xx.
    setup: Option<SetupClock>,
}

/// When an initial INVITE arrived, and whether its first response from
/// downstream was timed yet.
#[derive(Clone, Copy, Debug)]
struct SetupClock {
    since: Instant,
    first_seen: bool,
}

/// Most timers fired by one [`ProxyCore::handle_timeout`] call.
const MAX_TIMERS_PER_CALL: usize = 16_384;
/// Most rounds a transaction's own due timers are run in one firing.
const MAX_ROUNDS_PER_FIRING: usize = 8;

/// The proxy of one shard: all transactions of the calls the shard owns.
pub struct ProxyCore<R: Router = NextHop> {
    config: ProxyConfig,
    timers: TimerConfig,
    limits: ParseLimits,
    router: R,
    stats: ProxyStats,
    latency: SetupLatency,
    out: VecDeque<Transmit>,
    table: TransactionTable<ProxyTxn<R::Hunt>>,
    fired: Vec<TxnId>,
    shutting_down: bool,
    /// Addresses probes may be sent from (the shard's listen addresses).
    locals: Vec<SocketAddr>,
    /// (this shard, shards): probe Call-IDs hash to this shard.
    shard: (usize, usize),
    probe_seq: u64,
}

impl<R: Router> ProxyCore<R> {
    /// A proxy with no transactions.
    pub fn new(config: ProxyConfig, router: R) -> Self {
        ProxyCore {
            timers: config.timers(),
            limits: ParseLimits::datagram(),
            router,
            stats: ProxyStats::default(),
            latency: SetupLatency::default(),
            out: VecDeque::with_capacity(config.max_queued_transmits.min(1024)),
            table: TransactionTable::new(config.max_transactions),
            fired: Vec::new(),
            shutting_down: false,
            locals: Vec::new(),
            shard: (0, 1),
            probe_seq: 0,
            config,
        }
    }

    /// Handles one datagram that arrived from `src` on the socket bound at
    /// `local`. Never panics on peer input; malformed input is counted.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        datagram: Bytes,
    ) {
        self.table.start(now);
        let message = match Message::parse_datagram(datagram, &self.limits) {
            Ok(m) => m,
            Err(ParseError::Empty) => return, // CRLF keep-alive
            Err(_) => {
                self.stats.parse_errors += 1;
                return;
            }
        };
        match (message.method(), message.status_code()) {
            (Some(method), _) => {
                self.stats.requests_in += 1;
                self.stats.requests_by_method[method.index()] += 1;
                self.on_request(now, src, local, &message);
            }
            (None, code) => {
                self.stats.responses_in += 1;
                let code = code.unwrap_or(0);
                self.stats.response_in(message.cseq().method, code);
                self.on_response(now, local, &message);
            }
        }
    }

    /// Fires every timer due at or before `now`, as many as the transmit
    /// queue has room for; when some are left, [`ProxyCore::poll_timeout`]
    /// returns a time not after `now`, so the shell drains and calls again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.start(now);
        // A timer sends at most two datagrams (a retransmission, or a 408 and
        // its partner's end); round up so a tiny queue still makes progress.
        let free = self
            .config
            .max_queued_transmits
            .saturating_sub(self.out.len());
        let room = free.div_ceil(2);
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.table
            .expire(now, &mut fired, room.min(MAX_TIMERS_PER_CALL));
        for &id in &fired {
            self.fire(now, id);
        }
        self.fired = fired;
        if self.router.poll_timeout().is_some_and(|at| at <= now) {
            self.router.handle_timeout(now);
            self.send_probes(now);
        }
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.table.next_deadline(), self.router.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The router.
    pub fn router(&self) -> &R {
        &self.router
    }

    /// The router, to feed it state from elsewhere (other shards, reloads).
    pub fn router_mut(&mut self) -> &mut R {
        &mut self.router
    }

    /// The addresses this shard sends from (its listen addresses): probes go
    /// from the first of the destination's address family.
    pub fn set_local_addrs(&mut self, locals: &[SocketAddr]) {
        self.locals = locals.to_vec();
    }

    /// This core is shard `index` of `shards`: the Call-IDs of its probes
    /// hash to it (`crate::sip::owner_shard`), so their responses come back here.
    pub fn set_shard(&mut self, index: usize, shards: usize) {
        self.shard = (index.min(shards.saturating_sub(1)), shards.max(1));
    }

    /// From now on new INVITEs (and other initial requests) get 503; live
    /// transactions and in-dialog requests run to their end.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Live transactions (server and client).
    pub fn transaction_count(&self) -> usize {
        self.table.len()
    }

    /// Transactions that have not seen a final response yet; those that only
    /// wait to absorb retransmissions (Completed, Confirmed) are left out.
    /// Walks the table: meant for shutdown, not for every message.
    pub fn unfinished_transaction_count(&self) -> usize {
        self.table
            .values()
            .filter(|t| t.machine.is_unfinished())
            .count()
    }

    /// The shard's counters (a copy, with the table's turnover).
    pub fn stats(&self) -> ProxyStats {
        let (created, freed) = self.table.turnover();
        ProxyStats {
            transactions_created: created,
            transactions_freed: freed,
            ..self.stats.clone()
        }
    }

    /// The shard's call setup latency.
    pub fn setup_latency(&self) -> &SetupLatency {
        &self.latency
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// How long after `begin_shutdown` a shell should wait at most.
    pub fn shutdown_bound(&self) -> Duration {
        Duration::from_millis(self.config.t1_ms * 64)
    }

    /// Timer-wheel entries visited so far (fired or moved down a level): the
    /// work `handle_timeout` did, independent of how many timers are armed.
    pub fn timer_visits(&self) -> u64 {
        self.table.timer_visits()
    }

    /// Runs the due timers of transaction `id` and acts on what they report.
    fn fire(&mut self, now: Instant, id: TxnId) {
        self.fire_hunt(now, id);
        let mut event = None;
        for _ in 0..MAX_ROUNDS_PER_FIRING {
            let Some(t) = self.table.get_mut(id) else {
                return;
            };
            if t.machine.poll_timeout().is_none_or(|at| at > now) {
                break;
            }
            event = t.machine.handle_timeout(now, &self.timers);
            if event.is_some() {
                break;
            }
        }
        match event {
            Some(TransactionEvent::Timeout) => self.on_txn_timeout(now, id),
            Some(TransactionEvent::TimerC { provisional }) => self.on_timer_c(now, id, provisional),
            None => {}
        }
        self.settle(id);
    }

    /// Sends what transaction `id` queued, then removes it if it ended (and
    /// unlinks its partner) or re-arms its timer.
    fn settle(&mut self, id: TxnId) {
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        let (local, peer, link) = (t.local, t.peer, t.link);
        let payload = t.machine.poll_transmit();
        let done = t.machine.is_terminated();
        let hunt_at = t
            .hunt
            .as_ref()
            .and_then(|h| self.router.attempt_deadline(h));
        let deadline = match (t.machine.poll_timeout(), hunt_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(payload) = payload {
            self.push(local, peer, payload);
        }
        if !done {
            self.table.arm(id, deadline);
            return;
        }
        if let Some(hunt) = self.table.remove(id).and_then(|t| t.hunt) {
            self.router.end_hunt(hunt);
        }
        if let Some(other) = link.and_then(|l| self.table.get_mut(l)) {
            other.link = None;
        }
    }

    /// Queues a datagram, or drops and counts it when the queue is full.
    fn push(&mut self, local: SocketAddr, dst: SocketAddr, payload: Bytes) {
        if self.out.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.out.push_back(Transmit {
            local,
            dst,
            payload,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_transaction_is_small() {
        // The table entry (machine, addresses, link, key, timer) without the
        // message bytes it shares with the received datagram.
        let entry = std::mem::size_of::<ProxyTxn<crate::dispatcher::Hunt>>()
            + 2 * std::mem::size_of::<crate::transaction::TxnKey>()
            + std::mem::size_of::<TxnId>()
            + 64;
        println!("idle transaction entry: {entry} bytes");
        assert!(entry < 1024, "{entry} bytes");
    }
}
