//! Scenario tests of parsing and rewriting whole bodies.

use std::net::IpAddr;

use super::*;

/// The offer of the COMPAT.md ng example, as Kamailio sends it.
const OFFER: &str = "v=0\r\n\
o=- 1545997027 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 2000 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

fn parse(text: &str) -> Sdp {
    Sdp::parse(text.to_owned(), &SdpLimits::default()).unwrap()
}

fn parse_err(text: impl Into<Vec<u8>>) -> SdpError {
    Sdp::parse(text.into(), &SdpLimits::default()).unwrap_err()
}

fn relay(address: &str, rtp_port: u16) -> RelayEndpoint {
    RelayEndpoint {
        address: address.parse().unwrap(),
        rtp_port,
    }
}

fn rewrite(sdp: &Sdp, endpoints: &[RelayEndpoint], options: &RewriteOptions) -> String {
    let out = sdp.rewrite(endpoints, options).unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

fn rewrite_default(text: &str, endpoints: &[RelayEndpoint]) -> String {
    rewrite(&parse(text), endpoints, &RewriteOptions::default())
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn compat_offer_is_read() {
    let sdp = parse(OFFER);
    assert_eq!(
        sdp.origin(),
        Origin {
            username: "-",
            session_id: "1545997027",
            session_version: "1",
            net_type: "IN",
            addr_type: "IP4",
            address: "198.51.100.1",
        }
    );
    assert_eq!(
        sdp.session_connection().unwrap().ip(),
        Some(ip("198.51.100.1"))
    );
    assert_eq!(sdp.media_count(), 1);
    let audio = sdp.media_at(0).unwrap();
    assert_eq!(audio.media_type(), "audio");
    assert_eq!((audio.port(), audio.port_count()), (2000, None));
    assert_eq!(audio.proto(), "RTP/AVP");
    assert_eq!(audio.formats().collect::<Vec<_>>(), ["0", "8", "101"]);
    assert_eq!(audio.direction(), Direction::SendRecv);
    assert!(audio.connection().is_none());
    assert!(!audio.rtcp_mux());
    let rtpmaps: Vec<_> = audio.rtpmaps().collect();
    assert_eq!(
        rtpmaps,
        [Rtpmap {
            payload_type: 101,
            encoding: "telephone-event",
            clock_rate_hz: 8000,
            encoding_params: None,
        }]
    );
    assert_eq!(
        audio.remote_endpoint(),
        Some(RemoteEndpoint {
            address: "198.51.100.1",
            ip: Some(ip("198.51.100.1")),
            rtp_port: 2000,
            rtcp_port: Some(2001),
            rtcp_ip: None,
        })
    );
}

#[test]
fn compat_offer_is_rewritten_like_rtpengine() {
    let out = rewrite_default(OFFER, &[relay("203.0.113.1", 30000)]);
    assert_eq!(
        out,
        "v=0\r\n\
         o=- 1545997027 1 IN IP4 198.51.100.1\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.1\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=sendrecv\r\n\
         a=rtcp:30001\r\n"
    );
}

#[test]
fn rewriting_the_answer_again_changes_nothing() {
    let endpoints = [relay("203.0.113.1", 30000)];
    let once = rewrite_default(OFFER, &endpoints);
    assert_eq!(rewrite_default(&once, &endpoints), once);
}

const ICE_OFFER: &str = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=ice-options:trickle\r\n\
m=audio 2000 RTP/AVP 0\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=candidate:1 1 UDP 2130706431 198.51.100.1 2000 typ host\r\n\
a=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 198.51.100.1 rport 2000\r\n\
a=remote-candidates:1 192.0.2.9 3000\r\n\
a=end-of-candidates\r\n\
a=sendrecv\r\n";

#[test]
fn ice_attributes_are_read() {
    let sdp = parse(ICE_OFFER);
    assert!(sdp.ice_lite());
    let audio = sdp.media_at(0).unwrap();
    assert_eq!(audio.ice_ufrag(), Some("F7gI"));
    assert_eq!(audio.ice_pwd(), Some("x9cml/YzichV2+XlhiMu8g"));
    assert_eq!(audio.ice_options(), Some("trickle"));
    assert_eq!(audio.remote_candidates(), Some("1 192.0.2.9 3000"));
    assert!(audio.end_of_candidates());
    let candidates: Vec<_> = audio.candidates().collect();
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[1].candidate_type, "srflx");
    assert_eq!(candidates[1].address, "192.0.2.3");
    assert_eq!(candidates[1].port, 45664);
    assert_eq!(candidates[1].extensions, "raddr 198.51.100.1 rport 2000");
}

#[test]
fn ice_remove_removes_every_ice_attribute() {
    let sdp = parse(ICE_OFFER);
    let options = RewriteOptions {
        ice_remove: true,
        ..RewriteOptions::default()
    };
    let out = rewrite(&sdp, &[relay("203.0.113.1", 30000)], &options);
    assert_eq!(
        out,
        "v=0\r\n\
         o=- 1 1 IN IP4 198.51.100.1\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.1\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\n\
         a=sendrecv\r\n\
         a=rtcp:30001\r\n"
    );
    // Without the option ICE stays, candidates and all.
    let kept = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(kept.contains("a=candidate:1 1 UDP 2130706431 198.51.100.1 2000 typ host\r\n"));
    assert!(kept.contains("a=ice-lite\r\n"));
}

#[test]
fn ipv6_connection_is_read_and_written() {
    let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
                 m=audio 2000 RTP/AVP 0\r\n";
    let sdp = parse(offer);
    let remote = sdp.media_at(0).unwrap().remote_endpoint().unwrap();
    assert_eq!(remote.ip, Some(ip("2001:db8::1")));
    let out = rewrite(
        &sdp,
        &[relay("2001:db8::ff", 30000)],
        &RewriteOptions::default(),
    );
    assert!(out.contains("\r\nc=IN IP6 2001:db8::ff\r\n"), "{out}");
    // An IPv4 peer behind an IPv6 relay interface: the family changes too.
    let out = rewrite_default(OFFER, &[relay("2001:db8::ff", 30000)]);
    assert!(out.contains("\r\nc=IN IP6 2001:db8::ff\r\n"), "{out}");
}

const MEDIA_LEVEL_C: &str = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 2000 RTP/AVP 0\r\n\
c=IN IP4 198.51.100.2\r\n\
a=sendrecv\r\n";

#[test]
fn media_level_connection_wins_and_is_rewritten() {
    let sdp = parse(MEDIA_LEVEL_C);
    let audio = sdp.media_at(0).unwrap();
    assert_eq!(audio.remote_endpoint().unwrap().address, "198.51.100.2");
    // Like rtpengine: the session-level c= applies to no section, so it stays
    // unless replace session-connection asks.
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert_eq!(
        out,
        "v=0\r\n\
         o=- 1 1 IN IP4 198.51.100.1\r\n\
         s=-\r\n\
         c=IN IP4 198.51.100.1\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\n\
         c=IN IP4 203.0.113.1\r\n\
         a=sendrecv\r\n\
         a=rtcp:30001\r\n"
    );
    let options = RewriteOptions {
        replace_session_connection: true,
        ..RewriteOptions::default()
    };
    let out = rewrite(&sdp, &[relay("203.0.113.1", 30000)], &options);
    assert_eq!(out.matches("c=IN IP4 203.0.113.1\r\n").count(), 2, "{out}");
}

#[test]
fn media_level_connection_without_session_connection() {
    let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\n\
                 m=audio 2000 RTP/AVP 0\r\nc=IN IP4 198.51.100.2\r\n";
    let sdp = parse(offer);
    assert!(sdp.session_connection().is_none());
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(out.ends_with("m=audio 30000 RTP/AVP 0\r\nc=IN IP4 203.0.113.1\r\na=rtcp:30001\r\n"));
}

const AUDIO_VIDEO: &str = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 2000 RTP/AVP 0\r\n\
a=sendrecv\r\n\
m=video 2002 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=sendrecv\r\n";

#[test]
fn two_media_sections_get_their_own_ports() {
    let sdp = parse(AUDIO_VIDEO);
    let kinds: Vec<_> = sdp.media().map(|m| (m.media_type(), m.port())).collect();
    assert_eq!(kinds, [("audio", 2000), ("video", 2002)]);
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000), relay("203.0.113.1", 30002)],
        &RewriteOptions::default(),
    );
    assert_eq!(
        out,
        "v=0\r\n\
         o=- 1 1 IN IP4 198.51.100.1\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.1\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\n\
         a=sendrecv\r\n\
         a=rtcp:30001\r\n\
         m=video 30002 RTP/AVP 96\r\n\
         a=rtpmap:96 H264/90000\r\n\
         a=sendrecv\r\n\
         a=rtcp:30003\r\n"
    );
}

#[test]
fn sections_on_another_family_get_their_own_connection() {
    let sdp = parse(AUDIO_VIDEO);
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000), relay("2001:db8::ff", 30002)],
        &RewriteOptions::default(),
    );
    assert!(out.contains("c=IN IP4 203.0.113.1\r\nt=0 0\r\n"), "{out}");
    assert!(
        out.contains("m=video 30002 RTP/AVP 96\r\nc=IN IP6 2001:db8::ff\r\na=rtpmap"),
        "{out}"
    );
    let again = Sdp::parse(out, &SdpLimits::default()).unwrap();
    let video = again.media_at(1).unwrap().remote_endpoint().unwrap();
    assert_eq!(video.ip, Some(ip("2001:db8::ff")));
}

#[test]
fn rejected_stream_stays_rejected() {
    let offer = AUDIO_VIDEO.replace("m=video 2002", "m=video 0");
    let out = rewrite_default(
        &offer,
        &[relay("203.0.113.1", 30000), relay("203.0.113.1", 30002)],
    );
    assert!(
        out.ends_with("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendrecv\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("a=rtcp:").count(), 1);
    // A rejected stream may come without c= at all.
    let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    let sdp = parse(offer);
    assert_eq!(sdp.media_at(0).unwrap().remote_endpoint(), None);
    assert_eq!(
        rewrite_default(offer, &[relay("203.0.113.1", 30000)]),
        offer
    );
}

#[test]
fn relay_port_zero_rejects_the_stream() {
    let out = rewrite_default(OFFER, &[relay("203.0.113.1", 0)]);
    assert!(out.contains("m=audio 0 RTP/AVP 0 8 101\r\n"), "{out}");
    assert!(!out.contains("a=rtcp"), "{out}");
}

#[test]
fn existing_rtcp_is_rewritten_not_duplicated() {
    let offer = OFFER.replace("a=sendrecv\r\n", "a=rtcp:2001\r\na=sendrecv\r\n");
    let sdp = parse(&offer);
    assert_eq!(sdp.media_at(0).unwrap().rtcp().unwrap().port, 2001);
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(out.ends_with("a=rtcp:30001\r\na=sendrecv\r\n"), "{out}");
    assert_eq!(out.matches("a=rtcp").count(), 1);

    let offer = OFFER.replace(
        "a=sendrecv\r\n",
        "a=rtcp:2001 IN IP4 198.51.100.1\r\na=sendrecv\r\na=rtcp:2001\r\n",
    );
    let sdp = parse(&offer);
    let remote = sdp.media_at(0).unwrap().remote_endpoint().unwrap();
    assert_eq!(remote.rtcp_ip, Some(ip("198.51.100.1")));
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(
        out.ends_with("a=rtcp:30001 IN IP4 203.0.113.1\r\na=sendrecv\r\n"),
        "{out}"
    );
}

fn with_mux(mode: RtcpMux, offer: &str) -> String {
    let options = RewriteOptions {
        rtcp_mux: mode,
        ..RewriteOptions::default()
    };
    rewrite(&parse(offer), &[relay("203.0.113.1", 30000)], &options)
}

#[test]
fn rtcp_mux_present_means_no_rtcp_port() {
    let offer = OFFER.replace("a=sendrecv\r\n", "a=rtcp-mux\r\na=sendrecv\r\n");
    let out = with_mux(RtcpMux::Keep, &offer);
    assert!(out.ends_with("a=rtcp-mux\r\na=sendrecv\r\n"), "{out}");
    assert!(!out.contains("a=rtcp:"), "{out}");
    // A muxing peer's a=rtcp names its RTP port; so does ours.
    let offer = OFFER.replace("a=sendrecv\r\n", "a=rtcp:2000\r\na=rtcp-mux\r\n");
    let out = with_mux(RtcpMux::Keep, &offer);
    assert!(out.ends_with("a=rtcp:30000\r\na=rtcp-mux\r\n"), "{out}");
    // An offer of mux with a fallback port keeps the fallback.
    let offer = OFFER.replace("a=sendrecv\r\n", "a=rtcp:2001\r\na=rtcp-mux\r\n");
    let out = with_mux(RtcpMux::Keep, &offer);
    assert!(out.ends_with("a=rtcp:30001\r\na=rtcp-mux\r\n"), "{out}");
}

#[test]
fn rtcp_mux_modes() {
    let muxed = OFFER.replace("a=sendrecv\r\n", "a=rtcp-mux\r\na=sendrecv\r\n");
    let out = with_mux(RtcpMux::Demux, &muxed);
    assert!(out.ends_with("a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\na=rtcp:30001\r\n"));
    let out = with_mux(RtcpMux::Require, OFFER);
    assert!(out.ends_with("a=sendrecv\r\na=rtcp-mux\r\n"), "{out}");
    let out = with_mux(RtcpMux::Offer, OFFER);
    assert!(
        out.ends_with("a=sendrecv\r\na=rtcp:30001\r\na=rtcp-mux\r\n"),
        "{out}"
    );
    let sdp = parse(&muxed);
    let audio = sdp.media_at(0).unwrap();
    assert!(RtcpMux::Keep.muxed(&audio));
    assert!(!RtcpMux::Demux.muxed(&audio));
}

#[test]
fn origin_changes_only_when_asked() {
    let sdp = parse(OFFER);
    let options = RewriteOptions {
        replace_origin: true,
        ..RewriteOptions::default()
    };
    let out = rewrite(&sdp, &[relay("203.0.113.1", 30000)], &options);
    assert!(
        out.contains("\r\no=- 1545997027 1 IN IP4 203.0.113.1\r\n"),
        "{out}"
    );
    let out = rewrite(&sdp, &[relay("2001:db8::ff", 30000)], &options);
    assert!(
        out.contains("\r\no=- 1545997027 1 IN IP6 2001:db8::ff\r\n"),
        "{out}"
    );
    let options = RewriteOptions {
        sdp_version: SdpVersion::Increment,
        ..RewriteOptions::default()
    };
    let out = rewrite(&sdp, &[relay("203.0.113.1", 30000)], &options);
    assert!(
        out.contains("\r\no=- 1545997027 2 IN IP4 198.51.100.1\r\n"),
        "{out}"
    );
    let options = RewriteOptions {
        sdp_version: SdpVersion::Set(77),
        replace_origin: true,
        ..RewriteOptions::default()
    };
    let out = rewrite(&sdp, &[relay("203.0.113.1", 30000)], &options);
    assert!(
        out.contains("\r\no=- 1545997027 77 IN IP4 203.0.113.1\r\n"),
        "{out}"
    );
}

#[test]
fn hold_address_is_kept() {
    let offer = OFFER.replace("c=IN IP4 198.51.100.1", "c=IN IP4 0.0.0.0");
    let out = rewrite_default(&offer, &[relay("203.0.113.1", 30000)]);
    assert!(out.contains("\r\nc=IN IP4 0.0.0.0\r\n"), "{out}");
    assert!(out.contains("m=audio 30000 "), "{out}");
}

#[test]
fn lf_only_body_stays_lf_only() {
    let offer = OFFER.replace("\r\n", "\n");
    let sdp = parse(&offer);
    assert!(sdp.lines().all(|(_, ending)| ending == LineEnding::Lf));
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(!out.contains('\r'));
    assert_eq!(
        out,
        rewrite_default(OFFER, &[relay("203.0.113.1", 30000)]).replace("\r\n", "\n")
    );
}

#[test]
fn mixed_endings_are_kept_per_line() {
    let offer = "v=0\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\nc=IN IP4 198.51.100.1\r\nt=0 0\n\
                 m=audio 2000 RTP/AVP 0\na=sendrecv\r\n";
    let out = rewrite_default(offer, &[relay("203.0.113.1", 30000)]);
    assert_eq!(
        out,
        "v=0\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\nc=IN IP4 203.0.113.1\r\nt=0 0\n\
         m=audio 30000 RTP/AVP 0\na=sendrecv\r\na=rtcp:30001\r\n"
    );
}

#[test]
fn unterminated_last_line_and_trailing_blank_line() {
    let offer = OFFER.trim_end_matches("\r\n");
    let out = rewrite_default(offer, &[relay("203.0.113.1", 30000)]);
    assert!(out.ends_with("a=sendrecv\r\na=rtcp:30001\r\n"), "{out}");
    // A CRLF cut short after the last line is completed.
    let offer = OFFER.trim_end_matches('\n');
    let sdp = parse(offer);
    assert_eq!(sdp.media_at(0).unwrap().direction(), Direction::SendRecv);
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(out.ends_with("a=sendrecv\r\na=rtcp:30001\r\n"), "{out}");
    let offer = format!("{OFFER}\r\n");
    let out = rewrite_default(&offer, &[relay("203.0.113.1", 30000)]);
    assert!(out.ends_with("a=sendrecv\r\na=rtcp:30001\r\n\r\n"), "{out}");
}

#[test]
fn port_count_is_dropped() {
    let offer = OFFER.replace("m=audio 2000 ", "m=audio 2000/2 ");
    let sdp = parse(&offer);
    assert_eq!(sdp.media_at(0).unwrap().port_count(), Some(2));
    let out = rewrite(
        &sdp,
        &[relay("203.0.113.1", 30000)],
        &RewriteOptions::default(),
    );
    assert!(
        out.contains("\r\nm=audio 30000 RTP/AVP 0 8 101\r\n"),
        "{out}"
    );
}

#[test]
fn lines_the_relay_only_copies_may_hold_any_bytes() {
    let mut offer = OFFER.as_bytes().to_vec();
    let at = offer.windows(3).position(|w| w == b"s=-").unwrap() + 2;
    offer.splice(at..at + 1, [0xff, 0xfe, b'x']);
    let sdp = Sdp::parse(offer.clone(), &SdpLimits::default()).unwrap();
    let out = sdp
        .rewrite(&[relay("203.0.113.1", 30000)], &RewriteOptions::default())
        .unwrap();
    assert!(out.windows(7).any(|w| w == b"s=\xff\xfex\r\n"));
}

#[test]
fn malformed_bodies_name_the_line() {
    assert_eq!(parse_err(""), SdpError::Empty);
    assert_eq!(
        parse_err(OFFER.replace("v=0\r\n", "")),
        SdpError::Malformed {
            line: 1,
            what: "SDP does not start with v="
        }
    );
    assert_eq!(
        parse_err(OFFER.replace("m=audio 2000", "m=audio 99999")),
        SdpError::Malformed {
            line: 6,
            what: "m= port is not a number from 0 to 65535"
        }
    );
    assert_eq!(
        parse_err(OFFER.replace("t=0 0", "t 0 0")),
        SdpError::Malformed {
            line: 5,
            what: "line is not <type>=<value>"
        }
    );
    assert_eq!(
        parse_err(OFFER.replace("c=IN IP4 198.51.100.1\r\n", "")),
        SdpError::MissingConnection { line: 5 }
    );
    assert_eq!(
        parse_err(OFFER.replace("o=- 1545997027 1 IN IP4 198.51.100.1\r\n", "")),
        SdpError::MissingOrigin
    );
    assert_eq!(
        parse_err(format!("{OFFER}o=- 1 1 IN IP4 198.51.100.1\r\n")),
        SdpError::Malformed {
            line: 9,
            what: "o= inside a media section"
        }
    );
    assert_eq!(
        parse_err(OFFER.replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:101 telephone-event"
        )),
        SdpError::Malformed {
            line: 7,
            what: "a=rtpmap has no clock rate"
        }
    );
    let error = parse_err(OFFER.replace("v=0", "v=1"));
    assert_eq!(error.to_string(), "SDP line 1: v= is not 0");
    assert_eq!(error.line(), Some(1));
}

#[test]
fn non_utf8_in_a_line_the_relay_reads_is_refused() {
    let mut offer = OFFER.as_bytes().to_vec();
    let at = offer.windows(7).position(|w| w == b"198.51.").unwrap();
    offer[at] = 0xc3;
    assert_eq!(parse_err(offer), SdpError::NotUtf8 { line: 2 });
    let mut bad = OFFER.as_bytes().to_vec();
    let at = bad.windows(9).position(|w| w == b"telephone").unwrap();
    bad[at] = 0x80;
    assert_eq!(parse_err(bad), SdpError::NotUtf8 { line: 7 });
}

#[test]
fn limits_are_enforced() {
    let limits = SdpLimits {
        max_body_bytes: 100,
        ..SdpLimits::default()
    };
    assert_eq!(
        Sdp::parse(OFFER, &limits).unwrap_err(),
        SdpError::TooLarge {
            len_bytes: OFFER.len(),
            max_bytes: 100
        }
    );
    let limits = SdpLimits {
        max_lines: 7,
        ..SdpLimits::default()
    };
    assert_eq!(
        Sdp::parse(OFFER, &limits).unwrap_err(),
        SdpError::TooManyLines { line: 8, max: 7 }
    );
    let limits = SdpLimits {
        max_line_bytes: 30,
        ..SdpLimits::default()
    };
    assert_eq!(
        Sdp::parse(OFFER, &limits).unwrap_err(),
        SdpError::LineTooLong {
            line: 2,
            max_bytes: 30
        }
    );
    let mut many = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n");
    for _ in 0..17 {
        many.push_str("m=audio 2000 RTP/AVP 0\r\n");
    }
    assert_eq!(
        parse_err(many),
        SdpError::TooManyMedia { line: 20, max: 16 }
    );
}

#[test]
fn rewrite_refuses_a_plan_that_does_not_fit() {
    let sdp = parse(AUDIO_VIDEO);
    let options = RewriteOptions::default();
    assert_eq!(
        sdp.rewrite(&[relay("203.0.113.1", 30000)], &options),
        Err(RewriteError::EndpointCount {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        sdp.rewrite(
            &[relay("203.0.113.1", 30000), relay("203.0.113.1", 65535)],
            &options
        ),
        Err(RewriteError::NoRtcpPort {
            index: 1,
            rtp_port: 65535
        })
    );
    // The output must parse again under the same limits.
    let limits = SdpLimits {
        max_lines: 8,
        ..SdpLimits::default()
    };
    let sdp = Sdp::parse(OFFER, &limits).unwrap();
    assert_eq!(
        sdp.rewrite(&[relay("203.0.113.1", 30000)], &options),
        Err(RewriteError::TooManyLines { max: 8 })
    );
}

#[test]
fn session_without_media_keeps_its_lines() {
    let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\n";
    let options = RewriteOptions {
        replace_origin: true,
        ice_remove: true,
        ..RewriteOptions::default()
    };
    assert_eq!(rewrite(&parse(offer), &[], &options), offer);
}
