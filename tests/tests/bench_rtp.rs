//! `bench rtp` end to end against the `media` relay: calls set up over ng,
//! RTP both ways through the relay, every counted packet back, and the
//! relay's CPU time read over the window. Bounded in time; the relay is
//! stopped when the test ends.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_e2e::bench_binary;
use edge_e2e::ports::{free_udp_port, loopback, udp_port_bound};
use edge_e2e::process::{poll_until, read_tail, OwnedProcess, TempDir};
use serde_json::Value;

/// Relay ports: 2 per side per call, 4 per call, with room to spare.
const RANGE: u16 = 64;

/// The `media` binary beside `bench`, built in the same profile.
fn media_binary() -> PathBuf {
    let bench = bench_binary();
    let release = bench
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "media", "--bin", "media"]);
    if release {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building media failed");
    bench.with_file_name("media")
}

/// A range of `RANGE` UDP ports free now on 127.0.0.1, below the kernel's
/// ephemeral ports (32768 on) and above the benchmark script's.
fn free_range() -> u16 {
    let first = (std::process::id() % 100) as u16;
    for attempt in 0..100u16 {
        let base = 25_000 + (first + attempt) % 100 * RANGE;
        let held: Result<Vec<UdpSocket>, _> = (base..base + RANGE)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if held.is_ok() {
            return base;
        }
    }
    panic!("no free port range");
}

#[test]
fn bench_rtp_through_media_loses_nothing() {
    let dir = TempDir::new("bench-rtp").unwrap();
    let ng = loopback(free_udp_port());
    let base = free_range();
    let log = std::fs::File::create(dir.join("media.log")).unwrap();
    let mut cmd = Command::new(media_binary());
    cmd.args(["--interface", "127.0.0.1", "--listen-ng", &ng.to_string()])
        .args(["--port-min", &base.to_string()])
        .args(["--port-max", &(base + RANGE - 1).to_string()])
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut relay = OwnedProcess::spawn("media", &mut cmd).unwrap();
    let up = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(20),
        || udp_port_bound(ng.port()),
    );
    assert!(up, "media did not bind {ng}");

    let json = dir.join("rtp.json");
    let out = Command::new(bench_binary())
        .args(["rtp", "--ng", &ng.to_string(), "--streams", "10"])
        .args(["--duration", "2", "--warmup", "0.5", "--drain-ms", "500"])
        .args(["--relay-pid", &relay.pid().to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench rtp failed: {stdout}\n{}\nmedia: {}",
        String::from_utf8_lossy(&out.stderr),
        read_tail(&dir.join("media.log"), 2000)
    );
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 10 streams of 50 packets/s, due in the 2 s window: 1,000 exactly.
    assert_eq!(result["sent"], 1000, "{result}");
    assert_eq!(result["received"], 1000, "{result}");
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["unexpected"], 0, "{result}");
    assert_eq!(result["delete_failures"], 0, "{result}");
    assert!(result["relay_cpu_s"].is_number(), "{result}");
    assert!(stdout.contains("cpu_us_per_packet="), "{stdout}");
    assert!(relay.try_status().is_none(), "media exited during the run");
}
