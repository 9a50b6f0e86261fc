//! The dictionaries of `query`, `delete`, `list` and `statistics` replies,
//! in rtpengine's shapes, kept small enough for one datagram.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::sessions::{Call, Stream};
use super::{SessionConfig, SessionsSummary};
use crate::ng::{Dict, Outcome, Value};
use crate::stats::StatsSnapshot;

/// `list` without a `limit` lists this many call-ids, as rtpengine does.
pub const DEFAULT_LIST_LIMIT: usize = 32;
/// `list` never lists more than this many call-ids, whatever the limit.
pub const MAX_LIST_LIMIT: usize = 256;

/// An integer for the reply; counts never reach `i64::MAX`.
fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Unix seconds of `at`, counted from the start of the table.
fn unix_s(at: Instant, config: &SessionConfig, start: Instant) -> Value {
    let since = at.saturating_duration_since(start).as_secs();
    int(config.unix_time_at_start_s.saturating_add(since))
}

/// The statistics of one call: `created`, `last signal`, `tags` and
/// `totals`. `tags` lists A and its partner, then the other answered
/// branches (untagged ones are not listed). At most
/// [`SessionConfig::max_streams_listed`] streams, and entries of other
/// branches, are spelled out; `totals` counts every stream.
pub(super) fn call_stats(call: &Call, config: &SessionConfig, start: Instant) -> Dict {
    let mut listed = 0;
    let mut tags = Dict::with_capacity(2);
    let others = (1..call.sides.len()).filter(|&i| i != call.partner);
    for (order, index) in [0, call.partner].into_iter().chain(others).enumerate() {
        let Some(side) = call.sides.get(index) else {
            continue;
        };
        let Some(tag) = &side.tag else { continue };
        if order >= 2 {
            // Beyond the dialogue, a side's entry costs as much of the
            // budget as a stream, so the reply is never longer than that
            // of an unforked call.
            if listed >= config.max_streams_listed {
                break;
            }
            listed += 1;
        }
        let peer = call.sides.get(call.peer_of(index));
        let other = peer.and_then(|p| p.tag.clone()).unwrap_or_default();
        let mut medias = Vec::new();
        for (media_index, stream) in side.streams.iter().enumerate() {
            if listed >= config.max_streams_listed {
                break;
            }
            listed += 1;
            let mut media = Dict::with_capacity(2);
            media.push("index", int(media_index as u64 + 1));
            media.push(
                "streams",
                vec![Value::from(stream_dict(stream, config, start))],
            );
            medias.push(Value::from(media));
        }
        let mut entry = Dict::with_capacity(3);
        entry.push("tag", tag.clone());
        entry.push("in dialogue with", other);
        entry.push("medias", medias);
        tags.push(tag.clone(), entry);
    }
    let (mut rtp, mut rtcp) = (StatsSnapshot::default(), StatsSnapshot::default());
    for stream in call.sides.iter().flat_map(|s| s.streams.iter()) {
        let s = stream.stats.snapshot();
        rtp.packets = rtp.packets.saturating_add(s.packets);
        rtp.bytes = rtp.bytes.saturating_add(s.bytes);
        rtp.errors = rtp.errors.saturating_add(s.errors);
        rtcp.packets = rtcp.packets.saturating_add(s.rtcp_packets);
        rtcp.bytes = rtcp.bytes.saturating_add(s.rtcp_bytes);
    }
    let mut totals = Dict::with_capacity(2);
    totals.push("RTP", counts(&rtp));
    totals.push("RTCP", counts(&rtcp));
    let mut d = Dict::with_capacity(4);
    d.push("created", unix_s(call.created, config, start));
    d.push("last signal", unix_s(call.last_signal, config, start));
    d.push("tags", tags);
    d.push("totals", totals);
    d
}

fn stream_dict(stream: &Stream, config: &SessionConfig, start: Instant) -> Dict {
    let mut d = Dict::with_capacity(5);
    d.push("local port", int(u64::from(stream.local_port)));
    // rtpengine's shape: `endpoint` is where media goes (the latched
    // source once known), `advertised endpoint` what the SDP said. No
    // `confirmed` flag: with four streams of long IPv6 addresses it would
    // push the reply past one datagram.
    let latched = stream.latched.filter(|_| stream.remote.is_some());
    d.push("endpoint", endpoint(latched.or(stream.remote)));
    d.push("advertised endpoint", endpoint(stream.remote));
    let last = stream
        .last_packet
        .map_or(Value::Int(0), |at| unix_s(at, config, start));
    d.push("last packet", last);
    d.push("stats", counts(&stream.stats.snapshot()));
    d
}

fn endpoint(address: Option<SocketAddr>) -> Dict {
    let mut d = Dict::with_capacity(3);
    match address {
        Some(address) => {
            let family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
            d.push("family", family);
            d.push("address", address.ip().to_string());
            d.push("port", int(u64::from(address.port())));
        }
        None => d.push("port", Value::Int(0)),
    }
    d
}

fn counts(s: &StatsSnapshot) -> Dict {
    let mut d = Dict::with_capacity(3);
    d.push("packets", int(s.packets));
    d.push("bytes", int(s.bytes));
    d.push("errors", int(s.errors));
    d
}

/// How many call-ids `list` with `limit` answers with.
pub fn list_limit(limit: Option<u32>) -> usize {
    limit
        .map_or(DEFAULT_LIST_LIMIT, |l| l as usize)
        .min(MAX_LIST_LIMIT)
}

/// `list`: `calls`, the call-ids given (in no particular order), at most
/// [`list_limit`] of them.
pub fn list_reply(ids: impl IntoIterator<Item = Bytes>, limit: Option<u32>) -> Outcome {
    let calls: Vec<Value> = ids
        .into_iter()
        .take(list_limit(limit))
        .map(Value::from)
        .collect();
    let mut fields = Dict::with_capacity(1);
    fields.push("calls", calls);
    Outcome::ok_with(fields)
}

/// `statistics`: rtpengine's `currentstatistics` and `totalstatistics`,
/// with our port and refusal counts.
pub fn statistics_reply(summary: &SessionsSummary) -> Outcome {
    let c = &summary.counters;
    let mut current = Dict::with_capacity(5);
    current.push("sessionsown", int(summary.calls));
    current.push("sessionsforeign", Value::Int(0));
    current.push("sessionstotal", int(summary.calls));
    current.push("ports in use", int(summary.ports_in_use));
    current.push("ports free", int(summary.ports_free));
    let mut total = Dict::with_capacity(7);
    total.push("managedsessions", int(c.calls_created));
    total.push("deletedsessions", int(c.calls_deleted));
    total.push("timeoutsessions", int(c.calls_timed_out));
    total.push("finaltimeoutsessions", int(c.calls_final_timed_out));
    total.push("ran out of ports", int(c.ran_out_of_ports));
    total.push("table full", int(c.table_full));
    total.push("sdp errors", int(c.sdp_errors));
    let mut statistics = Dict::with_capacity(2);
    statistics.push("currentstatistics", current);
    statistics.push("totalstatistics", total);
    let mut fields = Dict::with_capacity(1);
    fields.push("statistics", statistics);
    Outcome::ok_with(fields)
}
