//! `bench rtp`, the protocol side: RTP streams through a relay driven over
//! the rtpengine ng protocol. All sans-IO, time as an argument:
//!
//! - [`Pacer`]: the open-loop send schedule, every stream's packets spread
//!   evenly over the packet period.
//! - [`write_packet`] / [`read_packet`]: the datagrams (an RTP header, then
//!   the due time and whether the packet counts, for latency and loss).
//! - [`Tally`]: what arrived, per stream, against what was sent.
//! - [`NgClient`]: ng commands over UDP with a cookie each, a bound on
//!   commands in flight, and retransmission on timeout.
//! - [`Calls`]: offer/answer/delete for each call, and the relay addresses
//!   read back from the rewritten SDP.
//!
//! The I/O shell is [`crate::rtp_shell`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::LatencyHistogram;
use media::ng::bencode::{parse, Dict, Limits, Value};
use media::ng::{frame_reply, split_datagram, Cookie};
use media::sdp::{Sdp, SdpLimits};

/// RTP header bytes (version 2, no CSRC, no extension).
pub const RTP_HEADER_BYTES: usize = 12;
/// Bytes after the header that carry the packet's due time (8) and flags
/// (1), padded to 8; a packet is at least header + this.
pub const MARK_BYTES: usize = 16;
/// The smallest datagram `bench rtp` sends.
pub const MIN_PACKET_BYTES: usize = RTP_HEADER_BYTES + MARK_BYTES;
/// The largest: fits a send slot and a receive buffer.
pub const MAX_PACKET_BYTES: usize = 1400;
/// RTP timestamp units per packet: 20 ms of 8 kHz audio (PCMU).
pub const TIMESTAMP_STEP: u32 = 160;
/// SSRCs are this plus the stream index.
const SSRC_BASE: u32 = 0x5eed_0000;
/// The flag byte's bit for "sent inside the measured window".
const FLAG_COUNTED: u8 = 1;
/// Payload filler: PCMU silence.
const PCMU_SILENCE: u8 = 0xff;

/// The open-loop schedule: packet `k` of stream `s` (of `n`) is due at
/// `start + (k * n + s) * period / n`, whatever came back, so the streams'
/// packets are spread evenly over each period and a late sender shows as
/// latency, not as a lower rate.
#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    streams: u64,
    period_ns: u64,
    /// The next packet over all streams, in schedule order.
    next: u64,
}

/// One packet due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The stream.
    pub stream: usize,
    /// The packet's index in its stream (0, 1, ...).
    pub index: u64,
    /// When it is due.
    pub due: Instant,
}

impl Pacer {
    /// `streams` streams of `pps` packets per second each, from `start`.
    pub fn new(start: Instant, streams: usize, pps: u32) -> Pacer {
        Pacer {
            start,
            streams: streams.max(1) as u64,
            period_ns: 1_000_000_000 / u64::from(pps.max(1)),
            next: 0,
        }
    }

    /// When schedule position `n` is due.
    fn due_at(&self, n: u64) -> Instant {
        let ns = u128::from(n) * u128::from(self.period_ns) / u128::from(self.streams);
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.due_at(self.next)
    }

    /// The next packet if it is due at `now`; the pacer moves past it.
    pub fn pop_due(&mut self, now: Instant) -> Option<Slot> {
        let due = self.next_due();
        if due > now {
            return None;
        }
        let slot = Slot {
            stream: (self.next % self.streams) as usize,
            index: self.next / self.streams,
            due,
        };
        self.next += 1;
        Some(slot)
    }
}

/// What a received datagram says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// The stream (from the SSRC).
    pub stream: usize,
    /// The packet's index in its stream (from the timestamp).
    pub index: u64,
    /// When it was due, nanoseconds after the pacer's start.
    pub due_ns: u64,
    /// Sent inside the measured window.
    pub counted: bool,
}

/// Writes packet `index` of `stream` into `buf` (its whole length is the
/// datagram; at least [`MIN_PACKET_BYTES`]): PT 0 (PCMU), the sequence
/// number and timestamp advancing by 1 and [`TIMESTAMP_STEP`], a fixed SSRC
/// per stream, then the due time and the counted flag. Returns false when
/// `buf` is too short.
pub fn write_packet(buf: &mut [u8], stream: usize, index: u64, due_ns: u64, counted: bool) -> bool {
    if buf.len() < MIN_PACKET_BYTES {
        return false;
    }
    let marker = if index == 0 { 0x80 } else { 0 };
    buf[0] = 0x80;
    buf[1] = marker; // PT 0
    buf[2..4].copy_from_slice(&((index & 0xffff) as u16).to_be_bytes());
    let timestamp = (index as u32).wrapping_mul(TIMESTAMP_STEP);
    buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    let ssrc = SSRC_BASE.wrapping_add(stream as u32);
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..20].copy_from_slice(&due_ns.to_be_bytes());
    buf[20] = if counted { FLAG_COUNTED } else { 0 };
    buf[21..].fill(PCMU_SILENCE);
    true
}

/// Reads back what [`write_packet`] wrote; None for anything else.
pub fn read_packet(data: &[u8]) -> Option<PacketInfo> {
    if data.len() < MIN_PACKET_BYTES || data[0] != 0x80 || data[1] & 0x7f != 0 {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let stream = word(8).wrapping_sub(SSRC_BASE) as usize;
    let mut due = [0u8; 8];
    due.copy_from_slice(&data[12..20]);
    Some(PacketInfo {
        stream,
        index: u64::from(word(4) / TIMESTAMP_STEP),
        due_ns: u64::from_be_bytes(due),
        counted: data[20] & FLAG_COUNTED != 0,
    })
}

/// Per-stream receive state.
#[derive(Clone, Copy, Debug, Default)]
struct StreamRx {
    /// The index expected next.
    next_index: u64,
    received: u64,
}

/// Counters of a run; `lost` is sent minus received of the counted packets.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TallyTotals {
    /// Counted packets sent.
    pub sent: u64,
    /// Counted packets received.
    pub received: u64,
    /// Counted packets sent and not received.
    pub lost: u64,
    /// Packets missing from the sequence when a later one arrived (all
    /// packets, counted or not).
    pub seq_gaps: u64,
    /// Packets that arrived after a later one of their stream.
    pub out_of_order: u64,
    /// Datagrams that were not ours, or came on the wrong socket.
    pub unexpected: u64,
    /// Packets of any phase received.
    pub received_all: u64,
    /// Streams that lost at least one counted packet.
    pub streams_with_loss: u64,
}

/// What arrived against what was sent, per stream, with the one-way latency
/// of the counted packets (from when each was due).
#[derive(Debug)]
pub struct Tally {
    streams: Vec<StreamRx>,
    sent_per_stream: Vec<u64>,
    totals: TallyTotals,
    latency: LatencyHistogram,
}

impl Tally {
    /// For `streams` streams.
    pub fn new(streams: usize) -> Tally {
        Tally {
            streams: vec![StreamRx::default(); streams],
            sent_per_stream: vec![0; streams],
            totals: TallyTotals::default(),
            latency: LatencyHistogram::default(),
        }
    }

    /// A counted packet of `stream` was sent.
    pub fn on_sent(&mut self, stream: usize) {
        if let Some(n) = self.sent_per_stream.get_mut(stream) {
            *n += 1;
            self.totals.sent += 1;
        }
    }

    /// A datagram arrived for `expected_stream` (the one the receiving
    /// socket is the far end of), `since_start_ns` after the pacer's start.
    pub fn on_received(&mut self, expected_stream: usize, since_start_ns: u64, data: &[u8]) {
        let Some(info) = read_packet(data).filter(|i| i.stream == expected_stream) else {
            self.totals.unexpected += 1;
            return;
        };
        let Some(rx) = self.streams.get_mut(info.stream) else {
            self.totals.unexpected += 1;
            return;
        };
        self.totals.received_all += 1;
        if info.index < rx.next_index {
            self.totals.out_of_order += 1;
        } else {
            self.totals.seq_gaps += info.index - rx.next_index;
            rx.next_index = info.index + 1;
        }
        if info.counted {
            rx.received += 1;
            self.totals.received += 1;
            let latency_ns = since_start_ns.saturating_sub(info.due_ns);
            self.latency.record(Duration::from_nanos(latency_ns));
        }
    }

    /// The totals, loss worked out per stream.
    pub fn totals(&self) -> TallyTotals {
        let mut t = self.totals.clone();
        t.lost = 0;
        t.streams_with_loss = 0;
        for (rx, sent) in self.streams.iter().zip(&self.sent_per_stream) {
            let lost = sent.saturating_sub(rx.received);
            t.lost += lost;
            t.streams_with_loss += u64::from(lost > 0);
        }
        t
    }

    /// One-way latency of the counted packets received.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }
}

/// Bounds of the ng client.
#[derive(Clone, Copy, Debug)]
pub struct NgConfig {
    /// Commands awaiting a reply at most.
    pub max_in_flight: usize,
    /// Time before a command is sent again.
    pub retransmit: Duration,
    /// Sends of one command at most (the first included).
    pub max_sends: u32,
}

impl Default for NgConfig {
    fn default() -> Self {
        NgConfig {
            max_in_flight: 32,
            retransmit: Duration::from_millis(500),
            max_sends: 5,
        }
    }
}

/// An ng command's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NgEvent {
    /// The reply dictionary (whatever its `result`).
    Reply {
        /// The id given to [`NgClient::submit`].
        id: u64,
        /// The reply.
        reply: Dict,
    },
    /// No usable reply after every retransmission.
    Failed {
        /// The id given to [`NgClient::submit`].
        id: u64,
        /// Why.
        reason: String,
    },
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    datagram: Bytes,
    sent_at: Instant,
    sends: u32,
}

/// ng commands over UDP: each gets a cookie; at most
/// [`NgConfig::max_in_flight`] await replies; a command without a reply is
/// sent again after [`NgConfig::retransmit`] (same cookie, so the relay
/// replays its reply), up to [`NgConfig::max_sends`] times.
#[derive(Debug)]
pub struct NgClient {
    config: NgConfig,
    cookie_prefix: String,
    next_cookie: u64,
    queued: VecDeque<(u64, Bytes)>,
    in_flight: HashMap<Bytes, InFlight>,
    resend: VecDeque<Bytes>,
    events: VecDeque<NgEvent>,
}

impl NgClient {
    /// A client whose cookies start with `cookie_prefix` (printable ASCII).
    pub fn new(config: NgConfig, cookie_prefix: &str) -> NgClient {
        NgClient {
            config,
            cookie_prefix: cookie_prefix.to_string(),
            next_cookie: 0,
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
            resend: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Queues `command` under `id`; its end comes out of [`Self::poll_event`].
    pub fn submit(&mut self, id: u64, command: &Dict) {
        self.queued.push_back((id, command.to_bytes()));
    }

    /// No command queued or awaiting a reply.
    pub fn idle(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty() && self.resend.is_empty()
    }

    /// The next datagram to send: a retransmission, or a new command while
    /// fewer than the bound await replies.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        while let Some(cookie) = self.resend.pop_front() {
            if let Some(f) = self.in_flight.get_mut(&cookie) {
                f.sent_at = now;
                f.sends += 1;
                return Some(f.datagram.clone());
            }
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let (id, body) = self.queued.pop_front()?;
        let cookie = Bytes::from(format!("{}_{}", self.cookie_prefix, self.next_cookie));
        self.next_cookie += 1;
        let datagram = match Cookie::new(cookie.clone()) {
            Ok(c) => frame_reply(&c, &body),
            Err(e) => {
                self.events.push_back(NgEvent::Failed {
                    id,
                    reason: format!("bad cookie: {e}"),
                });
                return None;
            }
        };
        let f = InFlight {
            id,
            datagram: datagram.clone(),
            sent_at: now,
            sends: 1,
        };
        self.in_flight.insert(cookie, f);
        Some(datagram)
    }

    /// A datagram from the relay. Replies to unknown cookies (late
    /// duplicates) are ignored.
    pub fn handle_datagram(&mut self, data: &Bytes) {
        let Ok((cookie, body)) = split_datagram(data) else {
            return;
        };
        let Some(f) = self.in_flight.remove(cookie.as_bytes()) else {
            return;
        };
        let event = match parse(&body, &Limits::default()) {
            Ok(Value::Dict(reply)) => NgEvent::Reply { id: f.id, reply },
            Ok(other) => NgEvent::Failed {
                id: f.id,
                reason: format!("reply is {}, not a dictionary", other.kind()),
            },
            Err(e) => NgEvent::Failed {
                id: f.id,
                reason: format!("undecodable reply: {e}"),
            },
        };
        self.events.push_back(event);
    }

    /// Queues retransmissions that are due, and fails commands sent
    /// [`NgConfig::max_sends`] times without a reply.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Bytes> = self
            .in_flight
            .iter()
            .filter(|(c, f)| f.sent_at + self.config.retransmit <= now && !self.resend.contains(c))
            .map(|(c, _)| c.clone())
            .collect();
        for cookie in due {
            let exhausted = self
                .in_flight
                .get(&cookie)
                .is_some_and(|f| f.sends >= self.config.max_sends);
            if !exhausted {
                self.resend.push_back(cookie);
            } else if let Some(f) = self.in_flight.remove(&cookie) {
                self.events.push_back(NgEvent::Failed {
                    id: f.id,
                    reason: format!("no reply after {} sends", f.sends),
                });
            }
        }
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight
            .values()
            .map(|f| f.sent_at + self.config.retransmit)
            .min()
    }

    /// The next command that ended.
    pub fn poll_event(&mut self) -> Option<NgEvent> {
        self.events.pop_front()
    }
}

/// Where a call is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallPhase {
    /// Offer sent.
    Offering,
    /// Answer sent; B's relay address known.
    Answering,
    /// Both relay addresses known: media can flow.
    Ready,
    /// Delete sent.
    Deleting,
    /// Deleted (or the delete failed, which is only counted).
    Done,
    /// Setup failed.
    Failed(String),
}

/// One call: endpoint A offers, endpoint B answers; stream `2c` goes A->B,
/// stream `2c+1` B->A.
#[derive(Clone, Debug)]
pub struct Call {
    /// A's local address (its SDP).
    pub a: SocketAddr,
    /// B's local address.
    pub b: SocketAddr,
    /// Where A sends (the relay's port from the answer's rewritten SDP).
    pub a_sends_to: Option<SocketAddr>,
    /// Where B sends (from the offer's rewritten SDP).
    pub b_sends_to: Option<SocketAddr>,
    /// Where the call is.
    pub phase: CallPhase,
}

const OP_OFFER: u64 = 0;
const OP_ANSWER: u64 = 1;
const OP_DELETE: u64 = 2;
const OPS: u64 = 3;

/// The calls' control: offer and answer to set them up, delete to end them,
/// through one [`NgClient`].
#[derive(Debug)]
pub struct Calls {
    /// The calls, in stream order.
    pub calls: Vec<Call>,
    /// The ng client (the shell moves its datagrams).
    pub client: NgClient,
    call_id_prefix: String,
    /// Deletes the relay refused or did not answer.
    pub delete_failures: u64,
}

impl Calls {
    /// Calls between the endpoint pairs `pairs` (A, B), call-IDs starting
    /// with `call_id_prefix`.
    pub fn new(
        pairs: &[(SocketAddr, SocketAddr)],
        client: NgClient,
        call_id_prefix: &str,
    ) -> Calls {
        let calls = pairs
            .iter()
            .map(|&(a, b)| Call {
                a,
                b,
                a_sends_to: None,
                b_sends_to: None,
                phase: CallPhase::Offering,
            })
            .collect();
        Calls {
            calls,
            client,
            call_id_prefix: call_id_prefix.to_string(),
            delete_failures: 0,
        }
    }

    /// Queues an offer for every call.
    pub fn start_setup(&mut self) {
        for c in 0..self.calls.len() {
            let offer = self.command(c, OP_OFFER);
            self.client.submit(c as u64 * OPS + OP_OFFER, &offer);
        }
    }

    /// Queues a delete for every call that got past the offer.
    pub fn start_teardown(&mut self) {
        for c in 0..self.calls.len() {
            if matches!(self.calls[c].phase, CallPhase::Answering | CallPhase::Ready) {
                self.calls[c].phase = CallPhase::Deleting;
                let delete = self.command(c, OP_DELETE);
                self.client.submit(c as u64 * OPS + OP_DELETE, &delete);
            }
        }
    }

    /// Handles the client's events: the next command of each call.
    pub fn pump(&mut self) {
        while let Some(event) = self.client.poll_event() {
            let (id, result) = match event {
                NgEvent::Reply { id, reply } => (id, reply_sdp(&reply)),
                NgEvent::Failed { id, reason } => (id, Err(reason)),
            };
            self.on_result((id / OPS) as usize, id % OPS, result);
        }
    }

    fn on_result(&mut self, c: usize, op: u64, result: Result<Option<SocketAddr>, String>) {
        let Some(call) = self.calls.get_mut(c) else {
            return;
        };
        match (op, result) {
            (OP_OFFER, Ok(Some(addr))) => {
                call.b_sends_to = Some(addr);
                call.phase = CallPhase::Answering;
                let answer = self.command(c, OP_ANSWER);
                self.client.submit(c as u64 * OPS + OP_ANSWER, &answer);
            }
            (OP_ANSWER, Ok(Some(addr))) => {
                call.a_sends_to = Some(addr);
                call.phase = CallPhase::Ready;
            }
            (OP_DELETE, result) => {
                self.delete_failures += u64::from(result.is_err());
                call.phase = CallPhase::Done;
            }
            (_, Ok(None)) => call.phase = CallPhase::Failed("no SDP address in the reply".into()),
            (_, Err(reason)) => call.phase = CallPhase::Failed(reason),
            _ => {}
        }
    }

    /// No call is waiting for a reply.
    pub fn settled(&self) -> bool {
        self.client.idle()
    }

    /// Calls ready for media.
    pub fn ready(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.phase == CallPhase::Ready)
            .count()
    }

    /// The first setup failure, if any.
    pub fn first_failure(&self) -> Option<String> {
        self.calls.iter().find_map(|c| match &c.phase {
            CallPhase::Failed(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// The ng command `op` of call `c`, with the keys Kamailio's
    /// `rtpengine_manage()` sends.
    fn command(&self, c: usize, op: u64) -> Dict {
        let call = &self.calls[c];
        let mut d = Dict::with_capacity(8);
        let name = match op {
            OP_OFFER => "offer",
            OP_ANSWER => "answer",
            _ => "delete",
        };
        d.push("command", name);
        d.push("call-id", format!("{}-{c}", self.call_id_prefix));
        d.push("from-tag", format!("a{c}"));
        if op == OP_ANSWER {
            d.push("to-tag", format!("b{c}"));
        }
        let endpoint = if op == OP_ANSWER { call.b } else { call.a };
        if op != OP_DELETE {
            d.push("sdp", endpoint_sdp(endpoint, c));
            d.push(
                "replace",
                vec![Value::from("origin"), Value::from("session-connection")],
            );
            let ip = endpoint.ip().to_string();
            let family = if endpoint.is_ipv4() { "IP4" } else { "IP6" };
            d.push("received-from", vec![Value::from(family), Value::from(ip)]);
        }
        d
    }
}

/// The SDP of an endpoint: one PCMU audio stream at `addr`.
pub fn endpoint_sdp(addr: SocketAddr, session: usize) -> String {
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let ip = addr.ip();
    format!(
        "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=bench\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        addr.port()
    )
}

/// The relay address of a reply: its `result` must be `ok`, and its SDP
/// gives the address (`c=`) and the first audio port (`m=audio`).
fn reply_sdp(reply: &Dict) -> Result<Option<SocketAddr>, String> {
    let bytes = |key: &[u8]| reply.get(key).and_then(Value::as_bytes);
    let text = |key: &[u8]| bytes(key).map(|b| String::from_utf8_lossy(b).into_owned());
    match text(b"result").as_deref() {
        Some("ok") => {}
        Some(other) => {
            let why = text(b"error-reason").unwrap_or_default();
            return Err(format!("relay said {other}: {why}"));
        }
        None => return Err("reply without a result".into()),
    }
    Ok(bytes(b"sdp").and_then(|sdp| sdp_media_address(sdp)))
}

/// The address of the first audio stream of `sdp` (its media-level `c=`,
/// else the session's), read with the relay's own SDP parser.
pub fn sdp_media_address(sdp: &[u8]) -> Option<SocketAddr> {
    let sdp = Sdp::parse(Bytes::copy_from_slice(sdp), &SdpLimits::default()).ok()?;
    let audio = sdp.media().find(|m| m.media_type() == "audio")?;
    let endpoint = audio.remote_endpoint()?;
    Some(SocketAddr::new(endpoint.ip?, endpoint.rtp_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn pacer_spreads_streams_evenly_over_the_period() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 4, 50);
        let mut seen = Vec::new();
        while let Some(s) = pacer.pop_due(start + Duration::from_millis(40)) {
            seen.push((s.stream, s.index, (s.due - start).as_millis()));
        }
        // 20 ms period, 4 streams: one packet every 5 ms, round robin.
        let expected: Vec<(usize, u64, u128)> = (0..=8)
            .map(|n| ((n % 4) as usize, (n / 4) as u64, (n * 5) as u128))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(pacer.next_due() - start, Duration::from_millis(45));
    }

    #[test]
    fn pacer_sends_nothing_before_due() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut pacer = Pacer::new(start, 2000, 50);
        assert_eq!(pacer.pop_due(start - Duration::from_nanos(1)), None);
        assert!(pacer.pop_due(start).is_some());
        // 2,000 streams at 50 pps: 10 µs apart.
        assert_eq!(pacer.next_due() - start, Duration::from_micros(10));
    }

    #[test]
    fn packet_round_trips_with_rtp_fields() {
        let mut buf = [0u8; 172];
        assert!(write_packet(&mut buf, 7, 70_000, 123_456_789, true));
        assert_eq!(buf[0], 0x80);
        assert_eq!(buf[1], 0, "PT 0, no marker after the first packet");
        assert_eq!(
            u16::from_be_bytes([buf[2], buf[3]]),
            (70_000u64 & 0xffff) as u16
        );
        assert_eq!(
            u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            70_000 * TIMESTAMP_STEP
        );
        let info = read_packet(&buf);
        assert_eq!(
            info,
            Some(PacketInfo {
                stream: 7,
                index: 70_000,
                due_ns: 123_456_789,
                counted: true
            })
        );
        assert!(!write_packet(
            &mut buf[..MIN_PACKET_BYTES - 1],
            0,
            0,
            0,
            false
        ));
        assert_eq!(read_packet(b"not rtp at all, not at all...."), None);
    }

    fn packet(stream: usize, index: u64, due_ns: u64, counted: bool) -> [u8; 64] {
        let mut buf = [0u8; 64];
        write_packet(&mut buf, stream, index, due_ns, counted);
        buf
    }

    #[test]
    fn tally_counts_loss_gaps_reordering_and_latency() {
        let mut t = Tally::new(2);
        for i in 0..5u64 {
            t.on_sent(0);
            t.on_sent(1);
            let _ = i;
        }
        // Stream 0: all 5 arrive, 2 ms late each.
        for i in 0..5u64 {
            t.on_received(
                0,
                i * 20_000_000 + 2_000_000,
                &packet(0, i, i * 20_000_000, true),
            );
        }
        // Stream 1: 0, 1, 3, then 2 late; 4 lost.
        for i in [0u64, 1, 3, 2] {
            t.on_received(1, 100_000_000, &packet(1, i, 0, true));
        }
        // A packet on the wrong socket, and one from before the window.
        t.on_received(0, 0, &packet(1, 9, 0, true));
        t.on_received(1, 0, &packet(1, 5, 0, false));
        let totals = t.totals();
        assert_eq!(totals.sent, 10);
        assert_eq!(totals.received, 9);
        assert_eq!(totals.lost, 1);
        assert_eq!(totals.streams_with_loss, 1);
        assert_eq!(totals.out_of_order, 1);
        assert_eq!(
            totals.seq_gaps, 2,
            "2 missing when 3 came, 4 missing when 5 came"
        );
        assert_eq!(totals.unexpected, 1);
        assert_eq!(totals.received_all, 10);
        assert_eq!(t.latency().count(), 9);
        assert!(t.latency().quantile_us(0.5) >= 1_900);
    }

    fn reply(cookie_of: &Bytes, dict: &Dict) -> Bytes {
        let (cookie, _) = split_datagram(cookie_of).unwrap_or_else(|_| unreachable!());
        frame_reply(&cookie, &dict.to_bytes())
    }

    fn ok_with_sdp(port: u16) -> Dict {
        let mut d = Dict::new();
        d.push("sdp", endpoint_sdp(addr(&format!("127.0.0.1:{port}")), 1));
        d.push("result", "ok");
        d
    }

    #[test]
    fn client_bounds_commands_in_flight_and_retransmits_then_fails() {
        let config = NgConfig {
            max_in_flight: 2,
            retransmit: Duration::from_millis(500),
            max_sends: 3,
        };
        let mut client = NgClient::new(config, "t");
        for id in 0..3 {
            client.submit(id, &Dict::new());
        }
        let t0 = Instant::now();
        let first = client.poll_transmit(t0);
        let second = client.poll_transmit(t0);
        assert!(first.is_some() && second.is_some());
        assert_eq!(client.poll_transmit(t0), None, "two in flight at most");
        assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        // The first is answered: the third goes out.
        let first = first.unwrap_or_default();
        client.handle_datagram(&reply(&first, &ok_with_sdp(1)));
        assert!(matches!(
            client.poll_event(),
            Some(NgEvent::Reply { id: 0, .. })
        ));
        let third = client.poll_transmit(t0);
        assert!(third.is_some());
        // A duplicate reply is ignored.
        client.handle_datagram(&reply(&first, &ok_with_sdp(1)));
        assert_eq!(client.poll_event(), None);
        // Nobody answers: same bytes at 500 and 1000 ms, failed at 1500 ms.
        let mut resent = Vec::new();
        for ms in [500u64, 1000, 1500] {
            let now = t0 + Duration::from_millis(ms);
            client.handle_timeout(now);
            while let Some(d) = client.poll_transmit(now) {
                resent.push((ms, d));
            }
        }
        assert_eq!(resent.len(), 4);
        assert!(resent
            .iter()
            .all(|(_, d)| Some(d) == second.as_ref() || Some(d) == third.as_ref()));
        let failed: Vec<u64> = std::iter::from_fn(|| client.poll_event())
            .filter_map(|e| match e {
                NgEvent::Failed { id, .. } => Some(id),
                NgEvent::Reply { .. } => None,
            })
            .collect();
        assert_eq!(failed.len(), 2);
        assert!(client.idle());
    }

    /// A fake relay: answers every command with a port derived from the
    /// call, and says what it was asked.
    fn relay_answers(calls: &mut Calls, now: Instant, log: &mut Vec<String>) {
        while let Some(d) = calls.client.poll_transmit(now) {
            let (_, body) = split_datagram(&d).unwrap_or_else(|_| unreachable!());
            let Ok(Value::Dict(cmd)) = parse(&body, &Limits::default()) else {
                unreachable!()
            };
            let get = |k: &[u8]| {
                cmd.get(k)
                    .and_then(Value::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let (command, to_tag) = (get(b"command"), get(b"to-tag"));
            log.push(format!("{command} {} {to_tag}", get(b"call-id")));
            let port = if command == "offer" { 40_000 } else { 50_000 };
            let mut r = ok_with_sdp(port);
            if command == "delete" {
                r = Dict::new();
                r.push("result", "ok");
            }
            calls.client.handle_datagram(&reply(&d, &r));
        }
        calls.pump();
    }

    #[test]
    fn calls_offer_then_answer_then_delete() {
        let pairs = [
            (addr("127.0.0.1:1000"), addr("127.0.0.1:1001")),
            (addr("127.0.0.1:1002"), addr("127.0.0.1:1003")),
        ];
        let mut calls = Calls::new(&pairs, NgClient::new(NgConfig::default(), "c"), "x");
        calls.start_setup();
        let now = Instant::now();
        let mut log = Vec::new();
        while !calls.settled() {
            relay_answers(&mut calls, now, &mut log);
        }
        assert_eq!(calls.ready(), 2);
        assert_eq!(calls.calls[0].b_sends_to, Some(addr("127.0.0.1:40000")));
        assert_eq!(calls.calls[0].a_sends_to, Some(addr("127.0.0.1:50000")));
        calls.start_teardown();
        while !calls.settled() {
            relay_answers(&mut calls, now, &mut log);
        }
        assert!(calls.calls.iter().all(|c| c.phase == CallPhase::Done));
        assert_eq!(calls.delete_failures, 0);
        assert_eq!(
            log,
            [
                "offer x-0 ",
                "offer x-1 ",
                "answer x-0 b0",
                "answer x-1 b1",
                "delete x-0 ",
                "delete x-1 "
            ]
        );
    }

    #[test]
    fn offer_carries_the_endpoint_sdp_and_kamailio_keys() {
        let pairs = [(addr("127.0.0.1:1000"), addr("127.0.0.1:1001"))];
        let calls = Calls::new(&pairs, NgClient::new(NgConfig::default(), "c"), "x");
        let offer = calls.command(0, OP_OFFER);
        let sdp = offer
            .get(b"sdp")
            .and_then(Value::as_bytes)
            .cloned()
            .unwrap_or_default();
        let sdp = String::from_utf8_lossy(&sdp).into_owned();
        assert!(sdp.contains("m=audio 1000 RTP/AVP 0\r\n"), "{sdp}");
        assert_eq!(sdp_media_address(sdp.as_bytes()), Some(pairs[0].0));
        assert!(offer.get(b"replace").is_some());
        assert!(offer.get(b"to-tag").is_none());
    }

    #[test]
    fn relay_error_fails_the_call() {
        let pairs = [(addr("127.0.0.1:1000"), addr("127.0.0.1:1001"))];
        let mut calls = Calls::new(&pairs, NgClient::new(NgConfig::default(), "c"), "x");
        calls.start_setup();
        let now = Instant::now();
        let d = calls.client.poll_transmit(now).unwrap_or_default();
        let mut r = Dict::new();
        r.push("result", "error");
        r.push("error-reason", "no ports");
        calls.client.handle_datagram(&reply(&d, &r));
        calls.pump();
        assert_eq!(calls.ready(), 0);
        let failure = calls.first_failure().unwrap_or_default();
        assert!(failure.contains("no ports"), "{failure}");
    }

    #[test]
    fn media_level_connection_wins_over_session_level() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 30000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\nm=audio 30002 RTP/AVP 0\r\n";
        assert_eq!(
            sdp_media_address(sdp.as_bytes()),
            Some(addr("10.0.0.2:30000"))
        );
        let no_address =
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n";
        assert_eq!(sdp_media_address(no_address.as_bytes()), None);
    }
}
