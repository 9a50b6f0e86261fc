//! `bench` end to end: its UAS and UAC against real SIPp both ways, against
//! each other with loss on the UAS side, and `bench ramp` against a UAS that
//! fails above a known rate. Every process is bounded in time and stopped.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edge_e2e::bench_binary;
use edge_e2e::ports::{free_udp_port, loopback};
use edge_e2e::process::{OwnedProcess, TempDir};
use edge_e2e::sipp::{require_sipp, Scenario, Sipp};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `bench uas` on a free port, stopping by itself after `seconds`.
fn bench_uas(dir: &TempDir, seconds: u32, extra: &[&str]) -> (SocketAddr, OwnedProcess) {
    let addr = loopback(free_udp_port());
    let log = std::fs::File::create(dir.join("uas.log")).unwrap();
    let mut cmd = Command::new(bench_binary());
    cmd.args([
        "uas",
        "--listen",
        &addr.to_string(),
        "--duration",
        &seconds.to_string(),
    ])
    .args(extra)
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    let process = OwnedProcess::spawn("bench uas", &mut cmd).unwrap();
    wait_ready(addr);
    (addr, process)
}

/// Waits until `addr` answers OPTIONS with 200 (the UAS is up).
fn wait_ready(addr: SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let options = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-t{n}\r\n\
             From: <sip:t@{local}>;tag=t\r\nTo: <sip:{addr}>\r\nCall-ID: t{n}@{local}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(options.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr} never answered OPTIONS");
    }
}

/// Runs `bench` with `args` (bounded by the run's own limits) and returns
/// its output and the JSON result it wrote.
fn bench(dir: &TempDir, args: &[&str]) -> (Output, Value) {
    let json = dir.join("result.json");
    let out = Command::new(bench_binary())
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    (out, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The UAS's final counters line (`invites=... answered=...`) as pairs.
fn uas_totals(
    process: &mut OwnedProcess,
    dir: &TempDir,
) -> std::collections::BTreeMap<String, u64> {
    process
        .wait_until(Instant::now() + Duration::from_secs(30))
        .unwrap();
    let log = std::fs::read_to_string(dir.join("uas.log")).unwrap();
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("invites="))
        .unwrap()
        .to_owned();
    last.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

#[test]
fn sipp_uac_calls_bench_uas() {
    require_sipp();
    let _serial = serial();
    let dir = TempDir::new("bench-uas").unwrap();
    let (addr, mut uas) = bench_uas(&dir, 20, &[]);
    let run = Sipp::uac(Scenario::named("uac_basic_rr"), addr)
        .calls(500)
        .rate(200.0)
        .timeout(Duration::from_secs(15))
        .run()
        .unwrap();
    run.assert_calls_succeeded(500);
    uas.signal("TERM").unwrap();
    let totals = uas_totals(&mut uas, &dir);
    assert_eq!(totals["invites"], 500, "{totals:?}");
    assert_eq!(totals["answered"], 500, "{totals:?}");
    assert_eq!(totals["byes"], 500, "{totals:?}");
    assert_eq!(totals["unexpected"], 0, "{totals:?}");
}

#[test]
fn bench_uac_calls_sipp_uas() {
    require_sipp();
    let _serial = serial();
    let dir = TempDir::new("bench-uac").unwrap();
    let port = free_udp_port();
    let uas = Sipp::uas(Scenario::named("uas_basic_rr"))
        .local_port(port)
        .timeout(Duration::from_secs(20))
        .spawn()
        .unwrap();
    let target = loopback(port).to_string();
    let (out, result) = bench(
        &dir,
        &[
            "uac",
            "--target",
            &target,
            "--rate",
            "200",
            "--calls",
            "500",
            "--drain-s",
            "10",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let totals = &result["totals"];
    assert_eq!(totals["started"], 500, "{}", show(&out));
    assert_eq!(totals["completed"], 500, "{}", show(&out));
    assert_eq!(totals["failed"], 0, "{}", show(&out));
    assert_eq!(totals["unexpected"], 0, "{}", show(&out));
    let latency = result["latency"].as_array().unwrap();
    assert!(latency.iter().all(|l| l["count"] == 500), "{latency:?}");
    let run = uas.stop().unwrap();
    assert_eq!(run.received("INVITE"), 500, "{run}");
    assert_eq!(run.received("BYE"), 500, "{run}");
}

#[test]
fn every_call_completes_through_loss_on_the_uas_side() {
    let _serial = serial();
    let dir = TempDir::new("bench-loss").unwrap();
    let (addr, mut uas) = bench_uas(&dir, 60, &["--loss", "0.05"]);
    let target = addr.to_string();
    let (out, result) = bench(
        &dir,
        &[
            "uac",
            "--target",
            &target,
            "--rate",
            "100",
            "--calls",
            "300",
            "--drain-s",
            "40",
            // Retransmissions after a loss take seconds: no call counts as late.
            "--late-ms",
            "60000",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let totals = &result["totals"];
    assert_eq!(totals["completed"], 300, "{}", show(&out));
    assert_eq!(totals["failed"], 0, "{}", show(&out));
    assert!(
        totals["retransmissions"].as_u64().unwrap() > 0,
        "{}",
        show(&out)
    );
    uas.signal("TERM").unwrap();
    let uas_totals = uas_totals(&mut uas, &dir);
    assert!(uas_totals["dropped"] > 0, "{uas_totals:?}");
}

#[test]
fn ramp_finds_the_rate_a_uas_fails_above() {
    let _serial = serial();
    let dir = TempDir::new("bench-ramp").unwrap();
    let (addr, _uas) = bench_uas(&dir, 60, &["--fail-above-cps", "500"]);
    let target = addr.to_string();
    let (out, result) = bench(
        &dir,
        &[
            "ramp",
            "--target",
            &target,
            "--start",
            "200",
            "--step",
            "100",
            "--step-s",
            "2",
            "--max",
            "1000",
            "--drain-s",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let limit: f64 = last.strip_prefix("cps_limit=").unwrap().parse().unwrap();
    // Within one step of the rate the UAS starts failing above.
    assert!((400.0..=500.0).contains(&limit), "{}", show(&out));
    assert_eq!(result["cps_limit"].as_f64(), Some(limit));
    let steps = result["steps"].as_array().unwrap();
    assert!(steps.last().unwrap()["held"] == false, "{steps:?}");
}

/// The pids `bench run` reported starting (`started NAME (pid N)` lines).
fn started_pids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("(pid ")?.1.split_once(')')?.0.parse().ok())
        .collect()
}

/// Those of `pids` still running.
fn alive(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

#[test]
fn run_starts_edge_and_backends_ramps_and_stops_them() {
    let _serial = serial();
    edge_e2e::edge_binary(); // bench run finds edge beside itself
    let dir = TempDir::new("bench-run").unwrap();
    let out_dir = dir.join("out");
    let out_text = out_dir.to_string_lossy().into_owned();
    let (out, result) = bench(
        &dir,
        &[
            "run",
            "--out",
            &out_text,
            "--start",
            "100",
            "--step",
            "100",
            "--max",
            "300",
            "--step-s",
            "1",
            "--drain-s",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some("cps_limit=300"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("INVITE->200"),
        "the latency table: {}",
        show(&out)
    );
    assert_eq!(result["steps"].as_array().unwrap().len(), 3, "{result}");
    assert_eq!(result["totals"]["failed"], 0, "{result}");
    assert!(out_dir.join("report.svg").exists() && out_dir.join("result.json").exists());
    let svg = std::fs::read_to_string(out_dir.join("report.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("achieved"),
        "an SVG with the plots"
    );
    let pids = started_pids(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(pids.len(), 3, "edge and two backends: {}", show(&out));
    assert!(alive(&pids).is_empty(), "left running: {:?}", alive(&pids));
}

#[test]
fn an_interrupted_run_stops_everything_it_started() {
    let _serial = serial();
    edge_e2e::edge_binary();
    let dir = TempDir::new("bench-run-int").unwrap();
    let out_dir = dir.join("out");
    let out_text = out_dir.to_string_lossy().into_owned();
    let stderr_path = dir.join("stderr.log");
    let mut cmd = Command::new(bench_binary());
    cmd.args([
        "run",
        "--out",
        &out_text,
        "--start",
        "100",
        "--step",
        "100",
        "--step-s",
        "30",
        "--drain-s",
        "5",
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut run = OwnedProcess::spawn("bench run", &mut cmd).unwrap();
    // The ramp has begun once its first progress line is written.
    let mut pids = Vec::new();
    let ramping = edge_e2e::process::poll_until(
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            pids = started_pids(&text);
            text.contains("offered")
        },
    );
    assert!(
        ramping,
        "{}",
        std::fs::read_to_string(&stderr_path).unwrap()
    );
    assert_eq!(
        pids.len(),
        3,
        "{}",
        std::fs::read_to_string(&stderr_path).unwrap()
    );
    assert_eq!(alive(&pids).len(), 3);
    run.signal("INT").unwrap();
    let status = run.wait_until(Instant::now() + Duration::from_secs(20));
    assert!(status.is_some(), "bench run did not stop on SIGINT");
    assert!(alive(&pids).is_empty(), "left running: {:?}", alive(&pids));
}
