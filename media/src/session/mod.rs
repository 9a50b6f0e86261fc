//! The session layer: the calls a shard relays, and the ng command handler
//! that creates, updates and ends them.
//!
//! All sans-IO: the time is an argument, nothing here touches a socket.
//! One [`Sessions`] per shard holds a bounded table of calls keyed by
//! call-id and owns the shard's [`PortPool`](crate::ports::PortPool), so
//! that the delete delay of [`SessionConfig`] is the pool's quarantine.
//!
//! A call has sides, each named by its SIP tag: the `from-tag` of the
//! first offer is side A, and each callee is a side B, named by the
//! `to-tag` of its answer. Later commands find their side by tag, not by
//! role, so a re-INVITE from the callee (its tag as `from-tag`) lands on
//! its side.
//!
//! Each side has one [`Stream`] per media section: the peer's endpoint
//! from that side's SDP, and the relay port pair *facing* that side, the
//! one advertised in the SDP sent to it (so the port on which that side's
//! media arrives). An offer from A therefore allocates B's ports (the
//! rewritten offer goes to B) and an answer from B allocates A's. A packet
//! arriving on a side's port goes to its peer's endpoint, sent from the
//! peer's port ([`Sessions::route`]).
//!
//! Forked calls, as rtpengine tells them apart: a proxy that forks an
//! INVITE (parallel ringing) sends one offer per branch, with the same
//! call-id and `from-tag`, no `to-tag` and each its own `via-branch`.
//! Each `via-branch` gets its own callee side, a *branch*, with its own
//! relay ports, so that each callee's early media is told apart; an offer
//! with a known `via-branch` (resent, or a re-offer) reuses its branch,
//! and one without any goes to A's partner, as an unforked call. A call
//! has at most [`MAX_BRANCHES`] branches; an offer for one more is an
//! error. An `answer` (its `to-tag`, its `via-branch`) comes from the
//! branch with that tag, else the untagged branch with that `via-branch`,
//! else the latest untagged branch; it tags that branch, which becomes
//! A's *partner*. The peer of A is its partner, so A's media goes to the
//! branch that answered last (a 200 after another branch's 183 moves it);
//! the peer of every branch is A, so early media from any branch reaches
//! A, all from A's one relay port. A `delete` with a `via-branch` and no
//! `to-tag` removes only that branch (a CANCELled fork frees its ports)
//! while the call has others; any other `delete` ends the whole call.
//!
//! Symmetric RTP: the first packet on a side's port tells where that side
//! really is (behind a NAT it is seldom where its SDP says), and media to
//! that side then goes there ([`Stream::latched`]), unless the side's
//! signalling carried `asymmetric`. With `strict source` the side's
//! packets from any other source are dropped once it is latched. New
//! signalling with a new endpoint learns it afresh.
//!
//! The shell's contract, as everywhere here: call
//! [`Sessions::handle_request`] for each request of a call this table owns
//! (the runtime's control thread parses it with
//! [`Control::handle`](crate::ng::Control::handle) and queues it to the
//! owning shard), [`Sessions::on_media`] for each relayed packet, and
//! [`Sessions::handle_timeout`] when [`Sessions::poll_timeout`] is due.

mod reply;
mod sessions;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::ports::DEFAULT_DELETE_DELAY;
use crate::sdp::SdpLimits;

pub use reply::{list_limit, list_reply, statistics_reply, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
pub use sessions::{MediaVerdict, Sessions, Stream};

/// rtpengine's "Unknown call-id" for answer and query of an unknown call.
pub const UNKNOWN_CALL: &str = "Unknown call-id";
/// The error when the port pool is exhausted.
pub const RAN_OUT_OF_PORTS: &str = "Ran out of ports";
/// The error for an SDP body we cannot parse or rewrite.
pub const SDP_FAILED: &str = "Failed to parse SDP";
/// The error for an offer whose `from-tag` names neither side of the call.
pub const TAG_MISMATCH: &str = "Tags do not match any side of the call";
/// The most callee branches (forks) one call may have.
pub const MAX_BRANCHES: usize = 8;
/// The error for an offer that would fork a call into one more branch
/// than [`MAX_BRANCHES`].
pub const TOO_MANY_BRANCHES: &str = "Too many forked branches for one call";

/// The session layer's settings, each with a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// A call without media (and without signalling) for this long is
    /// deleted; rtpengine's default is 60 s.
    pub timeout: Duration,
    /// A call older than this is deleted whatever it does; `None` (the
    /// default) sets no bound.
    pub final_timeout: Option<Duration>,
    /// How long a released port pair waits before reuse (rtpengine's delete
    /// delay, 30 s); the pool's quarantine applies it.
    pub delete_delay: Duration,
    /// The most calls this shard holds; a new call beyond it is refused
    /// with a load limit (an error for clients that do not support it).
    pub max_calls: usize,
    /// The most media sections one SDP may allocate ports for.
    pub max_media_per_sdp: usize,
    /// The address the rewritten SDP advertises.
    pub advertised_address: IpAddr,
    /// The lowest port of the relay's range.
    pub port_min: u16,
    /// The highest port of the relay's range.
    pub port_max: u16,
    /// Bounds on parsing one SDP body.
    pub sdp_limits: SdpLimits,
    /// At most this many streams are listed in one query or delete reply,
    /// so the reply stays within one datagram; the rest are counted in
    /// `totals` only.
    pub max_streams_listed: usize,
    /// The Unix time, in seconds, of the `now` given to [`Sessions::new`]:
    /// `created` and `last signal` in replies are counted from it.
    pub unix_time_at_start_s: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            timeout: Duration::from_secs(60),
            final_timeout: None,
            delete_delay: DEFAULT_DELETE_DELAY,
            max_calls: 10_000,
            max_media_per_sdp: 8,
            advertised_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_min: 30_000,
            port_max: 40_000,
            sdp_limits: SdpLimits::default(),
            max_streams_listed: 4,
            unix_time_at_start_s: 0,
        }
    }
}

/// Where to send a packet that arrived on a relay port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The peer endpoint to send to (its RTCP port for an RTCP packet).
    pub to: SocketAddr,
    /// The relay port to send from: the peer side's port (or its RTCP
    /// port, the RTP port + 1 unless that side uses rtcp-mux).
    pub from_port: u16,
    /// Whether the packet arrived on an RTCP port.
    pub rtcp: bool,
}

/// What the session layer has done so far, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Calls created.
    pub calls_created: u64,
    /// Calls ended by `delete`.
    pub calls_deleted: u64,
    /// Calls ended for lack of media.
    pub calls_timed_out: u64,
    /// Calls ended by the final timeout.
    pub calls_final_timed_out: u64,
    /// Offers and answers refused for want of ports.
    pub ran_out_of_ports: u64,
    /// New calls refused because the table was full.
    pub table_full: u64,
    /// SDP bodies refused (parse or rewrite errors, too many sections).
    pub sdp_errors: u64,
    /// Commands for calls (or tags) we do not hold.
    pub unknown_calls: u64,
    /// Stream endpoints learned from the source of their first packet
    /// (RTP and RTCP counted apart).
    pub endpoints_latched: u64,
    /// Packets dropped by `strict source`: from another source than the
    /// latched one.
    pub strict_source_drops: u64,
    /// Offers refused because the call already had [`MAX_BRANCHES`]
    /// callee branches.
    pub branches_refused: u64,
    /// Callee branches deleted alone (by `delete` with their
    /// `via-branch`), their call kept.
    pub branches_deleted: u64,
}

impl SessionCounters {
    /// Adds `other`'s counts to these (the process total over shards).
    pub fn add(&mut self, other: &SessionCounters) {
        // Destructured so that a new counter cannot be left out of the sum.
        let SessionCounters {
            calls_created,
            calls_deleted,
            calls_timed_out,
            calls_final_timed_out,
            ran_out_of_ports,
            table_full,
            sdp_errors,
            unknown_calls,
            endpoints_latched,
            strict_source_drops,
            branches_refused,
            branches_deleted,
        } = *other;
        self.calls_created += calls_created;
        self.calls_deleted += calls_deleted;
        self.calls_timed_out += calls_timed_out;
        self.calls_final_timed_out += calls_final_timed_out;
        self.ran_out_of_ports += ran_out_of_ports;
        self.table_full += table_full;
        self.sdp_errors += sdp_errors;
        self.unknown_calls += unknown_calls;
        self.endpoints_latched += endpoints_latched;
        self.strict_source_drops += strict_source_drops;
        self.branches_refused += branches_refused;
        self.branches_deleted += branches_deleted;
    }
}

/// One shard's sessions in numbers, as `statistics` and the metrics report
/// them; shards' summaries add up to the process's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionsSummary {
    /// Calls held.
    pub calls: u64,
    /// Port pairs held by calls.
    pub ports_in_use: u64,
    /// Port pairs free to allocate (not counting those in quarantine).
    pub ports_free: u64,
    /// What the session layer has done so far.
    pub counters: SessionCounters,
}

impl SessionsSummary {
    /// Adds `other` to this summary.
    pub fn add(&mut self, other: &SessionsSummary) {
        self.calls += other.calls;
        self.ports_in_use += other.ports_in_use;
        self.ports_free += other.ports_free;
        self.counters.add(&other.counters);
    }
}

/// The live streams of a shard in numbers (those that received media).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaSummary {
    /// Streams that have received at least one packet.
    pub streams_receiving: u64,
    /// Packets lost on those streams so far (RFC 3550 cumulative loss).
    pub packets_lost: u64,
    /// The highest interarrival jitter among them, milliseconds.
    pub jitter_ms_max: u32,
    /// The sum of their MOS estimates, times 10.
    pub mos_x10_sum: u64,
    /// How many have a MOS estimate.
    pub mos_rated: u64,
    /// The lowest MOS estimate, times 10.
    pub mos_x10_min: Option<u8>,
}

impl MediaSummary {
    /// Adds `other` to this summary.
    pub fn add(&mut self, other: &MediaSummary) {
        self.streams_receiving += other.streams_receiving;
        self.packets_lost += other.packets_lost;
        self.jitter_ms_max = self.jitter_ms_max.max(other.jitter_ms_max);
        self.mos_x10_sum += other.mos_x10_sum;
        self.mos_rated += other.mos_rated;
        self.mos_x10_min = match (self.mos_x10_min, other.mos_x10_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}
