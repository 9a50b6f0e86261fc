//! The SIPp / Kamailio harness and the scenarios in tests/scenarios/, proved
//! peer to peer and through Kamailio (tests/kamailio/proxy.cfg) — without the
//! edge proxy, so later tests can trust them when they put the edge in the
//! middle.
//!
//! Every test uses its own free ports, and every peer stops by itself
//! (SIPp -timeout, Kamailio's lifetime bound) and is stopped on drop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use edge_e2e::kamailio::{require_kamailio, Kamailio};
use edge_e2e::sipp::{require_sipp, sipp_version, Scenario, Sipp};

/// Every test finishes well within this.
const TEST_BUDGET: Duration = Duration::from_secs(30);
/// SIPp's own timeout in these tests.
const SIPP_TIMEOUT: Duration = Duration::from_secs(20);

fn setup() -> Instant {
    require_sipp();
    Instant::now()
}

fn within_budget(started: Instant) {
    let took = started.elapsed();
    assert!(took < TEST_BUDGET, "test took {took:.1?}");
}

#[test]
fn sipp_is_the_expected_version() {
    require_sipp();
    let version = sipp_version().expect("sipp -v prints its version");
    assert!(version.starts_with("SIPp v3."), "{version}");
}

#[test]
fn uac_to_uas_200_calls_at_100_cps() {
    let started = setup();
    let uas = Sipp::builtin_uas()
        .calls(200)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let uac = Sipp::builtin_uac(uas.local_addr())
        .rate(100.0)
        .calls(200)
        .timeout(SIPP_TIMEOUT)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(200);
    assert_eq!(uac.stats.outgoing_calls, 200, "{uac}");
    assert_eq!(uac.sent("INVITE"), 200, "{uac}");
    assert_eq!(uac.sent("BYE"), 200, "{uac}");
    assert_eq!(uac.unexpected(), 0, "{uac}");
    // 100 cps: 200 calls take about two seconds, not much less
    assert!(uac.elapsed >= Duration::from_millis(1500), "{uac}");

    // the UAS ends by itself after its 200th call (plus its 4 s timewait)
    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(200);
    assert_eq!(uas.stats.incoming_calls, 200, "{uas}");
    assert_eq!(uas.received("INVITE"), 200, "{uas}");
    assert_eq!(uas.received("BYE"), 200, "{uas}");
    within_budget(started);
}

#[test]
fn cancel_after_ringing_ends_every_call_in_487() {
    let started = setup();
    let calls = 50;
    let uas = Sipp::uas(Scenario::named("uas_ring_no_answer"))
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_cancel"), uas.local_addr())
        .rate(50.0)
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(calls);
    assert_eq!(uac.sent("CANCEL"), calls, "{uac}");
    assert_eq!(uac.received("180"), calls, "{uac}");
    assert_eq!(uac.received("200"), calls, "200 to each CANCEL\n{uac}");
    assert_eq!(uac.received("487"), calls, "{uac}");
    assert_eq!(uac.sent("ACK"), calls, "{uac}");
    assert_eq!(uac.unexpected(), 0, "{uac}");

    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(calls);
    assert_eq!(uas.received("CANCEL"), calls, "{uas}");
    assert_eq!(uas.sent("487"), calls, "{uas}");
    assert_eq!(uas.received("ACK"), calls, "{uas}");
    within_budget(started);
}

#[test]
/// With the route-set scenarios: SIPp's built-in UAC takes a 180 that one
/// Kamailio worker relays after another relayed the 200 for an unexpected
/// message and fails the call; these scenarios match responses by transaction.
fn uac_through_kamailio_to_uas_200_calls() {
    let started = setup();
    require_kamailio();
    let uas = Sipp::uas(Scenario::named("uas_basic_rr"))
        .calls(200)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let proxy = Kamailio::proxy_to(uas.local_addr()).spawn().unwrap();
    let uac = Sipp::uac(Scenario::named("uac_basic_rr"), proxy.addr())
        .rate(100.0)
        .calls(200)
        .timeout(SIPP_TIMEOUT)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(200);
    // the 100 Trying comes from the stateful proxy (the UAS sends none)
    assert_eq!(uac.received("100"), 200, "{uac}");

    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(200);
    assert_eq!(uas.received("ACK"), 200, "{uas}");
    assert_eq!(uas.received("BYE"), 200, "{uas}");
    within_budget(started);
    drop(proxy);
}

#[test]
fn bye_follows_record_route_through_kamailio() {
    let started = setup();
    require_kamailio();
    let calls = 20;
    let uas = Sipp::uas(Scenario::named("uas_bye_rr"))
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let proxy = Kamailio::proxy_to(uas.local_addr()).spawn().unwrap();
    let uac = Sipp::uac(Scenario::named("uac_bye_rr"), proxy.addr())
        .rate(20.0)
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .trace_msg(true)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(calls);
    // the BYE the UAC sent targets the UAS's Contact and routes via the proxy
    let log = uac.message_log();
    let route = format!("Route: <sip:{};lr>", proxy.addr());
    let bye = log
        .split("UDP message sent")
        .find(|m| m.contains("\nBYE sip:uas-rr@"))
        .unwrap_or_else(|| panic!("no BYE to the UAS's Contact in\n{log}"));
    assert!(bye.contains(&route), "BYE without {route}:\n{bye}");

    let uas = uas.wait().unwrap();
    // the UAS checked: Record-Route on the INVITE, and ACK and BYE with its
    // Contact as Request-URI and no Route left (the proxy consumed it)
    uas.assert_calls_succeeded(calls);
    assert_eq!(uas.received("BYE"), calls, "{uas}");
    within_budget(started);
    drop(proxy);
}

#[test]
fn record_route_check_fails_without_a_record_routing_proxy() {
    // uac_bye_rr against a UAS that does not copy Record-Route (and no
    // proxy that would add one): the UAC's check must fail the call.
    let started = setup();
    let uas = Sipp::builtin_uas()
        .calls(1)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_bye_rr"), uas.local_addr())
        .calls(1)
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap();
    uac.assert_calls_failed_their_checks(1);
    drop(uas);
    within_budget(started);
}

#[test]
fn cancel_through_kamailio_ends_every_call_in_487() {
    let started = setup();
    require_kamailio();
    let calls = 50;
    let uas = Sipp::uas(Scenario::named("uas_ring_no_answer"))
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .spawn()
        .unwrap();
    let proxy = Kamailio::proxy_to(uas.local_addr()).spawn().unwrap();
    let uac = Sipp::uac(Scenario::named("uac_cancel"), proxy.addr())
        .rate(50.0)
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(calls);
    assert_eq!(uac.received("487"), calls, "{uac}");
    assert_eq!(uac.received("200"), calls, "{uac}");

    // the proxy relayed each CANCEL and sent its own hop-by-hop ACK for the 487
    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(calls);
    assert_eq!(uas.received("CANCEL"), calls, "{uas}");
    assert_eq!(uas.received("ACK"), calls, "{uas}");
    within_budget(started);
    drop(proxy);
}

#[test]
fn kamailio_round_robins_over_two_backends() {
    let started = setup();
    require_kamailio();
    let per_backend = 25;
    // Route-set scenarios, for the reason given at uac_through_kamailio_to_uas_200_calls.
    let uas_a = Sipp::uas(Scenario::named("uas_basic_rr"))
        .calls(per_backend)
        .timeout(SIPP_TIMEOUT)
        .name("uas-a")
        .spawn()
        .unwrap();
    let uas_b = Sipp::uas(Scenario::named("uas_basic_rr"))
        .calls(per_backend)
        .timeout(SIPP_TIMEOUT)
        .name("uas-b")
        .spawn()
        .unwrap();
    let proxy = Kamailio::round_robin([uas_a.local_addr(), uas_b.local_addr()])
        .spawn()
        .unwrap();
    let uac = Sipp::uac(Scenario::named("uac_basic_rr"), proxy.addr())
        .rate(50.0)
        .calls(2 * per_backend)
        .timeout(SIPP_TIMEOUT)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(2 * per_backend);
    // each backend got its share, and the ACK and BYE of each of its calls
    for uas in [uas_a, uas_b] {
        let uas = uas.wait().unwrap();
        uas.assert_calls_succeeded(per_backend);
        assert_eq!(uas.received("BYE"), per_backend, "{uas}");
    }
    within_budget(started);
    drop(proxy);
}
