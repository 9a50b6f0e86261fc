//! Per-stream receive statistics after RFC 3550 appendix A, and a MOS
//! estimate from the simplified E-model.
//!
//! Sans-IO: the caller passes each packet's arrival time, so the same
//! sequence of calls always gives the same numbers. One [`StreamStats`]
//! follows one source (the caller keys them by SSRC or by stream); a source
//! that restarts its sequence numbers is detected as A.1 describes and its
//! earlier counts are kept in the totals.

use std::time::{Duration, Instant};

use crate::rtp::{classify, ClockRates, PacketKind, RtpError, RtpView};

/// A.1: a forward jump of fewer sequence numbers than this is a gap (loss),
/// not a new sequence.
pub const MAX_DROPOUT: u16 = 3000;

/// A.1: a backward step of at most this many sequence numbers is a late or
/// duplicate packet, not a new sequence.
pub const MAX_MISORDER: u16 = 100;

/// A.1: consecutive packets needed before a new source's counts start.
pub const MIN_SEQUENTIAL: u8 = 2;

/// Sequence numbers are 16 bits; a cycle adds this to the extended number.
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Bounds of the 24-bit signed cumulative-lost field of a report block;
/// A.3 clamps instead of wrapping.
const LOST_MAX: i64 = 0x7f_ffff;
const LOST_MIN: i64 = -0x80_0000;

/// What the sequence check of A.1 made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqUpdate {
    /// In sequence, a gap, late or duplicate: counted as received.
    Counted,
    /// The source is still on probation (the first packets of a source, or
    /// a break in them): not counted.
    Probation,
    /// A jump too large for a gap or a reordering: not counted; if the next
    /// packet follows on from this one, the sequence restarts there.
    Jump,
    /// The packet confirmed a jump: the source restarted its sequence here
    /// (the earlier counts move to the totals); counted.
    Restarted,
}

/// The sequence-number state of one source, RFC 3550 appendix A.1, plus the
/// counts of the sequences before the last restart.
#[derive(Debug, Clone)]
struct SeqState {
    /// Highest sequence number seen.
    max_seq: u16,
    /// Sequence number cycles, already shifted (a multiple of 2^16); 64 bits
    /// so that it cannot wrap in any call's lifetime.
    cycles: u64,
    /// First sequence number of the current sequence.
    base_seq: u16,
    /// Last jump's sequence number plus one; 2^16 + 1 when there is none,
    /// which no 16-bit number equals.
    bad_seq: u32,
    /// Sequential packets still needed before the source is valid.
    probation: u8,
    /// Packets counted since the current sequence started.
    received: u64,
    /// `expected()` when the last interval was closed.
    expected_prior: u64,
    /// `received` when the last interval was closed.
    received_prior: u64,
    /// Expected packets of the sequences before the last restart.
    expected_before: u64,
    /// Received packets of the sequences before the last restart.
    received_before: u64,
}

impl SeqState {
    /// A source heard for the first time: on probation, as A.1 says.
    fn new_source(seq: u16) -> Self {
        let mut state = Self {
            max_seq: seq,
            cycles: 0,
            base_seq: seq,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            expected_before: 0,
            received_before: 0,
        };
        state.init(seq);
        state.max_seq = seq.wrapping_sub(1);
        state
    }

    /// A.1 `init_seq`: start a sequence at `seq`.
    fn init(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// A.1 `update_seq`.
    fn update(&mut self, seq: u16) -> SeqUpdate {
        if self.probation > 0 {
            return self.update_probation(seq);
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap; a smaller number means the
            // 16 bits wrapped.
            if seq < self.max_seq {
                self.cycles += u64::from(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            return self.update_jump(seq);
        }
        // Otherwise a duplicate or a late packet: counted, max unchanged.
        self.received += 1;
        SeqUpdate::Counted
    }

    /// A.1 probation: `MIN_SEQUENTIAL` packets in a row validate the source.
    fn update_probation(&mut self, seq: u16) -> SeqUpdate {
        // A.1 compares with `max_seq + 1` in int, which never matches after
        // 65535; wrapping is what the algorithm means.
        if seq != self.max_seq.wrapping_add(1) {
            self.probation = MIN_SEQUENTIAL - 1;
            self.max_seq = seq;
            return SeqUpdate::Probation;
        }
        self.probation -= 1;
        self.max_seq = seq;
        if self.probation > 0 {
            return SeqUpdate::Probation;
        }
        self.init(seq);
        self.received += 1;
        SeqUpdate::Counted
    }

    /// A.1 very large jump: remember it, and restart if the packet before
    /// was a jump to just before this one (the sender restarted).
    fn update_jump(&mut self, seq: u16) -> SeqUpdate {
        if u32::from(seq) != self.bad_seq {
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return SeqUpdate::Jump;
        }
        self.expected_before += self.expected();
        self.received_before += self.received;
        self.init(seq);
        self.received += 1;
        SeqUpdate::Restarted
    }

    /// The extended highest sequence number: cycles plus `max_seq`.
    fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// A.3 expected packets of the current sequence; 0 on probation.
    fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        // `max_seq` only moves forward from `base_seq`, so this is at least 1.
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// A.3 fraction lost since the last interval closed, in 1/256.
    fn interval_fraction(&self) -> u8 {
        let expected_interval = self.expected().saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        if expected_interval == 0 || received_interval >= expected_interval {
            return 0;
        }
        let lost_interval = expected_interval - received_interval;
        // lost < expected, so the quotient is below 256.
        u8::try_from((lost_interval << 8) / expected_interval).unwrap_or(u8::MAX)
    }
}

/// Interarrival jitter, RFC 3550 appendix A.8, in timestamp units.
#[derive(Debug, Clone, Default)]
struct JitterState {
    /// Clock rate of the timestamps the estimate is in; 0 before any packet.
    clock_rate_hz: u32,
    /// Relative transit time of the previous packet (arrival − timestamp,
    /// modulo 2^32); `None` before the first packet of a sequence.
    transit_ts: Option<u32>,
    /// The estimate times 16, A.8's integer form; 64 bits so a stream of
    /// absurd timestamps cannot overflow it.
    jitter_x16: u64,
}

impl JitterState {
    /// A.8: J += (|D| − J) / 16, where D is the change in transit time.
    fn update(&mut self, arrival_ts: u32, rtp_ts: u32, clock_rate_hz: u32) {
        if clock_rate_hz == 0 {
            return; // no rate, no unit to judge arrival times in
        }
        if clock_rate_hz != self.clock_rate_hz {
            self.change_clock_rate(clock_rate_hz);
        }
        let transit_ts = arrival_ts.wrapping_sub(rtp_ts);
        if let Some(prior_ts) = self.transit_ts.replace(transit_ts) {
            // Both wrap modulo 2^32, so the difference as i32 is the delta.
            let d_ts = u64::from((transit_ts.wrapping_sub(prior_ts) as i32).unsigned_abs());
            // (j + 8) >> 4 <= j for all j, so this never underflows.
            self.jitter_x16 = self.jitter_x16 + d_ts - ((self.jitter_x16 + 8) >> 4);
        }
    }

    /// Rescales the estimate to a new clock rate and forgets the transit
    /// time, which was in the old units.
    fn change_clock_rate(&mut self, clock_rate_hz: u32) {
        if self.clock_rate_hz != 0 {
            let scaled = u128::from(self.jitter_x16) * u128::from(clock_rate_hz)
                / u128::from(self.clock_rate_hz);
            self.jitter_x16 = u64::try_from(scaled).unwrap_or(u64::MAX >> 8);
        }
        self.clock_rate_hz = clock_rate_hz;
        self.transit_ts = None;
    }

    /// The estimate in timestamp units, as a report block carries it.
    fn jitter_ts(&self) -> u32 {
        u32::try_from(self.jitter_x16 >> 4).unwrap_or(u32::MAX)
    }

    /// The estimate in milliseconds; 0 before any packet.
    fn jitter_ms(&self) -> f64 {
        if self.clock_rate_hz == 0 {
            return 0.0;
        }
        self.jitter_x16 as f64 / 16.0 * 1000.0 / f64::from(self.clock_rate_hz)
    }
}

/// Receive statistics of one RTP stream: counters, loss after RFC 3550 A.1
/// and A.3, jitter after A.8, and a MOS estimate.
///
/// As in A.1, the first packet of a source is on probation and not counted
/// as received; expected and lost start with the second.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    packets: u64,
    bytes: u64,
    errors: u64,
    /// `None` until the first packet.
    seq: Option<SeqState>,
    jitter: JitterState,
    /// Arrival of the first packet given as an `Instant`: the zero of the
    /// arrival clock that [`StreamStats::on_packet`] converts to.
    epoch: Option<Instant>,
    /// One-way latency for the MOS estimate, set by the caller.
    latency_ms: u32,
    /// The clock rates of the stream's payload types, from its SDP.
    clock_rates: ClockRates,
    /// RTCP packets relayed for the stream (counted apart from RTP).
    rtcp_packets: u64,
    /// Their bytes.
    rtcp_bytes: u64,
}

impl StreamStats {
    /// Statistics of a stream that has received nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the clock rates of the stream's payload types (its SDP's
    /// `a=rtpmap` lines) for [`StreamStats::on_rtp`].
    pub fn set_clock_rates(&mut self, clock_rates: ClockRates) {
        self.clock_rates = clock_rates;
    }

    /// Starts counting afresh (a new relay port), keeping the clock rates.
    pub fn reset(&mut self) {
        *self = StreamStats {
            clock_rates: self.clock_rates,
            ..StreamStats::default()
        };
    }

    /// Counts an RTP packet that arrived at `arrival`, at the clock rate
    /// its payload type has in the stream's SDP.
    pub fn on_rtp(&mut self, arrival: Instant, rtp: &RtpView<'_>) -> SeqUpdate {
        let rate_hz = self.clock_rates.rate_hz(rtp.payload_type());
        self.on_packet(arrival, rtp, rate_hz)
    }

    /// Counts a packet that arrived at `arrival`; `clock_rate_hz` is the
    /// clock rate of its payload type (8000 for PCMU, 48000 for Opus).
    ///
    /// Arrival times are measured from the first packet given here; do not
    /// mix this with [`StreamStats::on_packet_ts`] on one stream.
    pub fn on_packet(
        &mut self,
        arrival: Instant,
        rtp: &RtpView<'_>,
        clock_rate_hz: u32,
    ) -> SeqUpdate {
        let epoch = *self.epoch.get_or_insert(arrival);
        let elapsed = arrival.saturating_duration_since(epoch);
        self.on_packet_ts(to_clock_ts(elapsed, clock_rate_hz), rtp, clock_rate_hz)
    }

    /// Counts a packet whose arrival time the caller already has in clock
    /// units (`arrival_ts`, any origin, wrapping modulo 2^32).
    pub fn on_packet_ts(
        &mut self,
        arrival_ts: u32,
        rtp: &RtpView<'_>,
        clock_rate_hz: u32,
    ) -> SeqUpdate {
        self.packets = self.packets.saturating_add(1);
        self.bytes = self.bytes.saturating_add(rtp.len_bytes() as u64);
        let seq = rtp.sequence_number();
        let update = self
            .seq
            .get_or_insert_with(|| SeqState::new_source(seq))
            .update(seq);
        match update {
            SeqUpdate::Counted => {}
            // A restarted sender has a new timestamp base too: comparing
            // transit times across the restart would be one huge spike.
            SeqUpdate::Restarted => self.jitter.transit_ts = None,
            // A packet not (yet) counted is not trusted for jitter either.
            SeqUpdate::Probation | SeqUpdate::Jump => return update,
        }
        self.jitter
            .update(arrival_ts, rtp.timestamp(), clock_rate_hz);
        update
    }

    /// Counts one relayed datagram that arrived at `arrival`: RTCP when it
    /// came on an RTCP port or is RTCP by RFC 5761's demultiplexing, RTP
    /// (its header read in place) otherwise; anything else (STUN, DTLS) is
    /// relayed uncounted. An RTP-looking datagram whose header is invalid
    /// is counted as an error and gives the reason.
    pub fn on_datagram(
        &mut self,
        arrival: Instant,
        payload: &[u8],
        rtcp_port: bool,
    ) -> Result<(), RtpError> {
        match classify(payload) {
            _ if rtcp_port => self.on_rtcp(payload.len()),
            PacketKind::Rtcp => self.on_rtcp(payload.len()),
            PacketKind::Rtp => match RtpView::parse(payload) {
                Ok(view) => {
                    self.on_rtp(arrival, &view);
                }
                Err(e) => {
                    self.on_error();
                    return Err(e);
                }
            },
            PacketKind::Other => {}
        }
        Ok(())
    }

    /// Counts an RTCP packet of `len_bytes` relayed for the stream.
    pub fn on_rtcp(&mut self, len_bytes: usize) {
        self.rtcp_packets = self.rtcp_packets.saturating_add(1);
        self.rtcp_bytes = self.rtcp_bytes.saturating_add(len_bytes as u64);
    }

    /// Counts a packet that could not be handled (malformed, unknown).
    pub fn on_error(&mut self) {
        self.errors = self.errors.saturating_add(1);
    }

    /// Sets the one-way latency the MOS estimate assumes (e.g. half the
    /// round-trip time from RTCP); 0 until set, as a relay cannot see it.
    pub fn set_latency_ms(&mut self, latency_ms: u32) {
        self.latency_ms = latency_ms;
    }

    /// Packets seen, counted or not.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes seen (whole RTP packets, headers included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Packets the caller reported with [`StreamStats::on_error`].
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Packets expected over the stream's life, across restarts (A.3).
    pub fn expected(&self) -> u64 {
        self.seq
            .as_ref()
            .map_or(0, |s| s.expected_before + s.expected())
    }

    /// Packets counted as received over the stream's life (duplicates
    /// included, as in A.1; probation packets and jumps not).
    pub fn received(&self) -> u64 {
        self.seq
            .as_ref()
            .map_or(0, |s| s.received_before + s.received)
    }

    /// Packets lost over the stream's life: expected − received, negative
    /// when duplicates outnumber losses, clamped to the 24-bit signed range
    /// of a report block as A.3 says.
    pub fn lost(&self) -> i32 {
        clamp_lost(self.expected(), self.received())
    }

    /// Cumulative lost of the current sequence only, for a report block
    /// (which restarts its counts with the sequence).
    pub fn cumulative_lost(&self) -> i32 {
        self.seq
            .as_ref()
            .map_or(0, |s| clamp_lost(s.expected(), s.received))
    }

    /// Extended highest sequence number of the current sequence, for a
    /// report block (cycles in the high 16 bits).
    pub fn extended_max_seq(&self) -> u32 {
        // Report blocks carry 32 bits; the cycle count wraps there too.
        self.seq.as_ref().map_or(0, |s| s.extended_max() as u32)
    }

    /// Fraction lost in the open interval (since the last
    /// [`StreamStats::close_interval`], or since the start), in 1/256.
    pub fn fraction_lost(&self) -> u8 {
        self.seq.as_ref().map_or(0, SeqState::interval_fraction)
    }

    /// Ends the interval, as when a report block is sent: returns its
    /// fraction lost (1/256) and starts the next interval (A.3).
    pub fn close_interval(&mut self) -> u8 {
        let Some(s) = self.seq.as_mut() else {
            return 0;
        };
        let fraction = s.interval_fraction();
        s.expected_prior = s.expected();
        s.received_prior = s.received;
        fraction
    }

    /// Interarrival jitter in timestamp units of the last clock rate.
    pub fn jitter_ts(&self) -> u32 {
        self.jitter.jitter_ts()
    }

    /// Interarrival jitter in milliseconds, rounded.
    pub fn jitter_ms(&self) -> u32 {
        // Bounded by 2^32 ts at 1 Hz, so the cast saturates at worst.
        self.jitter.jitter_ms().round() as u32
    }

    /// Packets lost over the stream's life as a percentage of those
    /// expected, 0 to 100 (duplicates do not make it negative).
    pub fn loss_percent(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            return 0.0;
        }
        let lost = expected.saturating_sub(self.received());
        (lost as f64 * 100.0 / expected as f64).min(100.0)
    }

    /// MOS times 10 (10 to 45), as rtpengine reports it, from the loss over
    /// the stream's life, the current jitter and the latency set with
    /// [`StreamStats::set_latency_ms`]; `None` until the source has been
    /// validated, as there is nothing to judge.
    pub fn mos_x10(&self) -> Option<u8> {
        if self.expected() == 0 {
            return None;
        }
        Some(mos_x10(
            self.loss_percent(),
            self.jitter.jitter_ms(),
            f64::from(self.latency_ms),
        ))
    }

    /// The counters for query and delete replies and for metrics.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            packets: self.packets,
            bytes: self.bytes,
            errors: self.errors,
            expected: self.expected(),
            lost: self.lost(),
            fraction_lost: self.fraction_lost(),
            jitter_ms: self.jitter_ms(),
            mos_x10: self.mos_x10(),
            rtcp_packets: self.rtcp_packets,
            rtcp_bytes: self.rtcp_bytes,
        }
    }
}

/// Expected − received, clamped to a report block's 24-bit signed field.
fn clamp_lost(expected: u64, received: u64) -> i32 {
    let lost = i128::from(expected) - i128::from(received);
    let clamped = lost.clamp(i128::from(LOST_MIN), i128::from(LOST_MAX));
    // Within the 24-bit range after the clamp.
    i32::try_from(clamped).unwrap_or(0)
}

/// `elapsed` in units of a `clock_rate_hz` clock, modulo 2^32 as RTP
/// timestamps are.
fn to_clock_ts(elapsed: Duration, clock_rate_hz: u32) -> u32 {
    // Whole seconds and the fraction apart keep this in u64 (no u128
    // division per packet): nanos < 10^9 times a rate < 2^32 fits.
    let rate = u64::from(clock_rate_hz);
    let whole_ts = elapsed.as_secs().wrapping_mul(rate);
    let fraction_ts = u64::from(elapsed.subsec_nanos()) * rate / 1_000_000_000;
    // Wrapping is intended: transit times are compared modulo 2^32.
    whole_ts.wrapping_add(fraction_ts) as u32
}

/// A copy of a stream's statistics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Packets the caller could not handle.
    pub errors: u64,
    /// Packets expected from the sequence numbers (A.3).
    pub expected: u64,
    /// Expected − received, 24-bit signed (A.3).
    pub lost: i32,
    /// Fraction lost in the open interval, in 1/256.
    pub fraction_lost: u8,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: u32,
    /// MOS times 10, `None` before the source is validated.
    pub mos_x10: Option<u8>,
    /// RTCP packets relayed.
    pub rtcp_packets: u64,
    /// RTCP bytes relayed.
    pub rtcp_bytes: u64,
}

/// Largest latency or jitter the E-model is given: far beyond the point
/// where R reaches 0, and small enough to keep the arithmetic finite.
const MAX_DELAY_MS: f64 = 1.0e6;

/// The R factor of the simplified E-model, clamped to [0, 100].
///
/// ITU-T G.107 computes R = Ro − Is − Id − Ie,eff + A; the simplification
/// network monitors use (Cole and Rosenbluth, "Voice over IP performance
/// monitoring", ACM SIGCOMM CCR 31(2), 2001, as popularised by PingPlotter
/// and VoIP monitors) fixes Ro − Is = 93.2 and derives the rest from what a
/// receiver measures:
///
/// - effective latency = latency + 2 × jitter + 10 ms (jitter buffer and codec),
/// - Id = effective latency / 40 below 160 ms, else (effective latency − 120) / 10,
/// - Ie,eff = 2.5 × loss percentage,
/// - R = 93.2 − Id − Ie,eff.
///
/// Inputs are clamped to sane ranges (NaN counts as the worst case) and R to
/// [0, 100], so any loss or jitter gives a MOS in [1, 4.5].
pub fn r_factor(loss_percent: f64, jitter_ms: f64, latency_ms: f64) -> f64 {
    let loss_percent = sane(loss_percent, 100.0);
    let effective_latency_ms =
        sane(latency_ms, MAX_DELAY_MS) + 2.0 * sane(jitter_ms, MAX_DELAY_MS) + 10.0;
    let delay_impairment = if effective_latency_ms < 160.0 {
        effective_latency_ms / 40.0
    } else {
        (effective_latency_ms - 120.0) / 10.0
    };
    (93.2 - delay_impairment - 2.5 * loss_percent).clamp(0.0, 100.0)
}

/// The mean opinion score from an R factor, ITU-T G.107 Annex B:
/// MOS = 1 + 0.035 R + 7·10⁻⁶ R (R − 60) (100 − R) for 0 < R < 100, 1 below
/// and 4.5 above. The cubic dips just under 1 for R below about 3.2, so the
/// result is clamped to [1, 4.5] to stay monotone.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    let mos = 1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r);
    mos.clamp(1.0, 4.5)
}

/// MOS times 10, rounded (10 to 45), from loss, jitter and latency; see
/// [`r_factor`] and [`mos_from_r`] for the model.
pub fn mos_x10(loss_percent: f64, jitter_ms: f64, latency_ms: f64) -> u8 {
    let mos = mos_from_r(r_factor(loss_percent, jitter_ms, latency_ms));
    // mos is in [1, 4.5], so this is 10..=45.
    (mos * 10.0).round() as u8
}

/// `value` clamped to [0, max], with NaN as `max` (unknown is the worst).
fn sane(value: f64, max: f64) -> f64 {
    if value.is_nan() {
        max
    } else {
        value.clamp(0.0, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PCMU_HZ: u32 = 8000;
    /// 20 ms of 8 kHz audio.
    const FRAME_TS: u32 = 160;

    /// A 12-byte RTP header plus 160 bytes of payload.
    fn packet(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.resize(12 + 160, 0xff);
        p
    }

    /// Feeds packet `i` of a 20 ms stream with the given sequence number,
    /// arriving `delay_ts` after its nominal time.
    fn feed(stats: &mut StreamStats, i: u32, seq: u16, delay_ts: u32) -> SeqUpdate {
        let ts = i * FRAME_TS;
        let buf = packet(seq, ts);
        let view = RtpView::parse(&buf).unwrap();
        stats.on_packet_ts(ts + delay_ts, &view, PCMU_HZ)
    }

    #[test]
    fn first_packet_is_on_probation() {
        let mut s = StreamStats::new();
        assert_eq!(s.mos_x10(), None);
        assert_eq!(feed(&mut s, 0, 10, 0), SeqUpdate::Probation);
        assert_eq!(s.expected(), 0);
        assert_eq!(s.mos_x10(), None);
        assert_eq!(feed(&mut s, 1, 11, 0), SeqUpdate::Counted);
        assert_eq!((s.expected(), s.received(), s.lost()), (1, 1, 0));
        assert_eq!(s.packets(), 2);
        assert_eq!(s.bytes(), 2 * 172);
    }

    #[test]
    fn probation_restarts_on_a_break() {
        let mut s = StreamStats::new();
        assert_eq!(feed(&mut s, 0, 10, 0), SeqUpdate::Probation);
        assert_eq!(feed(&mut s, 1, 500, 0), SeqUpdate::Probation);
        assert_eq!(feed(&mut s, 2, 501, 0), SeqUpdate::Counted);
        assert_eq!(s.expected(), 1);
        assert_eq!(s.extended_max_seq(), 501);
    }

    #[test]
    fn in_order_stream() {
        let mut s = StreamStats::new();
        for i in 0..1000 {
            feed(&mut s, i, 1 + i as u16, 40);
        }
        let snap = s.snapshot();
        assert_eq!(snap.packets, 1000);
        assert_eq!(snap.bytes, 172_000);
        assert_eq!(snap.errors, 0);
        assert_eq!(snap.expected, 999); // the first was on probation
        assert_eq!(snap.lost, 0);
        assert_eq!(snap.fraction_lost, 0);
        assert_eq!(snap.jitter_ms, 0);
        assert_eq!(snap.mos_x10, Some(44));
    }

    #[test]
    fn every_tenth_dropped() {
        let mut s = StreamStats::new();
        for i in (0..1000).filter(|i| i % 10 != 9) {
            feed(&mut s, i, i as u16, 0);
        }
        // Base is seq 1 (seq 0 was on probation), the last seen is 998.
        assert_eq!(s.expected(), 998);
        assert_eq!(s.received(), 899);
        assert_eq!(s.lost(), 99);
        assert_eq!(s.cumulative_lost(), 99);
        // 99/998 of 256, truncated, as A.3 computes it.
        assert_eq!(s.fraction_lost(), 25);
        assert!((s.loss_percent() - 9.92).abs() < 0.01);
        assert!(s.mos_x10().unwrap() < 44);
    }

    #[test]
    fn intervals_close_and_restart_the_fraction() {
        let mut s = StreamStats::new();
        for i in (0..100).filter(|i| i % 4 != 3) {
            feed(&mut s, i, i as u16, 0);
        }
        // 24 of 98 lost (3, 7, .. 95 of 1..=98): 24 * 256 / 98 = 62.
        assert_eq!(s.snapshot().fraction_lost, 62);
        assert_eq!(s.close_interval(), 62);
        assert_eq!(s.fraction_lost(), 0);
        for i in 100..200 {
            feed(&mut s, i, i as u16, 0);
        }
        // Only 99 is lost: it counts once the interval's max passed it,
        // 1 of 101 expected (99..=199): 256 / 101 = 2.
        assert_eq!(s.close_interval(), 2);
        for i in (200..300).filter(|i| i % 2 == 0) {
            feed(&mut s, i, i as u16, 0);
        }
        // The third interval runs from 200 to 298 (299 never came): 99
        // expected, the 49 odd ones lost, 49 * 256 / 99 = 126.
        assert_eq!(s.close_interval(), 126);
        // The totals cover all intervals: 24 in the first (3, 7, .. 95), 99
        // in the second, 49 in the third.
        assert_eq!(s.lost(), 24 + 1 + 49);
    }

    #[test]
    fn reordering_loses_nothing() {
        let mut s = StreamStats::new();
        // 0 1 then pairs swapped: 3 2 5 4 ...
        feed(&mut s, 0, 0, 0);
        feed(&mut s, 1, 1, 0);
        for i in (2..200u32).step_by(2) {
            // Packet i + 1 arrives in slot i and packet i in slot i + 1.
            for (seq, slot) in [(i + 1, i), (i, i + 1)] {
                let buf = packet(seq as u16, seq * FRAME_TS);
                let view = RtpView::parse(&buf).unwrap();
                assert_eq!(
                    s.on_packet_ts(slot * FRAME_TS, &view, PCMU_HZ),
                    SeqUpdate::Counted
                );
            }
        }
        // 1..=199 (0 was on probation).
        assert_eq!(s.expected(), 199);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.fraction_lost(), 0);
        assert_eq!(s.extended_max_seq(), 199);
        // Swapped pairs arrive 20 ms off their slot: jitter is not zero.
        assert!(s.jitter_ts() > 0);
    }

    #[test]
    fn duplicates_make_lost_negative() {
        let mut s = StreamStats::new();
        for i in 0..100 {
            feed(&mut s, i, i as u16, 0);
            if i % 10 == 5 {
                assert_eq!(feed(&mut s, i, i as u16, 0), SeqUpdate::Counted);
            }
        }
        assert_eq!(s.packets(), 110);
        assert_eq!(s.expected(), 99);
        assert_eq!(s.lost(), -10);
        assert_eq!(s.fraction_lost(), 0);
        assert_eq!(s.loss_percent(), 0.0);
        assert_eq!(s.mos_x10(), Some(44));
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut s = StreamStats::new();
        for i in 0..200u32 {
            let seq = (65_400 + i) as u16; // wraps after 135 packets
            assert_ne!(feed(&mut s, i, seq, 0), SeqUpdate::Jump);
        }
        assert_eq!(s.expected(), 199);
        assert_eq!(s.lost(), 0);
        // One cycle: 2^16 + (65400 + 199 − 65536).
        assert_eq!(s.extended_max_seq(), 65_536 + 63);
    }

    #[test]
    fn wrap_with_loss_across_it() {
        let mut s = StreamStats::new();
        for i in (0..200u32).filter(|i| !(130..140).contains(i)) {
            feed(&mut s, i, (65_400 + i) as u16, 0);
        }
        assert_eq!(s.expected(), 199);
        assert_eq!(s.lost(), 10);
    }

    #[test]
    fn a_stray_jump_is_ignored() {
        let mut s = StreamStats::new();
        for i in 0..50 {
            feed(&mut s, i, 1000 + i as u16, 0);
        }
        assert_eq!(feed(&mut s, 50, 30_000, 0), SeqUpdate::Jump);
        for i in 50..100 {
            assert_eq!(feed(&mut s, i, 1000 + i as u16, 0), SeqUpdate::Counted);
        }
        assert_eq!(s.expected(), 99);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.packets(), 101);
    }

    #[test]
    fn source_restart_after_a_confirmed_jump() {
        let mut s = StreamStats::new();
        for i in (0..100).filter(|i| i % 10 != 9) {
            feed(&mut s, i, 1000 + i as u16, 0);
        }
        assert_eq!((s.expected(), s.lost()), (98, 9));
        // The sender restarts at 40000 with a new timestamp base.
        let restart_ts = 0x8000_0000;
        let jump = packet(40_000, restart_ts);
        let view = RtpView::parse(&jump).unwrap();
        assert_eq!(
            s.on_packet_ts(100 * FRAME_TS, &view, PCMU_HZ),
            SeqUpdate::Jump
        );
        let jitter_before = s.jitter_ts();
        for k in 1..51u32 {
            let buf = packet(40_000 + k as u16, restart_ts + k * FRAME_TS);
            let view = RtpView::parse(&buf).unwrap();
            let update = s.on_packet_ts((100 + k) * FRAME_TS, &view, PCMU_HZ);
            let want = if k == 1 {
                SeqUpdate::Restarted
            } else {
                SeqUpdate::Counted
            };
            assert_eq!(update, want, "packet {k}");
        }
        // The new sequence starts at 40001: 50 expected, none lost; the old
        // one's counts stay in the totals.
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.extended_max_seq(), 40_050);
        assert_eq!(s.expected(), 98 + 50);
        assert_eq!(s.lost(), 9);
        // The new timestamp base did not show up as jitter.
        assert_eq!(s.jitter_ts(), jitter_before);
    }

    #[test]
    fn constant_delay_has_no_jitter() {
        let mut s = StreamStats::new();
        let start = Instant::now();
        for i in 0..500u32 {
            let buf = packet(i as u16, 12_345 + i * FRAME_TS);
            let view = RtpView::parse(&buf).unwrap();
            let arrival = start + Duration::from_millis(u64::from(i) * 20 + 35);
            s.on_packet(arrival, &view, PCMU_HZ);
        }
        assert_eq!(s.jitter_ts(), 0);
        assert_eq!(s.jitter_ms(), 0);
    }

    #[test]
    fn alternating_delay_converges_to_the_step() {
        // Every other packet is 10 ms late: |D| is 10 ms each time, so A.8's
        // estimate converges to 10 ms (80 ts at 8 kHz).
        let mut s = StreamStats::new();
        let start = Instant::now();
        for i in 0..1000u32 {
            let buf = packet(i as u16, i * FRAME_TS);
            let view = RtpView::parse(&buf).unwrap();
            let late_ms = if i % 2 == 1 { 10 } else { 0 };
            let arrival = start + Duration::from_millis(u64::from(i) * 20 + late_ms);
            s.on_packet(arrival, &view, PCMU_HZ);
        }
        assert!((78..=80).contains(&s.jitter_ts()), "{}", s.jitter_ts());
        assert_eq!(s.jitter_ms(), 10);
        assert!(s.mos_x10().unwrap() <= 44);
    }

    #[test]
    fn clock_rate_change_rescales_jitter() {
        let mut s = StreamStats::new();
        for i in 0..400u32 {
            feed(&mut s, i, i as u16, if i % 2 == 1 { 80 } else { 0 });
        }
        let ms = s.jitter_ms();
        let buf = packet(400, 0);
        let view = RtpView::parse(&buf).unwrap();
        s.on_packet_ts(7, &view, 48_000);
        assert_eq!(s.jitter_ms(), ms);
        assert!(s.jitter_ts() > 400);
    }

    #[test]
    fn zero_clock_rate_skips_jitter() {
        let mut s = StreamStats::new();
        for i in 0..10u32 {
            let buf = packet(i as u16, i * 7);
            let view = RtpView::parse(&buf).unwrap();
            s.on_packet_ts(i * 1000, &view, 0);
        }
        assert_eq!(s.jitter_ms(), 0);
        assert_eq!(s.expected(), 9);
    }

    #[test]
    fn errors_are_counted() {
        let mut s = StreamStats::new();
        s.on_error();
        s.on_error();
        assert_eq!(s.snapshot().errors, 2);
        assert_eq!(s.snapshot().packets, 0);
    }

    #[test]
    fn arrival_times_convert_to_clock_units() {
        assert_eq!(to_clock_ts(Duration::from_millis(1500), 8000), 12_000);
        assert_eq!(to_clock_ts(Duration::from_micros(20_833), 48_000), 999);
        assert_eq!(to_clock_ts(Duration::from_secs(3600), 90_000), 324_000_000);
        // 2^32 / 8000 s later the clock has wrapped exactly once.
        let wrap = Duration::from_secs(536_870) + Duration::from_millis(912);
        assert_eq!(to_clock_ts(wrap, 8000), 0);
        assert_eq!(to_clock_ts(Duration::MAX, 0), 0);
    }

    #[test]
    fn lost_is_clamped_to_24_bits() {
        assert_eq!(clamp_lost(1 << 30, 0), 0x7f_ffff);
        assert_eq!(clamp_lost(0, 1 << 30), -0x80_0000);
        assert_eq!(clamp_lost(u64::MAX, 0), 0x7f_ffff);
        assert_eq!(clamp_lost(10, 3), 7);
    }

    #[test]
    fn mos_reference_points() {
        // Perfect network: R = 93.2 − 10/40 = 92.95, MOS ≈ 4.41.
        assert_eq!(mos_x10(0.0, 0.0, 0.0), 44);
        assert!((r_factor(0.0, 0.0, 0.0) - 92.95).abs() < 1e-9);
        // 150 ms latency: Id = (160 − 120)/10 = 4.
        assert!((r_factor(0.0, 0.0, 150.0) - 89.2).abs() < 1e-9);
        // 10 % loss costs 25 points of R.
        assert!((r_factor(10.0, 0.0, 0.0) - 67.95).abs() < 1e-9);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
    }

    #[test]
    fn mos_stays_sane_at_extremes() {
        for (loss, jitter, latency) in [
            (100.0, 0.0, 0.0),
            (0.0, 1.0e12, 0.0),
            (100.0, f64::INFINITY, f64::INFINITY),
            (f64::NAN, f64::NAN, f64::NAN),
            (-50.0, -1.0, f64::NEG_INFINITY),
            (1.0e300, 0.0, 0.0),
        ] {
            let m = mos_from_r(r_factor(loss, jitter, latency));
            assert!((1.0..=4.5).contains(&m), "{loss} {jitter} {latency}: {m}");
            assert!((10..=45).contains(&mos_x10(loss, jitter, latency)));
        }
        assert_eq!(mos_x10(100.0, 0.0, 0.0), 10);
        assert_eq!(mos_x10(0.0, 1.0e9, 0.0), 10);
    }

    #[test]
    fn mos_is_monotone_in_loss_and_jitter() {
        for jitter in (0..=2000).step_by(7) {
            let mut prior = f64::INFINITY;
            for loss_x10 in 0..=1000 {
                let m = mos_from_r(r_factor(f64::from(loss_x10) / 10.0, f64::from(jitter), 0.0));
                assert!(m <= prior, "loss {loss_x10}/10, jitter {jitter}");
                prior = m;
            }
        }
        for loss in 0..=100 {
            let mut prior = f64::INFINITY;
            for jitter_x10 in 0..=20_000 {
                let m = mos_from_r(r_factor(f64::from(loss), f64::from(jitter_x10) / 10.0, 0.0));
                assert!(m <= prior, "loss {loss}, jitter {jitter_x10}/10");
                prior = m;
            }
        }
    }

    #[test]
    fn stream_mos_at_total_loss_is_one() {
        // Two packets to validate, then one packet 2999 further: 2997 of
        // 3000 expected are lost (99.9 %).
        let mut s = StreamStats::new();
        feed(&mut s, 0, 0, 0);
        feed(&mut s, 1, 1, 0);
        feed(&mut s, 2, 2999, 0);
        assert_eq!(s.lost(), 2997);
        assert_eq!(s.mos_x10(), Some(10));
    }

    proptest! {
        #[test]
        fn arbitrary_sequences_never_panic(
            packets in proptest::collection::vec((any::<u16>(), any::<u32>(), any::<u32>(), 0u32..100_000), 0..400),
        ) {
            let mut s = StreamStats::new();
            for (seq, ts, arrival_ts, rate) in packets {
                let buf = packet(seq, ts);
                let view = RtpView::parse(&buf).unwrap();
                s.on_packet_ts(arrival_ts, &view, rate);
                let snap = s.snapshot();
                prop_assert!(i64::from(snap.lost) <= snap.expected as i64);
                prop_assert!(s.cumulative_lost() <= s.lost().max(s.cumulative_lost()));
                if let Some(m) = snap.mos_x10 {
                    prop_assert!((10..=45).contains(&m));
                }
            }
            let _ = s.close_interval();
        }

        #[test]
        fn near_sequential_streams_keep_lost_below_expected(
            steps in proptest::collection::vec(-120i32..3100, 1..600),
        ) {
            // Mostly forward steps with gaps, reorders and duplicates, which
            // reach the deeper branches more often than random numbers do.
            let mut s = StreamStats::new();
            let mut seq = 65_000u16;
            for (i, step) in steps.into_iter().enumerate() {
                seq = seq.wrapping_add(step as u16);
                feed(&mut s, i as u32, seq, 0);
                prop_assert!(i64::from(s.lost()) <= s.expected() as i64);
                prop_assert!(s.received() <= s.packets());
            }
        }
    }

    #[test]
    fn datagrams_are_counted_as_rtp_rtcp_or_errors() {
        let t0 = Instant::now();
        let mut stats = StreamStats::new();
        let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0, 0, 0, 7];
        rtp.extend_from_slice(&[0xff; 160]);
        let rtcp_rr = [0x80, 201, 0x00, 0x01, 0, 0, 0, 7];
        assert!(stats.on_datagram(t0, &rtp, false).is_ok());
        // RTCP on an rtcp-mux port (by packet type) and on an RTCP port.
        assert!(stats.on_datagram(t0, &rtcp_rr, false).is_ok());
        assert!(stats.on_datagram(t0, &rtp, true).is_ok());
        // A STUN binding request: relayed, not counted.
        assert!(stats
            .on_datagram(t0, &[0x00, 0x01, 0x00, 0x00], false)
            .is_ok());
        // RTP version with a CSRC count longer than the packet.
        assert!(stats
            .on_datagram(t0, &[0x8f, 0x00, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1], false)
            .is_err());
        let s = stats.snapshot();
        assert_eq!((s.packets, s.bytes, s.errors), (1, rtp.len() as u64, 1));
        assert_eq!(
            (s.rtcp_packets, s.rtcp_bytes),
            (2, (rtcp_rr.len() + rtp.len()) as u64)
        );
    }
}
