//! RFC 3261 section 17 timer tables, driven with a fake clock (a base
//! `Instant` plus durations): retransmission schedules of Timers A, E and G,
//! the timeouts B, F and H (64*T1), and the wait timers D (at least 32 s),
//! I (T4), J (64*T1) and K (T4); Timer C of the proxy (16.8); absorption of
//! request and response retransmissions.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::sip::{Message, Method, ParseLimits};
use edge::transaction::{
    response_to, InviteClient, InviteClientState, InviteServer, InviteServerState, NonInviteClient,
    NonInviteClientState, NonInviteServer, NonInviteServerState, TimerConfig, TransactionEvent,
    Verdict,
};

const INVITE: &str = "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKt1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@a.example>;tag=fa\r\n\
To: <sip:bob@b.example>\r\n\
Call-ID: timers-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn parse(b: Bytes) -> Message {
    Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
}

fn request(method: &str) -> Bytes {
    Bytes::from(INVITE.replace("INVITE", method))
}

fn response(code: u16) -> Message {
    let req = parse(request("INVITE"));
    parse(response_to(&req, code, "Reason", Some(b"uas"), &[]))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a driven transaction did: send times and events, in ms from the start.
#[derive(Debug, Default)]
struct Trace {
    sends_ms: Vec<u64>,
    events: Vec<(u64, TransactionEvent)>,
    ended_ms: Option<u64>,
}

/// The common surface of the four machines, for the driver.
trait Machine {
    fn timeout(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent>;
    fn transmit(&mut self) -> Option<Bytes>;
    fn deadline(&self) -> Option<Instant>;
    fn ended(&self) -> bool;
}

macro_rules! machine {
    ($t:ty, $timeout:expr) => {
        impl Machine for $t {
            fn timeout(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent> {
                #[allow(clippy::redundant_closure_call)]
                ($timeout)(self, now, timers)
            }
            fn transmit(&mut self) -> Option<Bytes> {
                self.poll_transmit()
            }
            fn deadline(&self) -> Option<Instant> {
                self.poll_timeout()
            }
            fn ended(&self) -> bool {
                self.is_terminated()
            }
        }
    };
}

machine!(InviteClient, |m: &mut InviteClient, n, t| m
    .handle_timeout(n, t));
machine!(NonInviteClient, |m: &mut NonInviteClient, n, t| m
    .handle_timeout(n, t));
machine!(InviteServer, |m: &mut InviteServer, n, t| m
    .handle_timeout(n, t));
machine!(NonInviteServer, |m: &mut NonInviteServer, n, _| m
    .handle_timeout(n));

/// Fires `m`'s timers in order until `until_ms`, recording what it does.
fn drive(
    m: &mut impl Machine,
    t0: Instant,
    until_ms: u64,
    timers: &TimerConfig,
    trace: &mut Trace,
) {
    let at = |t: Instant| (t - t0).as_millis() as u64;
    while let Some(p) = m.transmit() {
        let _ = p;
        trace.sends_ms.push(at(t0));
    }
    for _ in 0..10_000 {
        let Some(next) = m.deadline() else { break };
        if at(next) > until_ms {
            break;
        }
        if let Some(e) = m.timeout(next, timers) {
            trace.events.push((at(next), e));
        }
        if m.transmit().is_some() {
            trace.sends_ms.push(at(next));
        }
        if m.ended() {
            trace.ended_ms = Some(at(next));
            break;
        }
    }
}

fn rfc() -> TimerConfig {
    TimerConfig::rfc3261()
}

#[test]
fn timer_a_doubles_until_timer_b_17_1_1_2() {
    let t0 = Instant::now();
    // T1 = 500 ms (RFC default) and a short T1 of 100 ms.
    let table = [
        (500, vec![0, 500, 1500, 3500, 7500, 15500, 31500], 32_000),
        (100, vec![0, 100, 300, 700, 1500, 3100, 6300], 6_400),
    ];
    for (t1, sends, timeout) in table {
        let timers = TimerConfig {
            t1: ms(t1),
            ..rfc()
        };
        let mut c = InviteClient::new(t0, request("INVITE"), &timers);
        let mut trace = Trace::default();
        drive(&mut c, t0, 100_000, &timers, &mut trace);
        assert_eq!(trace.sends_ms, sends, "T1 = {t1} ms");
        assert_eq!(trace.events, [(timeout, TransactionEvent::Timeout)]);
        assert_eq!(trace.ended_ms, Some(timeout), "Timer B = 64*T1");
    }
}

#[test]
fn provisional_stops_timer_a_and_b() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut c = InviteClient::new(t0, request("INVITE"), &timers);
    c.poll_transmit();
    assert_eq!(
        c.handle_response(t0 + ms(200), &response(100), &timers),
        Verdict::Deliver
    );
    assert_eq!(c.state(), InviteClientState::Proceeding);
    // Only Timer C remains: the INVITE is not retransmitted.
    assert_eq!(c.poll_timeout(), Some(t0 + timers.timer_c));
    let mut trace = Trace::default();
    drive(&mut c, t0, 60_000, &timers, &mut trace);
    assert!(trace.sends_ms.is_empty());
}

#[test]
fn timer_d_absorbs_final_retransmissions_17_1_1_2() {
    let t0 = Instant::now();
    for t1 in [500, 100, 1000] {
        let timers = TimerConfig {
            t1: ms(t1),
            ..rfc()
        };
        let mut c = InviteClient::new(t0, request("INVITE"), &timers);
        c.poll_transmit();
        let busy = response(486);
        assert_eq!(
            c.handle_response(t0 + ms(100), &busy, &timers),
            Verdict::Deliver
        );
        assert_eq!(c.state(), InviteClientState::Completed);
        let ack = parse(c.poll_transmit().expect("ACK of the 486"));
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.to().unwrap().tag(), Some(&b"uas"[..]));
        // A retransmitted 486 is absorbed and the ACK resent.
        assert_eq!(
            c.handle_response(t0 + ms(600), &busy, &timers),
            Verdict::Absorb
        );
        assert!(c.poll_transmit().is_some());
        let d_ms = (64 * t1).max(32_000);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(100 + d_ms)),
            "Timer D, T1 = {t1}"
        );
        assert_eq!(c.handle_timeout(t0 + ms(100 + d_ms), &timers), None);
        assert!(c.is_terminated());
    }
}

#[test]
fn timer_c_resets_on_provisional_and_fires_16_8() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut c = InviteClient::new(t0, request("INVITE"), &timers);
    c.handle_response(t0 + ms(50), &response(100), &timers);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + ms(180_000)),
        "100 does not reset C"
    );
    c.handle_response(t0 + ms(1_000), &response(180), &timers);
    assert_eq!(c.poll_timeout(), Some(t0 + ms(181_000)), "180 resets C");
    assert_eq!(
        c.handle_timeout(t0 + ms(181_000), &timers),
        Some(TransactionEvent::TimerC { provisional: true })
    );
    c.cancel_sent(t0 + ms(181_000), &timers);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + ms(181_000 + 32_000)),
        "CANCEL guard 64*T1"
    );

    let short_c = TimerConfig {
        timer_c: ms(10_000),
        ..rfc()
    };
    let mut c = InviteClient::new(t0, request("INVITE"), &short_c);
    let mut trace = Trace::default();
    drive(&mut c, t0, 20_000, &short_c, &mut trace);
    assert_eq!(
        trace.events,
        [(10_000, TransactionEvent::TimerC { provisional: false })]
    );
}

#[test]
fn timer_e_doubles_capped_at_t2_until_timer_f_17_1_2_2() {
    let t0 = Instant::now();
    let table = [
        (
            rfc(),
            vec![
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
            ],
            32_000,
        ),
        (
            TimerConfig {
                t1: ms(200),
                t2: ms(1_000),
                ..rfc()
            },
            vec![
                0, 200, 600, 1400, 2400, 3400, 4400, 5400, 6400, 7400, 8400, 9400, 10400, 11400,
                12400,
            ],
            12_800,
        ),
    ];
    for (timers, sends, timeout) in table {
        let mut c = NonInviteClient::new(t0, request("OPTIONS"), &timers);
        let mut trace = Trace::default();
        drive(&mut c, t0, 100_000, &timers, &mut trace);
        assert_eq!(trace.sends_ms, sends, "{timers:?}");
        assert_eq!(
            trace.events,
            [(timeout, TransactionEvent::Timeout)],
            "Timer F"
        );
    }
}

#[test]
fn timer_e_is_t2_in_proceeding_17_1_2_2() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut c = NonInviteClient::new(t0, request("OPTIONS"), &timers);
    c.poll_transmit();
    let mut trace = Trace::default();
    drive(&mut c, t0, 700, &timers, &mut trace);
    assert_eq!(
        c.handle_response(t0 + ms(700), 180, &timers),
        Verdict::Deliver
    );
    assert_eq!(c.state(), NonInviteClientState::Proceeding);
    drive(&mut c, t0, 100_000, &timers, &mut trace);
    assert_eq!(
        trace.sends_ms,
        [500, 1500, 5500, 9500, 13500, 17500, 21500, 25500, 29500]
    );
    assert_eq!(trace.events, [(32_000, TransactionEvent::Timeout)]);
}

#[test]
fn timer_k_absorbs_response_retransmissions_17_1_2_2() {
    let t0 = Instant::now();
    for t4 in [5_000, 2_000] {
        let timers = TimerConfig {
            t4: ms(t4),
            ..rfc()
        };
        let mut c = NonInviteClient::new(t0, request("OPTIONS"), &timers);
        assert_eq!(
            c.handle_response(t0 + ms(300), 200, &timers),
            Verdict::Deliver
        );
        assert_eq!(c.state(), NonInviteClientState::Completed);
        assert_eq!(
            c.handle_response(t0 + ms(400), 200, &timers),
            Verdict::Absorb
        );
        assert_eq!(c.poll_timeout(), Some(t0 + ms(300 + t4)), "Timer K = T4");
        c.handle_timeout(t0 + ms(300 + t4), &timers);
        assert!(c.is_terminated());
    }
}

#[test]
fn timer_g_doubles_capped_at_t2_until_timer_h_17_2_1() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut s = InviteServer::new(request("INVITE"), &timers);
    assert!(s.respond(t0, 486, Bytes::from_static(b"486"), &timers));
    assert_eq!(s.state(), InviteServerState::Completed);
    let mut trace = Trace::default();
    drive(&mut s, t0, 100_000, &timers, &mut trace);
    assert_eq!(
        trace.sends_ms,
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        trace.events,
        [(32_000, TransactionEvent::Timeout)],
        "Timer H = 64*T1"
    );
}

#[test]
fn ack_confirms_and_timer_i_is_t4_17_2_1() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut s = InviteServer::new(request("INVITE"), &timers);
    s.respond(t0, 404, Bytes::from_static(b"404"), &timers);
    s.poll_transmit();
    assert_eq!(
        s.handle_request(t0 + ms(100), false, &timers),
        Verdict::Absorb
    );
    assert_eq!(
        s.poll_transmit().as_deref(),
        Some(&b"404"[..]),
        "INVITE retransmit gets the 404"
    );
    s.handle_request(t0 + ms(1_000), true, &timers);
    assert_eq!(s.state(), InviteServerState::Confirmed);
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + ms(6_000)),
        "Timer I = T4, G and H off"
    );
    s.handle_request(t0 + ms(2_000), true, &timers);
    assert!(
        s.poll_transmit().is_none(),
        "ACK retransmission absorbed silently"
    );
    s.handle_timeout(t0 + ms(6_000), &timers);
    assert!(s.is_terminated());
}

#[test]
fn invite_server_resends_last_provisional_and_ends_on_2xx() {
    let t0 = Instant::now();
    let timers = rfc();
    let mut s = InviteServer::new(request("INVITE"), &timers);
    s.handle_request(t0, false, &timers);
    assert!(
        s.poll_transmit().is_none(),
        "nothing sent yet, nothing resent"
    );
    s.respond(t0, 100, Bytes::from_static(b"100"), &timers);
    s.respond(t0, 180, Bytes::from_static(b"180"), &timers);
    s.poll_transmit();
    s.handle_request(t0 + ms(500), false, &timers);
    assert_eq!(s.poll_transmit().as_deref(), Some(&b"180"[..]));
    assert!(s.respond(t0 + ms(600), 200, Bytes::from_static(b"200"), &timers));
    assert!(
        s.is_terminated(),
        "2xx ends the INVITE server transaction (RFC 3261)"
    );
    assert!(!s.respond(t0 + ms(700), 486, Bytes::from_static(b"486"), &timers));
}

#[test]
fn timer_j_is_64_t1_17_2_2() {
    let t0 = Instant::now();
    for t1 in [500, 250] {
        let timers = TimerConfig {
            t1: ms(t1),
            ..rfc()
        };
        let mut s = NonInviteServer::new(request("BYE"));
        s.handle_request();
        assert!(
            s.poll_transmit().is_none(),
            "Trying: retransmission absorbed silently"
        );
        s.respond(t0, 180, Bytes::from_static(b"180"), &timers);
        s.poll_transmit();
        s.handle_request();
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"180"[..]));
        s.respond(t0 + ms(10), 200, Bytes::from_static(b"200"), &timers);
        assert_eq!(s.state(), NonInviteServerState::Completed);
        s.poll_transmit();
        s.handle_request();
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"200"[..]));
        assert_eq!(s.poll_timeout(), Some(t0 + ms(10 + 64 * t1)), "Timer J");
        s.handle_timeout(t0 + ms(10 + 64 * t1));
        assert!(s.is_terminated());
    }
}
