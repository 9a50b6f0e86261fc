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

use crate::dispatcher::DestState;
use crate::runtime::{DispatcherView, ShardReport};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The shards' latest reports, shared by the main thread (writer) and the
/// HTTP thread (reader).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    view: Arc<Mutex<DispatcherView>>,
}

impl Metrics {
    /// Keeps `report` as its shard's latest (main thread).
    pub fn publish(&self, report: ShardReport) {
        if let Ok(mut view) = self.view.lock() {
            view.update(report);
        }
    }

    /// The text exposition of the latest reports (HTTP thread). The lock is
    /// held only to copy the reports.
    pub fn render(&self) -> String {
        let view = self.view.lock().map(|v| v.clone()).unwrap_or_default();
        render(&view)
    }
}

type Get = fn(&ShardReport) -> u64;

/// Counters with only the `shard` label: name, help, value.
const COUNTERS: &[(&str, &str, Get)] = &[
    (
        "edge_requests_total",
        "SIP requests received, by the shard that owns the call.",
        |r| r.proxy.requests_in,
    ),
    ("edge_responses_total", "SIP responses received.", |r| {
        r.proxy.responses_in
    }),
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

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
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
    let totals = view.totals();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyStats;
    use crate::runtime::ShellCounters;

    fn report(shard: usize, requests: u64) -> ShardReport {
        ShardReport {
            shard,
            loads: Vec::new(),
            dialogs: 0,
            stats: Default::default(),
            proxy: ProxyStats {
                requests_in: requests,
                ..ProxyStats::default()
            },
            shell: ShellCounters {
                handoffs_out: 3,
                ..ShellCounters::default()
            },
            transactions: 2,
            unfinished: 1,
        }
    }

    #[test]
    fn renders_each_shard_once_per_family() {
        let m = Metrics::default();
        m.publish(report(1, 5));
        m.publish(report(0, 7));
        m.publish(report(0, 9));
        let text = m.render();
        assert!(
            text.contains("edge_requests_total{shard=\"0\"} 9\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_requests_total{shard=\"1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("edge_handoffs_total{shard=\"1\",direction=\"out\"} 3\n"));
        assert!(text.contains("edge_transactions_unfinished{shard=\"0\"} 1\n"));
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
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
