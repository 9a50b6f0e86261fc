//! Messages a transaction or proxy writes itself: responses (RFC 3261 8.2.6),
//! the ACK of a non-2xx final (17.1.1.3) and CANCEL (9.1). Header values are
//! copied as received from the request.

use bytes::{BufMut, Bytes, BytesMut};

use crate::sip::{HeaderKind, Message, Via};

/// A response to `request` with `code` and `reason`: every Via, From, To (with
/// `to_tag` added when the To has none and `code` is above 100), Call-ID and
/// CSeq copied, then `extra` headers, then `Content-Length: 0`.
pub fn response_to(
    request: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) -> Bytes {
    debug_assert!((100..700).contains(&code));
    let mut out = BytesMut::with_capacity(request.as_bytes().len().min(2048) + 64);
    out.put_slice(b"SIP/2.0 ");
    put_u32(&mut out, u32::from(code));
    out.put_u8(b' ');
    for b in reason.bytes() {
        out.put_u8(if b < b' ' || b == 0x7f { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
    for via in request.headers_of(HeaderKind::Via) {
        header(&mut out, "Via", via.value);
    }
    copy(&mut out, request, HeaderKind::From);
    if let Some(to) = request.header(HeaderKind::To) {
        out.put_slice(b"To: ");
        out.put_slice(to.value);
        // Parse the To only when a tag could be added.
        let add =
            to_tag.filter(|_| code > 100 && request.to().ok().and_then(|t| t.tag()).is_none());
        if let Some(tag) = add {
            out.put_slice(b";tag=");
            out.put_slice(tag);
        }
        out.put_slice(b"\r\n");
    }
    copy(&mut out, request, HeaderKind::CallId);
    copy(&mut out, request, HeaderKind::CSeq);
    for (name, value) in extra {
        header(&mut out, name, value);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// The ACK for a non-2xx final `response` to the INVITE `request` we sent
/// (RFC 3261 17.1.1.3): same Request-URI, top Via, Route, From, Call-ID and
/// CSeq number; To from the response.
pub fn ack_for(request: &Message, response: &Message) -> Option<Bytes> {
    let to = response.header(HeaderKind::To)?;
    Some(hop_request(request, b"ACK", to.value))
}

/// A CANCEL for the `request` we sent (RFC 3261 9.1): same Request-URI, top
/// Via (so the same branch), Route, From, To, Call-ID and CSeq number.
pub fn cancel_for(request: &Message) -> Option<Bytes> {
    let to = request.header(HeaderKind::To)?;
    Some(hop_request(request, b"CANCEL", to.value))
}

fn hop_request(request: &Message, method: &[u8], to: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(request.as_bytes().len().min(2048));
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(request.request_uri_raw().unwrap_or(b"sip:invalid"));
    out.put_slice(b" SIP/2.0\r\n");
    if let Ok(via) = request.top_via() {
        out.put_slice(b"Via: ");
        write_via(&mut out, &via, &[]);
        out.put_slice(b"\r\n");
    }
    for route in request.headers_of(HeaderKind::Route) {
        header(&mut out, "Route", route.value);
    }
    out.put_slice(b"Max-Forwards: 70\r\n");
    copy(&mut out, request, HeaderKind::From);
    header(&mut out, "To", to);
    copy(&mut out, request, HeaderKind::CallId);
    out.put_slice(b"CSeq: ");
    put_u32(&mut out, request.cseq().seq);
    out.put_u8(b' ');
    out.put_slice(method);
    out.put_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out.freeze()
}

/// Writes a Via value from its parts, leaving out the parameters named in
/// `skip` (case-insensitive).
pub(crate) fn write_via(out: &mut BytesMut, via: &Via<'_>, skip: &[&str]) {
    out.put_slice(via.protocol_name());
    out.put_u8(b'/');
    out.put_slice(via.protocol_version());
    out.put_u8(b'/');
    out.put_slice(via.transport());
    out.put_u8(b' ');
    out.put_slice(via.host_raw());
    if let Some(port) = via.port() {
        out.put_u8(b':');
        put_u32(out, u32::from(port));
    }
    for p in via.params().iter() {
        if skip
            .iter()
            .any(|s| p.name.eq_ignore_ascii_case(s.as_bytes()))
        {
            continue;
        }
        out.put_u8(b';');
        out.put_slice(p.name);
        if let Some(v) = p.value {
            out.put_u8(b'=');
            out.put_slice(v);
        }
    }
}

fn copy(out: &mut BytesMut, request: &Message, kind: HeaderKind) {
    if let Some(h) = request.header(kind) {
        header(out, kind.name(), h.value);
    }
}

fn header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes the decimal digits of `n` (no allocation, no formatter).
pub(crate) fn put_u32(out: &mut impl BufMut, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ParseLimits;

    const INVITE: &str = "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKp1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa1\r\n\
Route: <sip:192.0.2.7;lr>\r\n\
Max-Forwards: 69\r\n\
From: Alice <sip:alice@a.example>;tag=fa\r\n\
To: <sip:bob@b.example>\r\n\
Call-ID: cid-1\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(b: Bytes) -> Message {
        Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
    }

    #[test]
    fn response_copies_8_2_6_headers_and_adds_tag() {
        let req = parse(Bytes::from_static(INVITE.as_bytes()));
        let r = parse(response_to(
            &req,
            486,
            "Busy Here",
            Some(b"t1"),
            &[("Retry-After", b"5")],
        ));
        r.validate().unwrap();
        assert_eq!(r.status_code(), Some(486));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.to().unwrap().tag(), Some(&b"t1"[..]));
        assert_eq!(r.from().unwrap().tag(), Some(&b"fa"[..]));
        assert_eq!(r.call_id(), b"cid-1");
        assert_eq!(r.cseq().seq, 7);
        assert_eq!(r.content_length(), Some(0));
        assert_eq!(r.headers_named("Retry-After").next().unwrap().value, b"5");
        let trying = parse(response_to(&req, 100, "Trying", Some(b"t1"), &[]));
        assert_eq!(trying.to().unwrap().tag(), None, "no tag on 100");
    }

    #[test]
    fn ack_and_cancel_follow_17_1_1_3_and_9_1() {
        let req = parse(Bytes::from_static(INVITE.as_bytes()));
        let resp = parse(response_to(&req, 486, "Busy Here", Some(b"tt"), &[]));
        let ack = parse(ack_for(&req, &resp).unwrap());
        ack.validate().unwrap();
        assert_eq!(ack.request_uri_raw(), Some(&b"sip:bob@192.0.2.9"[..]));
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bKp1"[..]));
        assert_eq!(ack.to().unwrap().tag(), Some(&b"tt"[..]));
        assert_eq!(
            (ack.cseq().seq, ack.cseq().method),
            (7, crate::sip::Method::Ack)
        );
        assert_eq!(ack.routes().count(), 1);
        let cancel = parse(cancel_for(&req).unwrap());
        assert_eq!(cancel.method(), Some(crate::sip::Method::Cancel));
        assert_eq!(cancel.top_via().unwrap().branch(), Some(&b"z9hG4bKp1"[..]));
        assert_eq!(cancel.to().unwrap().tag(), None);
        assert_eq!(cancel.cseq().seq, 7);
    }
}
