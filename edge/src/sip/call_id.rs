//! Finding the Call-ID of a datagram without parsing it, so that the shard that
//! received it can hand it to the shard owning the call for the price of a scan.

use super::lex;

/// Most header lines [`peek_call_id`] looks at before giving up.
const MAX_LINES: usize = 256;

/// The Call-ID value of `datagram` (`Call-ID:` or compact `i:`, any case), or
/// `None` when no such header comes before the blank line. Folded lines and
/// other headers are not validated: the owner parses the whole message.
pub fn peek_call_id(datagram: &[u8]) -> Option<&[u8]> {
    let mut rest = datagram;
    for _ in 0..MAX_LINES {
        let eol = memchr::memchr(b'\n', rest)?;
        let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
        if line.is_empty() {
            return None;
        }
        if let Some(value) = call_id_value(line) {
            return Some(value);
        }
        rest = &rest[eol + 1..];
    }
    None
}

/// The value of `line` when it is a Call-ID header line.
fn call_id_value(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = lex::trim_end(&line[..colon]);
    let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
    let value = lex::trim(&line[colon + 1..]);
    (is_call_id && !value.is_empty()).then_some(value)
}

/// The shard that owns the call with this Call-ID among `shards`. Stable for a
/// process and across processes of the same build (FNV-1a, not a seeded hash).
pub fn owner_shard(call_id: &[u8], shards: usize) -> usize {
    debug_assert!(shards > 0, "at least one shard");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_long_and_compact_forms() {
        let long = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCALL-ID :  abc@h \r\n\r\n";
        assert_eq!(peek_call_id(long), Some(&b"abc@h"[..]));
        let compact = b"SIP/2.0 200 OK\r\ni:xyz\r\n\r\n";
        assert_eq!(peek_call_id(compact), Some(&b"xyz"[..]));
    }

    #[test]
    fn stops_at_the_body() {
        let m = b"BYE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n";
        assert_eq!(peek_call_id(m), None);
        assert_eq!(peek_call_id(b"no newline"), None);
    }

    #[test]
    fn agrees_with_the_parser() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 42@host\r\n\
            CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let m = super::super::Message::parse_datagram(
            bytes::Bytes::from_static(text.as_bytes()),
            &super::super::ParseLimits::datagram(),
        )
        .unwrap();
        assert_eq!(peek_call_id(text.as_bytes()), Some(m.call_id()));
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        for shards in 1..8 {
            let a = owner_shard(b"abc@host", shards);
            assert!(a < shards);
            assert_eq!(a, owner_shard(b"abc@host", shards));
        }
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|i| owner_shard(format!("call-{i}").as_bytes(), 4))
            .collect();
        assert_eq!(spread.len(), 4, "64 Call-IDs reach every one of 4 shards");
    }
}
