//! The rewriter: writes the SDP the relay answers with, in one pass over the
//! parsed lines into one buffer. The rules are on [`Sdp::rewrite`]; they
//! follow rtpengine's `sdp_replace` (daemon/sdp.c).

use std::net::IpAddr;

use bytes::Bytes;

use super::description::{Line, Media, Sdp, Section};
use super::error::RewriteError;
use super::lines::{Attribute, LineEnding, LineKind, Span};

/// The relay's side of one media section: the address and RTP port the
/// rewritten SDP advertises. RTCP is on the next port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayEndpoint {
    /// The relay's advertised address for this section.
    pub address: IpAddr,
    /// The allocated RTP port; 0 rejects the stream.
    pub rtp_port: u16,
}

impl RelayEndpoint {
    /// The RTCP port, RTP port + 1 (the allocator hands out even/odd pairs);
    /// `None` for RTP port 65535.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.rtp_port.checked_add(1)
    }
}

/// How the rewritten SDP advertises RTP/RTCP multiplexing (RFC 5761), after
/// rtpengine's `rtcp-mux` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtcpMux {
    /// Mirror the peer: a section muxes when it carries `a=rtcp-mux` and no
    /// `a=rtcp` naming another port than the RTP port. Right for an answer;
    /// an offer with `a=rtcp-mux` and a separate `a=rtcp` port keeps both.
    #[default]
    Keep,
    /// Offer mux but keep a separate RTCP port for a peer that declines
    /// (RFC 5761 section 5.1.3): `a=rtcp-mux` and `a=rtcp:<port+1>`.
    Offer,
    /// Mux on every section: `a=rtcp-mux`, and no separate RTCP port.
    Require,
    /// No mux: `a=rtcp-mux` is removed and RTCP gets its own port.
    Demux,
}

impl RtcpMux {
    /// Whether the rewritten `media` section advertises one port for RTP and
    /// RTCP, so that the relay must expect RTCP on the RTP port.
    pub fn muxed(self, media: &Media<'_>) -> bool {
        let separate_rtcp = media.rtcp().is_some_and(|rtcp| rtcp.port != media.port());
        match self {
            RtcpMux::Keep => media.rtcp_mux() && !separate_rtcp,
            RtcpMux::Require => true,
            RtcpMux::Offer | RtcpMux::Demux => false,
        }
    }

    /// Whether the rewritten section carries `a=rtcp-mux`.
    fn advertised(self, section: &Section) -> bool {
        match self {
            RtcpMux::Keep => section.rtcp_mux,
            RtcpMux::Offer | RtcpMux::Require => true,
            RtcpMux::Demux => false,
        }
    }
}

/// What becomes of `<sess-version>` in `o=` (rtpengine's `replace`
/// `SDP-version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SdpVersion {
    /// Copied as received.
    #[default]
    Keep,
    /// Increased by one, in decimal, however long the number is.
    Increment,
    /// Replaced by this number: a session layer that remembers the version it
    /// last sent, as rtpengine does, can raise it only when the SDP changed.
    Set(u64),
}

/// What else to change besides addresses and ports. The default changes
/// nothing else, like rtpengine without flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteOptions {
    /// How rtcp-mux is advertised.
    pub rtcp_mux: RtcpMux,
    /// Remove every ICE attribute, at session and media level.
    pub ice_remove: bool,
    /// Put the relay's address into `o=` (rtpengine `replace` `origin`).
    pub replace_origin: bool,
    /// Rewrite the session-level `c=` even when every media section has its
    /// own (rtpengine `replace` `session-connection`).
    pub replace_session_connection: bool,
    /// What becomes of the `o=` version.
    pub sdp_version: SdpVersion,
}

impl Sdp {
    /// Writes the SDP the relay sends on; `endpoints` holds the relay's side
    /// of each media section, in order. Like rtpengine:
    /// - each media-level `c=` names the relay; the session-level `c=` does
    ///   when some media section has no `c=` of its own (it is then the one
    ///   that applies) or when `replace_session_connection` asks, and names
    ///   the first active section's address;
    /// - a `c=` holding `0.0.0.0` or `::` (the old way to put a stream on
    ///   hold) is kept as it is;
    /// - each `m=` port becomes the allocated RTP port (a `/count` goes: the
    ///   relay allocates one pair); a rejected stream (port 0) stays rejected
    ///   and the rest of its section is copied;
    /// - `a=rtcp` advertises the RTCP port, RTP port + 1, unless rtcp-mux is
    ///   in use ([`RtcpMux`]): an existing `a=rtcp` is rewritten in place
    ///   (with the relay's address if it carried one; repeats go), a missing
    ///   one is appended to the section;
    /// - `o=` changes only when asked (`replace_origin`, `sdp_version`);
    /// - ICE attributes go, at both levels, when `ice_remove` asks.
    ///
    /// Beyond rtpengine, which has one address family per call: a section
    /// without its own `c=` whose relay address differs from the session
    /// level's gets a `c=` after its `m=` (and `i=`) line.
    ///
    /// Every other line is copied byte for byte with its line ending; added
    /// lines take the ending of the line before them.
    ///
    /// The result keeps within the limits this body was parsed with, so it
    /// parses again under them.
    pub fn rewrite(
        &self,
        endpoints: &[RelayEndpoint],
        options: &RewriteOptions,
    ) -> Result<Bytes, RewriteError> {
        let plan = Plan::new(self, endpoints, options)?;
        let mut writer = Writer::new(self, &plan);
        writer.session()?;
        for (index, (section, endpoint)) in self.media.iter().zip(endpoints).enumerate() {
            writer.section(&plan.section(index, section, *endpoint))?;
        }
        writer.finish()
    }
}

/// The decisions that hold for the whole body.
struct Plan<'a> {
    sdp: &'a Sdp,
    options: &'a RewriteOptions,
    /// The address for `o=` and the session-level `c=`.
    session_address: Option<IpAddr>,
    /// Whether the session-level `c=` is rewritten.
    replace_session_connection: bool,
}

/// The decisions for one media section.
struct SectionPlan<'s> {
    /// The section's index, from 0.
    index: usize,
    section: &'s Section,
    endpoint: RelayEndpoint,
    /// Neither the peer nor the relay rejected the stream.
    active: bool,
    muxed: bool,
    /// The section has no `c=` of its own, the session-level `c=` now names
    /// the relay, but another address than this section's.
    needs_connection: bool,
}

fn is_active(section: &Section, endpoint: RelayEndpoint) -> bool {
    section.media.field.port != 0 && endpoint.rtp_port != 0
}

impl<'a> Plan<'a> {
    fn new(
        sdp: &'a Sdp,
        endpoints: &[RelayEndpoint],
        options: &'a RewriteOptions,
    ) -> Result<Self, RewriteError> {
        if endpoints.len() != sdp.media.len() {
            return Err(RewriteError::EndpointCount {
                expected: sdp.media.len(),
                got: endpoints.len(),
            });
        }
        check_rtcp_ports(sdp, endpoints, options.rtcp_mux)?;
        let mut plan = Plan {
            sdp,
            options,
            session_address: session_address(sdp, endpoints),
            replace_session_connection: false,
        };
        plan.replace_session_connection = plan.session_connection_replaced();
        Ok(plan)
    }

    fn session_connection_replaced(&self) -> bool {
        let Some(connection) = self.sdp.session_connection() else {
            return false;
        };
        let applies = self.options.replace_session_connection
            || self.sdp.media.iter().any(|s| s.connection.is_none());
        applies && self.session_address.is_some() && !connection.is_unspecified()
    }

    fn section<'s>(
        &self,
        index: usize,
        section: &'s Section,
        endpoint: RelayEndpoint,
    ) -> SectionPlan<'s> {
        let media = Media::new(self.sdp, section);
        let active = is_active(section, endpoint);
        SectionPlan {
            index,
            section,
            endpoint,
            active,
            muxed: self.options.rtcp_mux.muxed(&media),
            needs_connection: active
                && section.connection.is_none()
                && self.replace_session_connection
                && self.session_address != Some(endpoint.address),
        }
    }
}

/// Refuses an active section that needs a separate RTCP port when its RTP
/// port is the last one.
fn check_rtcp_ports(
    sdp: &Sdp,
    endpoints: &[RelayEndpoint],
    mode: RtcpMux,
) -> Result<(), RewriteError> {
    for (index, (section, endpoint)) in sdp.media.iter().zip(endpoints).enumerate() {
        let needs_rtcp_port = !mode.muxed(&Media::new(sdp, section));
        if is_active(section, *endpoint) && needs_rtcp_port && endpoint.rtcp_port().is_none() {
            return Err(RewriteError::NoRtcpPort {
                index,
                rtp_port: endpoint.rtp_port,
            });
        }
    }
    Ok(())
}

/// The address for `o=` and the session-level `c=`: the first active
/// section's, like rtpengine, which takes the first stream's; else the first
/// section's; `None` without media.
fn session_address(sdp: &Sdp, endpoints: &[RelayEndpoint]) -> Option<IpAddr> {
    let mut pairs = sdp.media.iter().zip(endpoints);
    pairs
        .clone()
        .find(|(section, endpoint)| is_active(section, **endpoint))
        .or_else(|| pairs.next())
        .map(|(_, endpoint)| endpoint.address)
}

/// The output buffer and the line bookkeeping the limits need.
struct Writer<'a> {
    sdp: &'a Sdp,
    plan: &'a Plan<'a>,
    out: Vec<u8>,
    lines_out: usize,
    /// The ending of the last line written when that was the body's last
    /// line and had no full ending (`None` or `Cr`): one is due before
    /// another line follows.
    unterminated: Option<LineEnding>,
    /// The ending for a line the rewrite adds: that of the last terminated
    /// line written, so an LF body gets LF lines.
    insert_ending: LineEnding,
}

impl<'a> Writer<'a> {
    fn new(sdp: &'a Sdp, plan: &'a Plan<'a>) -> Self {
        let first_ending = sdp
            .lines
            .iter()
            .map(|line| line.raw.ending)
            .find(|&ending| matches!(ending, LineEnding::CrLf | LineEnding::Lf));
        Writer {
            sdp,
            plan,
            // A few added lines per section; rewritten lines rarely grow more.
            out: Vec::with_capacity(sdp.body.len() + 64 + 96 * sdp.media.len()),
            lines_out: 0,
            unterminated: None,
            insert_ending: first_ending.unwrap_or(LineEnding::CrLf),
        }
    }

    fn body(&self) -> &'a [u8] {
        &self.sdp.body
    }

    fn lines(&self, range: std::ops::Range<usize>) -> &'a [Line] {
        self.sdp.lines.get(range).unwrap_or_default()
    }

    /// Copies a line as received.
    fn copy(&mut self, line: &Line) -> Result<(), RewriteError> {
        self.terminate_previous();
        self.out
            .extend_from_slice(line.raw.whole().of(&self.sdp.body));
        self.count_line(line.raw.ending)
    }

    /// Writes `pieces` in place of `line`'s content, keeping its ending.
    fn replace(&mut self, line: &Line, pieces: &[&[u8]]) -> Result<(), RewriteError> {
        self.emit(pieces, line.raw.ending)
    }

    /// Writes a line the received body did not have.
    fn insert(&mut self, text: &str) -> Result<(), RewriteError> {
        self.emit(&[text.as_bytes()], self.insert_ending)
    }

    fn emit(&mut self, pieces: &[&[u8]], ending: LineEnding) -> Result<(), RewriteError> {
        let max_bytes = self.sdp.limits.max_line_bytes;
        if pieces.iter().map(|piece| piece.len()).sum::<usize>() > max_bytes {
            return Err(RewriteError::LineTooLong { max_bytes });
        }
        self.terminate_previous();
        for piece in pieces {
            self.out.extend_from_slice(piece);
        }
        self.out.extend_from_slice(ending.as_bytes());
        self.count_line(ending)
    }

    fn terminate_previous(&mut self) {
        match self.unterminated.take() {
            Some(LineEnding::Cr) => self.out.push(b'\n'),
            Some(_) => self.out.extend_from_slice(self.insert_ending.as_bytes()),
            None => {}
        }
    }

    fn count_line(&mut self, ending: LineEnding) -> Result<(), RewriteError> {
        let limits = &self.sdp.limits;
        self.lines_out += 1;
        if self.lines_out > limits.max_lines {
            return Err(RewriteError::TooManyLines {
                max: limits.max_lines,
            });
        }
        if self.out.len() > limits.max_body_bytes {
            return Err(RewriteError::TooLarge {
                max_bytes: limits.max_body_bytes,
            });
        }
        match ending {
            LineEnding::None | LineEnding::Cr => self.unterminated = Some(ending),
            LineEnding::CrLf | LineEnding::Lf => self.insert_ending = ending,
        }
        Ok(())
    }

    fn finish(self) -> Result<Bytes, RewriteError> {
        debug_assert!(self.out.len() <= self.sdp.limits.max_body_bytes);
        Ok(Bytes::from(self.out))
    }

    /// The lines before the first `m=`.
    fn session(&mut self) -> Result<(), RewriteError> {
        let session_address = self.plan.session_address;
        for line in self.lines(0..self.sdp.session.end_line) {
            match (line.kind, session_address) {
                (LineKind::Origin, _) => self.origin(line)?,
                (LineKind::Connection, Some(address)) if self.plan.replace_session_connection => {
                    self.connection(line, address)?
                }
                (LineKind::Attribute(Attribute::Ice(_)), _) if self.plan.options.ice_remove => {}
                _ => self.copy(line)?,
            }
        }
        Ok(())
    }

    /// `o=`: the version and the address change only when asked.
    fn origin(&mut self, line: &Line) -> Result<(), RewriteError> {
        let body = self.body();
        let o = &self.sdp.session.origin.field;
        let old_version = o.session_version.of(body);
        let version = match self.plan.options.sdp_version {
            SdpVersion::Keep => old_version.to_vec(),
            SdpVersion::Increment => increment_decimal(old_version),
            SdpVersion::Set(version) => version.to_string().into_bytes(),
        };
        let old_address = Span::new(o.net_type.start, o.address.end).of(body);
        let address = match self.plan.session_address {
            Some(ip) if self.plan.options.replace_origin => connection_address(ip).into_bytes(),
            _ => old_address.to_vec(),
        };
        if version == old_version && address == old_address {
            return self.copy(line);
        }
        let content = line.raw.content;
        self.replace(
            line,
            &[
                Span::new(content.start, o.session_version.start).of(body),
                &version,
                Span::new(o.session_version.end, o.net_type.start).of(body),
                &address,
                Span::new(o.address.end, content.end).of(body),
            ],
        )
    }

    /// A `c=` line naming `address`, in place of `line`.
    fn connection(&mut self, line: &Line, address: IpAddr) -> Result<(), RewriteError> {
        let text = connection_address(address);
        self.replace(line, &[b"c=", text.as_bytes()])
    }

    /// One media section, lines in order, with what it lacks added.
    fn section(&mut self, plan: &SectionPlan<'_>) -> Result<(), RewriteError> {
        let section = plan.section;
        let first = section.first_line();
        let last = self.last_content_line(section);
        let mut needs_connection = plan.needs_connection;
        for (index, line) in (first..).zip(self.lines(first..section.end_line)) {
            // RFC 4566 orders a section m=, i=, c=, ..., a=.
            if needs_connection
                && index > first
                && !line.raw.content.of(self.body()).starts_with(b"i=")
            {
                self.insert(&format!("c={}", connection_address(plan.endpoint.address)))?;
                needs_connection = false;
            }
            self.section_line(plan, index, line)?;
            if index == last {
                if needs_connection {
                    self.insert(&format!("c={}", connection_address(plan.endpoint.address)))?;
                    needs_connection = false;
                }
                self.append_rtcp(plan)?;
            }
        }
        Ok(())
    }

    /// The index of the section's last non-empty line, after which added
    /// attributes go (empty lines stay at the end, where they were).
    fn last_content_line(&self, section: &Section) -> usize {
        let first = section.first_line();
        self.lines(first..section.end_line)
            .iter()
            .rposition(|line| line.kind != LineKind::Blank)
            .map_or(first, |offset| first + offset)
    }

    fn section_line(
        &mut self,
        plan: &SectionPlan<'_>,
        index: usize,
        line: &Line,
    ) -> Result<(), RewriteError> {
        let options = self.plan.options;
        let section = plan.section;
        match line.kind {
            LineKind::Media => self.media_line(plan, line),
            LineKind::Connection if plan.active => self.media_connection(plan, index, line),
            LineKind::Attribute(Attribute::Rtcp) if plan.active => {
                // The first a=rtcp is rewritten; a repeat would contradict it.
                match section.rtcp {
                    Some(rtcp) if rtcp.line == index => self.rtcp_line(plan, line),
                    _ => Ok(()),
                }
            }
            LineKind::Attribute(Attribute::RtcpMux)
                if plan.active && !options.rtcp_mux.advertised(section) =>
            {
                Ok(())
            }
            LineKind::Attribute(Attribute::Ice(_)) if options.ice_remove => Ok(()),
            _ => self.copy(line),
        }
    }

    /// `m=`: the port (and any `/count`: the relay allocates one pair)
    /// becomes the relay's; a rejected stream stays rejected.
    fn media_line(&mut self, plan: &SectionPlan<'_>, line: &Line) -> Result<(), RewriteError> {
        let m = &plan.section.media.field;
        if m.port == 0 {
            return self.copy(line);
        }
        let body = self.body();
        let content = line.raw.content;
        let port = plan.endpoint.rtp_port.to_string();
        self.replace(
            line,
            &[
                Span::new(content.start, m.port_span.start).of(body),
                port.as_bytes(),
                Span::new(m.port_span.end, content.end).of(body),
            ],
        )
    }

    /// A media-level `c=` of an active section.
    fn media_connection(
        &mut self,
        plan: &SectionPlan<'_>,
        index: usize,
        line: &Line,
    ) -> Result<(), RewriteError> {
        let Some(first) = plan.section.connection else {
            return self.copy(line);
        };
        if first.line != index {
            // Layered multicast c= lines: the first now names the relay.
            return Ok(());
        }
        if self.sdp.connection_view(&first.field).is_unspecified() {
            return self.copy(line);
        }
        self.connection(line, plan.endpoint.address)
    }

    /// The section's first `a=rtcp`, pointing at the relay.
    fn rtcp_line(&mut self, plan: &SectionPlan<'_>, line: &Line) -> Result<(), RewriteError> {
        let text = rtcp_text(plan)?;
        self.replace(line, &[text.as_bytes()])
    }

    /// What an active section lacks: `a=rtcp` unless muxed, `a=rtcp-mux` when
    /// the mode advertises it.
    fn append_rtcp(&mut self, plan: &SectionPlan<'_>) -> Result<(), RewriteError> {
        if !plan.active {
            return Ok(());
        }
        if !plan.muxed && plan.section.rtcp.is_none() {
            self.insert(&rtcp_text(plan)?)?;
        }
        if self.plan.options.rtcp_mux.advertised(plan.section) && !plan.section.rtcp_mux {
            self.insert("a=rtcp-mux")?;
        }
        Ok(())
    }
}

/// `a=rtcp:<port>` for a section, with the relay's address when the peer's
/// `a=rtcp` carried one.
fn rtcp_text(plan: &SectionPlan<'_>) -> Result<String, RewriteError> {
    let endpoint = plan.endpoint;
    let port = if plan.muxed {
        endpoint.rtp_port
    } else {
        // Plan::new refused an active section without an RTCP port.
        endpoint.rtcp_port().ok_or(RewriteError::NoRtcpPort {
            index: plan.index,
            rtp_port: endpoint.rtp_port,
        })?
    };
    let with_address = plan
        .section
        .rtcp
        .is_some_and(|rtcp| rtcp.field.connection.is_some());
    Ok(if with_address {
        format!("a=rtcp:{port} {}", connection_address(endpoint.address))
    } else {
        format!("a=rtcp:{port}")
    })
}

/// `IN IP4 <address>` or `IN IP6 <address>`.
fn connection_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

/// `digits` (ASCII decimal, as `parse` checked) plus one.
fn increment_decimal(digits: &[u8]) -> Vec<u8> {
    let mut result = digits.to_vec();
    // Carry from the right; one step per digit.
    for digit in result.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return result;
        }
    }
    result.insert(0, b'1');
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_carries() {
        assert_eq!(increment_decimal(b"0"), b"1");
        assert_eq!(increment_decimal(b"1299"), b"1300");
        assert_eq!(increment_decimal(b"999"), b"1000");
        assert_eq!(
            increment_decimal(b"18446744073709551615"),
            b"18446744073709551616"
        );
    }
}
