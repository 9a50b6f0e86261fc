//! Parses arbitrary bytes as a UDP datagram and as the head of a stream, and on
//! success drives every accessor and typed view of the message. Nothing here may
//! panic; the one cross-check is that a message framed off a stream parses the
//! same as a datagram holding exactly those bytes.

#![no_main]

use std::hint::black_box;

use bytes::Bytes;
use edge::sip::{
    AuthParams, Contact, ContentType, HeaderKind, Message, NameAddr, ParseLimits, Uri, Via,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);

    if let Ok(m) = Message::parse_datagram(buf.clone(), &ParseLimits::datagram()) {
        exercise(&m);
    }

    if let Ok((m, used)) = Message::parse_stream(&buf, &ParseLimits::stream()) {
        assert!(used <= buf.len(), "parse_stream used {used} of {} bytes", buf.len());
        assert!(m.as_bytes().len() <= used);
        exercise(&m);
        // The same bytes framed as a datagram: Content-Length is present (streams
        // require it) and exactly satisfied, so the datagram parse must agree.
        if used <= ParseLimits::MAX_DATAGRAM_BYTES {
            let d = Message::parse_datagram(buf.slice(..used), &ParseLimits::datagram())
                .unwrap_or_else(|e| panic!("stream message does not parse as a datagram: {e:?}"));
            assert_eq!(d.as_bytes(), m.as_bytes());
            assert_eq!(d.body(), m.body());
            assert_eq!(d.header_count(), m.header_count());
        }
        // Whatever follows the first message is framed independently.
        let rest = buf.slice(used..);
        if let Ok((m2, used2)) = Message::parse_stream(&rest, &ParseLimits::stream()) {
            assert!(used2 <= rest.len());
            exercise(&m2);
        }
    }
});

/// Calls every accessor, walks every iterator to its end and parses every URI.
fn exercise(m: &Message) {
    let _ = black_box(m.validate());
    black_box(m.as_bytes());
    black_box(m.bytes());
    black_box(m.start_line());
    black_box(m.is_request());
    black_box(m.method().map(|x| x.as_str()));
    black_box(m.method_name());
    black_box(m.status_code());
    black_box(m.reason_phrase());
    black_box(m.header_count());
    black_box(m.call_id());
    black_box(m.cseq());
    black_box(m.content_length());
    black_box(m.body());
    black_box(m.body_bytes());
    black_box(m.expires());
    black_box(m.user_agent());
    let _ = black_box(m.max_forwards());

    // The Request-URI was validated at parse time.
    if let Some(raw) = m.request_uri_raw() {
        let uri = m.request_uri();
        assert!(uri.is_some(), "Request-URI {raw:?} was accepted but does not parse");
        if let Some(u) = uri {
            uri_views(&u);
        }
    }
    assert_eq!(m.body().len(), m.body_bytes().len());
    if let Some(cl) = m.content_length() {
        assert_eq!(m.body().len(), cl as usize, "body length differs from Content-Length");
    }

    let mut n = 0;
    for h in m.headers() {
        n += 1;
        black_box(h.kind.name());
        black_box(h.kind.compact());
        black_box(h.kind.is_singleton());
        black_box(HeaderKind::from_name(h.name));
        black_box(h.kind.matches(h.name));
        // Every typed parser on every value, whatever the header is.
        if let Ok(v) = Via::parse(h.value) {
            via_views(&v);
        }
        if let Ok(a) = NameAddr::parse(h.value) {
            name_addr_views(&a);
        }
        if let Ok(Contact::Address(a)) = Contact::parse(h.value) {
            name_addr_views(&a);
        }
        if let Ok(a) = AuthParams::parse(h.value) {
            auth_views(&a);
        }
        if let Ok(ct) = ContentType::parse(h.value) {
            black_box(ct.is("application", "sdp"));
            black_box(ct.params.iter().count());
        }
        if let Ok(u) = Uri::parse(h.value) {
            uri_views(&u);
        }
        if let Ok(name) = std::str::from_utf8(h.name) {
            black_box(m.headers_named(name).count());
        }
    }
    assert_eq!(n, m.header_count());

    for &kind in HeaderKind::ALL {
        black_box(m.header(kind));
        black_box(m.headers_of(kind).count());
        black_box(m.tokens(kind).count());
        black_box(m.has_token(kind, "100rel"));
        for a in m.auth(kind).flatten() {
            auth_views(&a);
        }
        if kind != HeaderKind::Other {
            black_box(m.headers_named(kind.name()).count());
        }
    }

    for v in m.vias().flatten() {
        via_views(&v);
    }
    if let Ok(v) = m.top_via() {
        via_views(&v);
    }
    if let Ok(a) = m.from() {
        name_addr_views(&a);
    }
    if let Ok(a) = m.to() {
        name_addr_views(&a);
    }
    for c in m.contacts().flatten() {
        if let Contact::Address(a) = c {
            name_addr_views(&a);
        }
    }
    for a in m.routes().flatten().chain(m.record_routes().flatten()) {
        assert!(a.in_brackets());
        name_addr_views(&a);
    }
    if let Ok(Some(ct)) = m.content_type() {
        black_box(ct.is("multipart", "mixed"));
        for p in ct.params.iter() {
            black_box(p.value_unquoted());
        }
    }
}

fn via_views(v: &Via<'_>) {
    black_box((v.protocol_name(), v.protocol_version(), v.transport()));
    black_box((v.host(), v.host_raw(), v.port()));
    black_box((v.branch(), v.received(), v.rport(), v.maddr(), v.ttl()));
    for p in v.params().iter() {
        black_box(p.value_unquoted());
    }
    black_box(v.params().is_empty());
    black_box(v.params().as_bytes());
    let h = v.host();
    assert!(h.equivalent(&h), "Via host {:?} not equivalent to itself", v.host_raw());
    // maddr and received name hosts or addresses: try them as URIs' hosts.
    for host in [v.maddr(), v.received()].into_iter().flatten() {
        let mut raw = b"sip:".to_vec();
        raw.extend_from_slice(host);
        if let Ok(u) = Uri::parse(&raw) {
            uri_views(&u);
        }
    }
}

fn name_addr_views(a: &NameAddr<'_>) {
    black_box((a.display_name_raw(), a.display_name(), a.in_brackets()));
    black_box((a.tag(), a.q(), a.expires()));
    for p in a.params().iter() {
        black_box(p.value_unquoted());
    }
    let u = a.uri();
    // The URI of a name-addr re-parses from its own text to the same value.
    assert_eq!(Uri::parse(u.as_bytes()), Ok(u));
    uri_views(&u);
}

fn auth_views(a: &AuthParams<'_>) {
    black_box((a.scheme(), a.is_digest()));
    black_box((a.username(), a.realm(), a.nonce(), a.response(), a.uri()));
    for p in a.iter() {
        black_box(p.value_unquoted());
    }
    // A digest-uri is a URI (quoted in the header).
    if let Some(digest_uri) = a.uri() {
        if let Ok(u) = Uri::parse(&digest_uri) {
            uri_views(&u);
        }
    }
}

fn uri_views(u: &Uri<'_>) {
    black_box((u.scheme(), u.user(), u.user_unescaped(), u.password()));
    black_box((u.host(), u.host_raw(), u.port()));
    black_box((u.transport(), u.lr(), u.maddr(), u.user_param(), u.ttl()));
    black_box(u.headers());
    black_box(u.params().count());
    black_box(u.header_pairs().count());
    black_box(u.to_string());
    black_box(u.equivalent(u));
    if let Some(h) = u.host() {
        assert!(h.equivalent(&h));
    }
    // A maddr names a host: parse it as the host of a SIP URI too.
    if let Some(maddr) = u.maddr() {
        let mut raw = b"sip:".to_vec();
        raw.extend_from_slice(maddr);
        if let Ok(inner) = Uri::parse(&raw) {
            black_box(inner.host());
        }
    }
}
