//! Property: any sequence of commands (forked calls among them), media
//! and time never panics, never leaks a port and keeps the table
//! consistent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{answer, config, delete, offer};
use super::*;
use crate::ng;

#[derive(Clone, Debug)]
enum Op {
    /// From A, or from callee branch `callee`'s tag (a re-INVITE).
    Offer {
        call: u8,
        callee: Option<u8>,
        media: u8,
        via: Option<u8>,
    },
    /// From callee branch `branch`'s tag.
    Answer {
        call: u8,
        media: u8,
        branch: u8,
        via: Option<u8>,
    },
    Delete {
        call: u8,
        callee: bool,
        via: Option<u8>,
    },
    Media {
        port: u16,
    },
    Advance {
        secs: u8,
    },
}

/// Up to one more via-branch than a call may have branches.
fn via() -> impl Strategy<Value = Option<u8>> {
    proptest::option::of(0u8..10)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, proptest::option::of(0u8..3), 0u8..4, via()).prop_map(
            |(call, callee, media, via)| Op::Offer {
                call,
                callee,
                media,
                via
            }
        ),
        (0u8..4, 0u8..4, 0u8..3, via()).prop_map(|(call, media, branch, via)| Op::Answer {
            call,
            media,
            branch,
            via
        }),
        (0u8..4, any::<bool>(), via()).prop_map(|(call, callee, via)| Op::Delete {
            call,
            callee,
            via
        }),
        (30_000u16..30_040).prop_map(|port| Op::Media { port }),
        (0u8..90).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// `request` with via-branch `via`, if any.
fn via_of(mut request: ng::Request, via: Option<u8>) -> ng::Request {
    if let (
        ng::Command::Offer { ids, .. }
        | ng::Command::Answer { ids, .. }
        | ng::Command::Delete { ids, .. },
        Some(via),
    ) = (&mut request.command, via)
    {
        ids.via_branch = Some(format!("z9hG4bK{via}").into());
    }
    request
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
            ..config(30_000, 30_039)
        };
        let mut s = Sessions::new(now, cfg, 0, 1).expect("valid");
        for op in ops {
            match op {
                Op::Offer { call, callee, media, via } => {
                    let callee = callee.map(|k| format!("b{k}"));
                    let (from, to) = match &callee {
                        Some(tag) => (tag.as_str(), Some("a")),
                        None => ("a", None),
                    };
                    let request = offer(&format!("c{call}"), from, to, &sdp(media));
                    s.handle_request(now, &via_of(request, via));
                }
                Op::Answer { call, media, branch, via } => {
                    let tag = format!("b{branch}");
                    let request = answer(&format!("c{call}"), "a", &tag, &sdp(media));
                    s.handle_request(now, &via_of(request, via));
                }
                Op::Delete { call, callee, via } => {
                    let from = if callee { "b0" } else { "a" };
                    let request = delete(&format!("c{call}"), from, vec![]);
                    s.handle_request(now, &via_of(request, via));
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
            if let Err(broken) = s.check_invariants() {
                return Err(TestCaseError::fail(broken));
            }
            prop_assert_eq!(s.pool().in_use_count(), s.ports_held());
            prop_assert!(s.call_count() <= 3);
        }
        s.handle_timeout(now + Duration::from_secs(1000));
        prop_assert_eq!(s.call_count(), 0);
        prop_assert_eq!(s.pool().in_use_count(), 0);
    }
}
