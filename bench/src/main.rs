//! `bench`: a SIP load generator that finds the CPS limit of a SIP proxy.
//! `bench uas`, `bench uac`, `bench ramp` and the all-in-one `bench run`;
//! `bench rtp` drives RTP streams through a media relay.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::drive::{drive, Plan};
use bench::load::{Load, LoadConfig};
use bench::ramp::RampConfig;
use bench::report::{format_latency, RunResult};
use bench::rtp::NgConfig;
use bench::rtp_shell::RtpConfig;
use bench::run::{
    dispatcher_list, edge_binary, edge_config, free_port, wait_for_options_200, ChildGuard,
};
use bench::uac::UacConfig;
use bench::uas::{UasConfig, UasStats};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", version, about = "Find the CPS limit of a SIP proxy")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Answer calls: 180 then 200 to INVITE, 200 to BYE and OPTIONS.
    Uas(UasArgs),
    /// Place calls at a fixed rate.
    Uac(UacArgs),
    /// Step the rate up until calls fail or get slow; prints `cps_limit=N`.
    Ramp(RampArgs),
    /// Start edge and two `bench uas` on loopback, ramp, print the limit.
    Run(RunArgs),
    /// RTP streams through a relay driven over the rtpengine ng protocol:
    /// loss, latency and the relay's CPU time per packet.
    Rtp(RtpArgs),
}

#[derive(Args, Clone)]
struct RtpArgs {
    /// The relay's ng control address (UDP).
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: SocketAddr,
    /// One-way RTP streams; a call is two (A to B and B to A).
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// Packets per second per stream.
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// Bytes per datagram, the 12-byte RTP header included.
    #[arg(long, default_value_t = 172)]
    size: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds sent before the measured window, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Milliseconds to wait for the window's last packets.
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// Address the endpoints' sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    local: IpAddr,
    /// The relay's process id: its CPU time (all threads) over the window
    /// gives `cpu_us_per_packet`.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Pin the generator to this core.
    #[arg(long)]
    core: Option<usize>,
    /// ng commands awaiting a reply at most.
    #[arg(long, default_value_t = 32)]
    ng_in_flight: usize,
    /// Seconds the call setup (and the teardown) may take.
    #[arg(long, default_value_t = 30.0)]
    setup_s: f64,
    /// Write the JSON result here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct UasArgs {
    /// Address to answer on.
    #[arg(long, default_value = "127.0.0.1:5080")]
    listen: SocketAddr,
    /// Threads (SO_REUSEPORT on the same address).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin threads from this core on (default: not pinned).
    #[arg(long)]
    first_core: Option<usize>,
    /// INVITE to 180, milliseconds.
    #[arg(long, default_value_t = 0)]
    ring_ms: u64,
    /// 180 to 200, milliseconds.
    #[arg(long, default_value_t = 0)]
    answer_ms: u64,
    /// Share of calls (0 to 1) answered with --fail-code.
    #[arg(long, default_value_t = 0.0)]
    fail_share: f64,
    /// The failure code.
    #[arg(long, default_value_t = 503)]
    fail_code: u16,
    /// Answer --fail-code to new INVITEs beyond this many in the last second.
    #[arg(long)]
    fail_above_cps: Option<u32>,
    /// Share of received datagrams dropped on purpose (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(Args, Clone)]
struct CallArgs {
    /// Time from the ACK to the BYE, milliseconds.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// UAC threads, each with its own sockets and ring.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin UAC threads from this core on (wrapping; `bench run` puts edge on 0).
    #[arg(long, default_value_t = 1)]
    first_core: usize,
    /// Source ports per thread.
    #[arg(long, default_value_t = 8)]
    sockets_per_thread: usize,
    /// Send every call from this one source port (one thread): a carrier trunk.
    #[arg(long)]
    single_port: Option<u16>,
    /// Local address to send from.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// Request-URI (default sip:bench@TARGET).
    #[arg(long)]
    ruri: Option<String>,
    /// Live calls per thread at most.
    #[arg(long, default_value_t = 200_000)]
    max_calls: usize,
    /// A call not answered this long after it was due counts as failed for
    /// the ramp, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    late_ms: u64,
    /// After the load, how long calls may take to end, seconds.
    #[arg(long, default_value_t = 35.0)]
    drain_s: f64,
    /// Write the JSON result here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG report here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct UacArgs {
    /// The proxy (or UAS) to call.
    #[arg(long)]
    target: SocketAddr,
    /// Calls per second.
    #[arg(long)]
    rate: f64,
    /// Calls in all.
    #[arg(long, required_unless_present = "duration")]
    calls: Option<u64>,
    /// Seconds of load.
    #[arg(long)]
    duration: Option<f64>,
    #[command(flatten)]
    call: CallArgs,
}

#[derive(Args, Clone)]
struct StepArgs {
    /// First offered rate, calls per second.
    #[arg(long, default_value_t = 500.0)]
    start: f64,
    /// Added at each step.
    #[arg(long, default_value_t = 500.0)]
    step: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 5.0)]
    step_s: f64,
    /// Highest rate offered.
    #[arg(long, default_value_t = 100_000.0)]
    max: f64,
    /// Failed share above which a step did not hold.
    #[arg(long, default_value_t = 0.001)]
    max_failed: f64,
    /// p99 setup latency above which a step did not hold, milliseconds.
    #[arg(long, default_value_t = 200.0)]
    max_p99_ms: f64,
}

#[derive(Args, Clone)]
struct RampArgs {
    /// The proxy (or UAS) to call.
    #[arg(long)]
    target: SocketAddr,
    #[command(flatten)]
    steps: StepArgs,
    #[command(flatten)]
    call: CallArgs,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// The edge binary (default: beside this one).
    #[arg(long)]
    edge: Option<PathBuf>,
    /// Ramp against this proxy instead of starting edge (it must route to
    /// the backends on --backend-ports).
    #[arg(long, requires = "backend_ports")]
    target: Option<SocketAddr>,
    /// Ports of the `bench uas` backends (default: two free ports).
    #[arg(long, value_delimiter = ',')]
    backend_ports: Vec<u16>,
    /// Cores for edge's shards.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    edge_cores: Vec<usize>,
    /// Threads of each backend.
    #[arg(long, default_value_t = 1)]
    uas_threads: usize,
    /// Pin the backends' threads from this core on (default: not pinned).
    #[arg(long)]
    uas_first_core: Option<usize>,
    /// Directory for logs, the JSON result and the SVG report.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    #[command(flatten)]
    steps: StepArgs,
    #[command(flatten)]
    call: CallArgs,
}

impl StepArgs {
    fn config(&self) -> RampConfig {
        RampConfig {
            start_cps: self.start,
            step_cps: self.step,
            step_duration: Duration::from_secs_f64(self.step_s.max(0.5)),
            max_cps: self.max,
            max_failed_ratio: self.max_failed,
            max_p99_setup: Duration::from_secs_f64(self.max_p99_ms.max(0.0) / 1000.0),
        }
    }
}

impl CallArgs {
    fn load(&self, target: SocketAddr) -> LoadConfig {
        let prefix = format!("{}.{}", std::process::id(), unix_ms());
        LoadConfig {
            uac: UacConfig {
                target,
                request_uri: self
                    .ruri
                    .clone()
                    .unwrap_or_else(|| format!("sip:bench@{target}")),
                hold: Duration::from_millis(self.hold_ms),
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                max_calls: self.max_calls,
                call_id_prefix: prefix,
                late_after: Duration::from_millis(self.late_ms),
            },
            threads: self.threads,
            first_core: self.first_core,
            sockets_per_thread: self.sockets_per_thread,
            local_ip: self.local_ip,
            single_port: self.single_port,
        }
    }

    fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain_s.max(0.0))
    }

    fn write(&self, result: &RunResult) -> Result<(), String> {
        if let Some(p) = &self.json {
            result.write_json(p)?;
        }
        if let Some(p) = &self.svg {
            result.write_svg(p)?;
        }
        Ok(())
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// SIGINT and SIGTERM set the returned flag.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    Ok(stop)
}

fn uas(args: &UasArgs) -> Result<(), String> {
    let config = UasConfig {
        ring_delay: Duration::from_millis(args.ring_ms),
        answer_delay: Duration::from_millis(args.answer_ms),
        fail_share: args.fail_share.clamp(0.0, 1.0),
        fail_code: args.fail_code,
        fail_above_cps: args.fail_above_cps,
        loss: args.loss.clamp(0.0, 1.0),
        seed: u64::try_from(unix_ms() & u128::from(u64::MAX)).unwrap_or(0),
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        max_calls: 500_000,
    };
    let stop = stop_flag()?;
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let (listen, threads, first_core) = (args.listen, args.threads, args.first_core);
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            bench::serve::serve(listen, threads, first_core, &config, &stop, &tx)
        })
    };
    let end = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut total = UasStats::default();
    let mut next_line = Instant::now() + Duration::from_secs(1);
    eprintln!("bench uas: answering on {listen}");
    while !server.is_finished() {
        if end.is_some_and(|e| Instant::now() >= e) {
            stop.store(true, Ordering::Relaxed);
        }
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(100)) {
            total.add(&s);
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            eprintln!("{}", uas_line(&total));
        }
    }
    while let Ok(s) = rx.try_recv() {
        total.add(&s);
    }
    let result = server.join().map_err(|_| "the UAS panicked".to_string())?;
    println!("{}", uas_line(&total));
    result.map_err(|e| format!("bench uas on {listen}: {e}"))
}

fn uas_line(s: &UasStats) -> String {
    format!(
        "invites={} answered={} rejected={} acks={} byes={} options={} retransmissions={} dropped={} unexpected={}",
        s.invites, s.answered, s.rejected, s.acks, s.byes, s.options, s.retransmissions, s.dropped, s.unexpected
    )
}

fn load_and_drive(
    call: &CallArgs,
    target: SocketAddr,
    plan: &Plan,
    label: &str,
) -> Result<RunResult, String> {
    let stop = stop_flag()?;
    let load = Load::start(&call.load(target))
        .map_err(|e| format!("cannot start the UAC threads: {e}"))?;
    drive(load, plan, label, &stop, call.drain())
}

fn print_summary(result: &RunResult) {
    let t = &result.totals;
    println!(
        "started={} answered={} completed={} failed={} (timeout {} code {} bye {}) refused={} late={} retransmissions={} unexpected={}",
        t.started, t.answered, t.completed, t.failed, t.failed_timeout, t.failed_code, t.failed_bye, t.refused, t.late,
        t.retransmissions, t.unexpected
    );
    print!("{}", format_latency(&result.latency));
}

fn print_limit(result: &RunResult) {
    for s in &result.steps {
        let verdict = s.reason.as_deref().unwrap_or("held");
        println!(
            "step {:>8.0} cps: achieved {:>8.0} cps, p50 {:>7.2} ms, p99 {:>7.2} ms: {verdict}",
            s.offered_cps,
            s.answered_cps,
            s.p50_setup_us as f64 / 1000.0,
            s.p99_setup_us as f64 / 1000.0
        );
    }
    print_summary(result);
    println!("cps_limit={}", result.cps_limit.unwrap_or(0.0).round());
}

fn uac(args: &UacArgs) -> Result<(), String> {
    let plan = Plan::Fixed {
        cps: args.rate,
        calls: args.calls,
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let result = load_and_drive(&args.call, args.target, &plan, &args.target.to_string())?;
    print_summary(&result);
    args.call.write(&result)
}

fn ramp(args: &RampArgs) -> Result<(), String> {
    let plan = Plan::Ramp(args.steps.config());
    let result = load_and_drive(&args.call, args.target, &plan, &args.target.to_string())?;
    print_limit(&result);
    args.call.write(&result)
}

/// `bench run`: backends, edge (unless --target), the ramp, the report.
fn run(args: &RunArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let out = args.out.canonicalize().map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let ports = match args.backend_ports.as_slice() {
        [] => vec![free_port()?, free_port()?],
        p => p.to_vec(),
    };
    let backends: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let mut children = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let mut cmd = Command::new(&me);
        cmd.args([
            "uas",
            "--listen",
            &b.to_string(),
            "--threads",
            &args.uas_threads.to_string(),
        ]);
        children.push(ChildGuard::spawn(
            &format!("uas-{i}"),
            cmd,
            &out.join(format!("uas-{i}.log")),
        )?);
    }
    for b in &backends {
        wait_for_options_200(*b, Duration::from_secs(10))?;
    }
    let (target, label) = match args.target {
        Some(t) => {
            wait_for_options_200(t, Duration::from_secs(10))?;
            (t, format!("proxy at {t}"))
        }
        None => {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            children.push(start_edge(args, &out, listen, &backends)?);
            wait_for_options_200(listen, Duration::from_secs(10))?;
            (listen, format!("edge at {listen}"))
        }
    };
    eprintln!(
        "bench run: ramping {label} with {} backends; logs in {}",
        backends.len(),
        out.display()
    );
    let plan = Plan::Ramp(args.steps.config());
    let result = load_and_drive(&args.call, target, &plan, &label)?;
    for child in children {
        child.stop(Duration::from_secs(5));
    }
    result.write_json(&out.join("result.json"))?;
    result.write_svg(&out.join("report.svg"))?;
    println!(
        "report: {} and {}",
        out.join("result.json").display(),
        out.join("report.svg").display()
    );
    print_limit(&result);
    args.call.write(&result)
}

/// `bench rtp`: the streams, then the summary line (and the JSON).
fn rtp(args: &RtpArgs) -> Result<(), String> {
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let config = RtpConfig {
        ng: args.ng,
        streams: args.streams,
        pps: args.pps.max(1),
        size: args.size,
        warmup: secs(args.warmup),
        duration: secs(args.duration),
        drain: Duration::from_millis(args.drain_ms),
        local_ip: args.local,
        relay_pid: args.relay_pid,
        core: args.core,
        ng_client: NgConfig {
            max_in_flight: args.ng_in_flight.max(1),
            ..NgConfig::default()
        },
        setup_limit: secs(args.setup_s),
    };
    let stop = stop_flag()?;
    let result = bench::rtp_shell::run(&config, &stop)?;
    if stop.load(Ordering::Relaxed) {
        // Part of a window is no result: say so with a failure.
        eprintln!("{}", result.line());
        return Err("interrupted: the figures above cover part of the window".into());
    }
    println!("{}", result.line());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn start_edge(
    args: &RunArgs,
    out: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<ChildGuard, String> {
    let edge = edge_binary(args.edge.as_deref())?;
    let list = out.join("dispatcher.list");
    std::fs::write(&list, dispatcher_list(backends)).map_err(|e| e.to_string())?;
    let config = out.join("edge.toml");
    std::fs::write(&config, edge_config(listen, &list, &args.edge_cores))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(edge);
    cmd.arg("--config").arg(&config);
    ChildGuard::spawn("edge", cmd, &out.join("edge.log"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Uas(a) => uas(a),
        Cmd::Uac(a) => uac(a),
        Cmd::Ramp(a) => ramp(a),
        Cmd::Run(a) => run(a),
        Cmd::Rtp(a) => rtp(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
