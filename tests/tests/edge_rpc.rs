//! The JSON-RPC control plane end to end: a real `edge` with a Kamailio
//! `dispatcher.list` and `--rpc`, called over HTTP as an operator's script
//! would. Every method's result shape and every error code.
//!
//! The destinations are never called (no SIP traffic, `probe_all = false`,
//! so nothing probes them either): the shapes and states come from the list
//! and the shards' reports alone.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_e2e::edge::{Edge, EdgeProcess};
use edge_e2e::edge_binary;
use edge_e2e::ports::{free_tcp_port, free_udp_port, loopback};
use edge_e2e::process::TempDir;
use edge_e2e::rpc::{request, RpcClient};
use serde_json::{json, Value};

const TOML: &str = "[runtime]\nshutdown_grace_ms = 1000\n\n[dispatcher]\nalgorithm = 4\n\n\
                    [dispatcher.health]\nprobe_all = false\n";

fn list_text(ports: &[u16]) -> String {
    format!(
        "# rpc test\n1 sip:127.0.0.1:{} 0 0 duid=a;weight=50;maxload=500\n\
         1 sip:127.0.0.1:{} 0 5 duid=b;weight=50\n\
         2 sip:127.0.0.1:{} 4 10 duid=c\n",
        ports[0], ports[1], ports[2]
    )
}

fn start(toml: &str) -> (TempDir, PathBuf, Vec<u16>, EdgeProcess) {
    let dir = TempDir::new("rpc").unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_udp_port()).collect();
    let path = dir.join("dispatcher.list");
    fs::write(&path, list_text(&ports)).unwrap();
    let edge = Edge::new()
        .cores(2)
        .config_toml(toml)
        .dispatcher_list(&path)
        .rpc()
        .spawn()
        .unwrap();
    (dir, path, ports, edge)
}

fn stop(edge: EdgeProcess) -> String {
    let exit = edge.stop(Duration::from_secs(8));
    assert!(exit.success(), "{exit}");
    exit.log
}

/// `dispatcher.active_calls` until every shard reported (about a second).
fn wait_for_reports(rpc: &RpcClient, targets: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = rpc.result("dispatcher.active_calls", Value::Null).unwrap();
        if r["TARGETS"].as_array().unwrap().len() == targets || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_method_answers_in_kamailio_shape() {
    let (_dir, path, ports, edge) = start(TOML);
    let rpc = RpcClient::new(edge.rpc_addr().unwrap());

    // core.*
    let version = rpc.result("core.version", Value::Null).unwrap();
    assert!(version.as_str().unwrap().starts_with("edge "), "{version}");
    let up = rpc.result("core.uptime", json!([])).unwrap();
    let (now, since) = (
        up["now"].as_u64().unwrap(),
        up["up_since"].as_u64().unwrap(),
    );
    assert!(now >= since && now - since < 60, "{up}");
    assert_eq!(up["uptime"].as_u64().unwrap(), now - since);

    // dispatcher.active_calls (ours), once every shard reported
    let all = wait_for_reports(&rpc, 3);
    assert_eq!(all["ACTIVE"], json!(0), "{all}");
    assert_eq!(all["PENDING"], json!(0), "{all}");
    assert_eq!(all["TARGETS"].as_array().unwrap().len(), 3, "{all}");
    let a = &all["TARGETS"][0];
    assert_eq!(a["SET"], json!(1));
    assert_eq!(a["URI"], json!(format!("sip:127.0.0.1:{}", ports[0])));
    assert_eq!(a["DUID"], json!("a"));
    assert_eq!(a["STATE"], json!("A"));
    assert_eq!(a["ACTIVE"], json!(0));
    // positional (kamcli sends strings), by duid; named, by URI
    let one = rpc
        .result("dispatcher.active_calls", json!(["1", "b"]))
        .unwrap();
    assert_eq!(one["TARGETS"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["TARGETS"][0]["DUID"], json!("b"));
    let uri_c = format!("sip:127.0.0.1:{}", ports[2]);
    let named = rpc
        .result(
            "dispatcher.active_calls",
            json!({"group": 2, "address": uri_c}),
        )
        .unwrap();
    assert_eq!(named["TARGETS"][0]["STATE"], json!("D"), "{named}");
    let group = rpc.result("dispatcher.active_calls", json!([1])).unwrap();
    assert_eq!(group["TARGETS"].as_array().unwrap().len(), 2, "{group}");
    let (code, message) = rpc.error("dispatcher.active_calls", json!([9])).unwrap();
    assert_eq!(code, 500, "{message}");
    let (code, message) = rpc
        .error("dispatcher.active_calls", json!(["one"]))
        .unwrap();
    assert_eq!(code, -32602, "{message}");
    let (code, message) = rpc
        .error("dispatcher.active_calls", json!({"set": 1}))
        .unwrap();
    assert_eq!(code, -32602, "{message}");

    // dispatcher.list
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    assert_eq!(list["NRSETS"], json!(2), "{list}");
    let set1 = &list["RECORDS"][0]["SET"];
    assert_eq!(set1["ID"], json!(1), "{list}");
    let dest = &set1["TARGETS"][0]["DEST"];
    assert_eq!(dest["URI"], json!(format!("sip:127.0.0.1:{}", ports[0])));
    assert_eq!(dest["FLAGS"], json!("AX"), "{dest}");
    assert_eq!(dest["PRIORITY"], json!(0));
    assert_eq!(
        dest["ATTRS"],
        json!({"BODY": "duid=a;weight=50;maxload=500", "DUID": "a", "MAXLOAD": 500,
               "WEIGHT": 50, "RWEIGHT": 0}),
        "{dest}"
    );
    assert_eq!(dest["RUNTIME"], json!({"ACTIVE": 0, "PENDING": 0}));
    assert_eq!(set1["TARGETS"][1]["DEST"]["PRIORITY"], json!(5));
    let set2 = &list["RECORDS"][1]["SET"];
    assert_eq!(set2["ID"], json!(2));
    assert_eq!(set2["TARGETS"][0]["DEST"]["FLAGS"], json!("DX"), "{list}");
    let (code, _) = rpc.error("dispatcher.list", json!([1])).unwrap();
    assert_eq!(code, -32602);

    // dispatcher.reload: a changed file, then a bad one (500, file:line)
    let mut text = list_text(&ports);
    text.push_str(&format!("2 sip:127.0.0.1:{} 0 0 duid=d\n", ports[3]));
    fs::write(&path, text).unwrap();
    let ok = rpc.result("dispatcher.reload", Value::Null).unwrap();
    assert_eq!(ok, json!("Ok. Dispatcher successfully reloaded."));
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    let set2 = &list["RECORDS"][1]["SET"]["TARGETS"];
    assert_eq!(set2.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(set2[1]["DEST"]["ATTRS"]["DUID"], json!("d"));
    let logged = edge.wait_for_log(
        &["dispatcher list reloaded", "rpc 127.0.0.1:"],
        Duration::from_secs(5),
    );
    assert!(logged.is_some(), "{}", edge.diagnostics());
    fs::write(&path, "1 sip:127.0.0.1:1\nnot-a-set sip:127.0.0.1:2\n").unwrap();
    let (code, message) = rpc.error("dispatcher.reload", json!([])).unwrap();
    assert_eq!(code, 500);
    assert!(message.contains("dispatcher.list:2"), "{message}");
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    assert_eq!(list["NRSETS"], json!(2), "the running sets stay: {list}");
    let (code, _) = rpc.error("dispatcher.reload", json!(["now"])).unwrap();
    assert_eq!(code, -32602);

    let log = stop(edge);
    assert!(log.contains("reload failed"), "{log}");
}

#[test]
fn protocol_errors_have_their_codes() {
    let (_dir, _path, _ports, edge) = start(TOML);
    let addr = edge.rpc_addr().unwrap();
    let rpc = RpcClient::new(addr);

    let bad = rpc.post_raw(b"{\"jsonrpc\":").unwrap();
    assert_eq!(bad.status, 200);
    assert_eq!(bad.json()["error"]["code"], json!(-32700), "{}", bad.body);
    assert_eq!(bad.json()["id"], Value::Null);
    let invalid = rpc.post_raw(br#"{"jsonrpc":"2.0","id":3}"#).unwrap();
    assert_eq!(invalid.json()["error"]["code"], json!(-32600));
    assert_eq!(invalid.json()["id"], json!(3));
    let batch = rpc.post_raw(br#"[{"jsonrpc":"2.0","method":"core.version","id":1}]"#);
    assert_eq!(batch.unwrap().json()["error"]["code"], json!(-32600));
    let (code, message) = rpc.error("dispatcher.nope", Value::Null).unwrap();
    assert_eq!(code, -32601);
    assert!(message.contains("dispatcher.nope"), "{message}");
    let (code, _) = rpc.error("core.version", json!(["x"])).unwrap();
    assert_eq!(code, -32602);
    let (code, _) = rpc.error("core.uptime", json!({"x": 1})).unwrap();
    assert_eq!(code, -32602);

    // "/" too; a string id comes back as it was
    let body = br#"{"jsonrpc":"2.0","method":"core.version","id":"q"}"#;
    let root = request(addr, "POST", "/", body, None).unwrap();
    assert_eq!(root.json()["id"], json!("q"), "{}", root.body);
    assert!(root.json()["result"].is_string());
    // a notification runs and gets no JSON-RPC answer
    let note = rpc
        .post_raw(br#"{"jsonrpc":"2.0","method":"core.version"}"#)
        .unwrap();
    assert_eq!(note.status, 204);
    // HTTP-level refusals
    assert_eq!(request(addr, "GET", "/RPC", b"", None).unwrap().status, 405);
    assert_eq!(request(addr, "POST", "/x", body, None).unwrap().status, 404);
    let big = vec![b' '; 100 * 1024];
    assert_eq!(rpc.post_raw(&big).unwrap().status, 413);
    // still serving
    assert!(rpc.result("core.version", Value::Null).is_ok());
    stop(edge);
}

#[test]
fn a_token_is_required_when_configured() {
    let toml = format!("{TOML}\n[rpc]\ntoken = \"t0k-s3cret\"\n");
    let (_dir, _path, _ports, edge) = start(&toml);
    let addr = edge.rpc_addr().unwrap();
    let none = RpcClient::new(addr).call("core.version", Value::Null);
    assert!(none.unwrap_err().to_string().contains("HTTP 401"));
    let wrong = RpcClient::new(addr)
        .token("t0k-s3creT")
        .call("core.version", Value::Null);
    assert!(wrong.unwrap_err().to_string().contains("HTTP 401"));
    let right = RpcClient::new(addr).token("t0k-s3cret");
    assert!(right.result("core.version", Value::Null).is_ok());
    stop(edge);
}

#[test]
fn off_loopback_without_a_token_is_refused_at_start() {
    let out = Command::new("timeout")
        .arg("10")
        .arg(edge_binary())
        .args(["--listen", &format!("udp:{}", loopback(free_udp_port()))])
        .args(["--rpc", &format!("0.0.0.0:{}", free_tcp_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--rpc") && stderr.contains("rpc.token"),
        "{stderr}"
    );
}

/// `dispatcher.list` until the destination `index` of set `set` shows
/// `flags` (the shards report about once a second).
fn wait_for_flags(rpc: &RpcClient, set: usize, index: usize, flags: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = rpc.result("dispatcher.list", Value::Null).unwrap();
        let dest = list["RECORDS"][set]["SET"]["TARGETS"][index]["DEST"].clone();
        if dest["FLAGS"] == json!(flags) || Instant::now() > deadline {
            return dest;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn state_changes_reach_every_shard_and_are_logged() {
    let (_dir, _path, ports, edge) = start(TOML);
    let rpc = RpcClient::new(edge.rpc_addr().unwrap());
    wait_for_reports(&rpc, 3);
    let uri_a = format!("sip:127.0.0.1:{}", ports[0]);

    // set_state by URI, Kamailio's letters (and kamcli's string group)
    let ok = rpc
        .result("dispatcher.set_state", json!(["i", "1", uri_a]))
        .unwrap();
    assert_eq!(ok, json!("Ok. Dispatcher state updated."));
    let a = wait_for_flags(&rpc, 0, 0, "IX");
    assert_eq!(a["FLAGS"], json!("IX"), "{a}");
    // by duid too
    let all = rpc
        .result("dispatcher.active_calls", json!([1, "a"]))
        .unwrap();
    assert_eq!(all["TARGETS"][0]["STATE"], json!("I"), "{all}");

    // set_duid_state, named parameters; back to active
    let ok = rpc
        .result(
            "dispatcher.set_duid_state",
            json!({"state": "active", "group": 1, "duid": "a"}),
        )
        .unwrap();
    assert_eq!(ok, json!("Ok. Dispatcher state updated."));
    assert_eq!(wait_for_flags(&rpc, 0, 0, "AX")["FLAGS"], json!("AX"));

    // drain by duid: the calls still on it (none), then the state R
    let drained = rpc.result("dispatcher.drain", json!([1, "b"])).unwrap();
    assert_eq!(drained["ACTIVE"], json!(0), "{drained}");
    assert_eq!(drained["TARGETS"].as_array().unwrap().len(), 1, "{drained}");
    assert_eq!(wait_for_flags(&rpc, 0, 1, "RX")["FLAGS"], json!("RX"));
    // `all` of a set
    rpc.result("dispatcher.set_state", json!(["d", 1, "all"]))
        .unwrap();
    assert_eq!(wait_for_flags(&rpc, 0, 0, "DX")["FLAGS"], json!("DX"));
    assert_eq!(wait_for_flags(&rpc, 0, 1, "DX")["FLAGS"], json!("DX"));

    // errors
    let (code, _) = rpc
        .error(
            "dispatcher.set_state",
            json!(["a", 1, "sip:192.0.2.9:5060"]),
        )
        .unwrap();
    assert_eq!(code, 500);
    let (code, _) = rpc
        .error("dispatcher.set_duid_state", json!(["a", 7, "a"]))
        .unwrap();
    assert_eq!(code, 500);
    let (code, message) = rpc
        .error("dispatcher.set_state", json!(["ap", 1, "all"]))
        .unwrap();
    assert_eq!(code, -32602, "{message}");
    let (code, _) = rpc
        .error("dispatcher.set_state", json!(["zz", 1, "all"]))
        .unwrap();
    assert_eq!(code, -32602);
    let (code, _) = rpc.error("dispatcher.set_state", json!(["a", 1])).unwrap();
    assert_eq!(code, -32602);
    let (code, _) = rpc.error("dispatcher.drain", json!([1])).unwrap();
    assert_eq!(code, -32602);

    let exit = edge.stop(Duration::from_secs(8));
    assert!(exit.success(), "{exit}");
    let by_rpc = exit
        .log
        .lines()
        .filter(|l| {
            l.contains("destination state set by the operator") && l.contains("rpc 127.0.0.1:")
        })
        .count();
    // i a, a a, r b, d a, d b
    assert_eq!(by_rpc, 5, "{exit}");
    // shard 0 applied each and sent it to shard 1
    let counters = exit.shard_counters();
    let shard1 = counters.iter().find(|c| c.shard == 1).unwrap();
    assert_eq!(shard1.raw.get("state_changes_in"), Some(&5), "{exit}");
}

/// `stats.get_statistics` as `{"group:name": value}`.
fn statistics(rpc: &RpcClient, names: Value) -> std::collections::BTreeMap<String, u64> {
    let lines = rpc.result("stats.get_statistics", names).unwrap();
    let lines = lines.as_array().unwrap().clone();
    lines
        .iter()
        .map(|l| {
            let (name, value) = l.as_str().unwrap().split_once(" = ").unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Polls `stats.get_statistics name` until `done` holds for its value.
fn wait_statistic(rpc: &RpcClient, name: &str, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = statistics(rpc, json!([name]))[name];
        if done(value) || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn operator_methods_change_the_running_edge() {
    // Probes every 200 ms to ports nobody listens on; reloads at most one a minute.
    let toml = "[runtime]\nshutdown_grace_ms = 1000\n\n[dispatcher]\nalgorithm = 4\n\
                reload_min_interval_ms = 60000\n\n[dispatcher.health]\ninterval_ms = 200\n\
                timeout_ms = 100\n";
    let (_dir, _path, ports, edge) = start(toml);
    let rpc = RpcClient::new(edge.rpc_addr().unwrap());
    wait_for_reports(&rpc, 3);

    // stats.get_statistics and tm.stats count what was sent.
    for _ in 0..3 {
        let status = edge.options_ping(Duration::from_secs(2)).unwrap();
        assert!(status.contains(" 200 "), "{status}");
    }
    let options = wait_statistic(&rpc, "core:rcv_requests_options", |n| n >= 3);
    assert!(options >= 3, "{options}");
    let all = statistics(&rpc, Value::Null);
    assert_eq!(all["core:rcv_requests_options"], options);
    assert!(all.contains_key("tm:inuse_transactions") && all.contains_key("edge:calls"));
    let tm = statistics(&rpc, json!(["tm:"]));
    assert!(
        tm.keys().all(|k| k.starts_with("tm:")) && tm.len() > 5,
        "{tm:?}"
    );
    let (code, message) = rpc.error("stats.get_statistics", json!(["nope"])).unwrap();
    assert_eq!(code, 500, "{message}");
    let (code, _) = rpc.error("stats.get_statistics", json!([1])).unwrap();
    assert_eq!(code, -32602);
    let t = rpc.result("tm.stats", Value::Null).unwrap();
    for key in ["current", "waiting", "total", "total_local", "rpl_received"] {
        assert!(t[key].is_u64(), "{key} in {t}");
    }
    assert!(t["rpl_generated"].as_u64().unwrap() >= 3, "{t}");
    assert_eq!(rpc.error("tm.stats", json!([1])).unwrap().0, -32602);

    // dispatcher.ping_active: off stops the probes, on starts them again.
    let r = rpc.result("dispatcher.ping_active", Value::Null).unwrap();
    assert_eq!(r, json!({"OldPingState": 1}));
    let probes = wait_statistic(&rpc, "edge:probes_sent", |n| n > 0);
    assert!(probes > 0, "probing runs before it is turned off");
    let r = rpc.result("dispatcher.ping_active", json!([0])).unwrap();
    assert_eq!(r, json!({"NewPingState": 0, "OldPingState": 1}));
    // Nothing signals an absence: let the reports (about 1 s old) catch up,
    // then watch 2 s in which probing on would send about 30 probes.
    std::thread::sleep(Duration::from_millis(1_500));
    let off = statistics(&rpc, json!(["edge:probes_sent"]))["edge:probes_sent"];
    std::thread::sleep(Duration::from_millis(2_000));
    let later = statistics(&rpc, json!(["edge:probes_sent"]))["edge:probes_sent"];
    assert_eq!(later, off, "no new probes while off");
    let r = rpc.result("dispatcher.ping_active", json!(["1"])).unwrap();
    assert_eq!(r, json!({"NewPingState": 1, "OldPingState": 0}));
    let on = wait_statistic(&rpc, "edge:probes_sent", |n| n > later + 2);
    assert!(on > later + 2, "probing again: {later} -> {on}");
    let (code, _) = rpc.error("dispatcher.ping_active", json!([2])).unwrap();
    assert_eq!(code, -32602);

    // dispatcher.add / dispatcher.remove change the running sets.
    let uri = format!("sip:127.0.0.1:{}", ports[3]);
    let r = rpc
        .result("dispatcher.add", json!([1, uri, 0, 3, "duid=added"]))
        .unwrap();
    assert_eq!(r, json!("Ok. Dispatcher destination added."));
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    let targets = list["RECORDS"][0]["SET"]["TARGETS"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(targets.len(), 3, "{list}");
    assert_eq!(targets[2]["DEST"]["URI"], json!(uri));
    assert_eq!(targets[2]["DEST"]["ATTRS"]["DUID"], json!("added"));
    let shards_have_it = wait_for_reports(&rpc, 4);
    assert_eq!(shards_have_it["TARGETS"].as_array().unwrap().len(), 4);
    let (code, message) = rpc.error("dispatcher.add", json!([1, uri])).unwrap();
    assert_eq!(code, 500, "{message}");
    let (code, _) = rpc.error("dispatcher.add", json!([1, "http://x"])).unwrap();
    assert_eq!(code, -32602);
    let r = rpc
        .result("dispatcher.remove", json!({"group": 1, "address": uri}))
        .unwrap();
    assert_eq!(r, json!("Ok. Dispatcher destination removed."));
    let list = rpc.result("dispatcher.list", Value::Null).unwrap();
    assert_eq!(
        list["RECORDS"][0]["SET"]["TARGETS"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, _) = rpc.error("dispatcher.remove", json!([1, uri])).unwrap();
    assert_eq!(code, 500);

    // The reload limit: one reload, then "Ongoing reload" within the minute.
    let ok = rpc.result("dispatcher.reload", Value::Null).unwrap();
    assert_eq!(ok, json!("Ok. Dispatcher successfully reloaded."));
    let (code, message) = rpc.error("dispatcher.reload", Value::Null).unwrap();
    assert_eq!(code, 500);
    assert!(message.starts_with("Ongoing reload"), "{message}");

    let log = stop(edge);
    for what in [
        "destination sets changed by the operator",
        "destination probing set by the operator",
        "dispatcher reload refused",
    ] {
        let line = log.lines().find(|l| l.contains(what));
        assert!(
            line.is_some_and(|l| l.contains("rpc 127.0.0.1:")),
            "{what}:\n{log}"
        );
    }
}
