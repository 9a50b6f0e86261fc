//! Property tests of `ProxyCore`: no datagram (random bytes, or a valid
//! message with random edits) and no interleaving with timers and with the
//! UAS's answers makes it panic; the table stays within its bound; everything
//! it sends (apart from 400s that echo a malformed request's headers) parses.
//!
//! Failure persistence is off; run with `PROPTEST_CASES=5000` for a deeper search.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::{NextHop, ProxyConfig, ProxyCore, Transmit};
use edge::sip::{Message, ParseLimits};
use edge::transaction::response_to;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const TEMPLATES: &[&str] = &[
    "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: p1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: p1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
    "ACK sip:bob@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n\
Route: <sip:192.0.2.10;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=b\r\nCall-ID: p1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    "BYE sip:192.0.2.10;lr SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK3\r\n\
Route: <sip:203.0.113.7;lr>, <sip:bob@203.0.113.8:5080>\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=b\r\nCall-ID: p1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK4\r\n\
Max-Forwards: 0\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:192.0.2.10>\r\n\
Call-ID: p2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx\r\n\
Via: SIP/2.0/UDP 10.0.0.1;received=198.51.100.1;rport=4000;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: p1\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
];

/// One step of a scenario.
#[derive(Clone, Debug)]
enum Op {
    /// Random bytes from the UAC.
    Raw(Vec<u8>),
    /// A template with edits, from the UAC.
    Mutated(usize, Vec<(usize, u8)>, Option<usize>),
    /// The UAS answers the last request forwarded to it with this code.
    Answer(u16),
    /// The last forwarded request comes back (a loop).
    Echo,
    /// Time passes.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        vec(any::<u8>(), 0..600).prop_map(Op::Raw),
        (
            0..TEMPLATES.len(),
            vec(
                (any::<usize>(), select(b" ;:,<>\"\r\n=@x0[]".to_vec())),
                0..6
            ),
            proptest::option::of(any::<usize>()),
        )
            .prop_map(|(t, edits, cut)| Op::Mutated(t, edits, cut)),
        select(vec![100u16, 180, 183, 200, 302, 404, 486, 487, 503, 699]).prop_map(Op::Answer),
        Just(Op::Echo),
        (0u64..40_000).prop_map(Op::Wait),
    ]
}

fn mutate(template: &str, edits: &[(usize, u8)], cut: Option<usize>) -> Bytes {
    let mut b = template.as_bytes().to_vec();
    for &(at, byte) in edits {
        let i = at % b.len();
        b[i] = byte;
    }
    if let Some(c) = cut {
        b.truncate(c % (b.len() + 1));
    }
    Bytes::from(b)
}

fn check_sent(t: &Transmit, last_to_uas: &mut Option<Bytes>, uas: SocketAddr) {
    match Message::parse_datagram(t.payload.clone(), &ParseLimits::datagram()) {
        Ok(m) => {
            if m.is_request() && t.dst == uas {
                *last_to_uas = Some(t.payload.clone());
            }
        }
        Err(e) => {
            // A 400 echoes the malformed request's From/To/Call-ID/CSeq.
            assert!(
                t.payload.starts_with(b"SIP/2.0 400"),
                "unparsable output {e}: {t:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_input_sequence_panics(ops in vec(op(), 1..24)) {
        let uac: SocketAddr = "198.51.100.1:5060".parse().unwrap();
        let uas: SocketAddr = "203.0.113.5:5060".parse().unwrap();
        let local: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        let config = ProxyConfig { max_transactions: 8, ..ProxyConfig::default() };
        let mut core = ProxyCore::new(config, NextHop(uas));
        let t0 = Instant::now();
        let mut now = t0;
        let mut last_to_uas: Option<Bytes> = None;
        for op in ops {
            match op {
                Op::Raw(bytes) => core.handle_datagram(now, uac, local, Bytes::from(bytes)),
                Op::Mutated(t, edits, cut) => {
                    core.handle_datagram(now, uac, local, mutate(TEMPLATES[t], &edits, cut))
                }
                Op::Answer(code) => {
                    let req = last_to_uas
                        .clone()
                        .and_then(|b| Message::parse_datagram(b, &ParseLimits::datagram()).ok());
                    if let Some(req) = req {
                        let r = response_to(&req, code, "X", Some(b"uas"), &[]);
                        core.handle_datagram(now, uas, local, r);
                    }
                }
                Op::Echo => {
                    if let Some(b) = last_to_uas.clone() {
                        core.handle_datagram(now, uas, local, b);
                    }
                }
                Op::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    for _ in 0..64 {
                        match core.poll_timeout() {
                            Some(at) if at <= now => core.handle_timeout(now),
                            _ => break,
                        }
                    }
                }
            }
            while let Some(t) = core.poll_transmit() {
                prop_assert_eq!(t.local, local);
                check_sent(&t, &mut last_to_uas, uas);
            }
            prop_assert!(core.transaction_count() <= 8);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        let mut core = ProxyCore::new(ProxyConfig::default(), NextHop("203.0.113.5:5060".parse().unwrap()));
        let now = Instant::now();
        core.handle_datagram(now, "198.51.100.1:5060".parse().unwrap(), "192.0.2.10:5060".parse().unwrap(), Bytes::from(bytes));
        core.handle_timeout(now + Duration::from_secs(60));
        while core.poll_transmit().is_some() {}
    }
}
