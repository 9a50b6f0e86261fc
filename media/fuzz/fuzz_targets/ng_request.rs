//! Arbitrary bytes through the whole ng request path: framing, bencode or
//! JSON decoding, the typed request, the reply. Nothing may panic; a value
//! that parses must write back to bencode that parses to the same value;
//! every reply must start with the request's cookie and be valid bencode.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::ng::{self, bencode, Bytes, Config, Control, Limits, Outcome};

fuzz_target!(|data: &[u8]| {
    let datagram = Bytes::copy_from_slice(data);
    let limits = Limits::default();
    request_path(&datagram, &limits);
    control_path(&datagram);
    round_trip(&datagram, &limits);
    if let Ok((_, body)) = ng::split_datagram(&datagram) {
        round_trip(&body, &limits);
    }
});

fn request_path(datagram: &Bytes, limits: &Limits) {
    match ng::parse_datagram(datagram, limits) {
        Ok(incoming) => {
            let supports = incoming.request.options.supports_load_limit;
            for outcome in [Outcome::ok(), Outcome::Pong, Outcome::error("x")] {
                let reply =
                    ng::encode_reply(&incoming.cookie, &outcome, &incoming.warnings, supports);
                check_reply(&reply, incoming.cookie.as_bytes());
            }
        }
        Err(rejected) => {
            if let ng::Rejected::Error { cookie, .. } = &rejected {
                let reply = rejected.reply().expect("an error has a reply");
                check_reply(&reply, cookie.as_bytes());
            } else {
                assert!(rejected.reply().is_none());
            }
        }
    }
}

fn control_path(datagram: &Bytes) {
    let mut control = Control::new(&Config::default());
    let now = Instant::now();
    let first = control.handle(now, datagram, |_| Outcome::ok());
    let again = control.handle(now, datagram, |_| {
        panic!("a retransmission ran the command")
    });
    assert_eq!(first, again);
}

/// `COOKIE SP DICT`, the dictionary valid bencode.
fn check_reply(reply: &Bytes, cookie: &[u8]) {
    assert!(reply.starts_with(cookie));
    assert_eq!(reply.get(cookie.len()), Some(&b' '));
    let body = reply.slice(cookie.len() + 1..);
    let unbounded = Limits {
        max_input_bytes: usize::MAX,
        ..Limits::default()
    };
    let value = bencode::parse_bencode(&body, &unbounded).expect("our reply parses");
    assert!(value.as_dict().is_some());
}

/// Whatever parses (bencode or JSON) writes back to bencode that parses to
/// the same value. The size limit is lifted for the second parse: JSON's
/// `1,` becomes bencode's `i1e`, a little longer.
fn round_trip(input: &Bytes, limits: &Limits) {
    let Ok(value) = bencode::parse(input, limits) else {
        return;
    };
    let written = value.to_bytes();
    assert_eq!(written.len(), value.encoded_len());
    let unbounded = Limits {
        max_input_bytes: usize::MAX,
        ..*limits
    };
    let again = bencode::parse_bencode(&written, &unbounded).expect("our own output parses");
    assert_eq!(again, value);
}
