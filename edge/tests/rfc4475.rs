//! RFC 4475 ("SIP Torture Test Messages"), sections 3.1.1 (valid messages) and
//! 3.1.2 (invalid messages): every message as a byte-exact fixture, with the
//! behaviour the RFC expects of an element that receives it. Fixture provenance is
//! in `fixtures/rfc4475/EXPECTED.md`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use bytes::Bytes;
use edge::sip::{Contact, HeaderKind, Host, Message, Method, ParseError, ParseLimits, Scheme, Uri};

fn fixture(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rfc4475")
        .join(format!("{name}.dat"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Parses `name` as one UDP datagram and validates it, as the proxy does.
fn receive(name: &str) -> Result<Message, ParseError> {
    let message = Message::parse_datagram(fixture(name), &ParseLimits::datagram())?;
    message.validate()?;
    Ok(message)
}

fn accept(name: &str) -> Message {
    receive(name).unwrap_or_else(|e| panic!("{name} must be accepted, got {e:?}"))
}

fn reject(name: &str) -> ParseError {
    match receive(name) {
        Ok(_) => panic!("{name} must be rejected"),
        Err(e) => e,
    }
}

fn uri(s: &str) -> Uri<'_> {
    Uri::parse(s.as_bytes()).unwrap()
}

/// The fixture sizes (bytes) recorded when they were extracted from the archive;
/// a changed size means the bytes were altered (e.g. line endings normalised).
#[test]
fn fixtures_are_byte_exact() {
    let sizes = [
        ("wsinv", 1001),
        ("intmeth", 641),
        ("esc01", 543),
        ("escnull", 359),
        ("esc02", 439),
        ("lwsdisp", 255),
        ("longreq", 3515),
        ("dblreq", 750),
        ("semiuri", 380),
        ("transports", 503),
        ("mpart01", 1290),
        ("unreason", 526),
        ("noreason", 274),
        ("badinv01", 472),
        ("clerr", 498),
        ("ncl", 486),
        ("scalar02", 476),
        ("scalarlg", 385),
        ("quotbal", 485),
        ("ltgtruri", 452),
        ("lwsruri", 541),
        ("lwsstart", 506),
        ("trws", 327),
        ("escruri", 550),
        ("baddate", 532),
        ("regbadct", 307),
        ("badaspec", 346),
        ("baddn", 333),
        ("badvers", 291),
        ("mismatch01", 236),
        ("mismatch02", 449),
        ("bigcode", 332),
    ];
    for (name, size) in sizes {
        let bytes = fixture(name);
        assert_eq!(bytes.len(), size, "{name}");
        assert!(
            bytes.windows(2).any(|w| w == b"\r\n"),
            "{name} lost its CRLFs"
        );
    }
}

// ---- 3.1.1: valid messages; parse and accept ----

/// 3.1.1.1 A Short Tortuous INVITE: folding, LWS around separators, odd case,
/// compact forms, leading zeros, escaped quotes, an empty Subject.
#[test]
fn wsinv_short_tortuous_invite() {
    let m = accept("wsinv");
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.max_forwards(), Ok(Some(68)));
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    let to = m.to().unwrap();
    assert_eq!(to.tag(), Some(&b"1918181833n"[..]));
    assert_eq!(to.uri().host(), Some(Host::Name(b"chair-dnrc.example.com")));
    let from = m.from().unwrap();
    assert_eq!(&*from.display_name().unwrap(), b"J Rosenberg \\\"");
    assert_eq!(from.tag(), Some(&b"98asjd8"[..]));
    let branches: Vec<_> = m
        .vias()
        .map(|v| v.unwrap().branch().unwrap().to_vec())
        .collect();
    assert_eq!(
        branches,
        [&b"390skdjuw"[..], b"z9hG4bK9ikj8", b"z9hG4bK30239"]
    );
    let Contact::Address(contact) = m.contacts().next().unwrap().unwrap() else {
        panic!("contact is an address");
    };
    assert_eq!(&*contact.display_name().unwrap(), b"Quoted string \"\"");
    assert_eq!(contact.q(), Some(Ok(330)));
    assert_eq!(contact.params().value("newparam"), Some(&b"newvalue"[..]));
    let route = m.routes().next().unwrap().unwrap();
    assert!(route.uri().lr());
    assert_eq!(m.header(HeaderKind::Subject).unwrap().value, b"");
    let unusual = m
        .headers_named("unknownheaderwithunusualvalue")
        .next()
        .unwrap();
    assert_eq!(unusual.value, b";;,,;;,;");
    assert_eq!(m.body().len(), 150);
    assert_eq!(m.request_uri().unwrap().param("unknownparam"), Some(None));
}

/// 3.1.1.2 Wide Range of Valid Characters: an extension method, quoted-pairs of
/// BEL, NUL and DEL in a display name, unusual Call-ID and parameter characters.
#[test]
fn intmeth_wide_range_of_valid_characters() {
    let m = accept("intmeth");
    assert_eq!(m.method(), Some(Method::Extension));
    let method = b"!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method_name(), Some(&method[..]));
    assert_eq!(m.cseq().method_name, method);
    let r_uri = m.request_uri().unwrap();
    assert_eq!(
        r_uri.user(),
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        r_uri.password(),
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(
        &*m.to().unwrap().display_name().unwrap(),
        b"BEL:\x07 NUL:\x00 DEL:\x7f"
    );
    let from = m.from().unwrap();
    assert_eq!(
        from.display_name_raw(),
        Some(&b"token1~` token2'+_ token3*%!.-"[..])
    );
    assert_eq!(from.tag(), Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(m.call_id(), b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.max_forwards(), Ok(Some(255)));
    assert_eq!(
        m.top_via().unwrap().branch(),
        Some(&b"z9hG4bK-.!%66*_+`'~"[..])
    );
}

/// 3.1.1.3 Valid Use of the % Escaping Mechanism: URIs compare after unescaping.
#[test]
fn esc01_percent_escaping() {
    let m = accept("esc01");
    let r_uri = m.request_uri().unwrap();
    assert_eq!(r_uri.scheme(), Scheme::Sip);
    assert_eq!(&*r_uri.user_unescaped().unwrap(), b"sips:user@example.com");
    assert_eq!(r_uri.host(), Some(Host::Name(b"example.net")));
    assert!(m
        .to()
        .unwrap()
        .uri()
        .equivalent(&uri("sip:user@example.com")));
    let Contact::Address(contact) = m.contacts().next().unwrap().unwrap() else {
        panic!("contact is an address");
    };
    assert!(contact
        .uri()
        .equivalent(&uri("sip:caller@host5.example.net;lr;name=value%2541")));
}

/// 3.1.1.4 Escaped Nulls in URIs: not truncated, and two distinct contacts.
#[test]
fn escnull_escaped_nulls() {
    let m = accept("escnull");
    assert_eq!(
        &*m.to().unwrap().uri().user_unescaped().unwrap(),
        b"null-\0-null"
    );
    let contacts: Vec<_> = m
        .contacts()
        .map(|c| match c.unwrap() {
            Contact::Address(a) => a.uri(),
            Contact::Star => panic!("not *"),
        })
        .collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(&*contacts[0].user_unescaped().unwrap(), b"\0");
    assert_eq!(&*contacts[1].user_unescaped().unwrap(), b"\0\0");
    assert!(!contacts[0].equivalent(&contacts[1]));
}

/// 3.1.1.5 Use of % When It Is Not an Escape: an unknown method (not REGISTER),
/// a literal display name, an unknown header that is not Contact.
#[test]
fn esc02_percent_not_an_escape() {
    let m = accept("esc02");
    assert_eq!(m.method(), Some(Method::Extension));
    assert_eq!(m.method_name(), Some(&b"RE%47IST%45R"[..]));
    assert_eq!(&*m.to().unwrap().display_name().unwrap(), b"%Z%45");
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.headers_named("C%6Fntact").count(), 1);
    assert_eq!(
        m.top_via().unwrap().branch(),
        Some(&b"z9hG4bK209%fzsnel234"[..])
    );
}

/// 3.1.1.6 Message with No LWS between Display Name and <.
#[test]
fn lwsdisp_no_lws_before_angle() {
    let m = accept("lwsdisp");
    let from = m.from().unwrap();
    assert_eq!(from.display_name_raw(), Some(&b"caller"[..]));
    assert_eq!(from.uri().user(), Some(&b"caller"[..]));
}

/// 3.1.1.7 Long Values in Header Fields: nothing truncated, 34 Via values.
#[test]
fn longreq_long_values() {
    let m = accept("longreq");
    assert_eq!(m.vias().count(), 34);
    assert!(m.vias().all(|v| v.is_ok()));
    assert!(m.call_id().len() > 100);
    assert!(m.to().unwrap().display_name().unwrap().len() > 100);
    let unknown = m
        .headers()
        .filter(|h| h.kind == HeaderKind::Other)
        .map(|h| h.value.len())
        .max()
        .unwrap();
    assert!(unknown > 100);
    assert_eq!(m.body().len(), 150);
}

/// 3.1.1.8 Extra Trailing Octets in a UDP Datagram: only the REGISTER counts.
#[test]
fn dblreq_trailing_octets_ignored() {
    let m = accept("dblreq");
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.content_length(), Some(0));
    assert!(m.body().is_empty());
    assert!(m.as_bytes().ends_with(b"\r\n\r\n"));
    assert!(!m.as_bytes().windows(6).any(|w| w == b"INVITE"));
}

/// 3.1.1.9 Semicolon-Separated Parameters in URI User Part.
#[test]
fn semiuri_semicolons_in_user_part() {
    let m = accept("semiuri");
    let r_uri = m.request_uri().unwrap();
    assert_eq!(r_uri.user(), Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(r_uri.params().count(), 0);
    assert_eq!(r_uri.host(), Some(Host::Name(b"example.com")));
}

/// 3.1.1.10 Varied and Unknown Transport Types.
#[test]
fn transports_varied_and_unknown() {
    let m = accept("transports");
    let transports: Vec<_> = m.vias().map(|v| v.unwrap().transport().to_vec()).collect();
    assert_eq!(
        transports,
        [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]
    );
    assert_eq!(m.top_via().unwrap().host_raw(), b"t1.example.com");
}

/// 3.1.1.11 Multipart MIME Message: framed by Content-Length, body opaque.
#[test]
fn mpart01_multipart_body() {
    let m = accept("mpart01");
    assert_eq!(m.content_length(), Some(553));
    assert_eq!(m.body().len(), 553);
    assert!(m.body().contains(&0));
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params.value("boundary"), Some(&b"7a9cbec02ceef655"[..]));
    assert!(m.top_via().unwrap().rport() == Some(None));
}

/// 3.1.1.12 Unusual Reason Phrase: kept byte-exact.
#[test]
fn unreason_unusual_reason_phrase() {
    let m = accept("unreason");
    assert_eq!(m.status_code(), Some(200));
    let reason = m.reason_phrase().unwrap();
    assert!(reason.starts_with(b"= 2**3 * 5**2 "));
    assert!(std::str::from_utf8(reason).unwrap().contains('\u{43d}'));
    assert_eq!(m.body().len(), 154);
}

/// 3.1.1.13 Empty Reason Phrase.
#[test]
fn noreason_empty_reason_phrase() {
    let m = accept("noreason");
    assert_eq!(m.status_code(), Some(100));
    assert_eq!(m.reason_phrase(), Some(&b""[..]));
}

// ---- 3.1.2: invalid messages; the error the RFC expects ----

fn assert_bad_header(name: &str, kind: HeaderKind) {
    match reject(name) {
        ParseError::BadHeader { kind: k, .. } => assert_eq!(k, kind, "{name}"),
        other => panic!("{name}: expected bad {kind}, got {other:?}"),
    }
}

/// 3.1.2.1 Extraneous Header Field Separators: 400.
#[test]
fn badinv01_extraneous_separators() {
    assert_bad_header("badinv01", HeaderKind::Via);
    assert_eq!(reject("badinv01").status_code(), 400);
}

/// 3.1.2.2 Content Length Larger Than Message: 400 over UDP; on a stream, wait.
#[test]
fn clerr_content_length_too_large() {
    assert!(matches!(
        reject("clerr"),
        ParseError::BodyTooShort { declared: 9999, .. }
    ));
    let stream = Message::parse_stream(&fixture("clerr"), &ParseLimits::stream());
    assert_eq!(stream.unwrap_err(), ParseError::Incomplete);
}

/// 3.1.2.3 Negative Content-Length: an error on every transport.
#[test]
fn ncl_negative_content_length() {
    assert_eq!(reject("ncl"), ParseError::BadContentLength);
    let stream = Message::parse_stream(&fixture("ncl"), &ParseLimits::stream());
    assert_eq!(stream.unwrap_err(), ParseError::BadContentLength);
}

/// 3.1.2.4 Request Scalar Fields with Overlarge Values: 400 for the CSeq.
#[test]
fn scalar02_overlarge_request_scalars() {
    assert_bad_header("scalar02", HeaderKind::CSeq);
    assert_eq!(reject("scalar02").status_code(), 400);
}

/// 3.1.2.5 Response Scalar Fields with Overlarge Values: the response is
/// malformed (and a proxy drops it).
#[test]
fn scalarlg_overlarge_response_scalars() {
    assert_bad_header("scalarlg", HeaderKind::CSeq);
}

/// 3.1.2.6 Unterminated Quoted String in Display Name.
#[test]
fn quotbal_unterminated_quote() {
    assert_bad_header("quotbal", HeaderKind::To);
}

/// 3.1.2.7 <> Enclosing Request-URI.
#[test]
fn ltgtruri_bracketed_request_uri() {
    assert!(matches!(reject("ltgtruri"), ParseError::BadRequestUri(_)));
}

/// 3.1.2.8 Malformed SIP Request-URI (embedded LWS).
#[test]
fn lwsruri_embedded_lws() {
    assert!(matches!(reject("lwsruri"), ParseError::BadStartLine(_)));
}

/// 3.1.2.9 Multiple SP Separating Request-Line Elements.
#[test]
fn lwsstart_multiple_sp() {
    assert!(matches!(reject("lwsstart"), ParseError::BadStartLine(_)));
}

/// 3.1.2.10 SP Characters at End of Request-Line.
#[test]
fn trws_trailing_sp() {
    assert!(matches!(reject("trws"), ParseError::BadStartLine(_)));
}

/// 3.1.2.11 Escaped Headers in SIP Request-URI: rejected, never turned into headers.
#[test]
fn escruri_headers_in_request_uri() {
    assert_eq!(
        reject("escruri"),
        ParseError::BadRequestUri("headers in Request-URI")
    );
}

/// 3.1.2.12 Invalid Time Zone in Date Header Field: a proxy forwards it (the
/// codec does not interpret Date).
#[test]
fn baddate_is_forwarded() {
    let m = accept("baddate");
    let date = m.headers_named("Date").next().unwrap();
    assert!(date.value.ends_with(b"EST"));
}

/// 3.1.2.13 Failure to Enclose name-addr URI in <>.
#[test]
fn regbadct_unbracketed_uri_with_headers() {
    assert_bad_header("regbadct", HeaderKind::Contact);
}

/// 3.1.2.14 Spaces within addr-spec.
#[test]
fn badaspec_spaces_in_addr_spec() {
    assert_bad_header("badaspec", HeaderKind::To);
}

/// 3.1.2.15 Non-token Characters in Display Name.
#[test]
fn baddn_unquoted_non_token_display_name() {
    assert_bad_header("baddn", HeaderKind::From);
}

/// 3.1.2.16 Unknown Protocol Version: 505.
#[test]
fn badvers_unknown_version() {
    assert_eq!(reject("badvers"), ParseError::UnsupportedVersion);
    assert_eq!(reject("badvers").status_code(), 505);
}

/// 3.1.2.17 Start Line and CSeq Method Mismatch: 400.
#[test]
fn mismatch01_cseq_method() {
    assert_eq!(reject("mismatch01"), ParseError::CSeqMethodMismatch);
    assert_eq!(reject("mismatch01").status_code(), 400);
}

/// 3.1.2.18 Unknown Method with CSeq Method Mismatch: 400 (the RFC allows 400
/// as well as 501).
#[test]
fn mismatch02_unknown_method_cseq() {
    assert_eq!(reject("mismatch02"), ParseError::CSeqMethodMismatch);
}

/// 3.1.2.19 Overlarge Response Code: dropped, and the parser survives it.
#[test]
fn bigcode_overlarge_status_code() {
    assert!(matches!(reject("bigcode"), ParseError::BadStartLine(_)));
}
