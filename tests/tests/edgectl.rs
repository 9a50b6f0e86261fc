//! `edgectl` end to end: the real binary against a real `edge` with a
//! dispatcher list of two destinations and `--rpc`. No SIP traffic (nothing
//! probes the destinations, `probe_all = false`): states and calls come from
//! the list and the shards' reports.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use edge_e2e::edge::{edgectl_binary, Edge, EdgeProcess};
use edge_e2e::ports::free_udp_port;
use edge_e2e::process::TempDir;
use edge_e2e::rpc::RpcClient;
use serde_json::{json, Value};

const TOML: &str = "[runtime]\nshutdown_grace_ms = 1000\n\n[dispatcher]\nalgorithm = 4\n\n\
                    [dispatcher.health]\nprobe_all = false\n";

struct Setup {
    _dir: TempDir,
    uris: Vec<String>,
    edge: EdgeProcess,
}

fn start() -> Setup {
    start_with(TOML)
}

fn start_with(toml: &str) -> Setup {
    let dir = TempDir::new("edgectl").unwrap();
    let uris: Vec<String> = (0..2)
        .map(|_| format!("sip:127.0.0.1:{}", free_udp_port()))
        .collect();
    let path = dir.join("dispatcher.list");
    let list = format!("1 {} 0 0 duid=a\n1 {} 0 0 duid=b\n", uris[0], uris[1]);
    fs::write(&path, list).unwrap();
    let edge = Edge::new()
        .cores(2)
        .config_toml(toml)
        .dispatcher_list(&path)
        .rpc()
        .spawn()
        .unwrap();
    // Wait for every shard's first report so states read back are settled.
    let token = toml.contains("token").then_some("t0k-s3cret");
    let mut rpc = RpcClient::new(edge.rpc_addr().unwrap());
    if let Some(t) = token {
        rpc = rpc.token(t);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let r = rpc.result("dispatcher.active_calls", Value::Null).unwrap();
        if r["TARGETS"].as_array().unwrap().len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Setup {
        _dir: dir,
        uris,
        edge,
    }
}

fn edgectl(edge: &EdgeProcess, args: &[&str]) -> Output {
    edge.edgectl().args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "edgectl failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state word `dispatcher list` prints for `uri`, polled until `want`
/// (the shards' reports are about a second old).
fn wait_state(edge: &EdgeProcess, uri: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = ok(&edgectl(edge, &["dispatcher", "list"]));
        let line = text.lines().find(|l| l.contains(uri)).unwrap().to_owned();
        if line.split_whitespace().nth(2) == Some(want) || Instant::now() > deadline {
            return line;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn list_set_state_reload_and_rpc() {
    let s = start();
    let e = &s.edge;

    // list: a table with a header and one row per destination.
    let text = ok(&edgectl(e, &["dispatcher", "list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["SET", "URI", "STATE", "ACTIVE", "PENDING"],
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    for uri in &s.uris {
        let row = lines.iter().find(|l| l.contains(uri.as_str())).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["1", uri.as_str(), "active", "0", "0"], "{text}");
    }

    // --json: the raw result of dispatcher.list.
    let raw: Value =
        serde_json::from_str(&ok(&edgectl(e, &["--json", "dispatcher", "list"]))).unwrap();
    assert_eq!(raw["NRSETS"], json!(1));
    assert_eq!(
        raw["RECORDS"][0]["SET"]["TARGETS"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // set-state
    let out = ok(&edgectl(
        e,
        &["dispatcher", "set-state", "disabled", "1", &s.uris[0]],
    ));
    assert_eq!(out.trim(), "Ok. Dispatcher state updated.");
    let line = wait_state(e, &s.uris[0], "disabled");
    assert!(line.contains("disabled"), "{line}");
    ok(&edgectl(
        e,
        &["dispatcher", "set-state", "active", "1", &s.uris[0]],
    ));
    let line = wait_state(e, &s.uris[0], "active");
    assert!(line.contains("active"), "{line}");

    // reload
    let out = ok(&edgectl(e, &["dispatcher", "reload"]));
    assert_eq!(out.trim(), "Ok. Dispatcher successfully reloaded.");

    // rpc: string result, JSON params (a number) and string params (a URI).
    let out = ok(&edgectl(e, &["rpc", "core.version"]));
    assert!(out.starts_with("edge "), "{out}");
    let out = ok(&edgectl(
        e,
        &["--json", "rpc", "dispatcher.active_calls", "1", &s.uris[1]],
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ACTIVE"], json!(0), "{out}");
    assert_eq!(r["TARGETS"][0]["URI"], json!(s.uris[1]), "{out}");
}

#[test]
fn errors_exit_non_zero_with_the_message() {
    let s = start();
    let e = &s.edge;

    // Unknown method: the server's JSON-RPC error.
    let out = edgectl(e, &["rpc", "no.such"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-32601") && err.contains("Method not found"),
        "{err}"
    );

    // Operational failure: an unknown destination.
    let out = edgectl(
        e,
        &["dispatcher", "set-state", "active", "1", "sip:nowhere"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Destination not found"), "{err}");

    // A bad state word is clap's error (exit 2), no call made.
    let out = edgectl(e, &["dispatcher", "set-state", "sleepy", "1", &s.uris[0]]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'sleepy'"), "{err}");

    // Nothing listening: non-zero with a sentence.
    let out = Command::new(edgectl_binary())
        .args(["--rpc", "127.0.0.1:1", "dispatcher", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach edge"), "{err}");
}

#[test]
fn drain_wait_without_calls_returns_at_once() {
    let s = start();
    let e = &s.edge;
    let started = Instant::now();
    let out = ok(&edgectl(
        e,
        &[
            "dispatcher",
            "drain",
            "1",
            &s.uris[1],
            "--wait",
            "--timeout",
            "10",
        ],
    ));
    assert!(started.elapsed() < Duration::from_secs(3), "{out}");
    assert!(out.contains("Draining set 1"), "{out}");
    assert!(out.trim_end().ends_with("Drained."), "{out}");
    let line = wait_state(e, &s.uris[1], "draining");
    assert!(line.contains("draining"), "{line}");
    // The other destination is untouched.
    let line = wait_state(e, &s.uris[0], "active");
    assert!(line.contains("active"), "{line}");
}

#[test]
fn the_token_comes_from_the_flag_or_the_environment() {
    let s = start_with(&format!("{TOML}\n[rpc]\ntoken = \"t0k-s3cret\"\n"));
    let e = &s.edge;

    let out = edgectl(e, &["rpc", "core.version"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("Unauthorized"),
        "{err}"
    );

    let out = ok(&edgectl(
        e,
        &["--token", "t0k-s3cret", "rpc", "core.version"],
    ));
    assert!(out.starts_with("edge "), "{out}");

    let out = Command::new(edgectl_binary())
        .args(["dispatcher", "list"])
        .env("EDGE_RPC", e.rpc_addr().unwrap().to_string())
        .env("EDGE_RPC_TOKEN", "t0k-s3cret")
        .output()
        .unwrap();
    assert!(ok(&out).starts_with("SET"));
}

#[test]
fn stats_prints_the_counters_of_all_shards() {
    let s = start();
    let e = &s.edge;
    for _ in 0..2 {
        let status = e.options_ping(Duration::from_secs(2)).unwrap();
        assert!(status.contains(" 200 "), "{status}");
    }
    // Human: `group:name = value` lines, names aligned, in the server's order.
    let deadline = Instant::now() + Duration::from_secs(10);
    let one = loop {
        let out = ok(&edgectl(e, &["stats", "core:rcv_requests_options"]));
        let value: u64 = out.rsplit(" = ").next().unwrap().trim().parse().unwrap();
        if value >= 2 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.starts_with("core:rcv_requests_options = "), "{one}");
    let all = ok(&edgectl(e, &["stats"]));
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines.len() > 30, "{all}");
    assert!(lines[0].starts_with("core:rcv_requests "), "{all}");
    let column = lines[0].find(" = ").unwrap();
    assert!(lines.iter().all(|l| l.find(" = ") == Some(column)), "{all}");
    // --json: one object of numbers.
    let json_out = ok(&edgectl(e, &["--json", "stats", "tm:", "edge:calls"]));
    let object: Value = serde_json::from_str(&json_out).unwrap();
    let object = object.as_object().unwrap();
    assert!(object.contains_key("tm:inuse_transactions"), "{json_out}");
    assert_eq!(object["edge:calls"], json!(0), "{json_out}");
    assert!(object.values().all(Value::is_u64), "{json_out}");
    // An unknown name: the server's message, non-zero.
    let out = edgectl(e, &["stats", "core:nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No statistic `core:nope`"), "{err}");
}
