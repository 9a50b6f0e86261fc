//! The proxy with the dispatcher as its router, sans-IO with a fake clock: a
//! UAC at 198.51.100.1, the proxy at 192.0.2.10:5060 and destinations at
//! 10.0.0.1-3:5060. Failover on codes and on silence, the attempt limit,
//! CANCEL, draining, call load and probes.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::dispatcher::{
    parse_list, Algorithm, CodeSet, DestKey, DestState, DispatchRouter, DispatcherConfig,
    FailoverConfig, HealthConfig, ListOptions, RouteRule, RouterConfig,
};
use edge::proxy::{ProxyConfig, ProxyCore};
use edge::sip::{Message, Method, ParseLimits};
use edge::transaction::response_to;

const PROXY: &str = "192.0.2.10:5060";
const UAC: &str = "198.51.100.1:5060";
const D1: &str = "10.0.0.1:5060";
const D2: &str = "10.0.0.2:5060";
const D3: &str = "10.0.0.3:5060";

/// Three destinations in priority order (algorithm 8: higher first).
const LIST: &str = "1 sip:10.0.0.1:5060 0 30 duid=d1\n\
                    1 sip:10.0.0.2:5060 0 20 duid=d2\n\
                    1 sip:10.0.0.3:5060 0 10 duid=d3\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn parse(b: Bytes) -> Message {
    Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
}

fn invite(call: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@198.51.100.1>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn cancel(call: &str) -> String {
    format!(
        "CANCEL sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 CANCEL\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// An in-dialog BYE from the UAC: loose-routed through the proxy to the
/// callee's Contact at `contact`.
fn bye(call: &str, contact: &str) -> String {
    format!(
        "BYE sip:bob@{contact} SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-bye-{call};rport\r\n\
Max-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr>\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=uas\r\nCall-ID: {call}\r\nCSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[derive(Debug)]
struct Out {
    dst: SocketAddr,
    msg: Message,
}

impl Out {
    fn code(&self) -> Option<u16> {
        self.msg.status_code()
    }
    fn method(&self) -> Option<Method> {
        self.msg.method()
    }
    fn branch(&self) -> String {
        let via = self.msg.top_via().unwrap();
        String::from_utf8_lossy(via.branch().unwrap()).into_owned()
    }
}

struct H {
    core: ProxyCore<DispatchRouter>,
    t0: Instant,
    now: Instant,
}

fn config(attempts: u8, algorithm: Algorithm) -> (DispatcherConfig, RouterConfig) {
    let dispatcher = DispatcherConfig {
        health: HealthConfig {
            probe_interval: Duration::from_secs(3600),
            ..HealthConfig::default()
        },
        failover: FailoverConfig {
            max_attempts: attempts,
            codes: CodeSet::of(&[408, 500, 502, 503, 504]),
            attempt_timeout: Duration::from_secs(4),
        },
    };
    let router = RouterConfig {
        default_rule: RouteRule { set: 1, algorithm },
        dialog_timeout: Duration::from_secs(600),
        ..RouterConfig::default()
    };
    (dispatcher, router)
}

impl H {
    fn new() -> H {
        let (d, r) = config(3, Algorithm::Priority);
        H::with(LIST, d, r)
    }

    fn with(list: &str, dispatcher: DispatcherConfig, router: RouterConfig) -> H {
        let t0 = Instant::now();
        let sets = parse_list(list.as_bytes(), "test.list", &ListOptions::default())
            .unwrap()
            .sets;
        let router = DispatchRouter::new(t0, Arc::new(sets), dispatcher, router);
        let mut core = ProxyCore::new(ProxyConfig::default(), router);
        core.set_local_addrs(&[addr(PROXY)]);
        H { core, t0, now: t0 }
    }

    fn send(&mut self, from: &str, text: &str) -> Vec<Out> {
        self.send_bytes(from, Bytes::from(text.to_owned()))
    }

    fn send_bytes(&mut self, from: &str, bytes: Bytes) -> Vec<Out> {
        self.core
            .handle_datagram(self.now, addr(from), addr(PROXY), bytes);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            out.push(Out {
                dst: t.dst,
                msg: parse(t.payload),
            });
        }
        out
    }

    /// Runs timers until `ms` after the start; what was sent, with times.
    fn run_until(&mut self, ms: u64) -> Vec<(u64, Out)> {
        let end = self.t0 + Duration::from_millis(ms);
        let mut sent = Vec::new();
        for _ in 0..100_000 {
            match self.core.poll_timeout() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.core.handle_timeout(self.now);
                    let t = (self.now - self.t0).as_millis() as u64;
                    sent.extend(self.drain().into_iter().map(|o| (t, o)));
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
        sent
    }

    /// Sends an INVITE; returns the copy forwarded downstream.
    fn invite(&mut self, call: &str) -> Out {
        let out = self.send(UAC, &invite(call));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].code(), Some(100));
        assert_eq!(out[1].method(), Some(Method::Invite));
        out.into_iter().nth(1).unwrap()
    }

    /// Destination `dst` answers `fwd` with `code`.
    fn answer(&mut self, fwd: &Out, code: u16) -> Vec<Out> {
        let r = response_to(&fwd.msg, code, "Reason", Some(b"uas"), &[]);
        let from = fwd.dst.to_string();
        self.send_bytes(&from, r)
    }

    fn key(&self, uri: &str) -> DestKey {
        DestKey {
            set: 1,
            uri: Arc::from(uri),
        }
    }

    fn load(&self, uri: &str) -> (u32, u32) {
        let d = self.core.router().dispatcher();
        let l = d.load(d.find(&self.key(uri)).unwrap()).unwrap();
        (l.pending, l.active)
    }

    fn state(&self, uri: &str) -> DestState {
        let d = self.core.router().dispatcher();
        d.state(d.find(&self.key(uri)).unwrap()).unwrap()
    }

    fn set_state(&mut self, uri: &str, state: DestState) {
        let key = self.key(uri);
        let d = self.core.router_mut().dispatcher_mut();
        let id = d.find(&key).unwrap();
        assert!(d.set_state(id, state));
    }
}

const U1: &str = "sip:10.0.0.1:5060";
const U2: &str = "sip:10.0.0.2:5060";
const U3: &str = "sip:10.0.0.3:5060";

#[test]
fn a_503_fails_over_to_the_next_destination() {
    let mut h = H::new();
    let first = h.invite("c1");
    assert_eq!(first.dst, addr(D1));
    assert_eq!(h.load(U1), (1, 0));
    let out = h.answer(&first, 503);
    // ACK to the 503, the INVITE again to the next one; nothing upstream
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].method(), Some(Method::Ack));
    assert_eq!(out[0].dst, addr(D1));
    assert_eq!(out[1].method(), Some(Method::Invite));
    assert_eq!(out[1].dst, addr(D2));
    assert_ne!(out[1].branch(), first.branch(), "a new branch");
    assert_eq!(h.load(U1), (0, 0));
    assert_eq!(h.load(U2), (1, 0));
    let second = out.into_iter().nth(1).unwrap();
    let up = h.answer(&second, 200);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].code(), Some(200));
    assert_eq!(up[0].dst, addr(UAC));
    assert_eq!(
        h.load(U2),
        (0, 1),
        "the call counts on the one that answered"
    );
    assert_eq!(h.core.stats().failovers, 1);
}

#[test]
fn silence_fails_over_after_the_attempt_timeout() {
    let mut h = H::new();
    let first = h.invite("c1");
    assert_eq!(first.dst, addr(D1));
    let sent = h.run_until(3_999);
    assert!(
        sent.iter().all(|(_, o)| o.dst == addr(D1)),
        "only retransmissions before 4 s: {sent:?}"
    );
    let sent = h.run_until(4_000);
    let to_d2: Vec<_> = sent.iter().filter(|(_, o)| o.dst == addr(D2)).collect();
    assert_eq!(to_d2.len(), 1, "{sent:?}");
    assert_eq!(to_d2[0].0, 4_000);
    assert_eq!(to_d2[0].1.method(), Some(Method::Invite));
    // A provisional from the new one stops the attempt timer: no third try.
    let second = sent.into_iter().find(|(_, o)| o.dst == addr(D2)).unwrap().1;
    let up = h.answer(&second, 180);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].code(), Some(180));
    let sent = h.run_until(30_000);
    assert!(
        sent.iter()
            .all(|(_, o)| o.dst != addr(D3) && o.dst != addr(UAC)),
        "{sent:?}"
    );
    // The first one wakes up late with a 180: it is cancelled, not forwarded.
    let late = h.answer(&first, 180);
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].method(), Some(Method::Cancel));
    assert_eq!(late[0].dst, addr(D1));
}

#[test]
fn exhausted_attempts_send_the_last_error_upstream() {
    let (d, r) = config(2, Algorithm::Priority);
    let mut h = H::with(LIST, d, r);
    let first = h.invite("c1");
    let out = h.answer(&first, 503);
    let second = out.into_iter().find(|o| o.dst == addr(D2)).unwrap();
    let out = h.answer(&second, 502);
    let up: Vec<_> = out.iter().filter(|o| o.dst == addr(UAC)).collect();
    assert_eq!(up.len(), 1, "{out:?}");
    assert_eq!(up[0].code(), Some(502), "the last error");
    assert!(out.iter().all(|o| o.dst != addr(D3)), "two attempts only");
    for u in [U1, U2, U3] {
        assert_eq!(h.load(u), (0, 0), "{u}");
    }
}

#[test]
fn timeouts_on_every_attempt_answer_408() {
    let mut h = H::new();
    h.invite("c1");
    let sent = h.run_until(12_500);
    let invites: Vec<_> = sent
        .iter()
        .filter(|(_, o)| o.method() == Some(Method::Invite) && o.dst != addr(D1))
        .map(|(t, o)| (*t, o.dst))
        .collect();
    assert!(invites.contains(&(4_000, addr(D2))), "{invites:?}");
    assert!(invites.contains(&(8_000, addr(D3))), "{invites:?}");
    // 408 at the third attempt's timeout (then Timer G retransmits it)
    let up: Vec<_> = sent
        .iter()
        .filter(|(_, o)| o.dst == addr(UAC))
        .map(|(t, o)| (*t, o.code()))
        .collect();
    assert_eq!(up.first(), Some(&(12_000, Some(408))), "{up:?}");
    assert!(up.iter().all(|(_, c)| *c == Some(408)), "{up:?}");
}

#[test]
fn a_cancel_stops_the_hunt() {
    let mut h = H::new();
    let first = h.invite("c1");
    assert_eq!(h.answer(&first, 180).len(), 1);
    let out = h.send(UAC, &cancel("c1"));
    assert!(out
        .iter()
        .any(|o| o.code() == Some(200) && o.dst == addr(UAC)));
    assert!(out
        .iter()
        .any(|o| o.method() == Some(Method::Cancel) && o.dst == addr(D1)));
    assert_eq!(h.load(U1), (0, 0), "the hunt released its attempt");
    let up = h.answer(&first, 487);
    assert!(up
        .iter()
        .any(|o| o.code() == Some(487) && o.dst == addr(UAC)));
    let sent = h.run_until(40_000);
    assert!(
        sent.iter()
            .all(|(_, o)| o.method() != Some(Method::Invite) || o.dst == addr(D1)),
        "no new branch after the CANCEL: {sent:?}"
    );
}

#[test]
fn a_cancel_before_any_reply_stops_the_timeout_failover() {
    let mut h = H::new();
    h.invite("c1");
    h.send(UAC, &cancel("c1"));
    let sent = h.run_until(10_000);
    assert!(
        sent.iter()
            .all(|(_, o)| o.dst != addr(D2) && o.dst != addr(D3)),
        "{sent:?}"
    );
}

#[test]
fn a_draining_destination_gets_no_new_call_but_keeps_its_dialogs() {
    let mut h = H::new();
    let first = h.invite("c1");
    assert_eq!(first.dst, addr(D1));
    h.answer(&first, 200);
    assert_eq!(h.load(U1), (0, 1));
    h.set_state(U1, DestState::Draining);
    assert_eq!(h.state(U1), DestState::Draining);
    let next = h.invite("c2");
    assert_eq!(next.dst, addr(D2), "no new call to the draining one");
    // the established call's BYE still reaches it, by its Contact
    let out = h.send(UAC, &bye("c1", "10.0.0.1:5060"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].method(), Some(Method::Bye));
    assert_eq!(out[0].dst, addr(D1));
    let up = h.answer(&out.into_iter().next().unwrap(), 200);
    assert_eq!(up[0].code(), Some(200));
    assert_eq!(
        h.load(U1),
        (0, 0),
        "the BYE ended the call: the node is empty"
    );
}

#[test]
fn call_load_counts_answered_calls_until_bye_or_dialog_timeout() {
    let (d, r) = config(3, Algorithm::CallLoad);
    let mut h = H::with(LIST, d, r);
    // algorithm 10 spreads calls over the least loaded
    let mut fwd = Vec::new();
    for i in 0..6 {
        let f = h.invite(&format!("c{i}"));
        h.answer(&f, 200);
        fwd.push(f);
    }
    for u in [U1, U2, U3] {
        assert_eq!(h.load(u), (0, 2), "{u}");
    }
    assert_eq!(h.core.router().dialog_count(), 6);
    // a BYE ends one
    let dst = fwd[0].dst;
    let out = h.send(UAC, &bye("c0", &dst.to_string()));
    h.answer(&out.into_iter().next().unwrap(), 200);
    let total: u32 = [U1, U2, U3].iter().map(|u| h.load(u).1).sum();
    assert_eq!(total, 5);
    // a failed call never counts as active
    let f = h.invite("failed");
    let out = h.answer(&f, 486);
    assert!(out.iter().any(|o| o.code() == Some(486)));
    let total: u32 = [U1, U2, U3].iter().map(|u| h.load(u).0 + h.load(u).1).sum();
    assert_eq!(total, 5);
    // the dialog timeout (600 s here) releases the rest
    h.run_until(601_000);
    for u in [U1, U2, U3] {
        assert_eq!(h.load(u), (0, 0), "{u}");
    }
    assert_eq!(h.core.router().dialog_count(), 0);
    assert_eq!(h.core.router().stats().dialogs_expired, 5);
}

#[test]
fn probes_take_a_dead_destination_out_and_bring_it_back() {
    let (mut d, r) = config(3, Algorithm::Priority);
    d.health = HealthConfig {
        probe_interval: Duration::from_secs(1),
        probe_timeout: Duration::from_millis(500),
        probing_threshold: 2,
        inactive_threshold: 1,
        ..HealthConfig::default()
    };
    let mut h = H::with(LIST, d, r);
    // Within the first interval every destination gets an OPTIONS.
    let sent = h.run_until(1_000);
    let probes: Vec<&Out> = sent
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.method() == Some(Method::Options))
        .collect();
    for d in [D1, D2, D3] {
        assert!(probes.iter().any(|o| o.dst == addr(d)), "{d}: {probes:?}");
    }
    // D2 and D3 answer every probe; D1 is silent.
    let mut t = 1_000;
    let answer_probes = |h: &mut H, sent: Vec<(u64, Out)>| {
        for (_, o) in sent {
            let first_send = o.method() == Some(Method::Options) && o.dst != addr(D1);
            if first_send {
                h.answer(&o, 200);
            }
        }
    };
    answer_probes(&mut h, sent);
    while h.state(U1) != DestState::Inactive && t < 10_000 {
        t += 100;
        let sent = h.run_until(t);
        answer_probes(&mut h, sent);
    }
    assert_eq!(h.state(U1), DestState::Inactive, "after {t} ms");
    assert!(
        t <= 3_000,
        "two failed probes take about 2 intervals: {t} ms"
    );
    assert_eq!(h.state(U2), DestState::Active);
    // No new call goes there.
    let f = h.invite("c1");
    assert_eq!(f.dst, addr(D2));
    // The next probe of D1 is answered: back in service.
    let mut back = None;
    for _ in 0..40 {
        t += 100;
        let sent = h.run_until(t);
        for (_, o) in sent {
            if o.method() == Some(Method::Options) {
                h.answer(&o, 200);
                if o.dst == addr(D1) {
                    back = Some(t);
                }
            }
        }
        if back.is_some() {
            break;
        }
    }
    assert!(back.is_some(), "D1 was probed again");
    assert_eq!(h.state(U1), DestState::Active);
    let f = h.invite("c2");
    assert_eq!(f.dst, addr(D1), "priority order again");
    assert!(h.core.stats().probes_sent >= 6);
}

#[test]
fn state_changes_come_out_as_events_for_the_other_shards() {
    let mut h = H::new();
    h.set_state(U2, DestState::Draining);
    let event = h.core.router_mut().poll_event().unwrap();
    assert_eq!(event.key, h.key(U2));
    assert_eq!(event.state(), DestState::Draining);
    // another shard applies it
    let (d, r) = config(3, Algorithm::Priority);
    let mut other = H::with(LIST, d, r);
    assert!(other.core.router_mut().apply_state_change(&event));
    assert_eq!(other.state(U2), DestState::Draining);
    assert!(other.core.router_mut().poll_event().is_none(), "not echoed");
}
