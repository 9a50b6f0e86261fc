//! The control plane under load, end to end: a real `edge` (two shards,
//! `--rpc`) with a Kamailio `dispatcher.list` of three real SIPp UAS
//! backends, a SIPp UAC placing 200 calls a second through it (each held
//! 2.5 s), and an operator acting on the running edge:
//!
//! - `edgectl dispatcher drain 1 <B> --wait` while B holds hundreds of
//!   dialogs: B gets no new call from the moment the drain is sent (checked
//!   on B's own `-trace_msg` log, timestamped), its dialogs still end there
//!   (their BYEs reach it), the others take the new calls, edgectl waits for
//!   B's count to reach 0, and not a call fails;
//! - `dispatcher.reload` over JSON-RPC once a second, alternating between two
//!   files (weights and attrs changed, a backend removed and put back): every
//!   reload answers Ok, every shard swaps, not a call fails, and the running
//!   sets are the last file written.
//!
//! The backends run `uas_basic_rr` with `-aa`; nothing probes them
//! (`probe_all = false`), so they can be stopped as soon as the calls are
//! done. One test at a time (a lock); every peer stops by itself (SIPp
//! -timeout, edge's lifetime bound) and is killed on drop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{Local, NaiveDateTime, TimeZone};
use edge_e2e::edge::{edgectl_binary, write_dispatcher_list, Edge, EdgeProcess};
use edge_e2e::ports::free_udp_port;
use edge_e2e::process::{poll_until, TempDir};
use edge_e2e::rpc::RpcClient;
use edge_e2e::sipp::{require_sipp, Scenario, Sipp, SippProcess, SippRun};
use serde_json::{json, Value};

/// Calls the UAC places, at [`RATE`] a second: 12 s of load.
const CALLS: u64 = 2400;
/// Calls a second.
const RATE: f64 = 200.0;
/// How long each call is held (`-d`): about 500 dialogs up at any time.
const HOLD: Duration = Duration::from_millis(2500);
/// Edge's shards.
const CORES: u32 = 2;
/// SIPp's own bound on every peer (they are stopped long before).
const SIPP_TIMEOUT: Duration = Duration::from_secs(45);
/// How late after the drain was sent B may still see a new call: the state
/// reaches the shards within milliseconds, this is for INVITEs already on
/// their way and SIPp's own processing lag on a loaded host.
const DRAIN_MARGIN: Duration = Duration::from_millis(200);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend(port: u16, trace_msg: bool) -> SippProcess {
    Sipp::backend(port)
        .timeout(SIPP_TIMEOUT)
        .trace_msg(trace_msg)
        .spawn()
        .unwrap()
}

fn uac(edge: &EdgeProcess) -> Sipp {
    Sipp::uac(Scenario::named("uac_basic_rr"), edge.addr())
        .calls(CALLS)
        .rate(RATE)
        .hold(HOLD)
        .timeout(SIPP_TIMEOUT)
}

/// `[dispatcher]` settings; the list comes with `--dispatcher-list`. Nothing
/// probes the backends.
fn dispatcher_toml(algorithm: u32) -> String {
    format!(
        "[runtime]\nshutdown_grace_ms = 2000\n\n[dispatcher]\nalgorithm = {algorithm}\n\n\
         [dispatcher.health]\nprobe_all = false\n"
    )
}

fn write_list(dir: &TempDir, text: &str) -> PathBuf {
    write_dispatcher_list(dir.path(), text)
}

fn start_edge(algorithm: u32, list: &Path) -> EdgeProcess {
    Edge::new()
        .cores(CORES)
        .config_toml(&dispatcher_toml(algorithm))
        .dispatcher_list(list)
        .rpc()
        .spawn()
        .unwrap()
}

fn stop_edge(edge: EdgeProcess) -> String {
    edge.stop_cleanly(Duration::from_secs(8))
}

fn edgectl(edge: &EdgeProcess, args: &[&str]) -> Output {
    edge.edgectl().args(args).output().unwrap()
}

/// `dispatcher.active_calls` of one destination.
fn active_calls(rpc: &RpcClient, uri: &str) -> Value {
    rpc.result("dispatcher.active_calls", json!([1, uri]))
        .unwrap()
}

/// One message of a SIPp `-trace_msg` log.
#[derive(Debug)]
struct Traced {
    /// When SIPp logged it, microseconds on SIPp's (local time) clock; see
    /// [`sipp_clock`].
    at: i64,
    /// Received (else sent).
    received: bool,
    /// The method of a request, the status code of a response.
    label: String,
    call_id: String,
}

/// Parses a SIPp 3.6 `-trace_msg` log: every message is
///
/// ```text
/// ----------------------------------------------- 2026-11-30 12:04:34.335815
/// UDP message received [510] bytes :
///
/// INVITE sip:service@127.0.0.1:25070 SIP/2.0
/// ...
/// ```
///
/// (`UDP message sent (317 bytes):` for the other way). Anything else
/// between the separators is skipped.
fn parse_trace(log: &str) -> Vec<Traced> {
    let mut out = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(at) = separator_time(line) else {
            continue;
        };
        let mut body = Vec::new();
        while let Some(next) = lines.peek() {
            if separator_time(next).is_some() {
                break;
            }
            body.push(lines.next().unwrap_or_default());
        }
        let mut text = body.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
        let received = match text.next() {
            Some(l) if l.contains("message received") => true,
            Some(l) if l.contains("message sent") => false,
            _ => continue,
        };
        let Some(start) = text.next() else { continue };
        let label = match start.split_whitespace().collect::<Vec<_>>()[..] {
            ["SIP/2.0", code, ..] => code.to_owned(),
            [method, ..] => method.to_owned(),
            [] => continue,
        };
        let call_id = text
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                let name = name.trim();
                (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        out.push(Traced {
            at,
            received,
            label,
            call_id,
        });
    }
    out
}

/// The time of a separator line (`-----... 2026-11-30 12:04:34.335815`).
fn separator_time(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("-----")?.trim_start_matches('-').trim();
    parse_local_time(rest)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in the local time zone (SIPp prints
/// `localtime`) as microseconds since the Unix epoch.
fn parse_local_time(text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let local = Local.from_local_datetime(&naive).earliest()?;
    Some(local.timestamp_micros())
}

/// `t` as microseconds since the Unix epoch, SIPp's trace clock read back.
fn sipp_clock(t: SystemTime) -> i64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_micros()).unwrap()
}

/// The calls (Call-IDs) a backend received an INVITE for, each with the time
/// of its first INVITE (a retransmission is not a new call).
fn new_calls(trace: &[Traced]) -> Vec<(i64, &str)> {
    let mut seen = HashSet::new();
    trace
        .iter()
        .filter(|m| m.received && m.label == "INVITE" && seen.insert(m.call_id.as_str()))
        .map(|m| (m.at, m.call_id.as_str()))
        .collect()
}

/// Every call a backend got was completed there: no failed or unexpected
/// call, as many successful calls as INVITEs, and some calls at all.
fn assert_backend_clean(name: &str, run: &SippRun) -> u64 {
    let got = run.received("INVITE");
    assert!(
        got > 0
            && run.stats.failed_calls == 0
            && run.unexpected() == 0
            && run.stats.successful_calls == got,
        "backend {name}: {got} INVITEs\n{run}"
    );
    got
}

/// Drains B while over a hundred dialogs are up on it and the calls keep
/// coming.
#[test]
fn drain_one_of_three_backends_under_load() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    edgectl_binary(); // built now, not under load
    let names = ["a", "b", "c"];
    let backends: Vec<SippProcess> = names
        .iter()
        .map(|_| backend(free_udp_port(), true))
        .collect();
    let uris: Vec<String> = backends
        .iter()
        .map(|b| format!("sip:{}", b.local_addr()))
        .collect();
    let uri_b = uris[1].clone();
    let dir = TempDir::new("control-load").unwrap();
    let list: String = uris
        .iter()
        .zip(names)
        .map(|(uri, name)| format!("1 {uri} 0 0 duid={name}\n"))
        .collect();
    let path = write_list(&dir, &list);
    let edge = start_edge(4, &path);
    let rpc = RpcClient::new(edge.rpc_addr().unwrap());

    let load = uac(&edge).spawn().unwrap();

    // The load is up on B: a good share of its steady ~170 dialogs answered
    // (the shards report about once a second).
    let mut seen = Value::Null;
    let loaded = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            seen = active_calls(&rpc, &uri_b);
            seen["ACTIVE"].as_u64().unwrap_or(0) >= 100
        },
    );
    assert!(loaded, "B never had 100 active calls: {seen}");

    let drain_sent = SystemTime::now();
    let drain_started = Instant::now();
    let out = edgectl(
        &edge,
        &[
            "dispatcher",
            "drain",
            "1",
            &uri_b,
            "--wait",
            "--timeout",
            "15",
        ],
    );
    let drain_returned = SystemTime::now();
    let drain_took = drain_started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "edgectl drain failed: {:?}\nstdout: {stdout}\nstderr: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        edge.diagnostics()
    );
    // Its first line is the drain's answer (B's calls then), one line per
    // poll after it, the last one at 0, then "Drained.".
    let counts: Vec<u64> = stdout
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" active,")?;
            before.split_whitespace().last()?.parse().ok()
        })
        .collect();
    assert!(
        stdout.starts_with(&format!("Draining set 1 {uri_b}: ")),
        "{stdout}"
    );
    assert!(counts.len() >= 2, "{stdout}");
    assert!(counts[0] > 0, "B had calls to drain: {stdout}");
    assert_eq!(counts.last(), Some(&0), "{stdout}");
    assert!(stdout.trim_end().ends_with("Drained."), "{stdout}");
    eprintln!("drain of B took {drain_took:.2?}:\n{stdout}");

    // Nothing left on B, and it stays out of service.
    let b_now = active_calls(&rpc, &uri_b);
    assert_eq!(b_now["ACTIVE"], json!(0), "{b_now}");
    assert_eq!(b_now["PENDING"], json!(0), "{b_now}");
    assert_eq!(b_now["TARGETS"][0]["STATE"], json!("R"), "{b_now}");

    let run = load.wait().unwrap();
    run.assert_calls_succeeded(CALLS);

    let mut runs = Vec::new();
    for (b, name) in backends.into_iter().zip(names) {
        let b = b.stop().unwrap();
        assert_backend_clean(name, &b);
        runs.push(b);
    }
    let log = stop_edge(edge);
    assert!(
        log.lines()
            .any(|l| l.contains("destination state set by the operator")
                && l.contains(&uri_b)
                && l.contains("state=R")
                && l.contains("rpc 127.0.0.1:")),
        "no drain of B in the log\n{log}"
    );

    // What the backends saw, on SIPp's clock.
    let sent = sipp_clock(drain_sent);
    let returned = sipp_clock(drain_returned);
    let cutoff = sent + i64::try_from(DRAIN_MARGIN.as_micros()).unwrap();
    let traces: Vec<Vec<Traced>> = runs.iter().map(|r| parse_trace(&r.message_log())).collect();
    let calls: Vec<Vec<(i64, &str)>> = traces.iter().map(|t| new_calls(t)).collect();
    for ((name, run), calls) in names.iter().zip(&runs).zip(&calls) {
        assert_eq!(
            calls.len() as u64,
            run.received("INVITE"),
            "backend {name}: the trace has every INVITE"
        );
    }
    let per_backend: Vec<usize> = calls.iter().map(Vec::len).collect();
    eprintln!("drain under load: calls per backend (a, b, c) {per_backend:?}");
    assert_eq!(
        per_backend.iter().sum::<usize>() as u64,
        CALLS,
        "{per_backend:?}"
    );

    // B: no new call after the drain was sent (plus the margin), some
    // before it; every call it got ended there with its BYE, some of them
    // after the drain.
    let (b_trace, b_calls) = (&traces[1], &calls[1]);
    let late: Vec<&(i64, &str)> = b_calls.iter().filter(|(at, _)| *at > cutoff).collect();
    let last = b_calls.iter().map(|(at, _)| *at).max().unwrap_or(i64::MIN);
    assert!(
        late.is_empty(),
        "B got {} new calls more than {DRAIN_MARGIN:?} after the drain was sent; \
         the last {:.3} s after it, first late ones: {:?}",
        late.len(),
        (last - sent) as f64 / 1e6,
        &late[..late.len().min(5)]
    );
    assert!(b_calls.iter().any(|(at, _)| *at < sent), "{b_calls:?}");
    let byes: Vec<&Traced> = b_trace
        .iter()
        .filter(|m| m.received && m.label == "BYE")
        .collect();
    let bye_ids: HashSet<&str> = byes.iter().map(|m| m.call_id.as_str()).collect();
    let without_bye = b_calls
        .iter()
        .filter(|(_, id)| !bye_ids.contains(id))
        .count();
    assert_eq!(without_bye, 0, "calls on B that never got their BYE");
    let byes_after = byes.iter().filter(|m| m.at > sent).count();
    assert!(byes_after > 0, "no BYE reached B after the drain");
    eprintln!(
        "B: last new call {:+.3} s from the drain, {byes_after} BYEs after it",
        (last - sent) as f64 / 1e6
    );

    // A and C took the new calls, still after the drain had completed.
    for i in [0, 2] {
        let after = calls[i].iter().filter(|(at, _)| *at > returned).count();
        assert!(
            after > 0,
            "backend {} got no call after the drain returned",
            names[i]
        );
    }
    assert!(started.elapsed() < Duration::from_secs(40));
}

/// The list file, version `n`: all three backends (weights 50/30/20) for an
/// even `n`, A and B only (weights 20/80, B at another priority) for an odd
/// one; `gen=n` in every attrs names the version. Returns the file and its
/// (URI, attrs) pairs.
fn list_version(uris: &[String], n: usize) -> (String, Vec<(String, String)>) {
    let rows: Vec<(String, i32, String)> = if n % 2 == 0 {
        vec![
            (uris[0].clone(), 0, format!("duid=a;weight=50;gen={n}")),
            (uris[1].clone(), 0, format!("duid=b;weight=30;gen={n}")),
            (uris[2].clone(), 0, format!("duid=c;weight=20;gen={n}")),
        ]
    } else {
        vec![
            (uris[0].clone(), 0, format!("duid=a;weight=20;gen={n}")),
            (uris[1].clone(), 5, format!("duid=b;weight=80;gen={n}")),
        ]
    };
    let text: String = rows
        .iter()
        .map(|(uri, priority, attrs)| format!("1 {uri} 0 {priority} {attrs}\n"))
        .collect();
    let pairs = rows.into_iter().map(|(uri, _, a)| (uri, a)).collect();
    (format!("# version {n}\n{text}"), pairs)
}

/// Reloads once a second over JSON-RPC for the whole load.
#[test]
fn reload_every_second_under_load() {
    require_sipp();
    let _serial = serial();
    let started = Instant::now();
    let names = ["a", "b", "c"];
    let backends: Vec<SippProcess> = names
        .iter()
        .map(|_| backend(free_udp_port(), false))
        .collect();
    let uris: Vec<String> = backends
        .iter()
        .map(|b| format!("sip:{}", b.local_addr()))
        .collect();
    let dir = TempDir::new("control-load").unwrap();
    let path = write_list(&dir, &list_version(&uris, 0).0);
    // smooth weighted round robin: the weights of each version matter
    let edge = start_edge(9, &path);
    let rpc = RpcClient::new(edge.rpc_addr().unwrap());

    let mut load = uac(&edge).spawn().unwrap();
    let load_started = Instant::now();
    // 11 reloads, at 1 s to 11 s of the 12 s of calls: the last file written
    // is an odd version (C removed).
    let reloads = 11usize;
    let mut answers = Vec::new();
    let mut good = 0usize;
    let mut last_written = Vec::new();
    for n in 1..=reloads {
        // the pace of the reloads (one a second), not a synchronisation
        let due = load_started + Duration::from_secs(n as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        assert!(load.is_running(), "the UAC ended before reload {n}");
        let (text, pairs) = list_version(&uris, n);
        fs::write(&path, text).unwrap();
        last_written = pairs;
        let answer = rpc.call("dispatcher.reload", Value::Null);
        answers.push(format!("{answer:?}"));
        let ok =
            answer.is_ok_and(|r| r["result"] == json!("Ok. Dispatcher successfully reloaded."));
        if !ok {
            continue;
        }
        good += 1;
        // every shard has swapped to this version (one line per shard and
        // successful reload)
        let swapped = edge.wait_for_log_count(
            &["dispatcher sets reloaded"],
            CORES as usize * good,
            Duration::from_secs(5),
        );
        assert_eq!(
            swapped,
            CORES as usize * good,
            "reload {n}\n{}",
            edge.diagnostics()
        );
    }
    assert!(
        good == reloads && good >= 8,
        "{good} of {reloads} reloads answered Ok:\n{}",
        answers.join("\n")
    );

    let reloads_took = load_started.elapsed();
    let run = load.wait().unwrap();
    run.assert_calls_succeeded(CALLS);

    // The running sets are the last file written: A and B, with its attrs.
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    assert_eq!(list["NRSETS"], json!(1), "{list}");
    let running: Vec<(String, String)> = list["RECORDS"][0]["SET"]["TARGETS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let dest = &t["DEST"];
            (
                dest["URI"].as_str().unwrap().to_owned(),
                dest["ATTRS"]["BODY"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(running, last_written, "{list}");

    let mut seen = Vec::new();
    for (b, name) in backends.into_iter().zip(names) {
        let b = b.stop().unwrap();
        seen.push(assert_backend_clean(name, &b));
    }
    eprintln!(
        "{reloads} reloads in {reloads_took:.2?} of a {:.2?} load: calls per backend \
         (a, b, c) {seen:?}",
        run.elapsed
    );
    assert_eq!(
        seen.iter().sum::<u64>(),
        CALLS,
        "calls per backend {seen:?}"
    );
    let log = stop_edge(edge);
    let by_rpc = log
        .lines()
        .filter(|l| l.contains("dispatcher list reloaded") && l.contains("rpc 127.0.0.1:"))
        .count();
    assert_eq!(by_rpc, reloads, "{log}");
    assert!(started.elapsed() < Duration::from_secs(40));
}
