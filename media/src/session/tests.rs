//! Scenario tests of the session layer, with a fake clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::ng::reply::{reply_dict, CALL_NOT_FOUND};
use crate::ng::{
    self, CallIds, Command, Control, Dict, Flag, Ice, Options, Outcome, Request, Value, Warning,
};
use crate::sdp::{Sdp, SdpLimits};

/// The offer from COMPAT.md: side A receives at 198.51.100.1:2000.
pub(super) const OFFER_SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=-\r\n\
    c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 2000 RTP/AVP 0 8 101\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// The callee's answer: side B receives at 192.0.2.5:4000.
const ANSWER_SDP: &str = "v=0\r\no=- 77 1 IN IP4 192.0.2.5\r\ns=-\r\n\
    c=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

const CALL: &str = "a84b4c76e66710@pc33";
const TAG_A: &str = "1928301774";
const TAG_B: &str = "a6c85cf";
const RELAY: &str = "203.0.113.1";

/// Where A's and B's packets come from when no NAT is in the way: the
/// endpoints of their SDPs.
const FROM_A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 2000);
const FROM_B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)), 4000);

pub(super) fn config(port_min: u16, port_max: u16) -> SessionConfig {
    SessionConfig {
        advertised_address: RELAY.parse().expect("an IP"),
        port_min,
        port_max,
        ..SessionConfig::default()
    }
}

fn sessions(t0: Instant) -> Sessions {
    Sessions::new(t0, config(30_000, 30_099), 0, 1).expect("valid range")
}

fn ids(call: &str, from: &str) -> CallIds {
    CallIds {
        call_id: Bytes::copy_from_slice(call.as_bytes()),
        from_tag: Bytes::copy_from_slice(from.as_bytes()),
        via_branch: None,
    }
}

fn request(command: Command) -> Request {
    Request {
        command,
        options: Options {
            ice: Some(Ice::Remove),
            ..Options::default()
        },
    }
}

pub(super) fn offer(call: &str, from: &str, to: Option<&str>, sdp: &str) -> Request {
    request(Command::Offer {
        ids: ids(call, from),
        to_tag: to.map(|t| Bytes::copy_from_slice(t.as_bytes())),
        sdp: Bytes::copy_from_slice(sdp.as_bytes()),
    })
}

pub(super) fn answer(call: &str, from: &str, to: &str, sdp: &str) -> Request {
    request(Command::Answer {
        ids: ids(call, from),
        to_tag: Bytes::copy_from_slice(to.as_bytes()),
        sdp: Bytes::copy_from_slice(sdp.as_bytes()),
    })
}

pub(super) fn delete(call: &str, from: &str, flags: Vec<Flag>) -> Request {
    let mut r = request(Command::Delete {
        ids: ids(call, from),
        to_tag: None,
    });
    r.options.flags = flags;
    r
}

fn fields(outcome: Outcome) -> Dict {
    match outcome {
        Outcome::Ok { fields, warnings } => {
            assert!(warnings.is_empty(), "warnings: {warnings:?}");
            fields
        }
        other => panic!("not ok: {other:?}"),
    }
}

/// The relay address and RTP port of the reply's SDP, which must carry
/// `a=rtcp:<port+1>`.
fn relay_port(outcome: Outcome) -> u16 {
    let fields = fields(outcome);
    let sdp = fields.get(b"sdp").and_then(Value::as_bytes).expect("sdp");
    let parsed = Sdp::parse(sdp.clone(), &SdpLimits::default()).expect("parses");
    let remote = parsed
        .media_at(0)
        .and_then(|m| m.remote_endpoint())
        .expect("c= and m=");
    assert_eq!(remote.address, RELAY);
    assert_eq!(remote.rtp_port % 2, 0);
    let rtcp = format!("a=rtcp:{}\r\n", remote.rtp_port + 1);
    assert!(sdp.windows(rtcp.len()).any(|w| w == rtcp.as_bytes()));
    assert!(!sdp.windows(6).any(|w| w == b"a=ice-"));
    remote.rtp_port
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// Offer from A and answer from B: (B's relay port, A's relay port).
fn established(s: &mut Sessions, now: Instant) -> (u16, u16) {
    let port_b = relay_port(s.handle_request(now, &offer(CALL, TAG_A, None, OFFER_SDP)));
    let port_a = relay_port(s.handle_request(now, &answer(CALL, TAG_A, TAG_B, ANSWER_SDP)));
    (port_b, port_a)
}

#[test]
fn offer_and_answer_rewrite_and_route_both_ways() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, port_a) = established(&mut s, t0);
    assert_ne!(port_a, port_b);
    assert_eq!(s.pool().in_use_count(), 2);
    // B sends to port_b; its packets go to A, from A's relay port.
    let to_a = s.route(port_b).expect("routed");
    assert_eq!(to_a.to, addr("198.51.100.1:2000"));
    assert_eq!(to_a.from_port, port_a);
    assert!(!to_a.rtcp);
    let to_b = s.route(port_a).expect("routed");
    assert_eq!(to_b.to, addr("192.0.2.5:4000"));
    assert_eq!(to_b.from_port, port_b);
    let rtcp = s.route(port_a + 1).expect("routed");
    assert_eq!(rtcp.to, addr("192.0.2.5:4001"));
    assert_eq!(rtcp.from_port, port_b + 1);
    assert!(rtcp.rtcp);
    assert_eq!(s.route(port_a + 2), None);
}

#[test]
fn on_media_routes_counts_and_keeps_the_call_alive_in_one_lookup() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (_, port_a) = established(&mut s, t0);
    let later = t0 + Duration::from_secs(50);
    let (route, stats) = s.on_media(later, port_a, FROM_A).relay().expect("routed");
    assert_eq!(stats.packets(), 0);
    assert_eq!(Some(route), s.route(port_a));
    assert_eq!(s.stream(port_a).and_then(|st| st.last_packet), Some(later));
    // Alive at 60 s from the start: the timeout counts from the last packet.
    s.handle_timeout(t0 + Duration::from_secs(61));
    assert!(
        s.route(port_a).is_some(),
        "the packet at 50 s kept the call"
    );
    assert!(
        s.on_media(later, port_a + 2, FROM_A).relay().is_none(),
        "no call holds that port"
    );
}

#[test]
fn before_the_answer_only_the_offerer_is_reachable() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b = relay_port(s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP)));
    // Early media from B reaches A; A's port is not allocated yet.
    assert_eq!(s.route(port_b), None, "no port towards A to send from");
    assert_eq!(s.pool().in_use_count(), 1);
}

#[test]
fn a_resent_offer_reuses_its_ports() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let first = s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP));
    let again = s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP));
    assert_eq!(first, again);
    assert_eq!(s.pool().in_use_count(), 1);
    assert_eq!(s.counters().calls_created, 1);
}

#[test]
fn a_reinvite_from_the_callee_is_matched_by_tag() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, port_a) = established(&mut s, t0);
    let moved = ANSWER_SDP.replace("4000", "4002");
    let reinvite = offer(CALL, TAG_B, Some(TAG_A), &moved);
    // The re-INVITE goes to A, so it carries A's relay port.
    assert_eq!(relay_port(s.handle_request(t0, &reinvite)), port_a);
    assert_eq!(s.route(port_a).expect("routed").to, addr("192.0.2.5:4002"));
    let reply = answer(CALL, TAG_B, TAG_A, OFFER_SDP);
    assert_eq!(relay_port(s.handle_request(t0, &reply)), port_b);
    assert_eq!(s.pool().in_use_count(), 2);
}

#[test]
fn an_answer_for_an_unknown_call_is_an_error() {
    let mut s = sessions(Instant::now());
    let out = s.handle_request(Instant::now(), &answer("nope", TAG_A, TAG_B, ANSWER_SDP));
    assert_eq!(out, Outcome::error(UNKNOWN_CALL));
    assert_eq!(s.call_count(), 0);
}

#[test]
fn an_offer_with_a_foreign_tag_is_refused() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    established(&mut s, t0);
    let out = s.handle_request(t0, &offer(CALL, "stranger", None, OFFER_SDP));
    assert_eq!(out, Outcome::error(TAG_MISMATCH));
    assert_eq!(s.pool().in_use_count(), 2);
}

#[test]
fn a_bad_sdp_is_an_error_and_creates_nothing() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let out = s.handle_request(t0, &offer(CALL, TAG_A, None, "garbage"));
    assert_eq!(out, Outcome::error(SDP_FAILED));
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.counters().sdp_errors, 1);
}

#[test]
fn delete_replies_with_statistics_and_releases_after_the_delay() {
    let t0 = Instant::now();
    // Two pairs: exactly one call's worth.
    let mut s = Sessions::new(t0, config(30_000, 30_003), 0, 1).expect("valid");
    let (port_b, port_a) = established(&mut s, t0);
    assert!(s
        .on_media(t0 + Duration::from_secs(1), port_a, FROM_A)
        .relay()
        .is_some());
    let stats = fields(s.handle_request(t0 + Duration::from_secs(2), &delete(CALL, TAG_A, vec![])));
    let keys: Vec<&[u8]> = stats.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(keys, [&b"created"[..], b"last signal", b"tags", b"totals"]);
    let tags = stats.get(b"tags").and_then(Value::as_dict).expect("tags");
    let side_a = tags
        .get(TAG_A.as_bytes())
        .and_then(Value::as_dict)
        .expect("A");
    assert_eq!(side_a.get(b"in dialogue with"), Some(&Value::from(TAG_B)));
    let medias = side_a
        .get(b"medias")
        .and_then(Value::as_list)
        .expect("medias");
    let stream = medias[0]
        .as_dict()
        .and_then(|m| m.get(b"streams"))
        .and_then(Value::as_list)
        .and_then(|l| l[0].as_dict())
        .expect("a stream");
    assert_eq!(
        stream.get(b"local port"),
        Some(&Value::Int(i64::from(port_a)))
    );
    let endpoint = stream
        .get(b"endpoint")
        .and_then(Value::as_dict)
        .expect("endpoint");
    assert_eq!(endpoint.get(b"address"), Some(&Value::from("198.51.100.1")));
    assert_eq!(endpoint.get(b"port"), Some(&Value::Int(2000)));
    assert_eq!(stream.get(b"last packet"), Some(&Value::Int(1)));
    assert!(stats.to_bytes().len() < 1400);
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.pool().in_use_count(), 0);
    assert_eq!(s.pool().quarantined_count(), 2);
    assert_eq!(s.route(port_b), None);
    // The ports wait out the 30 s delete delay before the next call.
    let early = s.handle_request(
        t0 + Duration::from_secs(20),
        &offer("c2", TAG_A, None, OFFER_SDP),
    );
    assert_eq!(early, Outcome::error(RAN_OUT_OF_PORTS));
    let later = s.handle_request(
        t0 + Duration::from_secs(33),
        &offer("c2", TAG_A, None, OFFER_SDP),
    );
    assert!(matches!(later, Outcome::Ok { .. }), "{later:?}");
}

#[test]
fn delete_fast_replies_without_statistics() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    established(&mut s, t0);
    let out = s.handle_request(t0, &delete(CALL, TAG_B, vec![Flag::Fast]));
    assert_eq!(out, Outcome::ok());
    assert_eq!(s.pool().in_use_count(), 0);
}

#[test]
fn deleting_an_unknown_call_warns_or_fails_with_fatal() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let out = s.handle_request(t0, &delete("nope", TAG_A, vec![]));
    assert_eq!(
        out,
        Outcome::Ok {
            fields: Dict::new(),
            warnings: vec![Warning::Other(CALL_NOT_FOUND.into())],
        }
    );
    let fatal = s.handle_request(t0, &delete("nope", TAG_A, vec![Flag::Fatal]));
    assert_eq!(fatal, Outcome::error(CALL_NOT_FOUND));
    // A known call with a tag it does not have is not found either.
    established(&mut s, t0);
    let wrong = s.handle_request(t0, &delete(CALL, "other", vec![Flag::Fatal]));
    assert_eq!(wrong, Outcome::error(CALL_NOT_FOUND));
    assert_eq!(s.call_count(), 1);
}

fn two_streams(base: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
         m=audio {base} RTP/AVP 0\r\nm=video {} RTP/AVP 96\r\n",
        base + 2
    )
}

#[test]
fn running_out_of_ports_is_an_error_and_leaks_nothing() {
    let t0 = Instant::now();
    let mut s = Sessions::new(t0, config(30_000, 30_001), 0, 1).expect("one pair");
    let out = s.handle_request(t0, &offer("c1", TAG_A, None, &two_streams(2000)));
    assert_eq!(out, Outcome::error(RAN_OUT_OF_PORTS));
    assert_eq!(s.pool().in_use_count(), 0);
    assert_eq!(
        s.pool().quarantined_count(),
        1,
        "the one pair taken is given back"
    );
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.counters().ran_out_of_ports, 1);

    // An existing call that asks for more keeps what it had.
    let mut s = Sessions::new(t0, config(30_000, 30_001), 0, 1).expect("one pair");
    let port = relay_port(s.handle_request(t0, &offer("c1", TAG_A, None, OFFER_SDP)));
    let out = s.handle_request(t0, &offer("c1", TAG_A, None, &two_streams(2000)));
    assert_eq!(out, Outcome::error(RAN_OUT_OF_PORTS));
    assert_eq!(s.pool().in_use_count(), 1);
    assert_eq!(s.ports_held(), 1);
    assert!(s.stream(port).is_some());
}

#[test]
fn a_call_without_media_times_out_and_media_keeps_it_alive() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (_, port_a) = established(&mut s, t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    s.handle_timeout(t0 + Duration::from_secs(59));
    assert_eq!(s.call_count(), 1);
    assert!(s
        .on_media(t0 + Duration::from_secs(50), port_a + 1, FROM_A)
        .relay()
        .is_some());
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(110)));
    s.handle_timeout(t0 + Duration::from_secs(100));
    assert_eq!(s.call_count(), 1);
    s.handle_timeout(t0 + Duration::from_secs(110));
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.pool().in_use_count(), 0);
    assert_eq!(s.counters().calls_timed_out, 1);
    assert_eq!(s.poll_timeout(), None);
    assert!(s
        .on_media(t0 + Duration::from_secs(111), port_a, FROM_A)
        .relay()
        .is_none());
}

#[test]
fn the_final_timeout_bounds_a_busy_call() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        final_timeout: Some(Duration::from_secs(120)),
        ..config(30_000, 30_099)
    };
    let mut s = Sessions::new(t0, cfg, 0, 1).expect("valid");
    let (port_b, _) = established(&mut s, t0);
    for secs in [30, 60, 90] {
        let now = t0 + Duration::from_secs(secs);
        assert!(s.on_media(now, port_b, FROM_B).relay().is_some());
        s.handle_timeout(now);
    }
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    s.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.counters().calls_final_timed_out, 1);
    assert_eq!(s.pool().in_use_count(), 0);
}

#[test]
fn list_query_and_statistics_have_their_shapes() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    established(&mut s, t0);
    s.handle_request(t0, &offer("second", TAG_A, None, OFFER_SDP));

    let list = fields(s.handle_request(t0, &request(Command::List { limit: None })));
    let calls = list.get(b"calls").and_then(Value::as_list).expect("calls");
    assert_eq!(calls.len(), 2);
    let one = fields(s.handle_request(t0, &request(Command::List { limit: Some(1) })));
    assert_eq!(
        one.get(b"calls")
            .and_then(Value::as_list)
            .map(<[Value]>::len),
        Some(1)
    );

    let query = Command::Query {
        call_id: Bytes::from_static(CALL.as_bytes()),
        from_tag: None,
        to_tag: None,
    };
    let stats = fields(s.handle_request(t0, &request(query)));
    let totals = stats
        .get(b"totals")
        .and_then(Value::as_dict)
        .expect("totals");
    let rtp = totals.get(b"RTP").and_then(Value::as_dict).expect("RTP");
    assert_eq!(rtp.get(b"packets"), Some(&Value::Int(0)));
    assert!(totals.get(b"RTCP").is_some());
    let unknown = Command::Query {
        call_id: Bytes::from_static(b"nope"),
        from_tag: None,
        to_tag: None,
    };
    assert_eq!(
        s.handle_request(t0, &request(unknown)),
        Outcome::error(UNKNOWN_CALL)
    );

    let all = fields(s.handle_request(t0, &request(Command::Statistics)));
    let statistics = all
        .get(b"statistics")
        .and_then(Value::as_dict)
        .expect("statistics");
    let current = statistics
        .get(b"currentstatistics")
        .and_then(Value::as_dict)
        .expect("current");
    assert_eq!(current.get(b"sessionsown"), Some(&Value::Int(2)));
    assert_eq!(current.get(b"ports in use"), Some(&Value::Int(3)));
    let total = statistics
        .get(b"totalstatistics")
        .and_then(Value::as_dict)
        .expect("total");
    assert_eq!(total.get(b"managedsessions"), Some(&Value::Int(2)));
    assert_eq!(s.handle_request(t0, &request(Command::Ping)), Outcome::Pong);
}

#[test]
fn a_full_table_refuses_new_calls_with_a_load_limit() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        max_calls: 1,
        ..config(30_000, 30_099)
    };
    let mut s = Sessions::new(t0, cfg, 0, 1).expect("valid");
    established(&mut s, t0);
    let out = s.handle_request(t0, &offer("second", TAG_A, None, OFFER_SDP));
    assert_eq!(
        out,
        Outcome::LoadLimit(ng::reply::LOAD_LIMIT_SESSIONS.into())
    );
    let as_error = reply_dict(&out, &[], false);
    assert_eq!(as_error.get(b"result"), Some(&Value::from("error")));
    assert_eq!(s.counters().table_full, 1);
    assert_eq!(s.pool().in_use_count(), 2);
    // The call it holds may still change.
    let again = s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP));
    assert!(matches!(again, Outcome::Ok { .. }));
}

#[test]
fn many_streams_keep_the_reply_within_a_datagram() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let mut sdp = String::from(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n",
    );
    for i in 0..8 {
        sdp.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 2000 + 2 * i));
    }
    assert!(matches!(
        s.handle_request(t0, &offer(CALL, TAG_A, None, &sdp)),
        Outcome::Ok { .. }
    ));
    assert!(matches!(
        s.handle_request(t0, &answer(CALL, TAG_A, TAG_B, &sdp)),
        Outcome::Ok { .. }
    ));
    assert_eq!(s.pool().in_use_count(), 16);
    // The longest shape: every stream latched onto a long address.
    let far: SocketAddr = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
        .parse()
        .expect("an address");
    for port in (30_000..30_100).step_by(2) {
        let _ = s.on_media(t0, port, far);
    }
    assert_eq!(s.counters().endpoints_latched, 16);
    let stats = fields(s.handle_request(t0, &delete(CALL, TAG_A, vec![])));
    assert!(
        stats.to_bytes().len() < 1400,
        "{} bytes",
        stats.to_bytes().len()
    );
}

/// The COMPAT.md offer as Kamailio sends it.
fn compat_offer_datagram() -> Bytes {
    Bytes::from(format!(
        "1_27_17 d3:sdp155:{OFFER_SDP}3:ICE6:remove7:call-id19:a84b4c76e66710@pc33\
         8:from-tag10:19283017747:command5:offere"
    ))
}

#[test]
fn end_to_end_through_the_ng_control() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let mut control = Control::new(&ng::Config::default());
    let datagram = compat_offer_datagram();
    let reply = control
        .handle(t0, &datagram, |incoming| {
            s.handle_request(t0, &incoming.request)
        })
        .expect("a reply");
    assert!(reply.starts_with(b"1_27_17 d3:sdp"));
    assert!(
        reply.ends_with(b"a=rtcp:30001\r\n6:result2:oke"),
        "{reply:?}"
    );
    let has = |needle: &[u8]| reply.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"c=IN IP4 203.0.113.1\r\n"));
    assert!(has(b"m=audio 30000 RTP/AVP 0 8 101\r\n"));
    assert_eq!(s.pool().in_use_count(), 1);

    let later = t0 + Duration::from_secs(1);
    let again = control
        .handle(later, &datagram, |incoming| {
            s.handle_request(later, &incoming.request)
        })
        .expect("a replay");
    assert_eq!(again, reply);
    assert_eq!(s.pool().in_use_count(), 1);
    assert_eq!(control.counters().replayed, 1);
}

#[test]
fn rtcp_mux_uses_one_port_each_way() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let muxed = OFFER_SDP.replace("a=sendrecv\r\n", "a=sendrecv\r\na=rtcp-mux\r\n");
    let mut request = offer(CALL, TAG_A, None, &muxed);
    request.options.rtcp_mux = vec![ng::RtcpMux::Require];
    let out = fields(s.handle_request(t0, &request));
    let sdp = out.get(b"sdp").and_then(Value::as_bytes).expect("sdp");
    assert!(!sdp.windows(7).any(|w| w == b"a=rtcp:"));
    let mut reply = answer(
        CALL,
        TAG_A,
        TAG_B,
        &ANSWER_SDP.replace("a=sendrecv", "a=rtcp-mux"),
    );
    reply.options.rtcp_mux = vec![ng::RtcpMux::Require];
    let out = fields(s.handle_request(t0, &reply));
    let sdp = out.get(b"sdp").and_then(Value::as_bytes).expect("sdp");
    let parsed = Sdp::parse(sdp.clone(), &SdpLimits::default()).expect("parses");
    let port_a = parsed.media_at(0).expect("m=").port();
    let stream = s.stream(port_a).expect("held");
    assert!(stream.local_rtcp_mux);
    assert_eq!(stream.remote_rtcp, Some(addr("198.51.100.1:2000")));
    assert_eq!(s.route(port_a + 1), None, "no RTCP port with rtcp-mux");
    let to_b = s.route(port_a).expect("routed");
    assert_eq!(to_b.to, addr("192.0.2.5:4000"));
}

/// A's packets as they arrive through a NAT: not from its SDP's address.
const NAT_A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)), 40_000);

/// `request` with `flags` added.
fn with_flags(mut request: Request, flags: &[Flag]) -> Request {
    request.options.flags.extend_from_slice(flags);
    request
}

fn is_relayed(verdict: MediaVerdict<'_>) -> bool {
    matches!(verdict, MediaVerdict::Relay(..))
}

/// The first stream of side `tag` in a query reply.
fn queried_stream(s: &mut Sessions, now: Instant, tag: &str) -> Dict {
    let query = Command::Query {
        call_id: Bytes::from_static(CALL.as_bytes()),
        from_tag: None,
        to_tag: None,
    };
    let stats = fields(s.handle_request(now, &request(query)));
    stats
        .get(b"tags")
        .and_then(Value::as_dict)
        .and_then(|t| t.get(tag.as_bytes()))
        .and_then(Value::as_dict)
        .and_then(|side| side.get(b"medias"))
        .and_then(Value::as_list)
        .and_then(|m| m.first())
        .and_then(Value::as_dict)
        .and_then(|m| m.get(b"streams"))
        .and_then(Value::as_list)
        .and_then(|l| l.first())
        .and_then(Value::as_dict)
        .cloned()
        .expect("a stream")
}

fn endpoint_of(stream: &Dict, key: &str) -> Option<SocketAddr> {
    let d = stream.get(key.as_bytes()).and_then(Value::as_dict)?;
    let ip = d.get(b"address").and_then(Value::as_bytes)?;
    let port = d.get(b"port").and_then(Value::as_int)?;
    let ip: IpAddr = std::str::from_utf8(ip).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

#[test]
fn the_first_packet_latches_and_media_goes_back_to_its_source() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, port_a) = established(&mut s, t0);
    assert_eq!(s.route(port_b).expect("routed").to, FROM_A, "the SDP's");
    let (to_b, _) = s.on_media(t0, port_a, NAT_A).relay().expect("relayed");
    assert_eq!(to_b.to, FROM_B, "B's side is not affected");
    assert_eq!(s.stream(port_a).and_then(|st| st.latched), Some(NAT_A));
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    assert_eq!(s.counters().endpoints_latched, 1);
    // Once: a later source is relayed (no strict source) but not followed.
    let elsewhere = addr("203.0.113.78:40002");
    assert!(is_relayed(s.on_media(t0, port_a, elsewhere)));
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    assert_eq!(s.counters().endpoints_latched, 1);

    let stream = queried_stream(&mut s, t0, TAG_A);
    assert_eq!(endpoint_of(&stream, "endpoint"), Some(NAT_A));
    assert_eq!(endpoint_of(&stream, "advertised endpoint"), Some(FROM_A));
    let unlatched = queried_stream(&mut s, t0, TAG_B);
    assert_eq!(endpoint_of(&unlatched, "endpoint"), Some(FROM_B));
    assert_eq!(endpoint_of(&unlatched, "advertised endpoint"), Some(FROM_B));
}

#[test]
fn strict_source_drops_packets_from_other_sources() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let strict = with_flags(offer(CALL, TAG_A, None, OFFER_SDP), &[Flag::StrictSource]);
    let port_b = relay_port(s.handle_request(t0, &strict));
    let port_a = relay_port(s.handle_request(t0, &answer(CALL, TAG_A, TAG_B, ANSWER_SDP)));
    assert!(is_relayed(s.on_media(t0, port_a, NAT_A)));
    let deadline = s.poll_timeout();

    let later = t0 + Duration::from_secs(10);
    let intruder = addr("198.51.100.66:6666");
    assert!(matches!(
        s.on_media(later, port_a, intruder),
        MediaVerdict::WrongSource
    ));
    assert_eq!(s.counters().strict_source_drops, 1);
    assert_eq!(s.stream(port_a).and_then(|st| st.last_packet), Some(t0));
    assert_eq!(
        s.poll_timeout(),
        deadline,
        "a dropped packet keeps nothing alive"
    );
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    // The latched source still gets through, and B, not strict, takes any.
    assert!(is_relayed(s.on_media(later, port_a, NAT_A)));
    assert!(is_relayed(s.on_media(later, port_b, intruder)));
    assert!(is_relayed(s.on_media(later, port_b, FROM_B)));
    assert_eq!(s.counters().strict_source_drops, 1);
}

#[test]
fn an_asymmetric_side_is_never_latched() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b = relay_port(s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP)));
    let asymmetric = with_flags(
        answer(CALL, TAG_A, TAG_B, ANSWER_SDP),
        &[Flag::Asymmetric, Flag::StrictSource],
    );
    let port_a = relay_port(s.handle_request(t0, &asymmetric));
    for port in [40_000, 40_002] {
        let from = SocketAddr::new(FROM_B.ip(), port);
        assert!(is_relayed(s.on_media(t0, port_b, from)), "any source");
    }
    assert_eq!(s.stream(port_b).and_then(|st| st.latched), None);
    assert_eq!(s.route(port_a).expect("routed").to, FROM_B);
    assert_eq!(
        s.route(port_a + 1).expect("routed").to,
        addr("192.0.2.5:4001")
    );
    assert_eq!(s.counters().endpoints_latched, 0);
    assert_eq!(s.counters().strict_source_drops, 0);
    // A, without the flag, is latched as usual.
    assert!(is_relayed(s.on_media(t0, port_a, NAT_A)));
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
}

#[test]
fn a_new_endpoint_in_signalling_is_learned_afresh() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, port_a) = established(&mut s, t0);
    assert!(is_relayed(s.on_media(t0, port_a, NAT_A)));
    // The same SDP again (a refresh) keeps the latch.
    s.handle_request(t0, &offer(CALL, TAG_A, Some(TAG_B), OFFER_SDP));
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    // A moves: its SDP names another port; media goes there until A's
    // next packet tells where it really is.
    let moved = OFFER_SDP.replace("m=audio 2000", "m=audio 2002");
    s.handle_request(t0, &offer(CALL, TAG_A, Some(TAG_B), &moved));
    assert_eq!(
        s.route(port_b).expect("routed").to,
        addr("198.51.100.1:2002")
    );
    assert_eq!(s.stream(port_a).and_then(|st| st.latched), None);
    let nat_again = addr("203.0.113.77:40100");
    assert!(is_relayed(s.on_media(t0, port_a, nat_again)));
    assert_eq!(s.route(port_b).expect("routed").to, nat_again);
    assert_eq!(s.counters().endpoints_latched, 2);
}

#[test]
fn rtcp_is_latched_apart_from_rtp() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, port_a) = established(&mut s, t0);
    assert!(is_relayed(s.on_media(t0, port_a, NAT_A)));
    assert_eq!(
        s.route(port_b + 1).expect("routed").to,
        addr("198.51.100.1:2001"),
        "RTCP is not latched by RTP"
    );
    let nat_rtcp = addr("203.0.113.77:40001");
    let (route, _) = s
        .on_media(t0, port_a + 1, nat_rtcp)
        .relay()
        .expect("relayed");
    assert!(route.rtcp);
    assert_eq!(route.to, addr("192.0.2.5:4001"));
    assert_eq!(s.route(port_b + 1).expect("routed").to, nat_rtcp);
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    assert_eq!(
        s.stream(port_a).and_then(|st| st.latched_rtcp),
        Some(nat_rtcp)
    );
    assert_eq!(s.counters().endpoints_latched, 2);
}

#[test]
fn with_rtcp_mux_rtcp_follows_the_rtp_latch() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let muxed = OFFER_SDP.replace("a=sendrecv\r\n", "a=sendrecv\r\na=rtcp-mux\r\n");
    let mut request = offer(CALL, TAG_A, None, &muxed);
    request.options.rtcp_mux = vec![ng::RtcpMux::Require];
    let port_b = relay_port_muxed(s.handle_request(t0, &request));
    let mut reply = answer(
        CALL,
        TAG_A,
        TAG_B,
        &ANSWER_SDP.replace("a=sendrecv", "a=rtcp-mux"),
    );
    reply.options.rtcp_mux = vec![ng::RtcpMux::Require];
    let port_a = relay_port_muxed(s.handle_request(t0, &reply));
    assert!(is_relayed(s.on_media(t0, port_a, NAT_A)));
    assert_eq!(s.route(port_b).expect("routed").to, NAT_A);
    // The unused RTCP port neither routes nor latches.
    assert!(matches!(
        s.on_media(t0, port_a + 1, addr("203.0.113.77:40001")),
        MediaVerdict::Unrouted
    ));
    assert_eq!(s.stream(port_a).and_then(|st| st.latched_rtcp), None);
    assert_eq!(s.counters().endpoints_latched, 1);
}

/// The RTP port of a reply's SDP that uses rtcp-mux.
fn relay_port_muxed(outcome: Outcome) -> u16 {
    let fields = fields(outcome);
    let sdp = fields.get(b"sdp").and_then(Value::as_bytes).expect("sdp");
    let parsed = Sdp::parse(sdp.clone(), &SdpLimits::default()).expect("parses");
    parsed.media_at(0).expect("m=").port()
}

#[test]
fn a_host_name_in_the_sdp_stands_for_received_from() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let named = OFFER_SDP.replace("c=IN IP4 198.51.100.1", "c=IN IP4 pc33.example.com");
    let mut request = offer(CALL, TAG_A, None, &named);
    request.options.received_from = Some("198.51.100.9".parse().expect("an IP"));
    let port_b = relay_port(s.handle_request(t0, &request));
    s.handle_request(t0, &answer(CALL, TAG_A, TAG_B, ANSWER_SDP));
    assert_eq!(
        s.route(port_b).expect("routed").to,
        addr("198.51.100.9:2000")
    );
    // Without received-from a host name gives no endpoint to send to.
    let mut s = sessions(t0);
    let port_b = relay_port(s.handle_request(t0, &offer(CALL, TAG_A, None, &named)));
    s.handle_request(t0, &answer(CALL, TAG_A, TAG_B, ANSWER_SDP));
    assert_eq!(s.route(port_b), None);
}

/// An RTP packet of payload type `pt` with `seq` and `timestamp`.
fn rtp_packet(pt: u8, seq: u16, timestamp: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p.extend_from_slice(&[0; 80]);
    p
}

#[test]
fn jitter_is_measured_at_the_clock_rate_the_sdp_maps() {
    let opus_offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n\
        t=0 0\r\nm=audio 2000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b = relay_port(s.handle_request(t0, &offer(CALL, TAG_A, None, opus_offer)));
    let port_a = relay_port(s.handle_request(t0, &answer(CALL, TAG_A, TAG_B, ANSWER_SDP)));
    assert_ne!(port_a, port_b);
    // Opus at 48 kHz, a packet every 20 ms exactly: 960 ticks each. Read
    // at 8 kHz, the same timestamps would drift 800 ticks (100 ms) a packet.
    for i in 0..50_u16 {
        let packet = rtp_packet(111, i, u32::from(i) * 960);
        let view = crate::rtp::RtpView::parse(&packet).expect("valid RTP");
        let at = t0 + Duration::from_millis(20 * u64::from(i));
        let (_, stats) = s.on_media(at, port_a, FROM_A).relay().expect("routed");
        stats.on_rtp(at, &view);
    }
    let stream = s.stream(port_a).expect("A's stream");
    assert_eq!(stream.stats.packets(), 50);
    assert_eq!(stream.stats.jitter_ms(), 0, "{:?}", stream.stats.snapshot());
}

// Forked calls: one callee branch per `via-branch`.

const BRANCH_VIA: [&str; 3] = ["z9hG4bK-1", "z9hG4bK-2", "z9hG4bK-3"];
const BRANCH_TAG: [&str; 3] = ["t-one", "t-two", "t-three"];

/// `request` with `via-branch` `branch`.
fn with_via(mut request: Request, branch: &str) -> Request {
    if let Command::Offer { ids, .. } | Command::Answer { ids, .. } | Command::Delete { ids, .. } =
        &mut request.command
    {
        ids.via_branch = Some(Bytes::copy_from_slice(branch.as_bytes()));
    }
    request
}

/// The answer SDP of callee branch `k`, which receives at
/// 192.0.2.(10 + k):4000.
fn branch_sdp(k: usize) -> String {
    ANSWER_SDP.replace("192.0.2.5", &format!("192.0.2.{}", 10 + k))
}

fn branch_endpoint(k: usize) -> SocketAddr {
    addr(&format!("192.0.2.{}:4000", 10 + k))
}

/// The forked offer towards branch `k`: B's relay port for it.
fn fork(s: &mut Sessions, now: Instant, k: usize) -> u16 {
    relay_port(s.handle_request(
        now,
        &with_via(offer(CALL, TAG_A, None, OFFER_SDP), BRANCH_VIA[k]),
    ))
}

/// Branch `k`'s answer (a 183 or a 200 with SDP): A's relay port.
fn branch_answers(s: &mut Sessions, now: Instant, k: usize) -> u16 {
    let reply = answer(CALL, TAG_A, BRANCH_TAG[k], &branch_sdp(k));
    relay_port(s.handle_request(now, &with_via(reply, BRANCH_VIA[k])))
}

/// The table owns exactly the ports it took from the pool, and agrees
/// with itself.
fn assert_no_leak(s: &Sessions) {
    assert_eq!(s.ports_held(), s.pool().in_use_count());
    s.check_invariants().expect("a consistent table");
}

#[test]
fn forked_offers_get_their_own_ports_and_early_media_reaches_a() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b1 = fork(&mut s, t0, 0);
    assert_no_leak(&s);
    let port_b2 = fork(&mut s, t0, 1);
    assert_no_leak(&s);
    assert_ne!(port_b1, port_b2);
    assert_eq!(s.pool().in_use_count(), 2);
    assert_eq!(s.counters().calls_created, 1);
    // Both branches send 183 with SDP: A's relay port is one for both.
    let port_a = branch_answers(&mut s, t0, 0);
    assert_eq!(branch_answers(&mut s, t0, 1), port_a);
    assert_no_leak(&s);
    assert_eq!(s.pool().in_use_count(), 3);
    for (k, port) in [(0, port_b1), (1, port_b2)] {
        assert_eq!(
            s.stream(port).and_then(|st| st.remote),
            Some(branch_endpoint(k))
        );
        let (route, _) = s
            .on_media(t0, port, branch_endpoint(k))
            .relay()
            .expect("early media reaches A");
        assert_eq!(route.to, FROM_A);
        assert_eq!(route.from_port, port_a);
    }
    // Each packet marked its own branch's stream.
    assert_eq!(s.stream(port_b1).and_then(|st| st.last_packet), Some(t0));
    assert_eq!(s.stream(port_b2).and_then(|st| st.last_packet), Some(t0));
}

#[test]
fn the_final_answer_from_another_branch_takes_a_s_media() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b1 = fork(&mut s, t0, 0);
    let port_b2 = fork(&mut s, t0, 1);
    // 183 from branch 1: A's media goes there.
    let port_a = branch_answers(&mut s, t0, 0);
    let to_b1 = s.route(port_a).expect("routed");
    assert_eq!((to_b1.to, to_b1.from_port), (branch_endpoint(0), port_b1));
    // 200 from branch 2: A's media now goes there, from its port.
    assert_eq!(branch_answers(&mut s, t0, 1), port_a);
    let (to_b2, _) = s.on_media(t0, port_a, FROM_A).relay().expect("routed");
    assert_eq!((to_b2.to, to_b2.from_port), (branch_endpoint(1), port_b2));
    let rtcp = s.route(port_a + 1).expect("routed");
    assert_eq!(rtcp.to, addr("192.0.2.11:4001"));
    assert_eq!(rtcp.from_port, port_b2 + 1);
    assert_no_leak(&s);
}

#[test]
fn a_repeated_offer_with_the_same_via_branch_reuses_its_ports() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b1 = fork(&mut s, t0, 0);
    let port_b2 = fork(&mut s, t0, 1);
    // A resend under a new cookie, or a re-offer on the same branch.
    assert_eq!(fork(&mut s, t0, 0), port_b1);
    assert_eq!(fork(&mut s, t0, 1), port_b2);
    assert_eq!(s.pool().in_use_count(), 2);
    assert_eq!(s.counters().calls_created, 1);
    assert_no_leak(&s);
}

#[test]
fn the_ninth_branch_is_refused_until_one_is_deleted() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let branch = |k: usize| with_via(offer(CALL, TAG_A, None, OFFER_SDP), &format!("br-{k}"));
    let ports: Vec<u16> = (0..MAX_BRANCHES)
        .map(|k| relay_port(s.handle_request(t0, &branch(k))))
        .collect();
    assert_no_leak(&s);
    assert_eq!(s.pool().in_use_count(), MAX_BRANCHES);
    let refused = s.handle_request(t0, &branch(MAX_BRANCHES));
    assert_eq!(refused, Outcome::error(TOO_MANY_BRANCHES));
    assert_eq!(s.counters().branches_refused, 1);
    assert_eq!(s.pool().in_use_count(), MAX_BRANCHES);
    assert_no_leak(&s);
    // The branches it has still take offers.
    assert_eq!(relay_port(s.handle_request(t0, &branch(7))), ports[7]);
    // Once a branch is CANCELled, another fits.
    let cancel = with_via(delete(CALL, TAG_A, vec![Flag::Fast]), "br-3");
    assert!(matches!(s.handle_request(t0, &cancel), Outcome::Ok { .. }));
    assert!(matches!(
        s.handle_request(t0, &branch(MAX_BRANCHES)),
        Outcome::Ok { .. }
    ));
    assert_eq!(s.pool().in_use_count(), MAX_BRANCHES);
    assert_no_leak(&s);
}

#[test]
fn deleting_a_cancelled_branch_frees_only_its_ports() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b1 = fork(&mut s, t0, 0);
    let port_b2 = fork(&mut s, t0, 1);
    let port_b3 = fork(&mut s, t0, 2);
    branch_answers(&mut s, t0, 2);
    let port_a = branch_answers(&mut s, t0, 1);
    assert_eq!(s.pool().in_use_count(), 4);
    // Branch 1 is CANCELled: its port goes, the call stays.
    let cancel = with_via(delete(CALL, TAG_A, vec![]), BRANCH_VIA[0]);
    let stats = fields(s.handle_request(t0, &cancel));
    assert!(stats.get(b"tags").is_some());
    assert_no_leak(&s);
    assert_eq!(s.call_count(), 1);
    assert_eq!(s.pool().in_use_count(), 3);
    assert_eq!(s.pool().quarantined_count(), 1);
    assert_eq!(s.route(port_b1), None);
    assert_eq!(s.counters().branches_deleted, 1);
    assert_eq!(s.counters().calls_deleted, 0);
    // The branches after it moved in the table; their ports followed.
    assert_eq!(
        s.stream(port_b3).and_then(|st| st.remote),
        Some(branch_endpoint(2))
    );
    let (from_b3, _) = s
        .on_media(t0, port_b3, branch_endpoint(2))
        .relay()
        .expect("routed");
    assert_eq!((from_b3.to, from_b3.from_port), (FROM_A, port_a));
    assert_eq!(s.stream(port_b3).and_then(|st| st.last_packet), Some(t0));
    let to_b2 = s.route(port_a).expect("routed");
    assert_eq!((to_b2.to, to_b2.from_port), (branch_endpoint(1), port_b2));
    // Deleting A's partner leaves A with the other answered branch.
    let gone = with_via(delete(CALL, TAG_A, vec![Flag::Fast]), BRANCH_VIA[1]);
    assert!(matches!(s.handle_request(t0, &gone), Outcome::Ok { .. }));
    assert_no_leak(&s);
    let to_b3 = s.route(port_a).expect("routed");
    assert_eq!((to_b3.to, to_b3.from_port), (branch_endpoint(2), port_b3));
    // The last branch: its via-branch ends the whole call.
    let last = with_via(delete(CALL, TAG_A, vec![]), BRANCH_VIA[2]);
    assert!(matches!(s.handle_request(t0, &last), Outcome::Ok { .. }));
    assert_no_leak(&s);
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.pool().in_use_count(), 0);
    assert_eq!(s.counters().calls_deleted, 1);
    assert_eq!(s.counters().branches_deleted, 2);
}

#[test]
fn delete_without_a_branch_s_via_branch_ends_every_branch() {
    let t0 = Instant::now();
    for bye in [None, Some("z9hG4bK-bye")] {
        let mut s = sessions(t0);
        for k in 0..3 {
            fork(&mut s, t0, k);
        }
        branch_answers(&mut s, t0, 1);
        assert_eq!(s.pool().in_use_count(), 4);
        let mut request = delete(CALL, TAG_A, vec![]);
        if let Some(via) = bye {
            request = with_via(request, via);
        }
        assert!(matches!(s.handle_request(t0, &request), Outcome::Ok { .. }));
        assert_no_leak(&s);
        assert_eq!(s.call_count(), 0, "{bye:?}");
        assert_eq!(s.pool().in_use_count(), 0);
        assert_eq!(s.pool().quarantined_count(), 4);
    }
}

#[test]
fn a_reinvite_from_the_answering_branch_is_matched_by_tag() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    fork(&mut s, t0, 0);
    let port_b2 = fork(&mut s, t0, 1);
    branch_answers(&mut s, t0, 0);
    let port_a = branch_answers(&mut s, t0, 1);
    let moved = branch_sdp(1).replace("4000", "4002");
    let reinvite = with_via(
        offer(CALL, BRANCH_TAG[1], Some(TAG_A), &moved),
        "z9hG4bK-re",
    );
    assert_eq!(relay_port(s.handle_request(t0, &reinvite)), port_a);
    assert_eq!(s.route(port_a).expect("routed").to, addr("192.0.2.11:4002"));
    let reply = answer(CALL, BRANCH_TAG[1], TAG_A, OFFER_SDP);
    assert_eq!(relay_port(s.handle_request(t0, &reply)), port_b2);
    assert_eq!(s.pool().in_use_count(), 3);
    assert_no_leak(&s);
    // A re-INVITE from A, with the branch's tag as to-tag, goes there too.
    let from_a = with_via(
        offer(CALL, TAG_A, Some(BRANCH_TAG[1]), OFFER_SDP),
        "z9hG4bK-4",
    );
    assert_eq!(relay_port(s.handle_request(t0, &from_a)), port_b2);
    assert_eq!(s.pool().in_use_count(), 3);
    assert_no_leak(&s);
}

#[test]
fn an_answer_without_a_known_via_branch_takes_the_latest_untagged_branch() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let port_b1 = fork(&mut s, t0, 0);
    let port_b2 = fork(&mut s, t0, 1);
    let port_a = relay_port(s.handle_request(t0, &answer(CALL, TAG_A, "x", &branch_sdp(1))));
    assert_eq!(s.route(port_a).map(|r| r.from_port), Some(port_b2));
    let other = with_via(answer(CALL, TAG_A, "y", &branch_sdp(0)), "z9hG4bK-unknown");
    assert_eq!(relay_port(s.handle_request(t0, &other)), port_a);
    assert_eq!(s.route(port_a).map(|r| r.from_port), Some(port_b1));
    // Its tag names it from now on.
    s.handle_request(t0, &answer(CALL, TAG_A, "x", &branch_sdp(1)));
    assert_eq!(s.route(port_a).map(|r| r.from_port), Some(port_b2));
    assert_eq!(s.pool().in_use_count(), 3);
    assert_no_leak(&s);
}

#[test]
fn an_offer_without_via_branch_goes_to_the_partner_as_before() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let (port_b, _) = established(&mut s, t0);
    let again = s.handle_request(t0, &offer(CALL, TAG_A, None, OFFER_SDP));
    assert_eq!(relay_port(again), port_b);
    assert_eq!(s.pool().in_use_count(), 2);
    assert_no_leak(&s);
}

#[test]
fn query_lists_every_answered_branch_in_dialogue_with_a() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    for k in 0..3 {
        fork(&mut s, t0, k);
    }
    branch_answers(&mut s, t0, 0);
    branch_answers(&mut s, t0, 1);
    let query = Command::Query {
        call_id: Bytes::from_static(CALL.as_bytes()),
        from_tag: None,
        to_tag: None,
    };
    let stats = fields(s.handle_request(t0, &request(query)));
    let tags = stats.get(b"tags").and_then(Value::as_dict).expect("tags");
    let keys: Vec<&[u8]> = tags.iter().map(|(k, _)| k.as_ref()).collect();
    // A, its partner (the latest to answer), the other answered branch;
    // branch 3 never answered.
    assert_eq!(
        keys,
        [
            TAG_A.as_bytes(),
            BRANCH_TAG[1].as_bytes(),
            BRANCH_TAG[0].as_bytes()
        ]
    );
    let peer = |tag: &str| {
        tags.get(tag.as_bytes())
            .and_then(Value::as_dict)
            .and_then(|d| d.get(b"in dialogue with"))
            .cloned()
    };
    assert_eq!(peer(TAG_A), Some(Value::from(BRANCH_TAG[1])));
    assert_eq!(peer(BRANCH_TAG[0]), Some(Value::from(TAG_A)));
    assert_eq!(peer(BRANCH_TAG[1]), Some(Value::from(TAG_A)));
}

/// The length of the delete reply of a call forked `branches` times,
/// every branch answered with a tag of `tag_len` characters, each SDP with
/// `media` sections, every stream latched onto a long IPv6 address.
fn forked_reply_len(branches: usize, media: usize, tag_len: usize) -> usize {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    let mut sdp = String::from(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n",
    );
    for i in 0..media {
        sdp.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 2000 + 2 * i));
    }
    let tag = |k: usize| format!("{k:0>tag_len$}");
    for k in 0..branches {
        let fork = with_via(offer(CALL, TAG_A, None, &sdp), &tag(k));
        assert!(matches!(s.handle_request(t0, &fork), Outcome::Ok { .. }));
        let reply = with_via(answer(CALL, TAG_A, &tag(k), &sdp), &tag(k));
        assert!(matches!(s.handle_request(t0, &reply), Outcome::Ok { .. }));
    }
    assert_no_leak(&s);
    assert_eq!(s.pool().in_use_count(), media * (branches + 1));
    let far: SocketAddr = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
        .parse()
        .expect("an address");
    for port in (30_000..30_100).step_by(2) {
        let _ = s.on_media(t0, port, far);
    }
    let stats = fields(s.handle_request(t0, &delete(CALL, TAG_A, vec![])));
    assert_no_leak(&s);
    assert_eq!(s.pool().in_use_count(), 0);
    stats.to_bytes().len()
}

#[test]
fn a_call_with_every_branch_answered_keeps_the_reply_within_a_datagram() {
    for media in [1, 2, 4] {
        for tag_len in [8, 16, 32] {
            let forked = forked_reply_len(MAX_BRANCHES, media, tag_len);
            // Forking adds nothing to the longest reply of a call.
            let unforked = forked_reply_len(1, 4, tag_len);
            assert!(
                forked <= unforked,
                "{media} media, {tag_len}: {forked} > {unforked}"
            );
            if tag_len <= 16 {
                assert!(forked < 1400, "{media} media, {tag_len}: {forked} bytes");
            }
        }
    }
}

#[test]
fn a_forked_call_times_out_with_all_its_branches() {
    let t0 = Instant::now();
    let mut s = sessions(t0);
    for k in 0..3 {
        fork(&mut s, t0, k);
    }
    let port_a = branch_answers(&mut s, t0, 2);
    let later = t0 + Duration::from_secs(50);
    assert!(s.on_media(later, port_a, FROM_A).relay().is_some());
    assert_eq!(s.poll_timeout(), Some(later + Duration::from_secs(60)));
    s.handle_timeout(later + Duration::from_secs(60));
    assert_eq!(s.call_count(), 0);
    assert_eq!(s.counters().calls_timed_out, 1);
    assert_eq!(s.pool().in_use_count(), 0);
    assert_no_leak(&s);
}
