//! Arbitrary bytes as an ng TCP stream, cut at an arbitrary point into two
//! reads: the framer never panics, every frame it gives is a cookie, a
//! space and exactly one bencode value, and the frames of the split stream
//! are those of the whole stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::ng::bencode::{parse_bencode, value_len};
use media::ng::{Bytes, Limits};
use media::runtime::control::next_frame;
use bytes::BytesMut;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    let whole = frames(&[stream], &limits);
    let at = usize::from(cut) * stream.len() / 256;
    let split = frames(&[&stream[..at], &stream[at..]], &limits);
    assert_eq!(whole.0, split.0);
    for frame in &whole.0 {
        let space = frame.iter().position(|&b| b == b' ').expect("a cookie");
        let body = frame.slice(space + 1..);
        assert_eq!(value_len(&body, &limits), Ok(Some(body.len())));
        assert!(parse_bencode(&body, &limits).is_ok());
    }
});

/// The frames read from `reads`, in order, and whether the stream failed.
fn frames(reads: &[&[u8]], limits: &Limits) -> (Vec<Bytes>, bool) {
    let mut pending = BytesMut::new();
    let mut out = Vec::new();
    for read in reads {
        pending.extend_from_slice(read);
        loop {
            match next_frame(&mut pending, limits) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}
