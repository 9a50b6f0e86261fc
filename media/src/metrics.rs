//! Prometheus metrics of the relay, served at `GET /metrics` (text format
//! 0.0.4) by a thread of its own when `--listen-http` is set.
//!
//! Shards never take part in a scrape: each publishes a [`ShardReport`]
//! about once a second ([`Metrics::publish`]) and the HTTP thread renders
//! the latest ones. Counters carry a `shard` label; the process total is
//! their sum.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use edge::metrics::{family, CONTENT_TYPE};

use crate::runtime::ShardCounters;
use crate::session::{MediaSummary, SessionsSummary};

/// How often a shard publishes its report.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// What one shard publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardReport {
    /// The shard's index.
    pub shard: usize,
    /// The relay loop's counters.
    pub relay: ShardCounters,
    /// The call table in numbers.
    pub sessions: SessionsSummary,
    /// The live streams' quality.
    pub media: MediaSummary,
}

/// The shards' latest reports, shared by the shards (writers) and the
/// HTTP thread (reader).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    reports: Arc<Mutex<Vec<ShardReport>>>,
}

impl Metrics {
    /// Keeps `report` as its shard's latest.
    pub fn publish(&self, report: ShardReport) {
        let Ok(mut reports) = self.reports.lock() else {
            return;
        };
        if reports.len() <= report.shard {
            reports.resize(report.shard + 1, ShardReport::default());
        }
        reports[report.shard] = report;
    }

    /// The text exposition of the latest reports. The lock is held only
    /// to copy them.
    pub fn render(&self) -> String {
        let reports = self.reports.lock().map(|r| r.clone()).unwrap_or_default();
        render(&reports)
    }
}

type Get = fn(&ShardReport) -> u64;

/// Families with only the `shard` label: name, type, help, value.
const FAMILIES: &[(&str, &str, &str, Get)] = &[
    (
        "media_packets_relayed_total",
        "counter",
        "RTP and RTCP datagrams relayed.",
        |r| r.relay.media_relayed,
    ),
    (
        "media_bytes_relayed_total",
        "counter",
        "Bytes of the datagrams relayed.",
        |r| r.relay.bytes_relayed,
    ),
    (
        "media_packets_unrouted_total",
        "counter",
        "Datagrams on a relay port no call routes yet.",
        |r| r.relay.media_unrouted,
    ),
    (
        "media_packets_dropped_total",
        "counter",
        "Datagrams dropped because every send slot was in flight.",
        |r| r.relay.media_dropped_full,
    ),
    (
        "media_packets_wrong_source_total",
        "counter",
        "Datagrams dropped by strict source (not from the latched address).",
        |r| r.relay.media_dropped_source,
    ),
    (
        "media_endpoints_latched_total",
        "counter",
        "Stream endpoints learned from the first packets (latching).",
        |r| r.sessions.counters.endpoints_latched,
    ),
    (
        "media_rtp_invalid_total",
        "counter",
        "Datagrams that looked like RTP with an invalid header.",
        |r| r.relay.rtp_invalid,
    ),
    (
        "media_send_failed_total",
        "counter",
        "Sends refused for another reason.",
        |r| r.relay.send_failed,
    ),
    (
        "media_commands_total",
        "counter",
        "ng commands answered by the shard.",
        |r| r.relay.requests_answered,
    ),
    (
        "media_calls_created_total",
        "counter",
        "Calls created by offers.",
        |r| r.sessions.counters.calls_created,
    ),
    (
        "media_calls_deleted_total",
        "counter",
        "Calls ended by delete.",
        |r| r.sessions.counters.calls_deleted,
    ),
    (
        "media_calls_timed_out_total",
        "counter",
        "Calls ended for lack of media.",
        |r| r.sessions.counters.calls_timed_out,
    ),
    (
        "media_calls_final_timed_out_total",
        "counter",
        "Calls ended by the final timeout.",
        |r| r.sessions.counters.calls_final_timed_out,
    ),
    (
        "media_ran_out_of_ports_total",
        "counter",
        "Offers and answers refused for want of ports.",
        |r| r.sessions.counters.ran_out_of_ports,
    ),
    (
        "media_table_full_total",
        "counter",
        "New calls refused because the call table was full.",
        |r| r.sessions.counters.table_full,
    ),
    (
        "media_sdp_errors_total",
        "counter",
        "SDP bodies refused.",
        |r| r.sessions.counters.sdp_errors,
    ),
    (
        "media_unknown_calls_total",
        "counter",
        "Commands for calls or tags not held.",
        |r| r.sessions.counters.unknown_calls,
    ),
    ("media_calls", "gauge", "Calls held.", |r| r.sessions.calls),
    (
        "media_ports_in_use",
        "gauge",
        "Relay port pairs held by calls.",
        |r| r.sessions.ports_in_use,
    ),
    (
        "media_ports_free",
        "gauge",
        "Relay port pairs free to allocate.",
        |r| r.sessions.ports_free,
    ),
    (
        "media_streams_receiving",
        "gauge",
        "Streams of live calls that have received media.",
        |r| r.media.streams_receiving,
    ),
    (
        "media_stream_packets_lost",
        "gauge",
        "Packets lost so far on the streams of live calls (RFC 3550).",
        |r| r.media.packets_lost,
    ),
    (
        "media_stream_jitter_max_ms",
        "gauge",
        "The highest interarrival jitter among live streams, milliseconds.",
        |r| u64::from(r.media.jitter_ms_max),
    ),
];

/// The text exposition of `reports`, by shard.
pub fn render(reports: &[ShardReport]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for (name, kind, help, get) in FAMILIES {
        family(&mut out, name, kind, help);
        for r in reports {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", r.shard, get(r));
        }
    }
    family(
        &mut out,
        "media_stream_mos",
        "gauge",
        "MOS estimates of live streams (simplified E-model): their mean and lowest.",
    );
    for r in reports {
        if let (Some(min), Some(mean)) = (r.media.mos_x10_min, mean_mos(&r.media)) {
            let _ = writeln!(
                out,
                "media_stream_mos{{shard=\"{}\",stat=\"mean\"}} {mean:.2}",
                r.shard
            );
            let _ = writeln!(
                out,
                "media_stream_mos{{shard=\"{}\",stat=\"min\"}} {:.1}",
                r.shard,
                f64::from(min) / 10.0
            );
        }
    }
    out
}

fn mean_mos(media: &MediaSummary) -> Option<f64> {
    (media.mos_rated > 0).then(|| media.mos_x10_sum as f64 / media.mos_rated as f64 / 10.0)
}

/// The running metrics server.
pub struct MetricsServer {
    addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `metrics` until `stop` is set.
    pub fn start(addr: SocketAddr, metrics: Metrics, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let server = tiny_http::Server::http(addr).map_err(io::Error::other)?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other(format!("{addr} is not an IP address")))?;
        let thread = std::thread::Builder::new()
            .name("media-http".into())
            .spawn(move || serve(&server, &metrics, &stop))?;
        Ok(MetricsServer {
            addr: bound,
            thread,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the thread (after the stop flag was set).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the metrics thread panicked");
        }
    }
}

fn serve(server: &tiny_http::Server, metrics: &Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(crate::runtime::MAX_WAIT) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accepting a request failed");
                continue;
            }
        };
        let response = if request.url() == "/metrics" && *request.method() == tiny_http::Method::Get
        {
            let response = tiny_http::Response::from_string(metrics.render());
            match tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
                Ok(header) => response.with_header(header),
                Err(()) => response,
            }
        } else {
            tiny_http::Response::from_string("not found\n").with_status_code(404)
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics: response not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_render_by_shard_and_parse_as_prometheus_text() {
        let metrics = Metrics::default();
        let mut report = ShardReport {
            shard: 1,
            ..ShardReport::default()
        };
        report.relay.media_relayed = 42;
        report.sessions.calls = 3;
        report.media = MediaSummary {
            streams_receiving: 2,
            mos_x10_sum: 85,
            mos_rated: 2,
            mos_x10_min: Some(41),
            ..MediaSummary::default()
        };
        metrics.publish(report);
        metrics.publish(ShardReport::default());
        let text = metrics.render();
        assert!(
            text.contains("media_packets_relayed_total{shard=\"1\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("media_packets_relayed_total{shard=\"0\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("media_calls{shard=\"1\"} 3\n"), "{text}");
        assert!(
            text.contains("media_stream_mos{shard=\"1\",stat=\"mean\"} 4.25\n"),
            "{text}"
        );
        assert!(
            text.contains("media_stream_mos{shard=\"1\",stat=\"min\"} 4.1\n"),
            "{text}"
        );
        assert!(!text.contains("media_stream_mos{shard=\"0\""), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().map(str::parse::<f64>);
            assert!(matches!(value, Some(Ok(_))), "{line}");
        }
    }
}
