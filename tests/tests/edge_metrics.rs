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
use edge_e2e::sipp::{require_sipp, Direction, Scenario, Sipp, SippRun};
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
    // A histogram's bucket lines become one sample; its _sum and _count
    // are samples of their own.
    let sample_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter(|l| !l.split('{').next().unwrap_or("").ends_with("_bucket"))
        .count();
    let histograms = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines + histograms,
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

/// Messages and retransmissions SIPp counted for the rows `label` going
/// `direction`: what crossed the wire, as the edge saw it.
fn on_wire(run: &SippRun, label: &str, direction: Direction) -> f64 {
    let rows = run
        .messages
        .iter()
        .filter(|m| m.direction == direction && m.label == label);
    rows.map(|m| m.messages + m.retransmissions).sum::<u64>() as f64
}

/// Scrapes until `metric` sums to `want` (the shards report about once a
/// second) or 10 s passed; returns the last scrape and its text.
fn scrape_until(rpc: std::net::SocketAddr, metric: &str, want: f64) -> (String, Scrape) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = request(rpc, "GET", "/metrics", b"", None).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let scrape = parse(&reply.body);
        if sum(&scrape, metric, &[]) >= want || Instant::now() > deadline {
            return (reply.body, scrape);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn counters_match_what_sipp_counted() {
    require_sipp();
    const CALLS: u64 = 300;
    let dir = TempDir::new("metrics-sipp").unwrap();
    let backend_port = free_udp_port();
    let list = dir.join("dispatcher.list");
    fs::write(&list, format!("1 sip:127.0.0.1:{backend_port} 0 0\n")).unwrap();
    let edge = Edge::new()
        .cores(2)
        .config_toml("[dispatcher.health]\nprobe_all = false\n")
        .dispatcher_list(&list)
        .rpc()
        .spawn()
        .unwrap();
    let uas = Sipp::uas(Scenario::named("uas_basic_rr"))
        .local_port(backend_port)
        .timeout(Duration::from_secs(40))
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_basic_rr"), edge.addr())
        .calls(CALLS)
        .rate(100.0)
        .timeout(Duration::from_secs(30))
        .run()
        .unwrap();
    uac.assert_calls_succeeded(CALLS);
    let uas = uas.stop().unwrap();

    let rpc = edge.rpc_addr().unwrap();
    let (text, scrape) = scrape_until(rpc, "edge_call_setup_answer_seconds_count", CALLS as f64);
    let requests = |method| sum(&scrape, "edge_requests_total", &[("method", method)]);
    let responses =
        |metric, method, class| sum(&scrape, metric, &[("method", method), ("class", class)]);
    // Requests as the UAC sent them, retransmissions included.
    assert_eq!(
        requests("INVITE"),
        on_wire(&uac, "INVITE", Direction::Sent),
        "{text}"
    );
    assert_eq!(
        requests("ACK"),
        on_wire(&uac, "ACK", Direction::Sent),
        "{text}"
    );
    assert_eq!(
        requests("BYE"),
        on_wire(&uac, "BYE", Direction::Sent),
        "{text}"
    );
    // The harness's readiness pings, each answered 200 by the edge itself.
    assert_eq!(
        requests("OPTIONS"),
        responses("edge_responses_sent_total", "OPTIONS", "2xx"),
        "{text}"
    );
    assert_eq!(
        sum(&scrape, "edge_calls_total", &[]),
        CALLS as f64,
        "{text}"
    );
    // Responses from the UAS (its 200 rows answer the INVITE and the BYE),
    // and those that reached the UAC, retransmissions included.
    let class = |metric, class| sum(&scrape, metric, &[("class", class)]);
    assert_eq!(
        class("edge_responses_total", "2xx"),
        on_wire(&uas, "200", Direction::Sent),
        "{text}"
    );
    assert_eq!(
        class("edge_responses_total", "1xx"),
        on_wire(&uas, "180", Direction::Sent),
        "{text}"
    );
    assert_eq!(
        responses("edge_responses_total", "BYE", "2xx"),
        on_wire(&uac, "BYE", Direction::Sent),
        "the UAS answers every BYE it gets, retransmissions too\n{text}"
    );
    let options_ok = responses("edge_responses_sent_total", "OPTIONS", "2xx");
    assert_eq!(
        class("edge_responses_sent_total", "2xx") - options_ok,
        on_wire(&uac, "200", Direction::Received),
        "{text}"
    );
    assert_eq!(
        responses("edge_responses_sent_total", "BYE", "2xx"),
        CALLS as f64,
        "{text}"
    );
    for class in ["3xx", "4xx", "5xx", "6xx"] {
        assert_eq!(
            responses("edge_responses_sent_total", "INVITE", class),
            0.0,
            "{text}"
        );
    }
    // Every call timed once to its first response and once to its answer.
    let count = |name: &str| sum(&scrape, name, &[]);
    assert_eq!(count("edge_call_setup_answer_seconds_count"), CALLS as f64);
    assert_eq!(
        count("edge_call_setup_first_response_seconds_count"),
        CALLS as f64
    );
    let buckets = scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            Value::Histogram(b) if s.metric == "edge_call_setup_answer_seconds" => Some(b),
            _ => None,
        })
        .unwrap();
    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {counts:?}"
    );
    let last = buckets.last().unwrap();
    assert_eq!((last.less_than, last.count), (f64::INFINITY, CALLS as f64));
    assert!(count("edge_call_setup_answer_seconds_sum") > 0.0, "{text}");
    assert_eq!(
        sum(&scrape, "edge_destination_failures_total", &[]),
        0.0,
        "{text}"
    );

    let exit = edge.stop(Duration::from_secs(8));
    assert!(exit.success(), "{exit}");
}
