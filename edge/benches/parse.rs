//! Codec cost per message: parse and index, parse plus the typed reads a proxy
//! makes, and one proxy edit pass. Figures go to `docs/benchmarks.md`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge::sip::{Editor, HeaderKind, Message, ParseLimits};

/// A carrier-trunk INVITE with an audio SDP offer, about 900 bytes.
const INVITE: &str = concat!(
    "INVITE sip:+4930123456789@edge.example.net;user=phone SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---3c4f0e2a8b9d;rport\r\n",
    "Max-Forwards: 70\r\n",
    "From: \"Alice Example\" <sip:+4940987654321@trunk.example.org;user=phone>;tag=8a7f3e21\r\n",
    "To: <sip:+4930123456789@edge.example.net;user=phone>\r\n",
    "Call-ID: 3f2b9c61-d2a4-4b6e-9e7c-0a5d8f1e2c33@198.51.100.17\r\n",
    "CSeq: 1 INVITE\r\n",
    "Contact: <sip:+4940987654321@198.51.100.17:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n",
    "Supported: replaces, timer, 100rel\r\n",
    "User-Agent: ExampleSBC/4.2.1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 258\r\n",
    "\r\n",
    "v=0\r\n",
    "o=ExampleSBC 1732960000 1732960000 IN IP4 198.51.100.17\r\n",
    "s=ExampleSBC\r\n",
    "c=IN IP4 198.51.100.17\r\n",
    "t=0 0\r\n",
    "m=audio 31000 RTP/AVP 8 0 101\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

/// A 200 OK to an INVITE without a body, about 400 bytes.
const OK: &str = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-e7d1.4a3f9c0b1e2d\r\n",
    "Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---3c4f0e2a8b9d\r\n",
    "Record-Route: <sip:203.0.113.5;lr>\r\n",
    "From: <sip:+4940987654321@trunk.example.org>;tag=8a7f3e21\r\n",
    "To: <sip:+4930123456789@edge.example.net>;tag=as5f1e0c7d\r\n",
    "Call-ID: 3f2b9c61-d2a4-4b6e-9e7c-0a5d8f1e2c33@198.51.100.17\r\n",
    "CSeq: 1 INVITE\r\n",
    "Contact: <sip:10.0.0.21:5060>\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
);

/// A REGISTER answering a digest challenge.
const REGISTER: &str = concat!(
    "REGISTER sip:registrar.example.net SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK-77f0a3c2;rport\r\n",
    "Max-Forwards: 70\r\n",
    "From: <sip:1001@registrar.example.net>;tag=54c1a9\r\n",
    "To: <sip:1001@registrar.example.net>\r\n",
    "Call-ID: 9d1c44b2e8a04d79@192.0.2.44\r\n",
    "CSeq: 2 REGISTER\r\n",
    "Contact: <sip:1001@192.0.2.44:5062;transport=udp>;expires=3600;q=0.8\r\n",
    "Authorization: Digest username=\"1001\", realm=\"registrar.example.net\", ",
    "nonce=\"5f2b1c7a9e3d4b8c\", uri=\"sip:registrar.example.net\", ",
    "response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", ",
    "qop=auth, nc=00000001\r\n",
    "Expires: 3600\r\n",
    "User-Agent: ExamplePhone/1.0\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
);

fn parse(text: &'static str) -> Message {
    Message::parse_datagram(
        Bytes::from_static(text.as_bytes()),
        &ParseLimits::datagram(),
    )
    .expect("benchmark message parses")
}

/// Reads what a proxy, registrar and balancer look at; returns something
/// derived from every read so the optimiser keeps them.
fn proxy_reads(m: &Message) -> usize {
    let via = m.top_via().map(|v| v.branch().map_or(0, <[u8]>::len));
    let from_tag = m.from().map(|f| f.tag().map_or(0, <[u8]>::len));
    let to_tag = m.to().map(|t| t.tag().map_or(0, <[u8]>::len));
    let hops = m.max_forwards().ok().flatten().unwrap_or(0) as usize;
    let routes = m.routes().count();
    let contacts = m.contacts().filter_map(Result::ok).count();
    let creds = m
        .auth(HeaderKind::Authorization)
        .filter_map(Result::ok)
        .map(|a| a.response().map_or(0, |r| r.len()))
        .sum::<usize>();
    via.unwrap_or(0)
        + from_tag.unwrap_or(0)
        + to_tag.unwrap_or(0)
        + m.call_id().len()
        + m.cseq().seq as usize
        + hops
        + routes
        + contacts
        + creds
}

fn bench_parse(c: &mut Criterion) {
    for (name, text) in [("invite", INVITE), ("ok", OK), ("register", REGISTER)] {
        let buf = Bytes::from_static(text.as_bytes());
        let limits = ParseLimits::datagram();
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("parse", |b| {
            b.iter(|| Message::parse_datagram(black_box(buf.clone()), &limits))
        });
        group.bench_function("parse_validate", |b| {
            b.iter(|| {
                let m = Message::parse_datagram(black_box(buf.clone()), &limits)?;
                m.validate().map(|()| m)
            })
        });
        group.bench_function("parse_access", |b| {
            b.iter(|| {
                Message::parse_datagram(black_box(buf.clone()), &limits).map(|m| proxy_reads(&m))
            })
        });
        group.finish();
    }
}

fn bench_edit(c: &mut Criterion) {
    let invite = parse(INVITE);
    let ok = parse(OK);
    let mut group = c.benchmark_group("edit");
    group.bench_function("proxy_invite", |b| {
        b.iter(|| {
            let mut e = Editor::new(black_box(&invite));
            e.prepend_via(b"SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-e7d1.4a3f9c0b1e2d;rport")?
                .prepend_record_route(b"<sip:203.0.113.5;lr>")?
                .set_max_forwards(69)?;
            e.finish()
        })
    });
    group.bench_function("response_remove_via", |b| {
        b.iter(|| {
            let mut e = Editor::new(black_box(&ok));
            e.remove_top_via()?;
            e.finish()
        })
    });
    group.finish();
}

fn sanity_check() {
    // A benchmark of a message that fails to parse would measure the error path.
    for text in [INVITE, OK, REGISTER] {
        let m = parse(text);
        m.validate().expect("benchmark message is valid");
        assert!(proxy_reads(&m) > 0);
    }
    assert!(
        (850..=950).contains(&INVITE.len()),
        "INVITE is {} bytes",
        INVITE.len()
    );
    assert!(
        (350..=450).contains(&OK.len()),
        "200 OK is {} bytes",
        OK.len()
    );
}

fn benches(c: &mut Criterion) {
    sanity_check();
    bench_parse(c);
    bench_edit(c);
}

criterion_group!(codec, benches);
criterion_main!(codec);
