//! The transaction-stateful proxy of one shard (RFC 3261 section 16), sans-IO:
//! datagrams and time go in as arguments, datagrams to send and the next
//! deadline come out. The runtime shell owns sockets and clocks.
//!
//! The loop a shell runs, after every input:
//! `while let Some(t) = core.poll_transmit() { send(t) }`, then sleep until
//! `core.poll_timeout()` or the next datagram, and call `handle_timeout(now)`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sip::Message;

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
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            timer_c_ms: 180_000,
            max_transactions: 100_000,
            retry_after_s: 5,
            record_route: true,
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

/// Where an initial request goes: the seam the dispatcher replaces.
pub trait Router {
    /// The next hop for an initial (out-of-dialog) request, or `None` to refuse
    /// it (the proxy answers 503). `now` lets a router with health state age it.
    fn route(&mut self, now: Instant, request: &Message) -> Option<SocketAddr>;
}

/// Routes every initial request to one configured address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop(pub SocketAddr);

impl Router for NextHop {
    fn route(&mut self, _now: Instant, _request: &Message) -> Option<SocketAddr> {
        Some(self.0)
    }
}

/// Counters of one shard; the shell reads them for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received, by the shard that owns the call.
    pub requests_in: u64,
    /// Responses received.
    pub responses_in: u64,
    /// Datagrams that did not parse (answered 400 when a request's Via could
    /// be read, dropped otherwise).
    pub parse_errors: u64,
    /// Retransmitted requests absorbed by a server transaction.
    pub retransmissions_absorbed: u64,
    /// Requests forwarded.
    pub requests_forwarded: u64,
    /// Responses forwarded (statefully or stray).
    pub responses_forwarded: u64,
    /// 503s from a full transaction table or shutdown.
    pub rejected_overload: u64,
    /// Branches ended by Timer B, C or F (answered 408 upstream).
    pub timeouts: u64,
}

/// The proxy of one shard: all transactions of the calls the shard owns.
pub struct ProxyCore<R: Router = NextHop> {
    config: ProxyConfig,
    router: R,
    stats: ProxyStats,
    out: std::collections::VecDeque<Transmit>,
    shutting_down: bool,
}

impl<R: Router> ProxyCore<R> {
    /// A proxy with no transactions.
    pub fn new(config: ProxyConfig, router: R) -> Self {
        ProxyCore {
            config,
            router,
            stats: ProxyStats::default(),
            out: std::collections::VecDeque::new(),
            shutting_down: false,
        }
    }

    /// Handles one datagram that arrived from `src` on the socket bound at
    /// `local`. Never panics on peer input; malformed input is counted.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, datagram: Bytes) {
        let _ = (now, src, local, datagram, &mut self.router, &self.config);
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// From now on new INVITEs get 503; live transactions run to their end.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Live transactions (server and client).
    pub fn transaction_count(&self) -> usize {
        0
    }

    /// The shard's counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// How long after `begin_shutdown` a shell should wait at most.
    pub fn shutdown_bound(&self) -> Duration {
        Duration::from_millis(self.config.t1_ms * 64)
    }
}
