//! Property tests: generated valid bodies round trip through parse and
//! rewrite; arbitrary and mutated bytes never panic.

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::lines::{Attribute, LineKind};
use super::*;

/// One generated media section.
#[derive(Clone, Debug)]
struct GenMedia {
    media_type: &'static str,
    port: u16,
    port_count: Option<u16>,
    proto: &'static str,
    formats: Vec<u8>,
    info: Option<Vec<u8>>,
    connection: Option<IpAddr>,
    rtcp: Option<(u16, Option<IpAddr>)>,
    rtcp_mux: bool,
    direction: Option<&'static str>,
    ice: bool,
    extra: Vec<Vec<u8>>,
}

/// One generated body.
#[derive(Clone, Debug)]
struct GenSdp {
    origin: IpAddr,
    session_version: u64,
    session_name: Vec<u8>,
    connection: Option<IpAddr>,
    ice_lite: bool,
    extra: Vec<Vec<u8>>,
    media: Vec<GenMedia>,
    /// Per line, CRLF (true) or LF; cycled.
    crlf: Vec<bool>,
    /// How the last line ends: 0 not at all, 1 with a newline, 2 with a lone
    /// CR (a CRLF cut short).
    last_ending: u8,
    trailing_blank: bool,
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

/// Bytes for a line the relay only copies: printable ASCII and non-UTF-8.
fn opaque() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..24)
}

/// An attribute the relay does not interpret (the `x-` keeps it so).
fn opaque_attribute() -> impl Strategy<Value = Vec<u8>> {
    opaque().prop_map(|text| [b"a=x-".as_slice(), &text].concat())
}

fn gen_media() -> impl Strategy<Value = GenMedia> {
    let line = (
        select(vec!["audio", "video", "application", "text"]),
        prop_oneof![1 => Just(0u16), 6 => 1u16..=65535],
        prop::option::of(1u16..=4),
        select(vec!["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "RTP/AVPF"]),
        vec(0u8..=127, 0..5),
    );
    let rest = (
        prop::option::of(opaque()),
        prop::option::of(ip()),
        prop::option::of((any::<u16>(), prop::option::of(ip()))),
        any::<bool>(),
        prop::option::of(select(vec!["sendrecv", "sendonly", "recvonly", "inactive"])),
        any::<bool>(),
        vec(opaque_attribute(), 0..3),
    );
    (line, rest).prop_map(
        |(
            (media_type, port, port_count, proto, formats),
            (info, connection, rtcp, rtcp_mux, direction, ice, extra),
        )| GenMedia {
            media_type,
            port,
            port_count,
            proto,
            formats,
            info,
            connection,
            rtcp,
            rtcp_mux,
            direction,
            ice,
            extra,
        },
    )
}

fn gen_sdp() -> impl Strategy<Value = GenSdp> {
    let session = (
        ip(),
        any::<u64>(),
        opaque(),
        prop::option::of(ip()),
        any::<bool>(),
        vec(opaque_attribute(), 0..3),
    );
    let shape = (
        vec(gen_media(), 0..5),
        vec(any::<bool>(), 1..16),
        0u8..3,
        any::<bool>(),
    );
    (session, shape).prop_map(
        |(
            (origin, session_version, session_name, connection, ice_lite, extra),
            (mut media, crlf, last_ending, trailing_blank),
        )| {
            // RFC 4566: a section with a port needs a c= somewhere.
            if connection.is_none() {
                for m in media.iter_mut().filter(|m| m.port != 0) {
                    m.connection.get_or_insert(origin);
                }
            }
            GenSdp {
                origin,
                session_version,
                session_name,
                connection,
                ice_lite,
                extra,
                media,
                crlf,
                last_ending,
                trailing_blank,
            }
        },
    )
}

fn connection_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

fn media_lines(m: &GenMedia, lines: &mut Vec<Vec<u8>>) {
    let count = m.port_count.map(|c| format!("/{c}")).unwrap_or_default();
    let formats: String = m.formats.iter().map(|f| format!(" {f}")).collect();
    let port = m.port;
    lines.push(format!("m={} {port}{count} {}{formats}", m.media_type, m.proto).into_bytes());
    if let Some(info) = &m.info {
        lines.push([b"i=".as_slice(), info].concat());
    }
    if let Some(c) = m.connection {
        lines.push(format!("c={}", connection_text(c)).into_bytes());
    }
    for f in &m.formats {
        lines.push(format!("a=rtpmap:{f} X{f}/8000").into_bytes());
    }
    if let Some((port, address)) = m.rtcp {
        let address = address.map(|a| format!(" {}", connection_text(a)));
        lines.push(format!("a=rtcp:{port}{}", address.unwrap_or_default()).into_bytes());
    }
    if m.rtcp_mux {
        lines.push(b"a=rtcp-mux".to_vec());
    }
    if let Some(direction) = m.direction {
        lines.push(format!("a={direction}").into_bytes());
    }
    if m.ice {
        lines.push(b"a=ice-ufrag:F7gI".to_vec());
        lines.push(b"a=ice-pwd:x9cml/YzichV2+XlhiMu8g".to_vec());
        lines.push(b"a=candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host".to_vec());
        lines.push(b"a=end-of-candidates".to_vec());
    }
    lines.extend(m.extra.iter().cloned());
}

fn render(g: &GenSdp) -> Vec<u8> {
    let mut lines = vec![
        b"v=0".to_vec(),
        format!("o=- 42 {} {}", g.session_version, connection_text(g.origin)).into_bytes(),
        [b"s=".as_slice(), &g.session_name].concat(),
    ];
    if let Some(c) = g.connection {
        lines.push(format!("c={}", connection_text(c)).into_bytes());
    }
    lines.push(b"t=0 0".to_vec());
    if g.ice_lite {
        lines.push(b"a=ice-lite".to_vec());
    }
    lines.extend(g.extra.iter().cloned());
    for m in &g.media {
        media_lines(m, &mut lines);
    }
    if g.trailing_blank {
        lines.push(Vec::new());
    }
    let mut body = Vec::new();
    let last = lines.len() - 1;
    for (index, line) in lines.iter().enumerate() {
        body.extend_from_slice(line);
        if index < last || g.last_ending == 1 || g.trailing_blank {
            let crlf = g.crlf[index % g.crlf.len()];
            body.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        } else if g.last_ending == 2 {
            body.push(b'\r');
        }
    }
    body
}

fn options() -> impl Strategy<Value = RewriteOptions> {
    (
        select(vec![
            RtcpMux::Keep,
            RtcpMux::Offer,
            RtcpMux::Require,
            RtcpMux::Demux,
        ]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(SdpVersion::Keep),
            Just(SdpVersion::Increment),
            any::<u64>().prop_map(SdpVersion::Set),
        ],
    )
        .prop_map(
            |(rtcp_mux, ice_remove, replace_origin, replace_session_connection, sdp_version)| {
                RewriteOptions {
                    rtcp_mux,
                    ice_remove,
                    replace_origin,
                    replace_session_connection,
                    sdp_version,
                }
            },
        )
}

fn endpoint() -> impl Strategy<Value = RelayEndpoint> {
    (ip(), prop_oneof![1 => Just(0u16), 9 => 1u16..=65534])
        .prop_map(|(address, rtp_port)| RelayEndpoint { address, rtp_port })
}

/// A generated body, its relay endpoints and rewrite options.
fn case() -> impl Strategy<Value = (GenSdp, Vec<RelayEndpoint>, RewriteOptions)> {
    gen_sdp().prop_flat_map(|g| {
        let count = g.media.len();
        (Just(g), vec(endpoint(), count), options())
    })
}

/// Whether a rewrite with `options` may change a line of this kind.
fn touched(kind: LineKind, options: &RewriteOptions) -> bool {
    match kind {
        LineKind::Origin => options.replace_origin || options.sdp_version != SdpVersion::Keep,
        LineKind::Connection
        | LineKind::Media
        | LineKind::Attribute(Attribute::Rtcp | Attribute::RtcpMux) => true,
        LineKind::Attribute(Attribute::Ice(_)) => options.ice_remove,
        _ => false,
    }
}

/// The lines a rewrite with `options` must leave alone, in order.
fn untouched<'s>(sdp: &'s Sdp, options: &RewriteOptions) -> Vec<(&'s [u8], LineEnding)> {
    sdp.lines
        .iter()
        .filter(|line| !touched(line.kind, options))
        .map(|line| (line.raw.content.of(&sdp.body), line.raw.ending))
        .collect()
}

fn assert_untouched_lines_kept(before: &Sdp, after: &Sdp, options: &RewriteOptions) {
    let old = untouched(before, options);
    let new = untouched(after, options);
    assert_eq!(old.len(), new.len());
    for ((old_text, old_ending), (new_text, new_ending)) in old.iter().zip(&new) {
        assert_eq!(old_text, new_text);
        // The body's unterminated last line gets an ending if lines follow.
        if !matches!(old_ending, LineEnding::None | LineEnding::Cr) {
            assert_eq!(old_ending, new_ending);
        }
    }
}

/// What every rewrite promises about one section, whatever the input.
fn assert_section_rewritten(
    after_sdp: &Sdp,
    before: &Media<'_>,
    after: &Media<'_>,
    endpoint: RelayEndpoint,
    mode: RtcpMux,
) {
    if before.port() == 0 || endpoint.rtp_port == 0 {
        assert_eq!(after.port(), 0);
        return;
    }
    assert_eq!(after.port(), endpoint.rtp_port);
    let old = before.effective_connection().expect("parse checked");
    let new = after.effective_connection().expect("a c= applies");
    if old.is_unspecified() {
        assert!(new.is_unspecified());
    } else {
        assert_eq!(new.ip(), Some(endpoint.address));
    }
    let rtcp = after.rtcp().map(|r| r.port);
    if mode.muxed(before) {
        assert!(rtcp.is_none() || rtcp == Some(endpoint.rtp_port));
        assert!(after.rtcp_mux());
    } else {
        assert_eq!(rtcp, endpoint.rtcp_port());
    }
    let rtcp_lines = after_sdp.lines.get(after.lines()).unwrap_or_default();
    let count = rtcp_lines
        .iter()
        .filter(|l| l.kind == LineKind::Attribute(Attribute::Rtcp))
        .count();
    assert!(count <= 1, "{count} a=rtcp lines");
}

/// Rewrites `before` and checks the result; returns it when the limits let
/// the rewrite happen.
fn check_rewrite(
    before: &Sdp,
    endpoints: &[RelayEndpoint],
    options: &RewriteOptions,
) -> Option<Sdp> {
    let out = match before.rewrite(endpoints, options) {
        Ok(out) => out,
        Err(
            RewriteError::TooLarge { .. }
            | RewriteError::TooManyLines { .. }
            | RewriteError::LineTooLong { .. },
        ) => return None,
        Err(error) => panic!("rewrite failed: {error}"),
    };
    let after = Sdp::parse(out, before.limits()).expect("rewritten SDP parses");
    assert_eq!(after.media_count(), before.media_count());
    for ((old, new), endpoint) in before.media().zip(after.media()).zip(endpoints) {
        assert_section_rewritten(&after, &old, &new, *endpoint, options.rtcp_mux);
    }
    if !options.replace_origin {
        assert_eq!(after.origin().address, before.origin().address);
    }
    if options.ice_remove {
        assert!(after
            .lines
            .iter()
            .all(|l| !matches!(l.kind, LineKind::Attribute(Attribute::Ice(_)))));
    }
    assert_untouched_lines_kept(before, &after, options);
    Some(after)
}

/// What arbitrary input must survive: parse, and if it parses, a fixed
/// rewrite whose output parses again.
fn exercise(bytes: &[u8]) {
    let Ok(sdp) = Sdp::parse(bytes.to_vec(), &SdpLimits::default()) else {
        return;
    };
    let endpoints: Vec<_> = (0..sdp.media_count())
        .map(|i| RelayEndpoint {
            address: if i % 2 == 0 {
                "203.0.113.1".parse().unwrap()
            } else {
                "2001:db8::1".parse().unwrap()
            },
            rtp_port: 30000 + 2 * i as u16,
        })
        .collect();
    for options in [
        RewriteOptions::default(),
        RewriteOptions {
            rtcp_mux: RtcpMux::Demux,
            ice_remove: true,
            replace_origin: true,
            replace_session_connection: true,
            sdp_version: SdpVersion::Increment,
        },
    ] {
        check_rewrite(&sdp, &endpoints, &options);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_sdp_parses_as_generated(g in gen_sdp()) {
        let body = render(&g);
        let sdp = Sdp::parse(body, &SdpLimits::default()).unwrap();
        prop_assert_eq!(sdp.media_count(), g.media.len());
        prop_assert_eq!(sdp.origin().session_version, g.session_version.to_string());
        for (parsed, m) in sdp.media().zip(&g.media) {
            prop_assert_eq!(parsed.media_type(), m.media_type);
            prop_assert_eq!(parsed.port(), m.port);
            prop_assert_eq!(parsed.port_count(), m.port_count);
            prop_assert_eq!(parsed.proto(), m.proto);
            prop_assert_eq!(parsed.formats().count(), m.formats.len());
            prop_assert_eq!(parsed.rtpmaps().count(), m.formats.len());
            prop_assert_eq!(parsed.rtcp().map(|r| r.port), m.rtcp.map(|r| r.0));
            prop_assert_eq!(parsed.rtcp_mux(), m.rtcp_mux);
            prop_assert_eq!(parsed.candidates().count(), if m.ice { 1 } else { 0 });
            let connection = m.connection.or(g.connection);
            let remote = parsed.remote_endpoint();
            prop_assert_eq!(remote.and_then(|r| r.ip), connection);
        }
    }

    #[test]
    fn generated_sdp_round_trips((g, endpoints, options) in case()) {
        let sdp = Sdp::parse(render(&g), &SdpLimits::default()).unwrap();
        check_rewrite(&sdp, &endpoints, &options);
    }

    #[test]
    fn rewriting_twice_is_rewriting_once((g, endpoints, mut options) in case()) {
        options.sdp_version = SdpVersion::Keep;
        let sdp = Sdp::parse(render(&g), &SdpLimits::default()).unwrap();
        if let Some(once) = check_rewrite(&sdp, &endpoints, &options) {
            if let Ok(twice) = once.rewrite(&endpoints, &options) {
                prop_assert_eq!(&twice[..], &once.body()[..]);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_sdp_never_panics(
        g in gen_sdp(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut body = render(&g);
        for (at, byte, how) in edits {
            let at = at.index(body.len() + 1);
            match how {
                0 => body.insert(at, byte),
                1 if at < body.len() => body[at] = byte,
                _ if at < body.len() => {
                    body.remove(at);
                }
                _ => {}
            }
        }
        exercise(&body);
    }
}
