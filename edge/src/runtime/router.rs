//! The router a shard runs: the fixed next hop of the simple mode, or the
//! dispatcher. One type so the shard loop is the same for both.

use std::net::SocketAddr;
use std::time::Instant;

use crate::dispatcher::{DispatchRouter, Hunt};
use crate::proxy::{HuntStep, Probe, RouteChoice, Router};
use crate::sip::Message;

/// The router of one shard.
#[derive(Debug)]
pub enum ShardRouter {
    /// Every initial request to one address (`sip.next_hop`), or 503.
    Static(Option<SocketAddr>),
    /// The dispatcher of this shard.
    Dispatch(Box<DispatchRouter>),
}

impl ShardRouter {
    /// The dispatcher, if this shard runs one.
    pub fn dispatch(&self) -> Option<&DispatchRouter> {
        match self {
            ShardRouter::Dispatch(d) => Some(d),
            ShardRouter::Static(_) => None,
        }
    }

    /// The dispatcher, if this shard runs one.
    pub fn dispatch_mut(&mut self) -> Option<&mut DispatchRouter> {
        match self {
            ShardRouter::Dispatch(d) => Some(d),
            ShardRouter::Static(_) => None,
        }
    }
}

impl Router for ShardRouter {
    type Hunt = Hunt;

    fn start(&mut self, now: Instant, request: &Message) -> Option<RouteChoice<Hunt>> {
        match self {
            ShardRouter::Static(hop) => hop.map(RouteChoice::to),
            ShardRouter::Dispatch(d) => d.start(now, request),
        }
    }

    fn on_response(&mut self, now: Instant, hunt: &mut Hunt, response: &Message) -> HuntStep {
        match self {
            ShardRouter::Static(_) => HuntStep::Forward,
            ShardRouter::Dispatch(d) => d.on_response(now, hunt, response),
        }
    }

    fn on_attempt_timeout(&mut self, now: Instant, hunt: &mut Hunt) -> HuntStep {
        match self {
            ShardRouter::Static(_) => HuntStep::Ignore,
            ShardRouter::Dispatch(d) => d.on_attempt_timeout(now, hunt),
        }
    }

    fn attempt_deadline(&self, hunt: &Hunt) -> Option<Instant> {
        match self {
            ShardRouter::Static(_) => None,
            ShardRouter::Dispatch(d) => d.attempt_deadline(hunt),
        }
    }

    fn end_hunt(&mut self, hunt: Hunt) {
        if let ShardRouter::Dispatch(d) = self {
            d.end_hunt(hunt);
        }
    }

    fn dialog_ended(&mut self, now: Instant, call_id: &[u8]) {
        if let ShardRouter::Dispatch(d) = self {
            d.dialog_ended(now, call_id);
        }
    }

    fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        match self {
            ShardRouter::Static(_) => None,
            ShardRouter::Dispatch(d) => d.poll_probe(now),
        }
    }

    fn on_probe_result(&mut self, now: Instant, token: u64, code: Option<u16>) {
        if let ShardRouter::Dispatch(d) = self {
            d.on_probe_result(now, token, code);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ShardRouter::Static(_) => None,
            ShardRouter::Dispatch(d) => d.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let ShardRouter::Dispatch(d) = self {
            d.handle_timeout(now);
        }
    }
}
