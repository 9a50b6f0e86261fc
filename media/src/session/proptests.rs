//! Property: any sequence of commands, media and time never panics and
//! never leaks a port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{answer, config, delete, offer};
use super::*;

#[derive(Clone, Debug)]
enum Op {
    Offer { call: u8, callee: bool, media: u8 },
    Answer { call: u8, media: u8 },
    Delete { call: u8, callee: bool },
    Media { port: u16 },
    Advance { secs: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>(), 0u8..4).prop_map(|(call, callee, media)| Op::Offer {
            call,
            callee,
            media
        }),
        (0u8..4, 0u8..4).prop_map(|(call, media)| Op::Answer { call, media }),
        (0u8..4, any::<bool>()).prop_map(|(call, callee)| Op::Delete { call, callee }),
        (30_000u16..30_024).prop_map(|port| Op::Media { port }),
        (0u8..90).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// An SDP with `media` sections (the second one rejected, port 0), or one
/// rejected section for 0.
fn sdp(media: u8) -> String {
    let mut body =
        String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
    for i in 0..media {
        let port = if i == 1 { 0 } else { 2000 + 2 * u16::from(i) };
        body.push_str(&format!("m=audio {port} RTP/AVP 0\r\n"));
    }
    if media == 0 {
        body.push_str("m=audio 0 RTP/AVP 0\r\n");
    }
    body
}

proptest! {
    #[test]
    fn commands_never_panic_nor_leak_ports(ops in proptest::collection::vec(op(), 0..60)) {
        let mut now = Instant::now();
        let cfg = SessionConfig {
            delete_delay: Duration::from_secs(5),
            final_timeout: Some(Duration::from_secs(200)),
            max_calls: 3,
            ..config(30_000, 30_011)
        };
        let mut s = Sessions::new(now, cfg, 0, 1).expect("valid");
        for op in ops {
            match op {
                Op::Offer { call, callee, media } => {
                    let (from, to) = if callee { ("b", Some("a")) } else { ("a", None) };
                    s.handle_request(now, &offer(&format!("c{call}"), from, to, &sdp(media)));
                }
                Op::Answer { call, media } => {
                    s.handle_request(now, &answer(&format!("c{call}"), "a", "b", &sdp(media)));
                }
                Op::Delete { call, callee } => {
                    let from = if callee { "b" } else { "a" };
                    s.handle_request(now, &delete(&format!("c{call}"), from, vec![]));
                }
                Op::Media { port } => {
                    let _ = s.on_media(now, port, SocketAddr::from(([127, 0, 0, 1], 5000 + port % 3)));
                    let _ = s.route(port);
                }
                Op::Advance { secs } => {
                    now += Duration::from_secs(u64::from(secs));
                    if s.poll_timeout().is_some_and(|at| at <= now) {
                        s.handle_timeout(now);
                    }
                    prop_assert!(s.poll_timeout().is_none_or(|at| at > now));
                }
            }
            prop_assert_eq!(s.pool().in_use_count(), s.ports_held());
            prop_assert!(s.call_count() <= 3);
        }
        s.handle_timeout(now + Duration::from_secs(1000));
        prop_assert_eq!(s.call_count(), 0);
        prop_assert_eq!(s.pool().in_use_count(), 0);
    }
}
