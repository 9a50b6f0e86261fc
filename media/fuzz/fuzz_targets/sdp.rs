//! Arbitrary bytes as an SDP body: parsing never panics, and a body that
//! parses is rewritten with fixed relay endpoints into a body that parses
//! again, with the relay's ports and addresses in it and every line the
//! rewrite has no business with unchanged.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use media::sdp::{
    LineEnding, Media, RelayEndpoint, RewriteError, RewriteOptions, RtcpMux, Sdp, SdpLimits,
    SdpVersion,
};

const RELAY_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
const RELAY_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The two configurations every parsed body is rewritten with: rtpengine's
/// defaults, and everything replaced.
const CONFIGS: [RewriteOptions; 2] = [
    RewriteOptions {
        rtcp_mux: RtcpMux::Keep,
        ice_remove: false,
        replace_origin: false,
        replace_session_connection: false,
        sdp_version: SdpVersion::Keep,
    },
    RewriteOptions {
        rtcp_mux: RtcpMux::Offer,
        ice_remove: true,
        replace_origin: true,
        replace_session_connection: true,
        sdp_version: SdpVersion::Increment,
    },
];

/// Even ports from 30000, alternating IPv4 and IPv6 so that sections differ
/// in family.
fn endpoints(count: usize) -> Vec<RelayEndpoint> {
    (0..count)
        .map(|index| RelayEndpoint {
            address: if index % 2 == 0 { RELAY_V4 } else { RELAY_V6 },
            rtp_port: 30000 + 2 * index as u16,
        })
        .collect()
}

/// What the rewrite promises about one section.
fn check_section(before: &Media<'_>, after: &Media<'_>, endpoint: RelayEndpoint, mode: RtcpMux) {
    if before.port() == 0 {
        assert_eq!(after.port(), 0, "a rejected stream stays rejected");
        return;
    }
    assert_eq!(after.port(), endpoint.rtp_port);
    let old = before
        .effective_connection()
        .expect("parse checked a c= applies");
    let new = after.effective_connection().expect("a c= still applies");
    if old.is_unspecified() {
        assert!(new.is_unspecified(), "a hold address is kept");
    } else {
        assert_eq!(new.ip(), Some(endpoint.address));
    }
    let rtcp_port = after.rtcp().map(|rtcp| rtcp.port);
    if mode.muxed(before) {
        assert!(rtcp_port.is_none() || rtcp_port == Some(endpoint.rtp_port));
    } else {
        assert_eq!(rtcp_port, endpoint.rtcp_port());
    }
}

/// ICE attribute names, which `ice_remove` removes.
const ICE_ATTRIBUTES: [&[u8]; 9] = [
    b"ice-ufrag",
    b"ice-pwd",
    b"candidate",
    b"ice-options",
    b"end-of-candidates",
    b"ice-lite",
    b"remote-candidates",
    b"ice-mismatch",
    b"ice-pacing",
];

/// Whether a rewrite with `options` may change, add or drop a line like
/// this. Both bodies are filtered alike, so every other line must come out
/// as it went in.
fn may_change(line: &[u8], options: &RewriteOptions) -> bool {
    match line {
        [b'o', b'=', ..] => options.replace_origin || options.sdp_version != SdpVersion::Keep,
        [b'c' | b'm', b'=', ..] => true,
        [b'a', b'=', attribute @ ..] => {
            let name = attribute.split(|&b| b == b':').next().unwrap_or_default();
            name == b"rtcp"
                || name == b"rtcp-mux"
                || (options.ice_remove && ICE_ATTRIBUTES.contains(&name))
        }
        _ => false,
    }
}

fn check_untouched_lines(before: &Sdp, after: &Sdp, options: &RewriteOptions) {
    let kept = |sdp: &Sdp| -> Vec<(Vec<u8>, LineEnding)> {
        sdp.lines()
            .filter(|(text, _)| !may_change(text, options))
            .map(|(text, ending)| (text.to_vec(), ending))
            .collect()
    };
    let (old, new) = (kept(before), kept(after));
    assert_eq!(old.len(), new.len(), "lines added or dropped");
    for ((old_text, old_ending), (new_text, new_ending)) in old.iter().zip(&new) {
        assert_eq!(old_text, new_text);
        // Only the body's last line may gain an ending, when lines follow it.
        if !matches!(old_ending, LineEnding::None | LineEnding::Cr) {
            assert_eq!(old_ending, new_ending);
        }
    }
}

fn check(sdp: &Sdp, options: &RewriteOptions) {
    let relay = endpoints(sdp.media_count());
    let out = match sdp.rewrite(&relay, options) {
        Ok(out) => out,
        // The output would not fit the limits the input was parsed with.
        Err(
            RewriteError::TooLarge { .. }
            | RewriteError::TooManyLines { .. }
            | RewriteError::LineTooLong { .. },
        ) => return,
        Err(error) => panic!("rewrite refused a parsed body: {error}"),
    };
    let again = match Sdp::parse(out.clone(), sdp.limits()) {
        Ok(again) => again,
        Err(error) => panic!(
            "rewritten body does not parse: {error}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(again.media_count(), sdp.media_count());
    for ((before, after), endpoint) in sdp.media().zip(again.media()).zip(&relay) {
        check_section(&before, &after, *endpoint, options.rtcp_mux);
    }
    if !options.replace_origin {
        assert_eq!(again.origin().address, sdp.origin().address);
    }
    check_untouched_lines(sdp, &again, options);
}

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data.to_vec(), &SdpLimits::default()) else {
        return;
    };
    for options in &CONFIGS {
        check(&sdp, options);
    }
});
