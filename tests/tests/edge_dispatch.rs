//! The dispatcher end to end: a real `edge` with a Kamailio `dispatcher.list`
//! in front of several real SIPp UAS backends, on loopback.
//!
//! The backends run `uas_basic_rr` with `-aa` (SIPp answers the edge's
//! OPTIONS probes with 200 by itself). One test at a time (a lock); every
//! peer stops by itself (SIPp -timeout, edge's lifetime bound) and is killed
//! on drop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edge_e2e::edge::{write_dispatcher_list, Edge, EdgeProcess};
use edge_e2e::ports::free_udp_port;
use edge_e2e::process::TempDir;
use edge_e2e::sipp::{require_sipp, Scenario, Sipp, SippProcess, SippRun};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend(port: u16, timeout: Duration) -> SippProcess {
    Sipp::backend(port).timeout(timeout).spawn().unwrap()
}

fn uac(edge: &EdgeProcess, calls: u64, rate: f64, timeout: Duration) -> Sipp {
    Sipp::uac(Scenario::named("uac_basic_rr"), edge.addr())
        .calls(calls)
        .rate(rate)
        .timeout(timeout)
}

/// `[dispatcher]` settings; the list comes with `--dispatcher-list`.
fn dispatcher_toml(algorithm: u32, extra: &str) -> String {
    format!("[runtime]\nshutdown_grace_ms = 2000\n\n[dispatcher]\nalgorithm = {algorithm}\n{extra}")
}

fn write_list(dir: &TempDir, text: &str) -> std::path::PathBuf {
    write_dispatcher_list(dir.path(), text)
}

fn stop_edge(edge: EdgeProcess) -> String {
    edge.stop_cleanly(Duration::from_secs(8))
}

/// INVITEs each backend saw; the backend is stopped.
fn invites(run: &SippRun) -> u64 {
    run.received("INVITE")
}

/// The largest distance, over the first `picks` picks of smooth weighted
/// round-robin (nginx's, as edge's algorithm 9 runs it) from zero, between a
/// destination's count and its exact share `picks * w / W`. The algorithm is
/// deterministic, so this is a bound, not a statistic (0.6 for 40/30/20/10).
fn swrr_max_deviation(weights: &[u64], picks: u64) -> f64 {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut count = vec![0u64; weights.len()];
    let mut worst = 0f64;
    for n in 1..=picks {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        count[best] += 1;
        for (c, &w) in count.iter().zip(weights) {
            let exact = n as f64 * w as f64 / total as f64;
            worst = worst.max((*c as f64 - exact).abs());
        }
    }
    worst
}

#[test]
fn weights_of_a_dispatcher_list_are_honoured() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    let timeout = Duration::from_secs(40);
    let weights = [40u64, 30, 20, 10];
    let cores = 2u32;
    let backends: Vec<SippProcess> = weights
        .iter()
        .map(|_| backend(free_udp_port(), timeout))
        .collect();
    let dir = TempDir::new("dispatch").unwrap();
    let mut list = String::from("# setid destination flags priority attrs\n");
    for (i, (b, w)) in backends.iter().zip(weights).enumerate() {
        list += &format!("1 sip:{} 0 0 duid=b{i};weight={w}\n", b.local_addr());
    }
    let path = write_list(&dir, &list);
    // weights only: no probes (probe_all = false and no probing flag)
    let toml = dispatcher_toml(9, "\n[dispatcher.health]\nprobe_all = false\n");
    let edge = Edge::new()
        .cores(cores)
        .config_toml(&toml)
        .dispatcher_list(&path)
        .spawn()
        .unwrap();
    let calls = 400;
    let run = uac(&edge, calls, 200.0, timeout).run().unwrap();
    run.assert_calls_succeeded(calls);
    let seen: Vec<u64> = backends
        .into_iter()
        .map(|b| invites(&b.stop().unwrap()))
        .collect();
    eprintln!("weights {weights:?}: calls per backend {seen:?}");
    assert_eq!(seen.iter().sum::<u64>(), calls, "{seen:?}");
    // Each shard runs its own smooth weighted round-robin from zero over the
    // calls it owns (any split of the 400): each shard's counts are within
    // the algorithm's deviation of their exact shares, so the totals are
    // within `cores` times it (1.2 calls, 0.3 points, for these weights).
    let bound = f64::from(cores) * swrr_max_deviation(&weights, calls);
    let total: u64 = weights.iter().sum();
    for (got, w) in seen.iter().zip(weights) {
        let exact = calls as f64 * w as f64 / total as f64;
        assert!(
            (*got as f64 - exact).abs() <= bound + 1e-9,
            "weights {weights:?}, calls per backend {seen:?}: {got} is more than \
             {bound:.2} calls from {exact}"
        );
    }
    stop_edge(edge);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_dead_backend_is_failed_over_taken_out_and_brought_back() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    let timeout = Duration::from_secs(60);
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let a = backend(pa, timeout);
    let b = backend(pb, timeout);
    let addr_b: SocketAddr = b.local_addr();
    let dir = TempDir::new("dispatch").unwrap();
    let list = format!(
        "1 sip:{} 0 0 duid=a\n1 sip:{addr_b} 0 0 duid=b\n",
        a.local_addr()
    );
    let path = write_list(&dir, &list);
    // short failover and probe timers, so the test runs in seconds
    let toml = dispatcher_toml(
        4,
        "\n[dispatcher.failover]\nattempts = 2\ntimeout_ms = 300\n\n\
         [dispatcher.health]\ninterval_ms = 500\ntimeout_ms = 400\n\
         probing_threshold = 2\ninactive_threshold = 1\n",
    );
    let edge = Edge::new()
        .cores(2)
        .config_toml(&toml)
        .dispatcher_list(&path)
        .spawn()
        .unwrap();
    let uri_b = format!("uri=sip:{addr_b}");

    // Both up: calls go to both.
    let run = uac(&edge, 40, 100.0, timeout).run().unwrap();
    run.assert_calls_succeeded(40);

    // B dies (SIGKILL: no answer, no ICMP-visible close); calls go on at
    // once: the ones sent to B fail over on the 300 ms timeout, then the
    // probes take B out.
    drop(b);
    let run = uac(&edge, 200, 50.0, timeout).run().unwrap();
    run.assert_calls_succeeded(200);
    let down = edge.wait_for_log(
        &["destination state changed", &uri_b, "state=I"],
        Duration::from_secs(5),
    );
    assert!(
        down.is_some(),
        "B not marked inactive\n{}",
        edge.diagnostics()
    );

    // B is back on its port: the next probe brings it back into service.
    // (The probes' OPTIONS stay open "calls" in SIPp, so this B cannot be
    // stopped early: it runs for a fixed 10 s and is waited for.)
    let b = backend(pb, Duration::from_secs(10));
    let up = edge.wait_for_log(
        &["destination state changed", &uri_b, "state=A"],
        Duration::from_secs(5),
    );
    assert!(up.is_some(), "B not active again\n{}", edge.diagnostics());
    // every shard has the change once the probing shard logged it (the
    // broadcast is the next loop round); give it a moment
    std::thread::sleep(Duration::from_millis(100));
    let run = uac(&edge, 40, 100.0, timeout).run().unwrap();
    run.assert_calls_succeeded(40);
    let b = b.wait().unwrap();
    assert!(b.stats.successful_calls >= 10, "B takes calls again: {b}");
    let log = stop_edge(edge);
    assert!(log.contains("failovers") || log.contains("destination at exit"));
    drop(a);
    assert!(started.elapsed() < Duration::from_secs(90));
}

#[test]
fn sighup_reloads_the_list_and_a_bad_file_keeps_the_running_sets() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    let timeout = Duration::from_secs(30);
    let a = backend(free_udp_port(), timeout);
    let b = backend(free_udp_port(), timeout);
    let dir = TempDir::new("dispatch").unwrap();
    let path = write_list(&dir, &format!("1 sip:{} 0 0 duid=a\n", a.local_addr()));
    let toml = dispatcher_toml(4, "\n[dispatcher.health]\nprobe_all = false\n");
    let edge = Edge::new()
        .cores(2)
        .config_toml(&toml)
        .dispatcher_list(&path)
        .spawn()
        .unwrap();
    uac(&edge, 20, 100.0, timeout)
        .run()
        .unwrap()
        .assert_calls_succeeded(20);
    // the set now holds B only
    fs::write(&path, format!("1 sip:{} 0 0 duid=b\n", b.local_addr())).unwrap();
    edge.reload().unwrap();
    let reloaded = edge.wait_for_log(&["dispatcher sets reloaded"], Duration::from_secs(5));
    assert!(reloaded.is_some(), "{}", edge.diagnostics());
    std::thread::sleep(Duration::from_millis(200)); // every shard swapped
    uac(&edge, 20, 100.0, timeout)
        .run()
        .unwrap()
        .assert_calls_succeeded(20);
    // a bad file: the error names file and line, B stays
    fs::write(&path, "1 sip:127.0.0.1:1\nnot-a-set sip:127.0.0.1:2\n").unwrap();
    edge.reload().unwrap();
    let failed = edge.wait_for_log(
        &["reload failed", "dispatcher.list:2"],
        Duration::from_secs(5),
    );
    assert!(failed.is_some(), "{}", edge.diagnostics());
    uac(&edge, 20, 100.0, timeout)
        .run()
        .unwrap()
        .assert_calls_succeeded(20);
    let a = a.stop().unwrap();
    let b = b.stop().unwrap();
    assert_eq!(invites(&a), 20, "{a}");
    assert_eq!(invites(&b), 40, "{b}");
    let exit = edge.stop(Duration::from_secs(8));
    assert!(exit.success(), "{exit}");
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[test]
fn a_reload_under_load_loses_no_call() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    let timeout = Duration::from_secs(40);
    let names = ["a", "b", "c", "d"];
    let backends: Vec<SippProcess> = names
        .iter()
        .map(|_| backend(free_udp_port(), timeout))
        .collect();
    // The list file's set 1, one version a second: every reload adds or
    // removes backends (never none). A is only in the first (old) set, D
    // only in the later (new) ones.
    let versions: [&[usize]; 6] = [&[0, 1], &[1, 2], &[2], &[2, 3], &[3], &[1, 3]];
    let list = |members: &[usize]| -> String {
        members
            .iter()
            .map(|&i| format!("1 sip:{} 0 0 duid={}\n", backends[i].local_addr(), names[i]))
            .collect()
    };
    let dir = TempDir::new("dispatch").unwrap();
    let path = write_list(&dir, &list(versions[0]));
    let toml = dispatcher_toml(4, "\n[dispatcher.health]\nprobe_all = false\n");
    let cores = 2usize;
    let edge = Edge::new()
        .cores(cores as u32)
        .config_toml(&toml)
        .dispatcher_list(&path)
        .spawn()
        .unwrap();
    // 100 cps for 6 s, each call held 1.5 s: ~150 dialogs up at any time,
    // so every reload has calls set up before it whose ACK and BYE come after.
    let calls = 600;
    let mut load = uac(&edge, calls, 100.0, timeout)
        .hold(Duration::from_millis(1500))
        .spawn()
        .unwrap();
    for (n, members) in versions.iter().enumerate().skip(1) {
        // the pace of the reloads (one a second), not a synchronisation
        std::thread::sleep(Duration::from_secs(1));
        assert!(load.is_running(), "the UAC ended before reload {n}");
        fs::write(&path, list(members)).unwrap();
        edge.reload().unwrap();
        // every shard has swapped to this version
        let swapped = edge.wait_for_log_count(
            &["dispatcher sets reloaded"],
            cores * n,
            Duration::from_secs(5),
        );
        assert_eq!(swapped, cores * n, "reload {n}\n{}", edge.diagnostics());
    }
    let run = load.wait().unwrap();
    run.assert_calls_succeeded(calls);
    assert_eq!(
        edge.count_log_lines(&["dispatcher list reloaded"]),
        versions.len() - 1,
        "{}",
        edge.diagnostics()
    );
    // Every call a backend got was completed there (ACK and BYE came through
    // edge after any number of reloads): no failed or unexpected call, as
    // many successful calls as INVITEs; together they got every call.
    let mut seen = Vec::new();
    for (b, name) in backends.into_iter().zip(names) {
        let b = b.stop().unwrap();
        let got = invites(&b);
        assert!(
            got > 0
                && b.stats.failed_calls == 0
                && b.unexpected() == 0
                && b.stats.successful_calls == got,
            "backend {name}: {got} INVITEs\n{b}"
        );
        seen.push(got);
    }
    eprintln!("reloads under load: calls per backend (a, b, c, d) {seen:?}");
    assert_eq!(
        seen.iter().sum::<u64>(),
        calls,
        "calls per backend {seen:?}"
    );
    stop_edge(edge);
    assert!(started.elapsed() < Duration::from_secs(40));
}
