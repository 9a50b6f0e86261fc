//! Prometheus metrics: the text exposition format (0.0.4) served at
//! `GET /metrics` by the control plane's HTTP thread.
//!
//! Shards never take part in a scrape. Each shard sends its counters in the
//! [`ShardReport`] it publishes about once a second; the main thread keeps
//! the latest report of each shard here ([`Metrics::publish`]) and the HTTP
//! thread renders them ([`Metrics::render`]). The only lock is between those
//! two threads.
//!
//! Counters are per shard (label `shard`); the process total is their sum
//! (`sum without (shard) (...)`), so no separate total series is written that
//! a `sum()` would count twice.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::dispatcher::DestState;
use crate::proxy::{LatencyHistogram, SetupLatency, CODE_CLASSES};
use crate::runtime::{DispatcherView, ShardReport};
use crate::sip::Method;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The shards' latest reports, shared by the main thread (writer) and the
/// HTTP thread (reader).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    state: Arc<Mutex<Published>>,
}

/// What the main thread published: the latest reports and each shard's
/// call rate between its last two reports.
#[derive(Clone, Debug, Default)]
struct Published {
    view: DispatcherView,
    /// By shard: (calls, when) of the previous report, and the rate since.
    rates: Vec<(u64, Option<Instant>, f64)>,
}

impl Metrics {
    /// Keeps `report` as its shard's latest (main thread), received `now`.
    pub fn publish(&self, now: Instant, report: ShardReport) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let shard = report.shard;
        if state.rates.len() <= shard {
            state.rates.resize(shard + 1, (0, None, 0.0));
        }
        let (calls, at, rate) = &mut state.rates[shard];
        if let Some(at) = *at {
            let seconds = now.saturating_duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                *rate = report.proxy.calls.saturating_sub(*calls) as f64 / seconds;
            }
        }
        (*calls, *at) = (report.proxy.calls, Some(now));
        state.view.update(report);
    }

    /// The text exposition of the latest reports (HTTP thread). The lock is
    /// held only to copy the reports.
    pub fn render(&self) -> String {
        let state = self.state.lock().map(|v| v.clone()).unwrap_or_default();
        let mut out = render(&state.view);
        render_rates(&mut out, &state.rates);
        out
    }
}

/// `edge_calls_per_second`, by shard.
fn render_rates(out: &mut String, rates: &[(u64, Option<Instant>, f64)]) {
    family(
        out,
        "edge_calls_per_second",
        "gauge",
        "Initial INVITEs per second between the shard's last two reports (about 1 s).",
    );
    for (shard, (_, _, rate)) in rates.iter().enumerate() {
        let _ = writeln!(out, "edge_calls_per_second{{shard=\"{shard}\"}} {rate:.3}");
    }
}

type Get = fn(&ShardReport) -> u64;

/// Counters with only the `shard` label: name, help, value.
const COUNTERS: &[(&str, &str, Get)] = &[
    (
        "edge_calls_total",
        "Initial INVITEs received (retransmissions excluded), whatever became of them.",
        |r| r.proxy.calls,
    ),
    (
        "edge_transactions_created_total",
        "Transactions created (server and client).",
        |r| r.proxy.transactions_created,
    ),
    (
        "edge_transactions_freed_total",
        "Transactions removed from the table.",
        |r| r.proxy.transactions_freed,
    ),
    (
        "edge_parse_errors_total",
        "Datagrams that did not parse.",
        |r| r.proxy.parse_errors,
    ),
    (
        "edge_retransmissions_absorbed_total",
        "Retransmitted requests and responses absorbed by a transaction.",
        |r| r.proxy.retransmissions_absorbed,
    ),
    (
        "edge_requests_forwarded_total",
        "Requests forwarded.",
        |r| r.proxy.requests_forwarded,
    ),
    (
        "edge_responses_forwarded_total",
        "Responses forwarded (statefully or stray).",
        |r| r.proxy.responses_forwarded,
    ),
    (
        "edge_responses_generated_total",
        "Responses the edge wrote itself, first transmissions only.",
        |r| r.proxy.responses_generated,
    ),
    (
        "edge_stray_responses_total",
        "Responses with no client transaction forwarded by their second Via.",
        |r| r.proxy.stray_responses,
    ),
    (
        "edge_responses_dropped_total",
        "Responses dropped (top Via not ours, no second Via or no address).",
        |r| r.proxy.responses_dropped,
    ),
    (
        "edge_rejected_overload_total",
        "503s from a full transaction table or shutdown.",
        |r| r.proxy.rejected_overload,
    ),
    (
        "edge_no_route_total",
        "Initial requests the router refused (503).",
        |r| r.proxy.no_route,
    ),
    (
        "edge_timeouts_total",
        "Branches ended by Timer B, C or F (408 upstream).",
        |r| r.proxy.timeouts,
    ),
    ("edge_loops_detected_total", "Requests answered 482.", |r| {
        r.proxy.loops_detected
    }),
    ("edge_too_many_hops_total", "Requests answered 483.", |r| {
        r.proxy.too_many_hops
    }),
    (
        "edge_acks_absorbed_total",
        "ACKs of non-2xx finals absorbed.",
        |r| r.proxy.acks_absorbed,
    ),
    (
        "edge_cancels_total",
        "CANCELs that matched a transaction.",
        |r| r.proxy.cancels,
    ),
    (
        "edge_failovers_total",
        "New branches started by a failover.",
        |r| r.proxy.failovers,
    ),
    (
        "edge_probes_sent_total",
        "OPTIONS probes sent to destinations.",
        |r| r.proxy.probes_sent,
    ),
    (
        "edge_transmits_dropped_total",
        "Datagrams dropped on a full transmit queue of the core.",
        |r| r.proxy.transmits_dropped,
    ),
    (
        "edge_handoff_drops_total",
        "Datagrams for another shard dropped on a full channel.",
        |r| r.shell.handoff_drops,
    ),
    (
        "edge_send_drops_total",
        "Transmits dropped by the shell (no send slot, or refused).",
        |r| r.shell.send_drops,
    ),
    (
        "edge_ring_errors_total",
        "io_uring errors (receive, send or wake-up).",
        |r| r.shell.ring_errors,
    ),
    (
        "edge_state_change_drops_total",
        "Destination state changes dropped on full channels.",
        |r| r.shell.state_change_drops,
    ),
    (
        "edge_reloads_total",
        "Destination snapshots swapped in.",
        |r| r.shell.reloads,
    ),
    (
        "edge_dialogs_started_total",
        "Calls answered and remembered by the dispatcher.",
        |r| r.stats.dialogs_started,
    ),
    (
        "edge_dialogs_ended_total",
        "Calls ended by a BYE's final response.",
        |r| r.stats.dialogs_ended,
    ),
    (
        "edge_dialogs_expired_total",
        "Calls released by the dialog timeout.",
        |r| r.stats.dialogs_expired,
    ),
    (
        "edge_dialogs_evicted_total",
        "Calls released early because the dialog table was full.",
        |r| r.stats.dialogs_evicted,
    ),
];

/// Gauges with only the `shard` label.
const GAUGES: &[(&str, &str, Get)] = &[
    (
        "edge_transactions",
        "Transactions in the shard's table.",
        |r| r.transactions as u64,
    ),
    (
        "edge_transactions_unfinished",
        "Transactions still waiting for a final response.",
        |r| r.unfinished as u64,
    ),
    (
        "edge_dialogs",
        "Answered calls the shard's dispatcher remembers.",
        |r| r.dialogs as u64,
    ),
];

/// Counters with a `direction` label as well: name, help, (direction, value).
/// A `direction` label value and its reading.
type Directed = [(&'static str, Get); 2];

const DIRECTED: &[(&str, &str, Directed)] = &[
    (
        "edge_handoffs_total",
        "Datagrams handed between shards (out: to the owner shard, in: from another shard).",
        [
            ("out", |r| r.shell.handoffs_out),
            ("in", |r| r.shell.handoffs_in),
        ],
    ),
    (
        "edge_state_changes_total",
        "Destination state changes sent to (out) or received from (in) other shards.",
        [
            ("out", |r| r.shell.state_changes_out),
            ("in", |r| r.shell.state_changes_in),
        ],
    ),
];

const STATES: [(DestState, &str); 5] = [
    (DestState::Active, "active"),
    (DestState::Trying, "trying"),
    (DestState::Inactive, "inactive"),
    (DestState::Disabled, "disabled"),
    (DestState::Draining, "draining"),
];

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The text exposition of `view`.
pub fn render(view: &DispatcherView) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let mut reports: Vec<&ShardReport> = view.reports().collect();
    reports.sort_by_key(|r| r.shard);
    for (kind, list) in [("counter", COUNTERS), ("gauge", GAUGES)] {
        for (name, help, get) in list {
            family(&mut out, name, kind, help);
            for r in &reports {
                let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", r.shard, get(r));
            }
        }
    }
    for (name, help, dirs) in DIRECTED {
        family(&mut out, name, "counter", help);
        for r in &reports {
            for (dir, get) in dirs {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\",direction=\"{dir}\"}} {}",
                    r.shard,
                    get(r)
                );
            }
        }
    }
    render_traffic(&mut out, &reports);
    let totals = view.totals();
    render_destination_health(&mut out, &totals);
    let mut latency = SetupLatency::default();
    reports.iter().for_each(|r| latency.add(&r.latency));
    render_histogram(
        &mut out,
        "edge_call_setup_first_response_seconds",
        "From an initial INVITE to its first response from downstream, all shards.",
        &latency.first_response,
    );
    render_histogram(
        &mut out,
        "edge_call_setup_answer_seconds",
        "From an initial INVITE to its first 2xx from downstream, all shards.",
        &latency.answer,
    );
    family(
        &mut out,
        "edge_destination_state",
        "gauge",
        "1 for the destination's current state, 0 for the others.",
    );
    for t in &totals {
        let uri = escape(&t.key.uri);
        for (state, label) in STATES {
            let _ = writeln!(
                out,
                "edge_destination_state{{set=\"{}\",uri=\"{uri}\",state=\"{label}\"}} {}",
                t.key.set,
                u8::from(t.state == state)
            );
        }
    }
    for (name, help, pick) in [
        (
            "edge_destination_active_calls",
            "Answered calls on the destination, all shards.",
            (|t| t.active) as fn(&crate::runtime::DestinationTotal) -> u64,
        ),
        (
            "edge_destination_pending_calls",
            "Calls being set up on the destination, all shards.",
            |t| t.pending,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for t in &totals {
            let _ = writeln!(
                out,
                "{name}{{set=\"{}\",uri=\"{}\"}} {}",
                t.key.set,
                escape(&t.key.uri),
                pick(t)
            );
        }
    }
    out
}

/// The `method` label of a [`Method`]: its name, `other` for extensions.
fn method_label(m: Method) -> &'static str {
    m.as_str().unwrap_or("other")
}

/// Requests by method and responses by method and class, by shard. Every
/// method's request series is written; response series only once non-zero.
fn render_traffic(out: &mut String, reports: &[&ShardReport]) {
    family(
        out,
        "edge_requests_total",
        "counter",
        "SIP requests received, by the shard that owns the call and method.",
    );
    for r in reports {
        for m in Method::ALL {
            let n = r.proxy.requests_by_method[m.index()];
            let (shard, method) = (r.shard, method_label(m));
            let _ = writeln!(
                out,
                "edge_requests_total{{shard=\"{shard}\",method=\"{method}\"}} {n}"
            );
        }
    }
    for (name, help, pick) in [
        (
            "edge_responses_total",
            "SIP responses received, by CSeq method and code class.",
            (|r| &r.proxy.responses_in_by_class) as fn(&ShardReport) -> &ResponseTable,
        ),
        (
            "edge_responses_sent_total",
            "SIP responses sent upstream (forwarded or written here), by CSeq method and class.",
            |r| &r.proxy.responses_out_by_class,
        ),
    ] {
        family(out, name, "counter", help);
        for r in reports {
            for m in Method::ALL {
                for (class, n) in pick(r)[m.index()].iter().enumerate() {
                    if *n == 0 {
                        continue;
                    }
                    let (shard, method, class) = (r.shard, method_label(m), class + 1);
                    let _ = writeln!(
                        out,
                        "{name}{{shard=\"{shard}\",method=\"{method}\",class=\"{class}xx\"}} {n}"
                    );
                }
            }
        }
    }
}

type ResponseTable = [[u64; CODE_CLASSES]; Method::COUNT];

/// Failures and the last probe's round trip, by destination.
fn render_destination_health(out: &mut String, totals: &[crate::runtime::DestinationTotal]) {
    family(
        out,
        "edge_destination_failures_total",
        "counter",
        "Failed probes and failovers counted against the destination, all shards.",
    );
    for t in totals {
        let (set, uri) = (t.key.set, escape(&t.key.uri));
        let _ = writeln!(
            out,
            "edge_destination_failures_total{{set=\"{set}\",uri=\"{uri}\"}} {}",
            t.failures
        );
    }
    family(
        out,
        "edge_destination_probe_latency_seconds",
        "gauge",
        "Round trip of the destination's last answered OPTIONS probe.",
    );
    for t in totals {
        let Some(rtt) = t.probe_rtt else { continue };
        let (set, uri) = (t.key.set, escape(&t.key.uri));
        let _ = writeln!(
            out,
            "edge_destination_probe_latency_seconds{{set=\"{set}\",uri=\"{uri}\"}} {:.6}",
            rtt.as_secs_f64()
        );
    }
}

/// Upper bounds of the setup latency buckets, microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// A Prometheus histogram from `h`: cumulative buckets, `+Inf`, sum, count.
fn render_histogram(out: &mut String, name: &str, help: &str, h: &LatencyHistogram) {
    family(out, name, "histogram", help);
    for le in LATENCY_BUCKETS_US {
        let bound = le as f64 / 1e6;
        let n = h.count_at_most(le);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum {:.6}", h.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.count());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyStats;
    use crate::runtime::ShellCounters;
    use std::time::Duration;

    fn report(shard: usize, invites: u64) -> ShardReport {
        let mut proxy = ProxyStats {
            calls: invites,
            ..ProxyStats::default()
        };
        proxy.requests_by_method[Method::Invite.index()] = invites;
        proxy.responses_in_by_class[Method::Invite.index()][1] = invites;
        let mut latency = SetupLatency::default();
        for ms in [3, 40, 700] {
            latency.answer.record(Duration::from_millis(ms));
        }
        ShardReport {
            shard,
            loads: Vec::new(),
            dialogs: 0,
            stats: Default::default(),
            proxy,
            shell: ShellCounters {
                handoffs_out: 3,
                ..ShellCounters::default()
            },
            transactions: 2,
            unfinished: 1,
            latency,
        }
    }

    #[test]
    fn renders_each_shard_once_per_family() {
        let m = Metrics::default();
        let t0 = Instant::now();
        m.publish(t0, report(1, 5));
        m.publish(t0, report(0, 7));
        m.publish(t0 + Duration::from_secs(2), report(0, 9));
        let text = m.render();
        for want in [
            "edge_requests_total{shard=\"0\",method=\"INVITE\"} 9\n",
            "edge_requests_total{shard=\"1\",method=\"INVITE\"} 5\n",
            "edge_requests_total{shard=\"1\",method=\"other\"} 0\n",
            "edge_responses_total{shard=\"0\",method=\"INVITE\",class=\"2xx\"} 9\n",
            "edge_calls_per_second{shard=\"0\"} 1.000\n",
            "edge_calls_per_second{shard=\"1\"} 0.000\n",
            "edge_handoffs_total{shard=\"1\",direction=\"out\"} 3\n",
            "edge_transactions_unfinished{shard=\"0\"} 1\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(!text.contains("class=\"1xx\""), "zero series are left out");
        assert_eq!(
            text.matches("# TYPE edge_requests_total counter").count(),
            1
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn setup_latency_is_a_cumulative_histogram_over_shards() {
        let m = Metrics::default();
        m.publish(Instant::now(), report(0, 1));
        m.publish(Instant::now(), report(1, 1));
        let text = m.render();
        let name = "edge_call_setup_answer_seconds";
        let bucket = |le: &str| -> u64 {
            let prefix = format!("{name}_bucket{{le=\"{le}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
            line[prefix.len()..].parse().unwrap()
        };
        assert_eq!(bucket("0.001"), 0);
        assert_eq!(bucket("0.005"), 2);
        assert_eq!(bucket("0.05"), 4);
        assert_eq!(bucket("0.5"), 4);
        assert_eq!(bucket("1"), 6);
        assert_eq!(bucket("+Inf"), 6);
        assert!(text.contains(&format!("{name}_count 6\n")));
        assert!(text.contains(&format!("{name}_sum 1.486000\n")), "{text}");
        assert!(text.contains("# TYPE edge_call_setup_first_response_seconds histogram"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
