//! The messages the bench writes itself: the INVITE with its SDP offer, the
//! ACK of a 2xx and the BYE (RFC 3261 8.1.1, 12.2.1.1 and 13.2.2.4), the SDP
//! of both ends, and the body of a 200. Responses start from
//! [`edge::transaction::response_to`]; nothing here parses.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use edge::sip::{Editor, Message, ParseLimits};
use edge::transaction::{ClientKey, TxnKey};

/// How [`response_to`](edge::transaction::response_to) ends every response.
const EMPTY_BODY_TAIL: &[u8] = b"Content-Length: 0\r\n\r\n";

/// The methods the bench's UAS answers (the `Allow` of its responses).
pub const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS";

/// The parts of an initial INVITE that differ from call to call.
#[derive(Clone, Copy, Debug)]
pub struct InviteParts<'a> {
    /// The Request-URI (also the To URI).
    pub request_uri: &'a str,
    /// The address the INVITE is sent from: Via sent-by and Contact host.
    pub local: SocketAddr,
    /// The Via branch, magic cookie included.
    pub branch: &'a [u8],
    /// The From value, tag included.
    pub from: &'a [u8],
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The SDP offer.
    pub sdp: &'a [u8],
}

/// The INVITE of a new call: CSeq 1, Max-Forwards 70, `rport` asked for
/// (RFC 3581) so replies come back to the sending socket, and the SDP offer.
pub fn invite(p: &InviteParts<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(512 + p.sdp.len());
    let _ = write!(out, "INVITE {} SIP/2.0\r\n", p.request_uri);
    via(&mut out, p.local, p.branch);
    out.put_slice(b"Max-Forwards: 70\r\n");
    header(&mut out, "From", p.from);
    let _ = write!(out, "To: <{}>\r\n", p.request_uri);
    header(&mut out, "Call-ID", p.call_id);
    out.put_slice(b"CSeq: 1 INVITE\r\n");
    let _ = write!(out, "Contact: <sip:bench@{}>\r\n", p.local);
    out.put_slice(b"User-Agent: bench\r\n");
    body(&mut out, b"application/sdp", p.sdp);
    out.freeze()
}

/// The parts of a dialog that every request inside it repeats.
#[derive(Clone, Copy, Debug)]
pub struct DialogParts<'a> {
    /// The remote target (the Contact URI of the 2xx): the Request-URI.
    pub target: &'a [u8],
    /// The route set as ready header lines (`Route: <...>\r\n` each).
    pub route_lines: &'a [u8],
    /// The address the request is sent from (Via sent-by).
    pub local: SocketAddr,
    /// The From value with the local tag.
    pub from: &'a [u8],
    /// The To value with the remote tag.
    pub to: &'a [u8],
    /// The Call-ID.
    pub call_id: &'a [u8],
}

/// A request inside the dialog `d` (the ACK of a 2xx, the BYE) with no body,
/// on its own branch (RFC 3261 12.2.1.1; for the ACK 13.2.2.4 and 17.1.1.3).
pub fn in_dialog(method: &str, cseq: u32, branch: &[u8], d: &DialogParts<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(384 + d.route_lines.len() + d.target.len());
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(d.target);
    out.put_slice(b" SIP/2.0\r\n");
    via(&mut out, d.local, branch);
    out.put_slice(d.route_lines);
    out.put_slice(b"Max-Forwards: 70\r\n");
    header(&mut out, "From", d.from);
    header(&mut out, "To", d.to);
    header(&mut out, "Call-ID", d.call_id);
    let _ = write!(out, "CSeq: {cseq} {method}\r\n");
    out.put_slice(EMPTY_BODY_TAIL);
    out.freeze()
}

/// `Route: value\r\n` lines for `values`, in the order given.
pub fn route_lines<'a>(values: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for value in values {
        header(&mut out, "Route", value);
    }
    out.freeze()
}

/// The SDP of one end (RFC 4566, RFC 3264): G.711 u-law and A-law and
/// telephone events (RFC 4733) on `rtp_port`, 20 ms packets. `user` names
/// the end in the origin line; `session_id` makes the origin unique.
pub fn sdp(user: &str, session_id: u64, ip: IpAddr, rtp_port: u16) -> Bytes {
    let family = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut out = BytesMut::with_capacity(320);
    let _ = write!(
        out,
        "v=0\r\n\
o={user} {session_id} {session_id} IN {family} {ip}\r\n\
s=bench\r\n\
c=IN {family} {ip}\r\n\
t=0 0\r\n\
m=audio {rtp_port} RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
    out.freeze()
}

/// An even RTP port from 10000 to 59998 for call `number` (RTCP takes the odd
/// one above it), so the SDP of neighbouring calls differs like a real UA's.
pub fn rtp_port(number: u64) -> u16 {
    // Below 25_000, so the sum fits: 10_000 + 2 * 24_999 = 59_998.
    10_000 + 2 * (number % 25_000) as u16
}

/// `response` (as written by `response_to`, with no body) with `body` and
/// its Content-Type. Swaps the known empty-body tail without parsing; falls
/// back to the edge's [`Editor`] for any other response.
pub fn with_body(response: Bytes, content_type: &[u8], body_bytes: &[u8]) -> Bytes {
    let Some(head) = response.strip_suffix(EMPTY_BODY_TAIL) else {
        return with_body_edited(response, content_type, body_bytes);
    };
    let mut out = BytesMut::with_capacity(head.len() + body_bytes.len() + 64);
    out.put_slice(head);
    body(&mut out, content_type, body_bytes);
    out.freeze()
}

fn with_body_edited(response: Bytes, content_type: &[u8], body_bytes: &[u8]) -> Bytes {
    let Ok(message) = Message::parse_datagram(response.clone(), &ParseLimits::datagram()) else {
        return response;
    };
    let mut editor = Editor::new(&message);
    if editor.set_body(Some(content_type), body_bytes).is_err() {
        return response;
    }
    editor.finish().unwrap_or(response)
}

/// The reason phrase of RFC 3261 section 21 for `code`, or a generic one for
/// its class.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => class_reason(code),
    }
}

fn class_reason(code: u16) -> &'static str {
    match code / 100 {
        1 => "Progress",
        2 => "OK",
        3 => "Redirection",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    }
}

/// The key a call is filed under in a [`edge::transaction::TransactionTable`]:
/// its Call-ID (unique per call at both ends of the bench), in the branch
/// slot of a client key with a method no transaction has.
pub fn call_key(call_id: Bytes) -> TxnKey {
    TxnKey::Client(ClientKey::new(call_id, Bytes::from_static(b"CALL")))
}

/// The [`call_key`] of a received message, sharing its buffer (no copy).
pub fn call_key_of(message: &Message) -> TxnKey {
    let buf = message.bytes();
    let id = message.call_id();
    let inside = buf.as_ptr_range();
    let shared =
        !id.is_empty() && inside.start <= id.as_ptr() && id.as_ptr_range().end <= inside.end;
    call_key(match shared {
        true => buf.slice_ref(id),
        false => Bytes::copy_from_slice(id),
    })
}

fn via(out: &mut BytesMut, local: SocketAddr, branch: &[u8]) {
    let _ = write!(out, "Via: SIP/2.0/UDP {local};branch=");
    out.put_slice(branch);
    out.put_slice(b";rport\r\n");
}

fn header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn body(out: &mut BytesMut, content_type: &[u8], body: &[u8]) {
    header(out, "Content-Type", content_type);
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge::sip::Method;
    use edge::transaction::response_to;

    fn parse(b: Bytes) -> Message {
        Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
    }

    fn sample_invite() -> Bytes {
        let local: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let sdp = sdp("bench", 7, local.ip(), rtp_port(7));
        invite(&InviteParts {
            request_uri: "sip:service@192.0.2.9:5060",
            local,
            branch: b"z9hG4bKt-7-i",
            from: b"<sip:bench@192.0.2.1:5070>;tag=f7",
            call_id: b"t-7",
            sdp: &sdp,
        })
    }

    #[test]
    fn invite_parses_and_frames_its_sdp() {
        let m = parse(sample_invite());
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKt-7-i"[..]));
        assert_eq!(m.top_via().unwrap().rport(), Some(None));
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        assert_eq!(m.content_length(), Some(m.body().len() as u32));
        assert!(m.body().starts_with(b"v=0\r\n"));
        let body = std::str::from_utf8(m.body()).unwrap();
        assert!(body.contains("c=IN IP4 192.0.2.1\r\n"));
        assert!(body.contains("m=audio 10014 RTP/AVP 0 8 101\r\n"));
    }

    #[test]
    fn in_dialog_request_carries_the_route_set() {
        let routes = route_lines([&b"<sip:p2;lr>"[..], &b"<sip:p1;lr>"[..]].into_iter());
        let bye = parse(in_dialog(
            "BYE",
            2,
            b"z9hG4bKb",
            &DialogParts {
                target: b"sip:uas@192.0.2.8:5080",
                route_lines: &routes,
                local: "[2001:db8::1]:5070".parse().unwrap(),
                from: b"<sip:a@h>;tag=1",
                to: b"<sip:b@h>;tag=2",
                call_id: b"c-1",
            },
        ));
        bye.validate().unwrap();
        assert_eq!(bye.method(), Some(Method::Bye));
        assert_eq!((bye.cseq().seq, bye.cseq().method), (2, Method::Bye));
        let routes: Vec<_> = bye.routes().map(|r| r.unwrap().uri().as_bytes()).collect();
        assert_eq!(routes, [&b"sip:p2;lr"[..], &b"sip:p1;lr"[..]]);
        assert_eq!(bye.to().unwrap().tag(), Some(&b"2"[..]));
        assert_eq!(bye.request_uri_raw(), Some(&b"sip:uas@192.0.2.8:5080"[..]));
    }

    #[test]
    fn body_replaces_the_empty_tail() {
        let request = parse(sample_invite());
        let ok = response_to(
            &request,
            200,
            "OK",
            Some(b"u1"),
            &[("Contact", b"<sip:x@h>")],
        );
        let with = parse(with_body(ok, b"application/sdp", b"v=0\r\n"));
        with.validate().unwrap();
        assert_eq!(with.body(), b"v=0\r\n");
        assert_eq!(with.content_length(), Some(5));
        assert!(with
            .content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp"));
        // Not written by response_to: the editor sets the body.
        let edited = parse(with_body(
            request.bytes().clone(),
            b"application/sdp",
            b"v=0\r\n",
        ));
        assert_eq!(edited.body(), b"v=0\r\n");
    }

    #[test]
    fn rtp_ports_are_even_and_in_range() {
        for n in [0, 1, 24_999, 25_000, u64::MAX] {
            let port = rtp_port(n);
            assert!((10_000..=59_998).contains(&port) && port % 2 == 0, "{port}");
        }
    }
}
