//! Our `media` relay as a real client uses it: Kamailio (Debian's
//! `kamailio`, its `rtpengine` module, tests/kamailio/rtpengine.cfg) takes
//! `media` for its rtpengine, and SIPp calls carry SDP through it.
//!
//! ```text
//!   SIPp UAC ──SIP──> Kamailio ──SIP──> SIPp UAS
//!                        │ ng (ping, offer, answer, delete)
//!                        v
//!                      NgTap (records every request and reply)
//!                        │
//!                        v
//!                      media
//! ```
//!
//! What a client needs from an rtpengine, checked end to end: the module's
//! start-up `ping` is answered (or it would disable the relay), every offer
//! and answer succeeds and the SDP each SIPp receives points at the relay
//! (its address and ports of its range, not the peer's), and the delete
//! Kamailio sends at BYE removes the call — with a 60 s media timeout, so
//! it is the delete that ends it, not the timeout. What Kamailio 5.6
//! actually sends (seen through the tap) and the test requires answered
//! `ok` without a `warning`: `offer` and `answer` with `supports: [load
//! limit]`, `sdp`, `call-id`, `received-from: [IP4, 127.0.0.1]`,
//! `from-tag` (and `to-tag`), and `delete` with the same ids.
//!
//! Every peer stops by itself (SIPp -timeout, lifetime bounds of Kamailio
//! and the relay) and is killed on drop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use edge_e2e::kamailio::{require_kamailio, Kamailio, KamailioProcess};
use edge_e2e::media_relay::{int_at, text, Media, MediaProcess, NgTap};
use edge_e2e::process::poll_until;
use edge_e2e::sipp::{require_sipp, Scenario, Sipp};
use edge_e2e::workspace_root;

/// Calls placed, all up at once during the hold.
const CALLS: u64 = 5;
/// How long each call stays up between ACK and BYE: the window in which the
/// test sees every call on the relay.
const HOLD: Duration = Duration::from_secs(3);
/// Relay ports: two RTP/RTCP pairs per call, with room to spare.
const RELAY_PORTS: u16 = 40;
/// SIPp's own bound on a run.
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole test, peers' start-up included.
const BUDGET: Duration = Duration::from_secs(40);

/// The address every rewritten SDP must carry: the relay's `--interface`.
const RELAY_C_LINE: &str = "c=IN IP4 127.0.0.1";

#[test]
fn kamailio_offers_answers_and_deletes_through_media() {
    require_sipp();
    require_kamailio();
    let started = Instant::now();

    // a long media timeout, so that only a delete can end a call in time
    // Two shards: the calls are spread by call-id, so the module's commands
    // for one call must all reach the shard that owns it.
    let relay = Media::new()
        .ports(RELAY_PORTS)
        .cores(2)
        .timeout(Duration::from_secs(60))
        .delete_delay(Duration::ZERO)
        .log_filter("debug")
        .spawn()
        .unwrap();
    let uas = Sipp::uas(Scenario::named("uas_rtpengine"))
        .calls(CALLS)
        .timeout(SIPP_TIMEOUT)
        .trace_msg(true)
        .spawn()
        .unwrap();
    // Kamailio talks ng to the relay through a tap that records it all;
    // the relay is up first: the module pings it at start and would
    // otherwise disable it
    let tap = NgTap::new(relay.ng_addr()).unwrap();
    let proxy = Kamailio::proxy_to(uas.local_addr())
        .config(workspace_root().join("tests/kamailio/rtpengine.cfg"))
        .define(&format!("RTPENGINE_SOCK=\"udp:{}\"", tap.addr()))
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_rtpengine"), proxy.addr())
        .calls(CALLS)
        .rate(20.0)
        .hold(HOLD)
        .timeout(SIPP_TIMEOUT)
        .trace_msg(true)
        .spawn()
        .unwrap();

    // while the calls are up, the relay holds every one of them
    let mut held = Vec::new();
    let all_up = poll_until(Instant::now() + HOLD, Duration::from_millis(50), || {
        held = relay.list().unwrap();
        held.len() as u64 == CALLS
    });
    assert!(
        all_up,
        "the relay never held {CALLS} calls at once (last list: {held:?})\n{}",
        logs(&relay, &proxy)
    );
    let up = relay.statistics().unwrap();
    assert_eq!(
        int_at(&up, &["currentstatistics", "sessionstotal"]),
        Some(CALLS as i64),
        "{up:?}"
    );

    let uac = uac.wait().unwrap();
    let uas = uas.wait().unwrap();
    uac.assert_calls_succeeded(CALLS);
    uas.assert_calls_succeeded(CALLS);
    assert_eq!(uas.received("BYE"), CALLS, "{uas}");

    // the SDP each side received points at the relay: one distinct relay
    // port per call and side, all in the relay's range
    let ports = relay.ports();
    let answers = relayed_ports(&uac.message_log(), "SIP/2.0 200", &ports);
    let offers = relayed_ports(&uas.message_log(), "INVITE ", &ports);
    assert_eq!(
        answers.len() as u64,
        CALLS,
        "answers seen by the UAC: {answers:?}"
    );
    assert_eq!(
        offers.len() as u64,
        CALLS,
        "offers seen by the UAS: {offers:?}"
    );
    let mut distinct: Vec<u16> = answers.values().chain(offers.values()).copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len() as u64,
        2 * CALLS,
        "a relay port advertised twice: offers {offers:?}, answers {answers:?}"
    );
    // the relay held exactly the calls SIPp placed
    held.sort();
    let placed: Vec<String> = answers.keys().cloned().collect();
    assert_eq!(held, placed, "calls on the relay vs calls placed");

    // the BYEs are answered: Kamailio's delete ran before it relayed them,
    // so no call is left although none has timed out
    assert_eq!(relay.list().unwrap(), Vec::<String>::new());
    let stats = relay.statistics().unwrap();
    let total = |key: &str| int_at(&stats, &["totalstatistics", key]);
    assert_eq!(total("managedsessions"), Some(CALLS as i64), "{stats:?}");
    assert_eq!(total("deletedsessions"), Some(CALLS as i64), "{stats:?}");
    assert_eq!(total("timeoutsessions"), Some(0), "{stats:?}");
    assert_eq!(total("sdp errors"), Some(0), "{stats:?}");
    assert_eq!(
        int_at(&stats, &["currentstatistics", "sessionstotal"]),
        Some(0),
        "{stats:?}"
    );

    // what Kamailio asked and what it got: a ping at start, one offer and
    // one delete per call, an answer per 200 (once per call, more when the
    // UAS retransmits its 200), each answered ok without a warning
    let exchanges = tap.exchanges();
    let transcript = || {
        exchanges
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // (requests, call-ids) of a command; a request Kamailio retransmitted
    // (same cookie, after its 1 s ng timeout) counts once
    let calls_of = |command: &str| -> (usize, BTreeSet<String>) {
        let mut cookies = BTreeSet::new();
        let of_command: Vec<_> = exchanges
            .iter()
            .filter(|e| e.command().as_deref() == Some(command))
            .filter(|e| cookies.insert(e.cookie()))
            .collect();
        let ids = of_command
            .iter()
            .filter_map(|e| e.request_dict())
            .filter_map(|d| text(&d, "call-id").map(str::to_owned))
            .collect();
        (of_command.len(), ids)
    };
    let placed: BTreeSet<String> = placed.into_iter().collect();
    assert!(calls_of("ping").0 >= 1, "no ping:\n{}", transcript());
    assert_eq!(
        calls_of("offer"),
        (CALLS as usize, placed.clone()),
        "{}",
        transcript()
    );
    let (answers_sent, answered) = calls_of("answer");
    assert!(answers_sent >= CALLS as usize, "{}", transcript());
    assert_eq!(answered, placed, "{}", transcript());
    assert_eq!(
        calls_of("delete"),
        (CALLS as usize, placed),
        "{}",
        transcript()
    );
    for exchange in &exchanges {
        let reply = exchange
            .reply_dict()
            .unwrap_or_else(|| panic!("no reply to\n{exchange}\n--- all:\n{}", transcript()));
        let expected = match exchange.command().as_deref() {
            Some("ping") => "pong",
            _ => "ok",
        };
        assert_eq!(text(&reply, "result"), Some(expected), "{exchange}");
        assert_eq!(text(&reply, "warning"), None, "{exchange}");
    }
    for command in ["offer", "answer", "delete"] {
        if let Some(e) = exchanges
            .iter()
            .find(|e| e.command().as_deref() == Some(command))
        {
            eprintln!("first {command}:\n{e}");
        }
    }

    // neither side complained: no ng error or warning in Kamailio's log,
    // no warning or error from the relay
    let kamailio_log = proxy.log();
    let complaints: Vec<&str> = kamailio_log
        .lines()
        .filter(|l| l.contains("rtpengine") && (l.contains("ERROR") || l.contains("WARNING")))
        .collect();
    assert!(
        complaints.is_empty(),
        "Kamailio's rtpengine module complained:\n{}\n{}",
        complaints.join("\n"),
        logs(&relay, &proxy)
    );
    let relay_log = relay.log();
    assert!(
        !relay_log.contains(" WARN ") && !relay_log.contains(" ERROR "),
        "{}",
        logs(&relay, &proxy)
    );

    let took = started.elapsed();
    assert!(took < BUDGET, "test took {took:.1?} (budget {BUDGET:?})");
}

/// The SDP checks of the scenarios are real: a 200 whose SDP still points
/// at the UAS (127.0.0.3, as without a relay in the path) fails the call.
#[test]
fn an_sdp_not_pointing_at_the_relay_fails_the_call() {
    require_sipp();
    let started = Instant::now();
    let uas = Sipp::uas(Scenario::named("uas_basic_rr"))
        .arg("-mi")
        .arg("127.0.0.3")
        .calls(1)
        .timeout(Duration::from_secs(10))
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_rtpengine"), uas.local_addr())
        .calls(1)
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap();
    uac.assert_calls_failed_their_checks(1);
    drop(uas);
    let took = started.elapsed();
    assert!(took < BUDGET, "test took {took:.1?} (budget {BUDGET:?})");
}

/// From a SIPp message trace: for each received message of an INVITE
/// transaction whose first line starts with `start_line`, its Call-ID and
/// the port of its SDP's `m=audio`, after checking that its connection
/// address is the relay's and the port is in `range`. Retransmissions map
/// to the same entry.
fn relayed_ports(
    trace: &str,
    start_line: &str,
    range: &RangeInclusive<u16>,
) -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    // records: a line of dashes and a time, "UDP message received (N
    // bytes):", a blank line, the message
    for record in trace.split("\n-----------------------------------------------") {
        let Some((_, text)) = record.split_once("UDP message received") else {
            continue;
        };
        let Some(text) = text.split_once('\n').map(|(_, rest)| rest.trim_start()) else {
            continue;
        };
        let is_invite = text
            .lines()
            .any(|l| l.starts_with("CSeq:") && l.contains("INVITE"));
        if !text.starts_with(start_line) || !is_invite {
            continue;
        }
        let line = |prefix: &str| {
            text.lines()
                .map(str::trim_end)
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in\n{text}"))
        };
        let call_id = line("Call-ID: ").to_owned();
        assert!(
            text.lines().any(|l| l.trim_end() == RELAY_C_LINE),
            "SDP not pointing at the relay's address:\n{text}"
        );
        let port: u16 = line("m=audio ")
            .split(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port on m=audio in\n{text}"));
        assert!(
            range.contains(&port),
            "SDP port {port} outside the relay's range {range:?}:\n{text}"
        );
        let first = *ports.entry(call_id).or_insert(port);
        assert_eq!(first, port, "a retransmission with another port:\n{text}");
    }
    ports
}

fn logs(relay: &MediaProcess, proxy: &KamailioProcess) -> String {
    format!(
        "--- media ({}):\n{}\n--- kamailio ({}):\n{}",
        relay.command_line(),
        relay.log().trim_end(),
        proxy.command_line(),
        proxy.log().trim_end()
    )
}
