//! What a null UDP forwarder costs in CPU per datagram, for three shells:
//! blocking std sockets, glommio (what the shards run today) and the
//! io_uring driver `edge::runtime::uring`.
//!
//! Start a forwarder pinned to core 0, then the blaster pinned to core 1:
//!
//! ```text
//! cargo build -p edge --release --example udp_forward_cost
//! B=target/release/examples/udp_forward_cost
//! $B uring --listen 127.0.0.1:9000 --to 127.0.0.1:9001 --core 0 &
//! $B blast --to 127.0.0.1:9000 --sink 127.0.0.1:9001 --count 200000 --rate 50000 --core 1
//! ```
//!
//! The forwarder measures its process's user + system time (`/proc/self/stat`,
//! all threads) from the first datagram to the end marker the blaster sends last,
//! and prints µs of CPU per forwarded datagram; the blaster prints how many
//! arrived at the sink.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use edge::runtime::uring::{RingConfig, UdpRing};
use socket2::{Domain, Protocol, Socket, Type};

/// The blaster's last datagrams; a forwarder passes them on and stops.
const END: &[u8] = b"END!";
const SOCKET_BUFFER: usize = 8 << 20;
/// A forwarder that has seen traffic stops after this long without any, in
/// case every end marker was lost.
const IDLE: Duration = Duration::from_secs(2);

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Blocking `recv_from` / `send_to`.
    Std(Fwd),
    /// glommio `UdpSocket::recv_from` / `send_to`, as in the shard.
    Glommio(Fwd),
    /// `edge::runtime::uring::UdpRing`: multishot receive, batched sends.
    Uring {
        #[command(flatten)]
        fwd: Fwd,
        /// Use COOP_TASKRUN instead of SINGLE_ISSUER + DEFER_TASKRUN.
        #[arg(long)]
        no_defer: bool,
    },
    /// Sends `count` datagrams of `size` bytes at `rate` per second to `to`
    /// and counts what arrives at `sink`.
    Blast {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        sink: SocketAddr,
        #[arg(long, default_value_t = 200_000)]
        count: u64,
        #[arg(long, default_value_t = 400)]
        size: usize,
        /// Datagrams per second; 0 sends as fast as possible.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        #[arg(long, default_value_t = 1)]
        core: usize,
    },
}

#[derive(clap::Args)]
struct Fwd {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    to: SocketAddr,
    #[arg(long, default_value_t = 0)]
    core: usize,
}

fn main() -> io::Result<()> {
    match Args::parse().mode {
        Mode::Std(f) => {
            pin(f.core)?;
            forward_std(&f)
        }
        Mode::Glommio(f) => forward_glommio(f),
        Mode::Uring { fwd, no_defer } => {
            pin(fwd.core)?;
            forward_uring(&fwd, !no_defer)
        }
        Mode::Blast {
            to,
            sink,
            count,
            size,
            rate,
            core,
        } => blast(to, sink, count, size, rate, core),
    }
}

fn pin(core: usize) -> io::Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(io::Error::other(format!("cannot pin to core {core}")))
    }
}

fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_recv_buffer_size(SOCKET_BUFFER)?;
    s.set_send_buffer_size(SOCKET_BUFFER)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// CPU time of the whole process so far (user, system), from
/// `/proc/self/stat` (clock ticks of 10 ms: USER_HZ is 100 on Linux).
fn cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace().skip(11);
    let mut ticks = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (user, sys) = (ticks(), ticks());
    (
        Duration::from_millis(user * 10),
        Duration::from_millis(sys * 10),
    )
}

/// What a forwarder saw, from its first datagram on.
struct Meter {
    mode: &'static str,
    start: Option<(Instant, (Duration, Duration))>,
    last: Instant,
    forwarded: u64,
    dropped: u64,
}

impl Meter {
    fn new(mode: &'static str) -> Self {
        Self {
            mode,
            start: None,
            last: Instant::now(),
            forwarded: 0,
            dropped: 0,
        }
    }

    /// Called per datagram; true for the end marker.
    fn datagram(&mut self, payload: &[u8]) -> bool {
        if self.start.is_none() {
            self.start = Some((Instant::now(), cpu()));
        }
        if payload == END {
            return true;
        }
        self.last = Instant::now();
        false
    }

    /// Traffic started and then stopped without an end marker.
    fn idle(&self) -> bool {
        self.start.is_some() && self.last.elapsed() > IDLE
    }

    fn report(&self, extra: &str) {
        let Some((t0, (u0, s0))) = self.start else {
            println!("{}: nothing received", self.mode);
            return;
        };
        let (u1, s1) = cpu();
        let (user, sys) = (u1 - u0, s1 - s0);
        let n = self.forwarded.max(1) as f64;
        let wall = self.last.duration_since(t0).as_secs_f64();
        println!(
            "{mode}: forwarded {fwd} dropped {drop} | cpu/datagram {total:.2} us (user {u:.2} sys {s:.2}) | {rate:.0} dgram/s over {wall:.2} s {extra}",
            mode = self.mode,
            fwd = self.forwarded,
            drop = self.dropped,
            total = (user + sys).as_secs_f64() * 1e6 / n,
            u = user.as_secs_f64() * 1e6 / n,
            s = sys.as_secs_f64() * 1e6 / n,
            rate = self.forwarded as f64 / wall.max(1e-9),
        );
    }
}

fn forward_std(f: &Fwd) -> io::Result<()> {
    let sock: UdpSocket = socket(f.listen)?.into();
    sock.set_read_timeout(Some(IDLE))?;
    let mut buf = vec![0u8; 65_535];
    let mut meter = Meter::new("std");
    loop {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(_) if meter.idle() => break,
            Err(_) => continue,
        };
        let end = meter.datagram(&buf[..n]);
        match sock.send_to(&buf[..n], f.to) {
            Ok(_) if !end => meter.forwarded += 1,
            Ok(_) => {}
            Err(_) => meter.dropped += 1,
        }
        if end {
            break;
        }
    }
    meter.report("");
    Ok(())
}

fn forward_glommio(f: Fwd) -> io::Result<()> {
    let sock = socket(f.listen)?;
    let to = f.to;
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(f.core))
        .name("fwd")
        .spawn(move || async move {
            let sock = glommio::net::UdpSocket::from(sock);
            let mut buf = vec![0u8; 65_535];
            let mut meter = Meter::new("glommio");
            if sock.set_read_timeout(Some(IDLE)).is_err() {
                return;
            }
            loop {
                let Ok((n, _)) = sock.recv_from(&mut buf).await else {
                    if meter.idle() {
                        break;
                    }
                    continue;
                };
                let end = meter.datagram(&buf[..n]);
                match sock.send_to(&buf[..n], to).await {
                    Ok(_) if !end => meter.forwarded += 1,
                    Ok(_) => {}
                    Err(_) => meter.dropped += 1,
                }
                if end {
                    break;
                }
            }
            meter.report("");
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
    handle.join().map_err(|e| io::Error::other(e.to_string()))
}

fn forward_uring(f: &Fwd, defer_taskrun: bool) -> io::Result<()> {
    let sock: UdpSocket = socket(f.listen)?.into();
    let config = RingConfig {
        defer_taskrun,
        ..RingConfig::default()
    };
    let mut ring = UdpRing::new(vec![sock], config)?;
    let mode = if ring.defer_taskrun() {
        "uring"
    } else {
        "uring-coop"
    };
    let mut meter = Meter::new(mode);
    let mut done = false;
    let mut batches = 0u64;
    while !done {
        let p = ring.run_once(Duration::from_millis(100), |d, out| {
            let end = meter.datagram(d.payload);
            match out.send(d.socket, f.to, d.payload) {
                Ok(()) if !end => meter.forwarded += 1,
                Ok(()) => {}
                Err(_) => meter.dropped += 1,
            }
            done |= end;
        })?;
        batches += u64::from(p.datagrams > 0);
        done |= meter.idle();
    }
    // Let the last sends complete before reading the clock.
    let deadline = Instant::now() + Duration::from_secs(1);
    while ring.free_send_slots() < usize::from(config.send_slots) && Instant::now() < deadline {
        ring.run_once(Duration::from_millis(10), |_, _| {})?;
    }
    let c = ring.counters();
    meter.report(&format!(
        "| {:.1} datagrams per receiving run_once, {} enters, nobufs {}, send errors {}",
        c.received as f64 / batches.max(1) as f64,
        c.enters,
        c.recv_nobufs,
        c.send_errors
    ));
    Ok(())
}

fn blast(
    to: SocketAddr,
    sink: SocketAddr,
    count: u64,
    size: usize,
    rate: u64,
    core: usize,
) -> io::Result<()> {
    let sink_sock: UdpSocket = socket(sink)?.into();
    sink_sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let receiver = std::thread::spawn(move || -> io::Result<u64> {
        pin(core)?;
        let mut buf = vec![0u8; 65_535];
        let mut got = 0u64;
        loop {
            match sink_sock.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == END => return Ok(got),
                Ok(_) => got += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    });
    pin(core)?;
    let unspecified: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sock: UdpSocket = socket(unspecified)?.into();
    sock.connect(to)?;
    let payload = vec![b'x'; size];
    let start = Instant::now();
    let mut send_errors = 0u64;
    for i in 0..count {
        // Pace in bursts of 16 on an absolute schedule.
        if rate > 0 && i % 16 == 0 {
            // Sleep, not spin, so the blaster can run at a real-time
            // priority without starving its core.
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
        if sock.send(&payload).is_err() {
            send_errors += 1;
        }
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        // The forwarder stops at the first; later ones may be refused.
        let _ = sock.send(END);
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = receiver
        .join()
        .map_err(|_| io::Error::other("sink thread panicked"))??;
    println!(
        "blast: sent {count} x {size} B in {:.2} s ({:.0}/s, {send_errors} send errors), arrived {got} ({:.2}% lost)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        (count - got.min(count)) as f64 * 100.0 / count.max(1) as f64,
    );
    Ok(())
}
