//! `GET /metrics` end to end: a real `edge` with a dispatcher list and
//! `--rpc`, a few OPTIONS to the edge itself and a malformed datagram, then
//! the Prometheus text parsed with a text-format parser and its counters
//! checked against what was sent.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use edge_e2e::edge::Edge;
use edge_e2e::ports::free_udp_port;
use edge_e2e::process::TempDir;
use edge_e2e::rpc::request;
use prometheus_parse::{Sample, Scrape, Value};

const TOKEN: &str = "metrics-test-token";
const PINGS: u64 = 5;

fn value(s: &Sample) -> f64 {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("{} is not a plain sample", s.metric),
    }
}

/// The sum of `metric` over every series whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
        .sum()
}

/// Parses `text`, checking that every sample line became a sample.
fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).unwrap();
    let sample_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "unparsed lines:\n{text}"
    );
    for line in text.lines().filter(|l| l.starts_with('#')) {
        assert!(
            line.starts_with("# HELP edge_") || line.starts_with("# TYPE edge_"),
            "{line}"
        );
    }
    scrape
}

#[test]
fn metrics_count_what_was_sent() {
    let dir = TempDir::new("metrics").unwrap();
    let backend = free_udp_port();
    let list = dir.join("dispatcher.list");
    fs::write(&list, format!("1 sip:127.0.0.1:{backend} 0 0 duid=a\n")).unwrap();
    let edge = Edge::new()
        .cores(2)
        .config_toml(&format!(
            "[dispatcher.health]\nprobe_all = false\n\n[rpc]\ntoken = \"{TOKEN}\"\n"
        ))
        .dispatcher_list(&list)
        .rpc()
        .spawn()
        .unwrap();
    let rpc = edge.rpc_addr().unwrap();

    // The RPC token rule holds for /metrics, and it is GET only.
    let refused = request(rpc, "GET", "/metrics", b"", None).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);
    let wrong = request(rpc, "POST", "/metrics", b"", Some(TOKEN)).unwrap();
    assert_eq!(wrong.status, 405, "{}", wrong.body);

    for _ in 0..PINGS {
        let status = edge.options_ping(Duration::from_secs(2)).unwrap();
        assert!(status.contains(" 200 "), "{status}");
    }
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"THIS IS NOT SIP\r\n\r\n", edge.addr())
        .unwrap();

    // Wait for the next reports (about a second) until the counters show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, scrape) = loop {
        let reply = request(rpc, "GET", "/metrics", b"", Some(TOKEN)).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let scrape = parse(&reply.body);
        let done = sum(&scrape, "edge_requests_total", &[]) >= PINGS as f64
            && sum(&scrape, "edge_parse_errors_total", &[]) >= 1.0;
        if done || Instant::now() > deadline {
            break (reply.body, scrape);
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    assert!(
        sum(&scrape, "edge_requests_total", &[]) >= PINGS as f64,
        "{text}"
    );
    assert!(
        sum(&scrape, "edge_parse_errors_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&scrape, "edge_responses_generated_total", &[]) >= PINGS as f64,
        "{text}"
    );
    assert_eq!(
        sum(&scrape, "edge_rejected_overload_total", &[]),
        0.0,
        "{text}"
    );
    assert_eq!(sum(&scrape, "edge_timeouts_total", &[]), 0.0, "{text}");
    // Both shards report every family.
    for shard in ["0", "1"] {
        for metric in [
            "edge_requests_total",
            "edge_transactions",
            "edge_send_drops_total",
        ] {
            assert!(
                scrape
                    .samples
                    .iter()
                    .any(|s| s.metric == metric && s.labels.get("shard") == Some(shard)),
                "{metric} shard {shard}:\n{text}"
            );
        }
        for direction in ["in", "out"] {
            let handoffs = scrape.samples.iter().find(|s| {
                s.metric == "edge_handoffs_total"
                    && s.labels.get("shard") == Some(shard)
                    && s.labels.get("direction") == Some(direction)
            });
            assert!(handoffs.is_some(), "handoffs {shard} {direction}:\n{text}");
        }
    }
    // Handoffs balance: every datagram sent to another shard arrived.
    assert_eq!(
        sum(&scrape, "edge_handoffs_total", &[("direction", "out")]),
        sum(&scrape, "edge_handoffs_total", &[("direction", "in")]),
        "{text}"
    );
    // The destination: one state set, no calls.
    let uri = format!("sip:127.0.0.1:{backend}");
    let dest = [("set", "1"), ("uri", uri.as_str())];
    assert_eq!(sum(&scrape, "edge_destination_state", &dest), 1.0, "{text}");
    assert_eq!(
        sum(
            &scrape,
            "edge_destination_state",
            &[("uri", uri.as_str()), ("state", "active")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sum(&scrape, "edge_destination_active_calls", &dest), 0.0);
    assert_eq!(sum(&scrape, "edge_destination_pending_calls", &dest), 0.0);

    let exit = edge.stop(Duration::from_secs(8));
    assert!(exit.success(), "{exit}");
}
