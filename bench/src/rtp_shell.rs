//! `bench rtp`, the I/O shell: binds one UDP socket per call endpoint, sets
//! the calls up over ng (a plain UDP socket), then sends and receives every
//! stream's packets on one io_uring ring (the edge's [`UdpRing`]), and reads
//! the relay's CPU time at the edges of the measured window.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::runtime::uring::{RingConfig, UdpRing, RECV_OVERHEAD};

use crate::rtp::{
    write_packet, Calls, NgClient, NgConfig, Pacer, Tally, TallyTotals, MAX_PACKET_BYTES,
    MIN_PACKET_BYTES,
};
use crate::shell::{bind_udp, pin};

/// What `bench rtp` does.
#[derive(Clone, Debug)]
pub struct RtpConfig {
    /// The relay's ng control address (UDP).
    pub ng: SocketAddr,
    /// One-way streams (two per call, so rounded up to even).
    pub streams: usize,
    /// Packets per second per stream.
    pub pps: u32,
    /// Bytes per datagram (RTP header included).
    pub size: usize,
    /// Seconds sent before the measured window (not counted).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to wait for the window's last packets after it.
    pub drain: Duration,
    /// Where the endpoints' sockets bind.
    pub local_ip: IpAddr,
    /// The relay's process, for its CPU time over the window.
    pub relay_pid: Option<u32>,
    /// Pin the generator to this core.
    pub core: Option<usize>,
    /// The ng client's bounds.
    pub ng_client: NgConfig,
    /// The longest the setup (or the teardown) may take.
    pub setup_limit: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RtpResult {
    /// Streams sent.
    pub streams: usize,
    /// Packets per second per stream.
    pub pps: u32,
    /// Bytes per datagram.
    pub size: usize,
    /// The measured window, seconds.
    pub duration_s: f64,
    /// Packet counters of the window.
    #[serde(flatten)]
    pub totals: TallyTotals,
    /// Lost share of the counted packets, percent.
    pub loss_pct: f64,
    /// One-way latency (from when each packet was due), microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile.
    pub latency_p99_us: u64,
    /// Highest.
    pub latency_max_us: u64,
    /// Packets the generator could not send in time (no free send slot);
    /// none expected.
    pub send_failures: u64,
    /// The relay's CPU time over the window (user + system, all threads).
    pub relay_cpu_s: Option<f64>,
    /// That per counted packet received.
    pub cpu_us_per_packet: Option<f64>,
    /// The generator's own CPU time over the window.
    pub generator_cpu_s: Option<f64>,
    /// The host's UDP receive-buffer overflows over the run (any socket).
    pub udp_rcvbuf_errors: Option<u64>,
    /// Deletes refused or unanswered.
    pub delete_failures: u64,
}

impl RtpResult {
    /// The one-line summary `bench rtp` prints.
    pub fn line(&self) -> String {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        let t = &self.totals;
        format!(
            "streams={} sent={} received={} lost={} loss_pct={:.4} out_of_order={} unexpected={} \
             latency_p50_us={} latency_p99_us={} latency_max_us={} send_failures={} \
             udp_rcvbuf_errors={} relay_cpu_s={} cpu_us_per_packet={} generator_cpu_s={}",
            self.streams,
            t.sent,
            t.received,
            t.lost,
            self.loss_pct,
            t.out_of_order,
            t.unexpected,
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_max_us,
            self.send_failures,
            self.udp_rcvbuf_errors
                .map_or("-".to_string(), |v| v.to_string()),
            opt(self.relay_cpu_s, 3),
            opt(self.cpu_us_per_packet, 3),
            opt(self.generator_cpu_s, 3),
        )
    }
}

/// Open files besides the endpoints' sockets (the ring, the ng socket,
/// stdio, libraries).
const SPARE_FILES: u64 = 256;

/// The longest the teardown may take after SIGINT or SIGTERM.
const INTERRUPTED_TEARDOWN: Duration = Duration::from_secs(1);

/// Sets up the calls, runs the streams, tears the calls down.
pub fn run(config: &RtpConfig, stop: &std::sync::atomic::AtomicBool) -> Result<RtpResult, String> {
    if !(MIN_PACKET_BYTES..=MAX_PACKET_BYTES).contains(&config.size) {
        return Err(format!(
            "--size must be {MIN_PACKET_BYTES} to {MAX_PACKET_BYTES} bytes"
        ));
    }
    let calls_n = config.streams.div_ceil(2).max(1);
    let want = (calls_n * 2) as u64 + SPARE_FILES;
    let limit = rlimit::increase_nofile_limit(want)
        .map_err(|e| format!("cannot raise the open file limit to {want}: {e}"))?;
    if limit < want {
        return Err(format!(
            "the open file limit is {limit}, {want} needed: raise the hard limit (ulimit -Hn)"
        ));
    }
    let sockets = (0..calls_n * 2)
        .map(|_| bind_udp(SocketAddr::new(config.local_ip, 0), false))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot bind {} sockets: {e}", calls_n * 2))?;
    let locals = sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let pairs: Vec<(SocketAddr, SocketAddr)> = locals.chunks(2).map(|p| (p[0], p[1])).collect();
    let prefix = format!("bench-rtp-{}", std::process::id());
    let mut calls = Calls::new(&pairs, NgClient::new(config.ng_client, &prefix), &prefix);
    let ng = ng_socket(config)?;
    calls.start_setup();
    drive_ng(&ng, &mut calls, config.setup_limit)?;
    if calls.ready() < calls_n {
        let why = calls.first_failure().unwrap_or_else(|| "no reply".into());
        teardown(&ng, &mut calls, config.setup_limit);
        return Err(format!(
            "{} of {calls_n} calls set up: {why}",
            calls.ready()
        ));
    }
    eprintln!("bench rtp: {calls_n} calls set up through {}", config.ng);
    if let Some(core) = config.core {
        pin(core);
    }
    let media = run_media(config, &calls, sockets, stop);
    // Interrupted: the relay may be gone with us (Ctrl-C reaches the whole
    // process group), so don't wait out every delete's retransmissions.
    let limit = if stop.load(std::sync::atomic::Ordering::Relaxed) {
        config.setup_limit.min(INTERRUPTED_TEARDOWN)
    } else {
        config.setup_limit
    };
    teardown(&ng, &mut calls, limit);
    let mut result = media?;
    result.delete_failures = calls.delete_failures;
    Ok(result)
}

fn ng_socket(config: &RtpConfig) -> Result<UdpSocket, String> {
    let ng = UdpSocket::bind(SocketAddr::new(config.local_ip, 0)).map_err(|e| e.to_string())?;
    ng.connect(config.ng)
        .map_err(|e| format!("ng {}: {e}", config.ng))?;
    Ok(ng)
}

fn teardown(ng: &UdpSocket, calls: &mut Calls, limit: Duration) {
    calls.start_teardown();
    if let Err(e) = drive_ng(ng, calls, limit) {
        eprintln!("bench rtp: teardown: {e}");
    }
}

/// Moves ng datagrams until no command waits for a reply, or `limit`.
fn drive_ng(ng: &UdpSocket, calls: &mut Calls, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65_536];
    while !calls.settled() {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("ng commands still unanswered after {limit:?}"));
        }
        calls.client.handle_timeout(now);
        while let Some(d) = calls.client.poll_transmit(now) {
            // A refused send (the relay is not up yet) is retransmitted.
            let _ = ng.send(&d);
        }
        calls.pump();
        let wait = calls
            .client
            .poll_timeout()
            .map_or(Duration::from_millis(10), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        ng.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
        if let Ok(len) = ng.recv(&mut buf) {
            calls
                .client
                .handle_datagram(&Bytes::copy_from_slice(&buf[..len]));
            calls.pump();
        }
    }
    Ok(())
}

/// The ring for `endpoints` sockets at 50 packets/s each: bursts of a few
/// thousand datagrams a round.
fn ring_config(endpoints: usize) -> RingConfig {
    let send_slots = endpoints.clamp(1024, 16_384);
    RingConfig {
        entries: 4096,
        buffers: 8192,
        buffer_size: (MAX_PACKET_BYTES + RECV_OVERHEAD).next_power_of_two() as u32,
        send_slots: u16::try_from(send_slots).unwrap_or(u16::MAX),
        send_buffer_size: MAX_PACKET_BYTES as u32,
        max_completions: 16_384,
        defer_taskrun: true,
    }
}

/// The window's edges and the CPU counters read at them.
struct Window {
    start: Instant,
    end: Instant,
    relay_at_start: Option<u64>,
    relay_at_end: Option<u64>,
    self_at_start: Option<u64>,
    self_at_end: Option<u64>,
}

impl Window {
    fn observe(&mut self, now: Instant, relay_pid: Option<u32>) {
        if now >= self.start && self.self_at_start.is_none() {
            self.relay_at_start = relay_pid.and_then(cpu_ticks);
            self.self_at_start = cpu_ticks(std::process::id());
        }
        if now >= self.end && self.self_at_end.is_none() {
            self.relay_at_end = relay_pid.and_then(cpu_ticks);
            self.self_at_end = cpu_ticks(std::process::id());
        }
    }
}

/// Most packets sent per round, so a generator behind its schedule still
/// reads its sockets.
const MAX_SENDS_PER_ROUND: usize = 4096;
/// The generator's round: packets are sent up to this late and received
/// up to this late, which the latency figures include.
const TICK: Duration = Duration::from_millis(1);

/// The media phase: every stream's socket on one ring, the schedule, and
/// what was counted.
struct Streams {
    ring: UdpRing,
    max_completions: usize,
    /// Where each stream sends (the relay's port for its source endpoint).
    dests: Vec<SocketAddr>,
    pacer: Pacer,
    /// The pacer's start: packets carry their due time relative to it.
    start: Instant,
    window: Window,
    tally: Tally,
    /// The datagram being written: no allocation per packet.
    packet: Vec<u8>,
    send_failures: u64,
}

impl Streams {
    /// Sends every packet due at `now` (at most [`MAX_SENDS_PER_ROUND`],
    /// and no more than free send slots).
    fn send_due(&mut self, now: Instant) {
        for _ in 0..MAX_SENDS_PER_ROUND {
            if self.ring.free_send_slots() == 0 {
                return;
            }
            let end = self.window.end;
            let Some(slot) = self.pacer.pop_due(now).filter(|s| s.due < end) else {
                return;
            };
            let counted = slot.due >= self.window.start;
            let due_ns = nanos(slot.due - self.start);
            write_packet(&mut self.packet, slot.stream, slot.index, due_ns, counted);
            let dst = self.dests[slot.stream];
            if self.ring.send(slot.stream, dst, &self.packet).is_err() {
                self.send_failures += 1;
            } else if counted {
                self.tally.on_sent(slot.stream);
            }
        }
    }

    /// Submits the sends and takes what arrived, without waiting; true
    /// when the ring may have more completions ready.
    fn exchange(&mut self) -> Result<bool, String> {
        let (tally, start) = (&mut self.tally, self.start);
        let progress = self
            .ring
            .run_once(Duration::ZERO, |d, _| {
                // The socket is the far end: socket 2c+1 gets stream 2c and back.
                let since_start = nanos(Instant::now().saturating_duration_since(start));
                tally.on_received(d.socket ^ 1, since_start, d.payload);
            })
            .map_err(|e| format!("io_uring: {e}"))?;
        Ok(progress.completions >= self.max_completions)
    }

    /// A packet due before the window's end is late already.
    fn behind(&self) -> bool {
        let next = self.pacer.next_due();
        next <= Instant::now() && next < self.window.end
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn run_media(
    config: &RtpConfig,
    calls: &Calls,
    sockets: Vec<UdpSocket>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<RtpResult, String> {
    let streams = calls.calls.len() * 2;
    // Stream 2c: A (socket 2c) -> relay -> B (socket 2c+1); 2c+1 the other way.
    let dests: Vec<SocketAddr> = calls
        .calls
        .iter()
        .flat_map(|c| [c.a_sends_to, c.b_sends_to])
        .map(|a| a.ok_or("a call without a relay address"))
        .collect::<Result<_, _>>()?;
    let ring_config = ring_config(streams);
    let ring = UdpRing::new(sockets, ring_config).map_err(|e| format!("io_uring: {e}"))?;
    let snmp_before = udp_rcvbuf_errors();
    let start = Instant::now() + Duration::from_millis(20);
    let mut s = Streams {
        ring,
        max_completions: ring_config.max_completions,
        dests,
        pacer: Pacer::new(start, streams, config.pps),
        start,
        window: Window {
            start: start + config.warmup,
            end: start + config.warmup + config.duration,
            relay_at_start: None,
            relay_at_end: None,
            self_at_start: None,
            self_at_end: None,
        },
        tally: Tally::new(streams),
        packet: vec![0u8; config.size],
        send_failures: 0,
    };
    let drain_end = s.window.end + config.drain;
    loop {
        let now = Instant::now();
        s.window.observe(now, config.relay_pid);
        if now >= drain_end || stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        s.send_due(now);
        // One round per tick, not per packet: 2,000 streams are 100,000
        // sends and receives a second, one `io_uring_enter` per tick for all.
        let more = s.exchange()?;
        if !more && !s.behind() {
            std::thread::sleep((now + TICK).saturating_duration_since(Instant::now()));
        }
    }
    let mut result = summarize(config, streams, &s.tally, &s.window);
    result.send_failures = s.send_failures;
    result.udp_rcvbuf_errors = udp_rcvbuf_errors()
        .zip(snmp_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(result)
}

/// The result of a run from its tally and the CPU counters of its window.
fn summarize(config: &RtpConfig, streams: usize, tally: &Tally, window: &Window) -> RtpResult {
    let totals = tally.totals();
    let ticks_per_s = clock_ticks_per_s();
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks_per_s);
    let relay_cpu_s = delta(window.relay_at_start, window.relay_at_end);
    let latency = tally.latency();
    RtpResult {
        streams,
        pps: config.pps,
        size: config.size,
        duration_s: config.duration.as_secs_f64(),
        loss_pct: if totals.sent == 0 {
            0.0
        } else {
            100.0 * totals.lost as f64 / totals.sent as f64
        },
        latency_p50_us: latency.quantile_us(0.5),
        latency_p99_us: latency.quantile_us(0.99),
        latency_max_us: latency.quantile_us(1.0),
        send_failures: 0,
        cpu_us_per_packet: relay_cpu_s
            .filter(|_| totals.received > 0)
            .map(|s| s * 1e6 / totals.received as f64),
        relay_cpu_s,
        generator_cpu_s: delta(window.self_at_start, window.self_at_end),
        udp_rcvbuf_errors: None,
        delete_failures: 0,
        totals,
    }
}

/// utime + stime of process `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// utime + stime from the text of `/proc/PID/stat`: fields 14 and 15,
/// counted after the command name (which may hold spaces and parentheses).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK` (100 on Linux when it cannot be asked).
fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `RcvbufErrors` of the `Udp:` lines of `/proc/net/snmp`.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_snmp_rcvbuf_errors(&snmp)
}

fn parse_snmp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn snmp_rcvbuf_errors_are_found_by_name() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 9 7 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_rcvbuf_errors(snmp), Some(7));
    }
}
