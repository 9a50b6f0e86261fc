//! RFC 3261 section 16 proxy rules (and RFC 3581), driven through
//! `ProxyCore` with a fake clock and no sockets: a UAC at 198.51.100.1, the
//! proxy at 192.0.2.10:5060 and a UAS (the `NextHop`) at 203.0.113.5.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::{NextHop, ProxyConfig, ProxyCore};
use edge::sip::{Message, Method, ParseLimits};
use edge::transaction::response_to;

const PROXY: &str = "192.0.2.10:5060";
const UAC: &str = "198.51.100.1:5060";
const UAS: &str = "203.0.113.5:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn parse(b: Bytes) -> Message {
    Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
}

/// A request from the UAC, with defaults a test overrides.
#[derive(Clone)]
struct Req {
    method: &'static str,
    ruri: &'static str,
    via: String,
    max_forwards: Option<&'static str>,
    to_tag: Option<&'static str>,
    routes: Vec<&'static str>,
    call_id: &'static str,
    extra: Vec<&'static str>,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            method: "INVITE",
            ruri: "sip:bob@example.com",
            via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKuac1;rport".into(),
            max_forwards: Some("70"),
            to_tag: None,
            routes: Vec::new(),
            call_id: "call-1@uac",
            extra: Vec::new(),
        }
    }
}

impl Req {
    fn text(&self) -> String {
        let mut s = format!(
            "{} {} SIP/2.0\r\nVia: {}\r\n",
            self.method, self.ruri, self.via
        );
        if let Some(mf) = self.max_forwards {
            s += &format!("Max-Forwards: {mf}\r\n");
        }
        for r in &self.routes {
            s += &format!("Route: {r}\r\n");
        }
        s += "From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n";
        match self.to_tag {
            Some(t) => s += &format!("To: <sip:bob@example.com>;tag={t}\r\n"),
            None => s += "To: <sip:bob@example.com>\r\n",
        }
        s += &format!("Call-ID: {}\r\nCSeq: 1 {}\r\n", self.call_id, self.method);
        s += "Contact: <sip:alice@198.51.100.1>\r\n";
        for e in &self.extra {
            s += e;
            s += "\r\n";
        }
        s + "Content-Length: 0\r\n\r\n"
    }
}

/// One datagram the proxy sent.
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
}

/// The proxy under test and its fake clock.
struct H {
    core: ProxyCore<NextHop>,
    t0: Instant,
    now: Instant,
}

impl H {
    fn new() -> H {
        H::with(ProxyConfig::default())
    }

    fn with(config: ProxyConfig) -> H {
        let t0 = Instant::now();
        H {
            core: ProxyCore::new(config, NextHop(addr(UAS))),
            t0,
            now: t0,
        }
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
            assert_eq!(t.local, addr(PROXY), "sent from the socket it arrived on");
            out.push(Out {
                dst: t.dst,
                msg: parse(t.payload),
            });
        }
        out
    }

    /// Runs timers until `ms` after the start; returns what was sent, with times.
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

    /// Sends the default INVITE and returns the forwarded copy.
    fn invite(&mut self, req: &Req) -> Message {
        let out = self.send(UAC, &req.text());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].code(), Some(100));
        assert_eq!(out[1].dst, addr(UAS));
        out.into_iter().nth(1).unwrap().msg
    }

    /// The UAS answers `fwd` with `code`.
    fn answer(&mut self, fwd: &Message, code: u16) -> Vec<Out> {
        let r = response_to(fwd, code, "Reason", Some(b"uas"), &[]);
        self.send_bytes(UAS, r)
    }
}

fn branches(m: &Message) -> Vec<String> {
    m.vias()
        .map(|v| String::from_utf8_lossy(v.unwrap().branch().unwrap_or_default()).into_owned())
        .collect()
}

fn header(m: &Message, name: &str) -> Option<String> {
    m.headers_named(name)
        .next()
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
}

fn routes(m: &Message) -> Vec<String> {
    m.routes()
        .map(|r| String::from_utf8_lossy(r.unwrap().uri().as_bytes()).into_owned())
        .collect()
}

#[test]
fn invite_gets_100_trying_then_is_forwarded_16_6() {
    let mut h = H::new();
    let out = h.send(UAC, &Req::default().text());
    assert_eq!(out.len(), 2);
    let trying = &out[0];
    assert_eq!((trying.code(), trying.dst), (Some(100), addr(UAC)));
    assert_eq!(trying.msg.to().unwrap().tag(), None, "no To tag on 100");
    assert_eq!(trying.msg.call_id(), b"call-1@uac");
    assert_eq!(trying.msg.cseq().seq, 1);
    assert_eq!(trying.msg.vias().count(), 1);
    assert_eq!(trying.msg.content_length(), Some(0));

    let fwd = &out[1].msg;
    assert_eq!(out[1].dst, addr(UAS));
    fwd.validate().unwrap();
    let top = fwd.top_via().unwrap();
    assert_eq!(top.host_raw(), b"192.0.2.10");
    assert_eq!(top.port(), Some(5060));
    let b = branches(fwd);
    assert!(b[0].starts_with("z9hG4bK") && b[0].len() > 7, "{b:?}");
    assert_eq!(b[1], "z9hG4bKuac1");
    assert_eq!(fwd.max_forwards(), Ok(Some(69)));
    assert_eq!(
        header(fwd, "Record-Route").as_deref(),
        Some("<sip:192.0.2.10:5060;lr>")
    );
    assert_eq!(fwd.request_uri_raw(), Some(&b"sip:bob@example.com"[..]));
    // The Vias stay one block (UAs copy them as one): Record-Route goes above.
    let names: Vec<_> = fwd.headers().map(|h| h.name.to_ascii_lowercase()).collect();
    let first_via = names.iter().position(|n| n == b"via").unwrap();
    assert_eq!(names[first_via + 1], b"via", "{names:?}");
    assert!(names.iter().position(|n| n == b"record-route").unwrap() < first_via);
    assert_eq!(h.core.transaction_count(), 2);
    assert_eq!(h.core.stats().requests_forwarded, 1);
}

#[test]
fn branch_is_deterministic_per_incoming_branch() {
    let mut a = H::new();
    let mut b = H::new();
    let fa = a.invite(&Req::default());
    let fb = b.invite(&Req::default());
    assert_eq!(
        branches(&fa)[0],
        branches(&fb)[0],
        "same secret, same input"
    );
    let fc = a.invite(&Req {
        via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKother".into(),
        ..Req::default()
    });
    assert_ne!(branches(&fa)[0], branches(&fc)[0]);
}

#[test]
fn rport_and_received_rfc3581() {
    // Behind a NAT: sent-by 10.0.0.1, source 198.51.100.1:40000, rport asked.
    let mut h = H::new();
    let req = Req {
        via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnat;rport".into(),
        ..Req::default()
    };
    let out = h.send("198.51.100.1:40000", &req.text());
    assert_eq!(
        out[0].dst,
        addr("198.51.100.1:40000"),
        "100 goes to the source port"
    );
    let fwd = &out[1].msg;
    let stamped = fwd.vias().nth(1).unwrap().unwrap();
    assert_eq!(stamped.received(), Some(&b"198.51.100.1"[..]));
    assert_eq!(stamped.rport(), Some(Some(40000)));
    assert_eq!(stamped.branch(), Some(&b"z9hG4bKnat"[..]));
    // The 180 goes back to received:rport.
    let r = h.answer(fwd, 180);
    assert_eq!(r[0].dst, addr("198.51.100.1:40000"));

    // No rport: received added (IP differs), responses to the Via port.
    let mut h = H::new();
    let req = Req {
        via: "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKnat2".into(),
        ..Req::default()
    };
    let out = h.send("198.51.100.1:40000", &req.text());
    assert_eq!(out[0].dst, addr("198.51.100.1:5070"));
    let stamped = out[1].msg.vias().nth(1).unwrap().unwrap();
    assert_eq!(stamped.received(), Some(&b"198.51.100.1"[..]));
    assert_eq!(stamped.rport(), None);

    // Same IP, no rport: the Via is left alone.
    let mut h = H::new();
    let req = Req {
        via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKplain".into(),
        ..Req::default()
    };
    let out = h.send(UAC, &req.text());
    let second = out[1].msg.vias().nth(1).unwrap().unwrap();
    assert_eq!(second.received(), None);
}

#[test]
fn max_forwards_zero_gets_483_and_absent_gets_70() {
    let mut h = H::new();
    let out = h.send(
        UAC,
        &Req {
            max_forwards: Some("0"),
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code(), Some(483));
    assert!(
        out[0].msg.to().unwrap().tag().is_some(),
        "final gets a To tag"
    );
    assert_eq!(h.core.transaction_count(), 0);
    assert_eq!(h.core.stats().too_many_hops, 1);

    let fwd = h.invite(&Req {
        max_forwards: None,
        call_id: "mf-absent",
        ..Req::default()
    });
    assert_eq!(fwd.max_forwards(), Ok(Some(70)));
}

#[test]
fn loop_is_482_but_spiral_is_forwarded_16_3() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    // The forwarded INVITE comes back unchanged: a loop.
    let out = h.send_bytes(UAS, fwd.bytes().clone());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].code(), Some(482));
    assert_eq!(h.core.stats().loops_detected, 1);
    // It comes back with a new Request-URI (retargeted): a spiral.
    let text = String::from_utf8_lossy(fwd.as_bytes()).replace(
        "INVITE sip:bob@example.com SIP/2.0",
        "INVITE sip:bob@b2.example.com SIP/2.0",
    );
    let out = h.send(UAS, &text);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1].method(), Some(Method::Invite));
    assert_eq!(out[1].msg.vias().count(), 3);
}

#[test]
fn record_route_only_on_initial_invite_and_subscribe() {
    let cases = [
        ("INVITE", None, true, true),
        ("SUBSCRIBE", None, true, true),
        ("OPTIONS", None, true, false),
        ("MESSAGE", None, true, false),
        ("INVITE", Some("b1"), true, false),
        ("INVITE", None, false, false),
    ];
    for (method, to_tag, record_route, expect) in cases {
        let mut h = H::with(ProxyConfig {
            record_route,
            ..ProxyConfig::default()
        });
        let req = Req {
            method,
            to_tag,
            ruri: "sip:bob@203.0.113.5",
            ..Req::default()
        };
        let out = h.send(UAC, &req.text());
        let fwd = out.iter().find(|o| o.method().is_some()).unwrap();
        assert_eq!(
            fwd.msg.record_routes().count() == 1,
            expect,
            "{method} to-tag {to_tag:?} rr {record_route}"
        );
    }
}

#[test]
fn loose_routing_pops_our_route_16_4() {
    let mut h = H::new();
    let req = Req {
        method: "BYE",
        to_tag: Some("b1"),
        ruri: "sip:bob@203.0.113.99",
        routes: vec!["<sip:192.0.2.10:5060;lr>", "<sip:203.0.113.7:5070;lr>"],
        ..Req::default()
    };
    let out = h.send(UAC, &req.text());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dst, addr("203.0.113.7:5070"), "next Route");
    assert_eq!(routes(&out[0].msg), ["sip:203.0.113.7:5070;lr"]);
    assert_eq!(
        out[0].msg.request_uri_raw(),
        Some(&b"sip:bob@203.0.113.99"[..])
    );
    assert_eq!(out[0].msg.record_routes().count(), 0);

    // Our Route only (in one header line with nothing after): to the R-URI.
    let req = Req {
        method: "BYE",
        to_tag: Some("b1"),
        call_id: "loose-2",
        via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKloose2".into(),
        ruri: "sip:bob@203.0.113.99:5080",
        routes: vec!["<sip:192.0.2.10;lr>"],
        ..Req::default()
    };
    let out = h.send(UAC, &req.text());
    assert_eq!(out[0].dst, addr("203.0.113.99:5080"));
    assert!(routes(&out[0].msg).is_empty());
}

#[test]
fn strict_router_previous_hop_16_4() {
    let mut h = H::new();
    let req = Req {
        method: "BYE",
        to_tag: Some("b1"),
        ruri: "sip:192.0.2.10:5060;lr",
        routes: vec!["<sip:203.0.113.7:5070;lr>", "<sip:bob@203.0.113.99:5080>"],
        ..Req::default()
    };
    let out = h.send(UAC, &req.text());
    assert_eq!(out.len(), 1, "{out:?}");
    let fwd = &out[0].msg;
    assert_eq!(
        fwd.request_uri_raw(),
        Some(&b"sip:bob@203.0.113.99:5080"[..])
    );
    assert_eq!(routes(fwd), ["sip:203.0.113.7:5070;lr"]);
    assert_eq!(out[0].dst, addr("203.0.113.7:5070"));
}

#[test]
fn aliases_and_domains_are_us() {
    let mut h = H::with(ProxyConfig {
        aliases: vec![addr("192.0.2.11:5060")],
        domains: vec!["edge.example.net".into()],
        ..ProxyConfig::default()
    });
    let req = Req {
        method: "BYE",
        to_tag: Some("b1"),
        ruri: "sip:bob@203.0.113.99",
        routes: vec![
            "<sip:192.0.2.11;lr>",
            "<sip:EDGE.example.net;lr>",
            "<sip:203.0.113.7;lr>",
        ],
        ..Req::default()
    };
    let out = h.send(UAC, &req.text());
    assert_eq!(out[0].dst, addr("203.0.113.7:5060"));
    assert_eq!(routes(&out[0].msg), ["sip:203.0.113.7;lr"]);
}

#[test]
fn responses_follow_16_7() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    assert!(h.answer(&fwd, 100).is_empty(), "100 is not forwarded");
    let ringing = h.answer(&fwd, 180);
    assert_eq!(ringing.len(), 1);
    assert_eq!((ringing[0].code(), ringing[0].dst), (Some(180), addr(UAC)));
    assert_eq!(
        branches(&ringing[0].msg),
        ["z9hG4bKuac1"],
        "our Via removed"
    );
    // 17.1.1.2: every provisional in Proceeding goes up, and 16.7 forwards it.
    assert_eq!(h.answer(&fwd, 180)[0].code(), Some(180));
    let ok = h.answer(&fwd, 200);
    assert_eq!((ok[0].code(), ok[0].dst), (Some(200), addr(UAC)));
    assert_eq!(h.core.transaction_count(), 0, "2xx ends both transactions");
    // A 2xx retransmission is forwarded statelessly by the second Via.
    let again = h.answer(&fwd, 200);
    assert_eq!((again[0].code(), again[0].dst), (Some(200), addr(UAC)));
    assert_eq!(h.core.stats().stray_responses, 1);
    assert_eq!(h.core.stats().responses_forwarded, 4);
}

#[test]
fn non_2xx_final_is_acked_hop_by_hop_17_1_1_3() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    let out = h.answer(&fwd, 486);
    assert_eq!(out.len(), 2, "{out:?}");
    let ack = out
        .iter()
        .find(|o| o.method() == Some(Method::Ack))
        .unwrap();
    assert_eq!(ack.dst, addr(UAS));
    assert_eq!(
        branches(&ack.msg),
        [branches(&fwd)[0].clone()],
        "ACK uses the INVITE's branch"
    );
    assert_eq!(ack.msg.to().unwrap().tag(), Some(&b"uas"[..]));
    let busy = out.iter().find(|o| o.code() == Some(486)).unwrap();
    assert_eq!(busy.dst, addr(UAC));
    // The UAS retransmits the 486: absorbed, ACK resent, nothing upstream.
    let out = h.answer(&fwd, 486);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method(), Some(Method::Ack));
    // The UAC's ACK is absorbed by the server transaction, not forwarded.
    let ack_up = Req {
        method: "ACK",
        to_tag: Some("uas"),
        ..Req::default()
    };
    assert!(h.send(UAC, &ack_up.text()).is_empty());
    assert_eq!(h.core.stats().acks_absorbed, 1);
}

#[test]
fn request_retransmissions_are_absorbed_17_2() {
    let mut h = H::new();
    let req = Req::default();
    h.invite(&req);
    let again = h.send(UAC, &req.text());
    assert_eq!(again.len(), 1, "only the 100 is resent: {again:?}");
    assert_eq!(again[0].code(), Some(100));
    assert_eq!(h.core.stats().requests_forwarded, 1);
    assert_eq!(h.core.stats().retransmissions_absorbed, 1);

    let bye = Req {
        method: "BYE",
        to_tag: Some("b1"),
        call_id: "bye-1",
        ruri: "sip:bob@203.0.113.5",
        ..Req::default()
    };
    let out = h.send(UAC, &bye.text());
    assert_eq!(out.len(), 1);
    assert!(
        h.send(UAC, &bye.text()).is_empty(),
        "Trying: absorbed silently"
    );
    h.answer(&out[0].msg, 200);
    let out = h.send(UAC, &bye.text());
    assert_eq!(out[0].code(), Some(200), "Completed: the 200 is resent");
}

#[test]
fn cancel_flow_16_10() {
    let mut h = H::new();
    let req = Req::default();
    let fwd = h.invite(&req);
    h.answer(&fwd, 180);
    let cancel = Req {
        method: "CANCEL",
        max_forwards: Some("70"),
        ..req.clone()
    };
    let out = h.send(UAC, &cancel.text());
    assert_eq!(out.len(), 2, "{out:?}");
    let ok = out.iter().find(|o| o.code().is_some()).unwrap();
    assert_eq!((ok.code(), ok.dst), (Some(200), addr(UAC)));
    assert_eq!(ok.msg.cseq().method, Method::Cancel);
    let down = out
        .iter()
        .find(|o| o.method() == Some(Method::Cancel))
        .unwrap();
    assert_eq!(down.dst, addr(UAS));
    assert_eq!(branches(&down.msg), [branches(&fwd)[0].clone()]);
    assert_eq!(down.msg.request_uri_raw(), fwd.request_uri_raw());
    // The UAS answers the CANCEL (absorbed) and the INVITE with 487.
    let r = response_to(&down.msg, 200, "OK", Some(b"uas"), &[]);
    assert!(
        h.send_bytes(UAS, r).is_empty(),
        "200 to our CANCEL stays here"
    );
    let out = h.answer(&fwd, 487);
    let up = out.iter().find(|o| o.code() == Some(487)).unwrap();
    assert_eq!(up.dst, addr(UAC));
    let ack = out
        .iter()
        .find(|o| o.method() == Some(Method::Ack))
        .unwrap();
    assert_eq!(ack.dst, addr(UAS));
    assert_eq!(h.core.stats().cancels, 1);
    // A retransmitted CANCEL gets the 200 again, no second CANCEL downstream.
    let out = h.send(UAC, &cancel.text());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code(), Some(200));
}

#[test]
fn cancel_before_provisional_waits_for_one_9_1() {
    let mut h = H::new();
    let req = Req::default();
    let fwd = h.invite(&req);
    let out = h.send(
        UAC,
        &Req {
            method: "CANCEL",
            ..req.clone()
        }
        .text(),
    );
    assert_eq!(out.len(), 1, "only the 200: {out:?}");
    let out = h.answer(&fwd, 180);
    assert!(out
        .iter()
        .any(|o| o.method() == Some(Method::Cancel) && o.dst == addr(UAS)));
    assert!(out.iter().any(|o| o.code() == Some(180)));
}

#[test]
fn cancel_without_transaction_gets_481() {
    let mut h = H::new();
    let out = h.send(
        UAC,
        &Req {
            method: "CANCEL",
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code(), Some(481));
}

#[test]
fn ack_of_2xx_is_forwarded_end_to_end() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    h.answer(&fwd, 200);
    let ack = Req {
        method: "ACK",
        to_tag: Some("uas"),
        via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKack2xx;rport".into(),
        ruri: "sip:bob@203.0.113.5:5062",
        routes: vec!["<sip:192.0.2.10:5060;lr>"],
        ..Req::default()
    };
    let out = h.send(UAC, &ack.text());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].method(), Some(Method::Ack));
    assert_eq!(out[0].dst, addr("203.0.113.5:5062"));
    assert!(routes(&out[0].msg).is_empty());
    assert_eq!(out[0].msg.vias().count(), 2);
    assert_eq!(out[0].msg.max_forwards(), Ok(Some(69)));
    assert_eq!(h.core.transaction_count(), 0, "stateless");
}

#[test]
fn stray_responses_go_by_the_second_via() {
    let mut h = H::new();
    let stray = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKgone\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKuac;received=198.51.100.1;rport=40001\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n\
Call-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let out = h.send(UAS, stray);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dst, addr("198.51.100.1:40001"));
    assert_eq!(out[0].msg.vias().count(), 1);
    // A response whose top Via is not ours is dropped.
    let foreign = stray.replace("192.0.2.10:5060", "192.0.2.99:5060");
    assert!(h.send(UAS, &foreign).is_empty());
    assert_eq!(h.core.stats().responses_dropped, 1);
}

/// 16.7 step 3: a response whose only Via is ours was meant for us; forwarding
/// it would send a response without any Via.
#[test]
fn response_with_only_our_via_is_not_forwarded() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    let ours = fwd
        .headers()
        .find(|h| h.name.eq_ignore_ascii_case(b"via"))
        .unwrap();
    let ours = String::from_utf8(ours.value.to_vec()).unwrap();
    let lone = format!(
        "SIP/2.0 487 Request Terminated\r\nVia: {ours}\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=uas\r\n\
Call-ID: call-1@uac\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.send(UAS, &lone);
    assert!(out.iter().all(|o| o.msg.vias().count() > 0), "{out:?}");
    assert!(out.iter().all(|o| o.dst != addr(UAC)), "{out:?}");
}

#[test]
fn timer_b_sends_408_upstream_16_8() {
    let mut h = H::new();
    let req = Req::default();
    h.invite(&req);
    let sent = h.run_until(40_000);
    let retransmits: Vec<u64> = sent
        .iter()
        .filter(|(_, o)| o.method() == Some(Method::Invite))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        retransmits,
        [500, 1500, 3500, 7500, 15500, 31500],
        "Timer A"
    );
    let timeout: Vec<_> = sent.iter().filter(|(_, o)| o.code() == Some(408)).collect();
    assert_eq!(timeout[0].0, 32_000, "Timer B");
    assert_eq!(timeout[0].1.dst, addr(UAC));
    assert!(timeout[0].1.msg.to().unwrap().tag().is_some());
    assert_eq!(h.core.stats().timeouts, 1);
    // The 408 is retransmitted on Timer G until the UAC's ACK.
    assert!(timeout.len() > 1);
    let ack = Req {
        method: "ACK",
        to_tag: Some("x"),
        ..req
    };
    assert!(h.send(UAC, &ack.text()).is_empty());
    let rest = h.run_until(200_000);
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(h.core.transaction_count(), 0);
}

#[test]
fn timer_f_sends_408_for_non_invite() {
    let mut h = H::new();
    let out = h.send(
        UAC,
        &Req {
            method: "OPTIONS",
            ruri: "sip:bob@203.0.113.5",
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out.len(), 1, "no 100 for non-INVITE");
    let sent = h.run_until(33_000);
    let at: Vec<u64> = sent
        .iter()
        .filter(|(_, o)| o.code() == Some(408))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(at, [32_000]);
}

#[test]
fn timer_c_cancels_a_ringing_branch_16_8() {
    let mut h = H::with(ProxyConfig {
        timer_c_ms: 100_000,
        ..ProxyConfig::default()
    });
    let fwd = h.invite(&Req::default());
    h.now = h.t0 + Duration::from_millis(1_000);
    h.answer(&fwd, 180);
    let sent = h.run_until(102_000);
    let cancel: Vec<_> = sent
        .iter()
        .filter(|(_, o)| o.method() == Some(Method::Cancel))
        .collect();
    assert_eq!(cancel[0].0, 101_000, "Timer C, reset by the 180");
    let out = h.answer(&fwd, 487);
    assert!(out
        .iter()
        .any(|o| o.code() == Some(487) && o.dst == addr(UAC)));

    // No provisional before Timer C: act as if 408 arrived.
    let mut h = H::with(ProxyConfig {
        timer_c_ms: 10_000,
        ..ProxyConfig::default()
    });
    h.invite(&Req::default());
    let sent = h.run_until(11_000);
    let t408: Vec<u64> = sent
        .iter()
        .filter(|(_, o)| o.code() == Some(408))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(t408[0], 10_000);
}

#[test]
fn options_to_us_gets_200() {
    let mut h = H::new();
    for mf in ["70", "0"] {
        let out = h.send(
            UAC,
            &Req {
                method: "OPTIONS",
                ruri: "sip:192.0.2.10:5060",
                max_forwards: Some(mf),
                ..Req::default()
            }
            .text(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].code(), Some(200));
        assert!(header(&out[0].msg, "Allow").unwrap().contains("INVITE"));
    }
    // With a user part it is for someone behind us: forwarded.
    let out = h.send(
        UAC,
        &Req {
            method: "OPTIONS",
            ruri: "sip:bob@192.0.2.10:5060",
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out[0].method(), Some(Method::Options));
}

#[test]
fn full_table_and_shutdown_get_503() {
    let mut h = H::with(ProxyConfig {
        max_transactions: 2,
        retry_after_s: 7,
        ..ProxyConfig::default()
    });
    h.invite(&Req::default());
    let out = h.send(
        UAC,
        &Req {
            call_id: "second",
            via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKuac2".into(),
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code(), Some(503));
    assert_eq!(header(&out[0].msg, "Retry-After").as_deref(), Some("7"));
    assert_eq!(h.core.stats().rejected_overload, 1);

    let mut h = H::new();
    h.core.begin_shutdown();
    let out = h.send(UAC, &Req::default().text());
    assert_eq!(out[0].code(), Some(503));
    let bye = Req {
        method: "BYE",
        to_tag: Some("b1"),
        ruri: "sip:bob@203.0.113.5",
        ..Req::default()
    };
    let out = h.send(UAC, &bye.text());
    assert_eq!(
        out[0].method(),
        Some(Method::Bye),
        "in-dialog requests still pass"
    );
}

/// Shutdown waits for transactions without a final response, not for those
/// that only absorb retransmissions.
#[test]
fn unfinished_transactions_are_those_without_a_final_response() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    assert_eq!(h.core.unfinished_transaction_count(), 2);
    h.answer(&fwd, 486);
    assert!(
        h.core.transaction_count() > 0,
        "Completed, absorbing retransmits"
    );
    assert_eq!(h.core.unfinished_transaction_count(), 0);
}

#[test]
fn malformed_requests_get_400_with_the_reason() {
    let mut h = H::new();
    let out = h.send(
        UAC,
        &Req {
            max_forwards: Some("abc"),
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code(), Some(400));
    let reason = String::from_utf8_lossy(out[0].msg.reason_phrase().unwrap()).into_owned();
    assert!(reason.contains("Max-Forwards"), "{reason}");
    assert_eq!(h.core.stats().parse_errors, 1);
    // Unparsable: dropped and counted; a CRLF keep-alive is ignored.
    assert!(h.send(UAC, "INVITE nonsense\r\n\r\n").is_empty());
    assert!(h.send(UAC, "\r\n\r\n").is_empty());
    assert_eq!(h.core.stats().parse_errors, 2);
}

#[test]
fn proxy_require_gets_420() {
    let mut h = H::new();
    let out = h.send(
        UAC,
        &Req {
            extra: vec!["Proxy-Require: foo"],
            ..Req::default()
        }
        .text(),
    );
    assert_eq!(out[0].code(), Some(420));
    assert_eq!(header(&out[0].msg, "Unsupported").as_deref(), Some("foo"));
}

#[test]
fn ipv6_via_and_record_route_are_bracketed() {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(ProxyConfig::default(), NextHop(addr("[2001:db8::5]:5060")));
    let local = addr("[2001:db8::10]:5060");
    let text = Req {
        via: "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6".into(),
        ..Req::default()
    }
    .text();
    core.handle_datagram(t0, addr("[2001:db8::1]:5060"), local, Bytes::from(text));
    core.poll_transmit();
    let fwd = parse(core.poll_transmit().unwrap().payload);
    assert_eq!(fwd.top_via().unwrap().host_raw(), b"[2001:db8::10]");
    assert_eq!(
        header(&fwd, "Record-Route").as_deref(),
        Some("<sip:[2001:db8::10]:5060;lr>")
    );
}

#[test]
fn counters_by_method_and_class_and_setup_latency_on_the_fake_clock() {
    let mut h = H::new();
    let fwd = h.invite(&Req::default());
    // A retransmission is counted as a request but not as a new call.
    h.send(UAC, &Req::default().text());
    h.now += Duration::from_millis(30);
    assert_eq!(h.answer(&fwd, 180).len(), 1);
    h.now += Duration::from_millis(70);
    assert_eq!(h.answer(&fwd, 200).len(), 1);
    // A second call answered 486 at once.
    let second = Req {
        call_id: "call-2@uac",
        via: "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKuac2;rport".into(),
        ..Req::default()
    };
    let fwd2 = h.invite(&second);
    h.now += Duration::from_millis(5);
    h.answer(&fwd2, 486);
    h.send(UAC, "junk\r\n\r\n");

    let s = h.core.stats();
    let invite = Method::Invite.index();
    assert_eq!(s.calls, 2);
    assert_eq!(s.requests_by_method[invite], 3);
    assert_eq!(s.requests_in, 3);
    assert_eq!(s.parse_errors, 1);
    assert_eq!(s.responses_in_by_class[invite][..4], [1, 1, 0, 1][..]);
    assert_eq!(s.responses_in_in_class(0), 1, "the 180");
    // Sent upstream: two 100s written here (the retransmission is answered
    // from the transaction, not counted again), the 180, the 200, the 486.
    assert_eq!(s.responses_out_by_class[invite][..4], [3, 1, 0, 1][..]);
    assert_eq!(
        s.transactions_created, 4,
        "a server and a client transaction per call"
    );
    let latency = h.core.setup_latency();
    assert_eq!(latency.first_response.count(), 2);
    assert_eq!(latency.answer.count(), 1);
    assert_eq!(latency.answer.sum_us(), 100_000);
    assert_eq!(latency.first_response.sum_us(), 30_000 + 5_000);
}
