//! The call table of one shard and the ng command handler over it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use super::reply::{call_stats, list_limit, list_reply, statistics_reply};
use super::{
    MediaSummary, Route, SessionConfig, SessionCounters, SessionsSummary, MAX_BRANCHES,
    RAN_OUT_OF_PORTS, SDP_FAILED, TAG_MISMATCH, TOO_MANY_BRANCHES, UNKNOWN_CALL,
};
use crate::ng::reply::{CALL_NOT_FOUND, LOAD_LIMIT_SESSIONS};
use crate::ng::{
    CallIds, Command, Dict, Flag, Ice, Options, Outcome, Replace, Request, RtcpMux as NgRtcpMux,
    Warning,
};
use crate::ports::{PortConfigError, PortPool};
use crate::rtp::ClockRates;
use crate::sdp::{Media, RelayEndpoint, RewriteOptions, RtcpMux, Sdp};
use crate::stats::StreamStats;

/// One media section of one side of a call.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// The relay's RTP port facing this side (advertised in the SDP sent
    /// to it, so this side's media arrives here); 0 when none.
    pub local_port: u16,
    /// Whether the SDP sent to this side advertises rtcp-mux, so that no
    /// separate RTCP port (`local_port + 1`) is in use.
    pub local_rtcp_mux: bool,
    /// Where this side receives RTP, from its SDP; `None` until known, for
    /// a rejected section, a host name or an unspecified (hold) address.
    pub remote: Option<SocketAddr>,
    /// Where this side receives RTCP (the RTP endpoint with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// Statistics of the packets received from this side.
    pub stats: StreamStats,
    /// When the last packet from this side arrived.
    pub last_packet: Option<Instant>,
    /// Where this side's RTP really comes from: the source of the first
    /// packet on `local_port` (symmetric RTP, so that media reaches a side
    /// behind NAT). Media to this side goes here rather than to `remote`;
    /// `None` until that packet, and always for an asymmetric side.
    pub latched: Option<SocketAddr>,
    /// The same for RTCP on `local_port + 1`. With rtcp-mux this side's
    /// RTCP arrives on `local_port` and `latched` serves for both.
    pub latched_rtcp: Option<SocketAddr>,
    /// `asymmetric`: this side sends from elsewhere than it receives, so
    /// it is never latched and media to it always goes to `remote`.
    pub asymmetric: bool,
    /// `strict source`: once latched, packets from any other source are
    /// dropped.
    pub strict_source: bool,
}

/// What a packet's source means for the stream it arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The stream's first packet: its source is now the stream's address.
    Learned,
    /// The latched source, or any source where none is enforced.
    Accepted,
    /// Another source than the latched one, with `strict source`.
    Refused,
}

impl Stream {
    /// Checks the source `src` of a packet that arrived on this stream's
    /// RTP (`rtcp` false) or RTCP port, latching onto it if it is the
    /// first. Latching happens once: a later source change is accepted
    /// (or refused with `strict source`) but not followed, until new
    /// signalling resets it.
    fn check_source(&mut self, rtcp: bool, src: SocketAddr) -> Source {
        if self.asymmetric {
            return Source::Accepted;
        }
        let slot = if rtcp && !self.local_rtcp_mux {
            &mut self.latched_rtcp
        } else {
            &mut self.latched
        };
        match *slot {
            None => {
                *slot = Some(src);
                Source::Learned
            }
            Some(at) if at == src || !self.strict_source => Source::Accepted,
            Some(_) => Source::Refused,
        }
    }

    /// Where RTP to this side goes: the latched source, else the SDP's
    /// endpoint; nowhere while the SDP gives none (e.g. on hold).
    fn rtp_target(&self) -> Option<SocketAddr> {
        let advertised = self.remote?;
        Some(self.latched.unwrap_or(advertised))
    }

    /// Where RTCP to this side goes, as [`Stream::rtp_target`] for RTCP.
    fn rtcp_target(&self) -> Option<SocketAddr> {
        let advertised = self.remote_rtcp?;
        let latched = if self.local_rtcp_mux {
            self.latched
        } else {
            self.latched_rtcp
        };
        Some(latched.unwrap_or(advertised))
    }
}

/// What to do with a packet that arrived on a relay port
/// ([`Sessions::on_media`]).
#[derive(Debug)]
pub enum MediaVerdict<'a> {
    /// Send it along the route, after counting it in the statistics of
    /// the stream it arrived on.
    Relay(Route, &'a mut StreamStats),
    /// No call holds the port, the peer side has no address yet, or the
    /// port is the RTCP port of a stream that uses rtcp-mux.
    Unrouted,
    /// The stream is latched onto another source and has `strict source`:
    /// drop the packet without counting it.
    WrongSource,
}

impl<'a> MediaVerdict<'a> {
    /// The route and statistics when the packet is to be relayed.
    pub fn relay(self) -> Option<(Route, &'a mut StreamStats)> {
        match self {
            MediaVerdict::Relay(route, stats) => Some((route, stats)),
            MediaVerdict::Unrouted | MediaVerdict::WrongSource => None,
        }
    }
}

/// One side of a call (rtpengine's monologue).
#[derive(Clone, Debug, Default)]
pub(super) struct Side {
    /// The SIP tag; `None` for a callee branch until its answer (or a
    /// to-tag).
    pub(super) tag: Option<Bytes>,
    /// For a callee branch, the `via-branch` of the offer that made it
    /// (the forked INVITE's branch towards that callee); `None` for side
    /// A and for branches offered without one.
    pub(super) via_branch: Option<Bytes>,
    /// One per media section, by index.
    pub(super) streams: Vec<Stream>,
}

/// One call: side A, its callee branches and its times.
#[derive(Clone, Debug)]
pub(super) struct Call {
    pub(super) created: Instant,
    pub(super) last_signal: Instant,
    pub(super) last_media: Option<Instant>,
    /// Side A at index 0 (the from-tag of the first offer), then one
    /// callee side per branch in the order they were offered: always at
    /// least one, at most [`MAX_BRANCHES`].
    pub(super) sides: Vec<Side>,
    /// The callee side A is in dialogue with (its media goes there): the
    /// branch that answered last, or sent the last re-INVITE; an index
    /// into `sides`, never 0.
    pub(super) partner: usize,
}

impl Call {
    fn new(now: Instant, from_tag: Bytes, to_tag: Option<Bytes>, via: Option<Bytes>) -> Self {
        let a = Side {
            tag: Some(from_tag),
            ..Side::default()
        };
        let b = Side {
            tag: to_tag,
            via_branch: via,
            ..Side::default()
        };
        Call {
            created: now,
            last_signal: now,
            last_media: None,
            sides: vec![a, b],
            partner: 1,
        }
    }

    /// The side whose tag is `tag`.
    fn side_of(&self, tag: &[u8]) -> Option<usize> {
        self.sides
            .iter()
            .position(|s| s.tag.as_deref() == Some(tag))
    }

    /// The side the media of `side` goes to: A's partner for side A, A
    /// for every callee branch (early media from any branch reaches A).
    pub(super) fn peer_of(&self, side: usize) -> usize {
        if side == 0 {
            self.partner
        } else {
            0
        }
    }

    /// The callee sides' indices, oldest first.
    fn branches(&self) -> std::ops::Range<usize> {
        1..self.sides.len()
    }

    /// The callee side whose tag is `tag`.
    fn branch_tagged(&self, tag: &[u8]) -> Option<usize> {
        self.branches()
            .find(|&i| self.sides[i].tag.as_deref() == Some(tag))
    }

    /// The callee side made by the offer with `via-branch` `via`,
    /// untagged ones only if `untagged`.
    fn branch_of_via(&self, via: &[u8], untagged: bool) -> Option<usize> {
        self.branches().find(|&i| {
            let side = &self.sides[i];
            side.via_branch.as_deref() == Some(via) && !(untagged && side.tag.is_some())
        })
    }

    /// The side an answer with to-tag `to_tag` and `via` comes from: the
    /// side tagged `to_tag`; else the untagged branch offered with `via`;
    /// else the latest untagged branch; else (every branch answered, say a
    /// fork further downstream under one via-branch) the branch offered
    /// with `via`, else the partner, which the answer re-tags.
    fn answering_branch(&self, to_tag: &[u8], via: Option<&[u8]>) -> usize {
        if let Some(side) = self.branch_tagged(to_tag) {
            return side;
        }
        let by_via = |untagged| via.and_then(|v| self.branch_of_via(v, untagged));
        by_via(true)
            .or_else(|| self.branches().rev().find(|&i| self.sides[i].tag.is_none()))
            .or_else(|| by_via(false))
            .unwrap_or(self.partner)
    }

    /// The relay ports this call holds.
    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.sides.iter().flat_map(Side::ports)
    }

    /// The last time anything happened: signalling or media.
    fn last_activity(&self) -> Instant {
        match self.last_media {
            Some(media) => media.max(self.last_signal),
            None => self.last_signal,
        }
    }
}

impl Side {
    /// The relay ports this side holds.
    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.streams
            .iter()
            .map(|s| s.local_port)
            .filter(|&p| p != 0)
    }
}

/// Which stream a relay port belongs to.
#[derive(Clone, Debug)]
struct PortOwner {
    call_id: Bytes,
    side: usize,
    index: usize,
}

/// Relay ports to the streams that hold them: one slot per port pair of the
/// range, so the packet path indexes where it would otherwise hash.
#[derive(Debug)]
struct PortTable {
    /// The even port of slot 0.
    base: u16,
    slots: Vec<Option<PortOwner>>,
}

impl PortTable {
    fn new(port_min: u16, port_max: u16) -> Self {
        let base = port_min & !1;
        let pairs = usize::from(port_max.saturating_sub(base) / 2) + 1;
        PortTable {
            base,
            slots: vec![None; pairs],
        }
    }

    /// The slot of `port`'s pair (RTP or RTCP port alike).
    fn slot(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.base)?;
        let slot = usize::from(offset / 2);
        (slot < self.slots.len()).then_some(slot)
    }

    fn get(&self, port: &u16) -> Option<&PortOwner> {
        self.slots.get(self.slot(*port)?)?.as_ref()
    }

    fn get_mut(&mut self, port: &u16) -> Option<&mut PortOwner> {
        let slot = self.slot(*port)?;
        self.slots.get_mut(slot)?.as_mut()
    }

    /// Records `owner` for `port`, which comes from the pool and so is in
    /// the range.
    fn insert(&mut self, port: u16, owner: PortOwner) {
        debug_assert!(self.slot(port).is_some(), "port {port} outside the range");
        if let Some(entry) = self.slot(port).and_then(|slot| self.slots.get_mut(slot)) {
            *entry = Some(owner);
        }
    }

    fn remove(&mut self, port: &u16) -> Option<PortOwner> {
        let slot = self.slot(*port)?;
        self.slots.get_mut(slot)?.take()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.iter().count()
    }

    /// The held RTP ports and their owners.
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (u16, &PortOwner)> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, owner)| {
            let port = self.base + 2 * u16::try_from(slot).ok()?;
            Some((port, owner.as_ref()?))
        })
    }
}

/// The calls of one shard, with its port pool.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    pool: PortPool,
    /// By call-id. Seeded foldhash: call-ids come from the network, so the
    /// hash must resist chosen collisions, and SipHash was a visible share
    /// of the per-packet cost.
    calls: HashMap<Bytes, Call, foldhash::fast::RandomState>,
    /// Every RTP port held by a call, to its stream.
    ports: PortTable,
    counters: SessionCounters,
    start: Instant,
}

/// Why a side's SDP could not be taken.
type Refusal = Outcome;

impl Sessions {
    /// The sessions of shard `shard` of `shards` at `now`: the shard's
    /// share of `config`'s port range, with `config`'s delete delay as the
    /// pool's quarantine.
    pub fn new(
        now: Instant,
        config: SessionConfig,
        shard: usize,
        shards: usize,
    ) -> Result<Self, PortConfigError> {
        let pool = PortPool::new(config.port_min, config.port_max, shard, shards)?
            .with_delete_delay(config.delete_delay)?;
        Ok(Sessions {
            calls: HashMap::with_capacity_and_hasher(
                config.max_calls.min(4096),
                foldhash::fast::RandomState::default(),
            ),
            ports: PortTable::new(config.port_min, config.port_max),
            config,
            pool,
            counters: SessionCounters::default(),
            start: now,
        })
    }

    /// Runs one request at `now`.
    pub fn handle_request(&mut self, now: Instant, request: &Request) -> Outcome {
        let options = &request.options;
        match &request.command {
            Command::Ping => Outcome::Pong,
            Command::Offer { ids, to_tag, sdp } => {
                self.offer(now, ids, to_tag.as_ref(), sdp, options)
            }
            Command::Answer { ids, to_tag, sdp } => self.answer(now, ids, to_tag, sdp, options),
            Command::Delete { ids, to_tag } => self.delete(now, ids, to_tag.as_ref(), options),
            Command::Query { call_id, .. } => self.query(call_id),
            Command::List { limit } => list_reply(self.call_ids(list_limit(*limit)), *limit),
            Command::Statistics => statistics_reply(&self.summary()),
        }
    }

    fn offer(
        &mut self,
        now: Instant,
        ids: &CallIds,
        to_tag: Option<&Bytes>,
        body: &Bytes,
        options: &Options,
    ) -> Outcome {
        let (mut call, is_new) = match self.calls.remove(&ids.call_id) {
            Some(call) => (call, false),
            None if self.calls.len() >= self.config.max_calls => {
                self.counters.table_full += 1;
                return Outcome::LoadLimit(LOAD_LIMIT_SESSIONS.into());
            }
            None => {
                let via = ids.via_branch.clone();
                let call = Call::new(now, ids.from_tag.clone(), to_tag.cloned(), via);
                (call, true)
            }
        };
        let Some(from) = call.side_of(&ids.from_tag) else {
            self.calls.insert(ids.call_id.clone(), call);
            self.counters.unknown_calls += 1;
            return Outcome::error(TAG_MISMATCH);
        };
        let Some((to, added)) = offered_side(&mut call, from, to_tag, ids.via_branch.as_ref())
        else {
            self.calls.insert(ids.call_id.clone(), call);
            self.counters.branches_refused += 1;
            return Outcome::error(TOO_MANY_BRANCHES);
        };
        if call.sides[to].tag.is_none() {
            call.sides[to].tag = to_tag.cloned();
        }
        let result = self.negotiate(now, &ids.call_id, &mut call, from, to, body, options);
        match &result {
            Ok(_) => {
                call.last_signal = now;
                // A callee's re-INVITE: that branch is the one in dialogue.
                if from != 0 {
                    call.partner = from;
                }
                self.counters.calls_created += u64::from(is_new);
            }
            // The branch made for this offer holds no port yet.
            Err(_) if added => drop(call.sides.pop()),
            Err(_) => {}
        }
        if result.is_ok() || !is_new {
            self.calls.insert(ids.call_id.clone(), call);
        }
        result.map_or_else(|refusal| refusal, sdp_reply)
    }

    fn answer(
        &mut self,
        now: Instant,
        ids: &CallIds,
        to_tag: &Bytes,
        body: &Bytes,
        options: &Options,
    ) -> Outcome {
        let Some(mut call) = self.calls.remove(&ids.call_id) else {
            self.counters.unknown_calls += 1;
            return Outcome::error(UNKNOWN_CALL);
        };
        let Some(offerer) = call.side_of(&ids.from_tag) else {
            self.calls.insert(ids.call_id.clone(), call);
            self.counters.unknown_calls += 1;
            return Outcome::error(UNKNOWN_CALL);
        };
        // A's answer to a callee's re-INVITE, or a branch's answer to A.
        let answerer = if offerer == 0 {
            let via = ids.via_branch.as_deref();
            let branch = call.answering_branch(to_tag, via);
            call.sides[branch].tag = Some(to_tag.clone());
            branch
        } else {
            0
        };
        let result = self.negotiate(
            now,
            &ids.call_id,
            &mut call,
            answerer,
            offerer,
            body,
            options,
        );
        if result.is_ok() {
            call.last_signal = now;
            // The answering branch (183 or 200) is now A's partner.
            call.partner = if answerer == 0 { offerer } else { answerer };
        }
        self.calls.insert(ids.call_id.clone(), call);
        result.map_or_else(|refusal| refusal, sdp_reply)
    }

    /// Takes side `from`'s SDP: records its endpoints, gives side `to`
    /// (which the rewritten SDP goes to) one relay port pair per active
    /// section (keeping those it has) and returns the SDP rewritten for
    /// `to`. Changes nothing when it fails.
    #[allow(clippy::too_many_arguments)]
    fn negotiate(
        &mut self,
        now: Instant,
        call_id: &Bytes,
        call: &mut Call,
        from: usize,
        to: usize,
        body: &Bytes,
        options: &Options,
    ) -> Result<Bytes, Refusal> {
        let Ok(sdp) = Sdp::parse(body.clone(), &self.config.sdp_limits) else {
            return Err(self.sdp_failed());
        };
        let count = sdp.media_count();
        if count > self.config.max_media_per_sdp {
            return Err(self.sdp_failed());
        }
        let rewrite = rewrite_options(options);
        let mut ports = Vec::with_capacity(count);
        let mut fresh = Vec::with_capacity(count);
        for (index, media) in sdp.media().enumerate() {
            let held = call.sides[to]
                .streams
                .get(index)
                .map_or(0, |s| s.local_port);
            let port = match (media.port(), held) {
                (0, _) => 0,
                (_, held) if held != 0 => held,
                _ => match self.pool.allocate(now) {
                    Some(port) => {
                        fresh.push(port);
                        port
                    }
                    None => {
                        self.release_ports(now, &fresh);
                        self.counters.ran_out_of_ports += 1;
                        return Err(Outcome::error(RAN_OUT_OF_PORTS));
                    }
                },
            };
            ports.push(port);
        }
        let relay: Vec<RelayEndpoint> = ports
            .iter()
            .map(|&rtp_port| RelayEndpoint {
                address: self.config.advertised_address,
                rtp_port,
            })
            .collect();
        let rewritten = match sdp.rewrite(&relay, &rewrite) {
            Ok(rewritten) => rewritten,
            Err(_) => {
                self.release_ports(now, &fresh);
                return Err(self.sdp_failed());
            }
        };
        // Commit: nothing below fails.
        let len = count
            .max(call.sides[from].streams.len())
            .max(call.sides[to].streams.len());
        for side in [from, to] {
            call.sides[side].streams.resize_with(len, Stream::default);
        }
        for index in 0..len {
            let port = ports.get(index).copied().unwrap_or(0);
            let old = call.sides[to].streams[index].local_port;
            if old != 0 && old != port {
                self.release_ports(now, &[old]);
            }
            let media = sdp.media_at(index);
            let stream = &mut call.sides[to].streams[index];
            if old != port {
                stream.local_port = port;
                stream.stats.reset();
                stream.last_packet = None;
                stream.latched = None;
                stream.latched_rtcp = None;
                if port != 0 {
                    let owner = PortOwner {
                        call_id: call_id.clone(),
                        side: to,
                        index,
                    };
                    self.ports.insert(port, owner);
                }
            }
            stream.local_rtcp_mux = media.is_some_and(|m| rewrite.rtcp_mux.muxed(&m));
            let (remote, remote_rtcp) = media
                .as_ref()
                .map_or((None, None), |m| remote_of(m, options.received_from));
            let peer = &mut call.sides[from].streams[index];
            // A new endpoint in the SDP (a move, a re-INVITE from another
            // device) is learned afresh from its first packet.
            if peer.remote != remote {
                peer.latched = None;
            }
            if peer.remote_rtcp != remote_rtcp {
                peer.latched_rtcp = None;
            }
            peer.remote = remote;
            peer.remote_rtcp = remote_rtcp;
            // The payload types a side lists are those it sends too (RFC
            // 3264 section 5.1), so its rtpmaps clock its own stream.
            if let Some(m) = &media {
                let rtpmaps = m.rtpmaps().map(|r| (r.payload_type, r.clock_rate_hz));
                peer.stats
                    .set_clock_rates(ClockRates::from_rtpmaps(rtpmaps));
            }
            peer.asymmetric = options.has_flag(Flag::Asymmetric);
            peer.strict_source = options.has_flag(Flag::StrictSource);
            if peer.asymmetric {
                peer.latched = None;
                peer.latched_rtcp = None;
            }
        }
        Ok(rewritten)
    }

    fn delete(
        &mut self,
        now: Instant,
        ids: &CallIds,
        to_tag: Option<&Bytes>,
        options: &Options,
    ) -> Outcome {
        let known = self
            .calls
            .get(&ids.call_id)
            .is_some_and(|call| call.side_of(&ids.from_tag).is_some());
        if let (true, None, Some(via)) = (known, to_tag, &ids.via_branch) {
            if let Some(outcome) = self.delete_branch(now, &ids.call_id, via, options) {
                return outcome;
            }
        }
        let call = if known {
            self.calls.remove(&ids.call_id)
        } else {
            None
        };
        let Some(call) = call else {
            self.counters.unknown_calls += 1;
            if options.has_flag(Flag::Fatal) {
                return Outcome::error(CALL_NOT_FOUND);
            }
            return Outcome::Ok {
                fields: Dict::new(),
                warnings: vec![Warning::Other(CALL_NOT_FOUND.into())],
            };
        };
        let fields = if options.has_flag(Flag::Fast) {
            Dict::new()
        } else {
            call_stats(&call, &self.config, self.start)
        };
        self.end_call(now, &call);
        self.counters.calls_deleted += 1;
        Outcome::ok_with(fields)
    }

    /// Deletes only the callee branch offered with `via` (a CANCELled
    /// branch of a forked call), releasing its ports, when the call has
    /// other branches; `None` when it has not, or no branch has `via`.
    /// The reply carries the call's statistics from before.
    fn delete_branch(
        &mut self,
        now: Instant,
        call_id: &Bytes,
        via: &[u8],
        options: &Options,
    ) -> Option<Outcome> {
        let call = self.calls.get_mut(call_id)?;
        if call.sides.len() <= 2 {
            return None;
        }
        let side = call.branch_of_via(via, false)?;
        let fields = if options.has_flag(Flag::Fast) {
            Dict::new()
        } else {
            call_stats(call, &self.config, self.start)
        };
        let removed = call.sides.remove(side);
        if call.partner == side {
            // The latest answered branch, else the latest offered.
            let last = call.sides.len() - 1;
            let answered = call.branches().rev().find(|&i| call.sides[i].tag.is_some());
            call.partner = answered.unwrap_or(last);
        } else if call.partner > side {
            call.partner -= 1;
        }
        call.last_signal = now;
        // The branches after it moved down one place.
        for (index, later) in call.sides.iter().enumerate().skip(side) {
            for port in later.ports() {
                if let Some(owner) = self.ports.get_mut(&port) {
                    owner.side = index;
                }
            }
        }
        let ports: Vec<u16> = removed.ports().collect();
        self.release_ports(now, &ports);
        self.counters.branches_deleted += 1;
        Some(Outcome::ok_with(fields))
    }

    fn query(&mut self, call_id: &Bytes) -> Outcome {
        match self.calls.get(call_id) {
            Some(call) => Outcome::ok_with(call_stats(call, &self.config, self.start)),
            None => {
                self.counters.unknown_calls += 1;
                Outcome::error(UNKNOWN_CALL)
            }
        }
    }

    /// The stream on relay port `local_port` (RTP or RTCP).
    pub fn stream(&self, local_port: u16) -> Option<&Stream> {
        let owner = self.ports.get(&(local_port & !1))?;
        let call = self.calls.get(&owner.call_id)?;
        call.sides.get(owner.side)?.streams.get(owner.index)
    }

    /// Where a packet arriving on relay port `local_port` goes: to the
    /// peer side's endpoint (the latched source, else its SDP's), from the
    /// peer side's relay port; the peer of A is its partner, of every
    /// callee branch A. `None` when no call holds the port, the peer is
    /// not known yet, or the port is the RTCP port of a stream that uses
    /// rtcp-mux.
    pub fn route(&self, local_port: u16) -> Option<Route> {
        let owner = self.ports.get(&(local_port & !1))?;
        let call = self.calls.get(&owner.call_id)?;
        route_in(call, owner, local_port)
    }

    /// A packet from `src` arrived at `now` on relay port `local_port`:
    /// checks its source (latching the stream onto the first one, see
    /// [`Stream::latched`]), marks its call alive and gives where the
    /// packet goes ([`Sessions::route`]) with the stream's statistics, in
    /// one lookup (the relay loop's per-packet path, which allocates
    /// nothing). A packet refused by `strict source` changes nothing but
    /// a counter.
    pub fn on_media(&mut self, now: Instant, local_port: u16, src: SocketAddr) -> MediaVerdict<'_> {
        let Some(owner) = self.ports.get(&(local_port & !1)) else {
            return MediaVerdict::Unrouted;
        };
        let Some(call) = self.calls.get_mut(&owner.call_id) else {
            return MediaVerdict::Unrouted;
        };
        let Some(stream) = call
            .sides
            .get_mut(owner.side)
            .and_then(|side| side.streams.get_mut(owner.index))
        else {
            return MediaVerdict::Unrouted;
        };
        let rtcp = local_port & 1 == 1;
        if rtcp && stream.local_rtcp_mux {
            // Nobody was told of this port: a stray packet latches nothing.
            return MediaVerdict::Unrouted;
        }
        match stream.check_source(rtcp, src) {
            Source::Learned => self.counters.endpoints_latched += 1,
            Source::Accepted => {}
            Source::Refused => {
                self.counters.strict_source_drops += 1;
                return MediaVerdict::WrongSource;
            }
        }
        stream.last_packet = Some(now);
        call.last_media = Some(now);
        let Some(route) = route_in(call, owner, local_port) else {
            return MediaVerdict::Unrouted;
        };
        match call
            .sides
            .get_mut(owner.side)
            .and_then(|side| side.streams.get_mut(owner.index))
        {
            Some(stream) => MediaVerdict::Relay(route, &mut stream.stats),
            None => MediaVerdict::Unrouted,
        }
    }

    /// Deletes the calls whose timeout or final timeout has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(Bytes, bool)> = self
            .calls
            .iter()
            .filter_map(|(id, call)| {
                let (at, is_final) = self.deadline(call)?;
                (at <= now).then(|| (id.clone(), is_final))
            })
            .collect();
        for (id, is_final) in due {
            if let Some(call) = self.calls.remove(&id) {
                self.end_call(now, &call);
                if is_final {
                    self.counters.calls_final_timed_out += 1;
                } else {
                    self.counters.calls_timed_out += 1;
                }
            }
        }
    }

    /// When [`Sessions::handle_timeout`] next has work, if ever. A scan of
    /// the table, bounded by [`SessionConfig::max_calls`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|call| self.deadline(call))
            .map(|(at, _)| at)
            .min()
    }

    /// When `call` ends unless something happens, and whether that is
    /// the final timeout.
    fn deadline(&self, call: &Call) -> Option<(Instant, bool)> {
        let idle = call.last_activity().checked_add(self.config.timeout);
        let last = self
            .config
            .final_timeout
            .and_then(|limit| call.created.checked_add(limit));
        match (idle, last) {
            (Some(idle), Some(last)) if last <= idle => Some((last, true)),
            (Some(idle), _) => Some((idle, false)),
            (None, Some(last)) => Some((last, true)),
            (None, None) => None,
        }
    }

    fn end_call(&mut self, now: Instant, call: &Call) {
        let ports: Vec<u16> = call.ports().collect();
        self.release_ports(now, &ports);
    }

    fn release_ports(&mut self, now: Instant, ports: &[u16]) {
        for &port in ports {
            self.ports.remove(&port);
            let released = self.pool.release(port, now);
            // Every port here came from this pool and is released once: a
            // call's ports are dropped from it as they are released.
            debug_assert!(released.is_ok(), "release of {port}: {released:?}");
        }
    }

    fn sdp_failed(&mut self) -> Outcome {
        self.counters.sdp_errors += 1;
        Outcome::error(SDP_FAILED)
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What the session layer has done so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// The port pool, for its counts.
    pub fn pool(&self) -> &PortPool {
        &self.pool
    }

    /// How many calls are held.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Whether a call with this call-id is held.
    pub fn contains(&self, call_id: &[u8]) -> bool {
        self.calls.contains_key(call_id)
    }

    /// At most `limit` of the held calls' call-ids, in no particular order.
    pub fn call_ids(&self, limit: usize) -> Vec<Bytes> {
        self.calls.keys().take(limit).cloned().collect()
    }

    /// The table in numbers, for `statistics` and metrics.
    pub fn summary(&self) -> SessionsSummary {
        SessionsSummary {
            calls: self.calls.len() as u64,
            ports_in_use: self.pool.in_use_count() as u64,
            ports_free: self.pool.free_count() as u64,
            counters: self.counters,
        }
    }

    /// The live streams' quality in numbers, for metrics: a scan of the
    /// table (bounded by [`SessionConfig::max_calls`]), made about once a
    /// second.
    pub fn media_summary(&self) -> MediaSummary {
        let mut summary = MediaSummary::default();
        let streams = self
            .calls
            .values()
            .flat_map(|c| c.sides.iter())
            .flat_map(|s| s.streams.iter());
        for stream in streams {
            let s = stream.stats.snapshot();
            if s.packets == 0 {
                continue;
            }
            summary.streams_receiving += 1;
            summary.packets_lost += u64::try_from(s.lost.max(0)).unwrap_or(0);
            summary.jitter_ms_max = summary.jitter_ms_max.max(s.jitter_ms);
            if let Some(mos) = s.mos_x10 {
                summary.mos_x10_sum += u64::from(mos);
                summary.mos_rated += 1;
                summary.mos_x10_min = Some(summary.mos_x10_min.map_or(mos, |m| m.min(mos)));
            }
        }
        summary
    }

    /// How many relay ports (RTP ports of pairs) the held calls own.
    pub fn ports_held(&self) -> usize {
        self.calls.values().map(|c| c.ports().count()).sum()
    }

    /// Checks the table's own consistency, for tests: every port owner
    /// names a stream holding that port and every held port has an
    /// owner; each call has A and 1 to [`MAX_BRANCHES`] branches, its
    /// partner among them, and no two sides share a tag.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        for (port, owner) in self.ports.iter() {
            let stream = self
                .calls
                .get(&owner.call_id)
                .and_then(|c| c.sides.get(owner.side))
                .and_then(|side| side.streams.get(owner.index));
            if stream.map(|s| s.local_port) != Some(port) {
                return Err(format!("port {port} owned by {owner:?}, not its stream"));
            }
        }
        if self.ports.len() != self.ports_held() {
            return Err(format!(
                "{} owners, {} held",
                self.ports.len(),
                self.ports_held()
            ));
        }
        for (id, call) in &self.calls {
            let branches = call.sides.len() - 1;
            if !(1..=MAX_BRANCHES).contains(&branches) || !call.branches().contains(&call.partner) {
                return Err(format!(
                    "{id:?}: {branches} branches, partner {}",
                    call.partner
                ));
            }
            let mut tags: Vec<&Bytes> = call.sides.iter().filter_map(|s| s.tag.as_ref()).collect();
            let count = tags.len();
            tags.sort();
            tags.dedup();
            if tags.len() != count {
                return Err(format!("{id:?}: a tag on two sides"));
            }
        }
        Ok(())
    }
}

fn sdp_reply(sdp: Bytes) -> Outcome {
    let mut fields = Dict::with_capacity(1);
    fields.push("sdp", sdp);
    Outcome::ok_with(fields)
}

/// The rewrite the request's options ask for.
fn rewrite_options(options: &Options) -> RewriteOptions {
    let rtcp_mux = if options.rtcp_mux.contains(&NgRtcpMux::Require) {
        RtcpMux::Require
    } else if options.rtcp_mux.contains(&NgRtcpMux::Demux)
        || options.rtcp_mux.contains(&NgRtcpMux::Reject)
    {
        RtcpMux::Demux
    } else if options.rtcp_mux.contains(&NgRtcpMux::Offer) {
        RtcpMux::Offer
    } else {
        RtcpMux::Keep
    };
    RewriteOptions {
        rtcp_mux,
        ice_remove: options.ice == Some(Ice::Remove),
        replace_origin: options.replaces(Replace::Origin),
        replace_session_connection: options.replaces(Replace::SessionConnection),
        ..RewriteOptions::default()
    }
}

/// Where the peer of `media` receives RTP and RTCP. A `c=` host name
/// (which we do not resolve) stands for `received_from`, the address the
/// SIP message came from, when the request gives one; an unspecified
/// address (`0.0.0.0`, hold) stays none.
fn remote_of(
    media: &Media<'_>,
    received_from: Option<IpAddr>,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let Some(endpoint) = media.remote_endpoint() else {
        return (None, None);
    };
    let ip = endpoint.ip.or(received_from);
    let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) else {
        return (None, None);
    };
    if endpoint.rtp_port == 0 {
        return (None, None);
    }
    let rtp = SocketAddr::new(ip, endpoint.rtp_port);
    let muxed = media.rtcp_mux() && media.rtcp().is_none_or(|r| r.port == media.port());
    let rtcp = if muxed {
        Some(rtp)
    } else {
        endpoint
            .rtcp_port
            .map(|port| SocketAddr::new(endpoint.rtcp_ip.unwrap_or(ip), port))
    };
    (Some(rtp), rtcp)
}

/// Where a packet arriving on `local_port` of `call` (held by `owner`) goes:
/// to the peer side's endpoint (latched, else from its SDP), from the peer
/// side's relay port. The peer of A is its partner; of every callee
/// branch, A.
fn route_in(call: &Call, owner: &PortOwner, local_port: u16) -> Option<Route> {
    let rtcp = local_port & 1 == 1;
    let here = call.sides.get(owner.side)?.streams.get(owner.index)?;
    let peer = call
        .sides
        .get(call.peer_of(owner.side))?
        .streams
        .get(owner.index)?;
    if (rtcp && here.local_rtcp_mux) || peer.local_port == 0 {
        return None;
    }
    if rtcp {
        let from_port = if peer.local_rtcp_mux {
            peer.local_port
        } else {
            peer.local_port.checked_add(1)?
        };
        Some(Route {
            to: peer.rtcp_target()?,
            from_port,
            rtcp,
        })
    } else {
        Some(Route {
            to: peer.rtp_target()?,
            from_port: peer.local_port,
            rtcp,
        })
    }
}

/// The side an offer from side `from` goes to, and whether it was made
/// for it (a new branch, at the end of `call.sides`); `None` when that
/// branch would be one more than [`MAX_BRANCHES`]. A callee's re-INVITE
/// goes to A. An offer from A goes to the branch tagged `to_tag`; an
/// in-dialog offer (a `to_tag`) never forks, so else to the untagged
/// branch offered with `via`, else to the partner. Without a `to_tag`, a
/// forked INVITE: to the branch offered with `via` (a resent or repeated
/// offer), else to a new branch; without `via` either, to the partner.
fn offered_side(
    call: &mut Call,
    from: usize,
    to_tag: Option<&Bytes>,
    via: Option<&Bytes>,
) -> Option<(usize, bool)> {
    if from != 0 {
        return Some((0, false));
    }
    if let Some(tag) = to_tag {
        let side = call
            .branch_tagged(tag)
            .or_else(|| via.and_then(|v| call.branch_of_via(v, true)))
            .unwrap_or(call.partner);
        return Some((side, false));
    }
    let Some(via) = via else {
        return Some((call.partner, false));
    };
    if let Some(side) = call.branch_of_via(via, false) {
        return Some((side, false));
    }
    if call.sides.len() > MAX_BRANCHES {
        return None;
    }
    call.sides.push(Side {
        via_branch: Some(via.clone()),
        ..Side::default()
    });
    Some((call.sides.len() - 1, true))
}
