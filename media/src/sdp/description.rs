//! A parsed session description and its typed, borrowed views.
//!
//! [`Sdp`] owns the received bytes and an index of them; the views
//! ([`Origin`], [`Connection`], [`Media`], ...) hand out `&str` slices of the
//! body and numbers parsed once, so nothing is copied until a caller asks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use super::fields::{
    self, CandidateField, ConnectionField, MediaField, OriginField, RtcpField, RtpmapField,
};
use super::limits::SdpLimits;
use super::lines::{Attribute, Ice, LineEnding, LineKind, RawLine, Span};

/// A parsed SDP body. Build one with [`Sdp::parse`]; write the relay's version
/// with [`Sdp::rewrite`].
#[derive(Clone, Debug)]
pub struct Sdp {
    pub(crate) body: Bytes,
    pub(crate) lines: Vec<Line>,
    pub(crate) session: SessionLevel,
    pub(crate) media: Vec<Section>,
    /// The limits the body was parsed with; a rewrite keeps within them.
    pub(crate) limits: SdpLimits,
}

/// One line of the body and what it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line {
    pub(crate) raw: RawLine,
    pub(crate) kind: LineKind,
}

/// A field read from a line, with the line's index in [`Sdp::lines`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct At<F> {
    pub(crate) line: usize,
    pub(crate) field: F,
}

/// ICE attributes of one level (session or media).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IceLevel {
    pub(crate) ufrag: Option<Span>,
    pub(crate) pwd: Option<Span>,
    pub(crate) options: Option<Span>,
    pub(crate) remote_candidates: Option<Span>,
    pub(crate) end_of_candidates: bool,
    pub(crate) lite: bool,
}

/// What the session level (the lines before the first `m=`) says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLevel {
    pub(crate) origin: At<OriginField>,
    pub(crate) connection: Option<At<ConnectionField>>,
    pub(crate) direction: Option<Direction>,
    pub(crate) ice: IceLevel,
    /// Index of the first `m=` line, or the line count if there is none.
    pub(crate) end_line: usize,
}

/// What one media section (an `m=` line and the lines up to the next) says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Section {
    pub(crate) media: At<MediaField>,
    /// Index one past the section's last line.
    pub(crate) end_line: usize,
    /// The first `c=` of the section (RFC 4566 allows more only for layered
    /// multicast, which the relay does not do).
    pub(crate) connection: Option<At<ConnectionField>>,
    /// The first `a=rtcp` of the section.
    pub(crate) rtcp: Option<At<RtcpField>>,
    pub(crate) rtcp_mux: bool,
    pub(crate) direction: Option<Direction>,
    pub(crate) ice: IceLevel,
}

impl Section {
    /// Index of the section's `m=` line.
    pub(crate) fn first_line(&self) -> usize {
        self.media.line
    }
}

/// A media direction attribute (RFC 4566 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`, the default when none is given.
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The `o=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `<username>`, `-` when the user agent has none.
    pub username: &'a str,
    /// `<sess-id>`
    pub session_id: &'a str,
    /// `<sess-version>`, a decimal number of any length.
    pub session_version: &'a str,
    /// `<nettype>`, `IN`.
    pub net_type: &'a str,
    /// `<addrtype>`, `IP4` or `IP6`.
    pub addr_type: &'a str,
    /// `<unicast-address>`
    pub address: &'a str,
}

/// A `c=` line, or the address part of an `a=rtcp` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection<'a> {
    /// `<nettype>`, `IN`.
    pub net_type: &'a str,
    /// `<addrtype>`, `IP4` or `IP6`.
    pub addr_type: &'a str,
    /// The address as written, without a multicast `/ttl` or `/count` suffix.
    /// RFC 4566 allows a host name here.
    pub address: &'a str,
}

impl Connection<'_> {
    /// The address as an IP address of the family `addr_type` names; `None`
    /// for a host name, an unknown address type or a mismatch.
    pub fn ip(&self) -> Option<IpAddr> {
        if self.addr_type.eq_ignore_ascii_case("IP4") {
            self.address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        } else if self.addr_type.eq_ignore_ascii_case("IP6") {
            self.address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        }
    }

    /// Whether the address is `0.0.0.0` or `::`, the RFC 2543 way of putting
    /// a stream on hold, which the rewrite keeps as it is (like rtpengine).
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// An `a=rtcp` attribute (RFC 3605).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpAttribute<'a> {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when the attribute gives one.
    pub connection: Option<Connection<'a>>,
}

/// An `a=rtpmap` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtpmap<'a> {
    /// The payload type, 0 to 127.
    pub payload_type: u8,
    /// The encoding name, e.g. `telephone-event`.
    pub encoding: &'a str,
    /// The RTP clock rate.
    pub clock_rate_hz: u32,
    /// What follows a second `/`, e.g. the channel count.
    pub encoding_params: Option<&'a str>,
}

/// An `a=candidate` attribute (RFC 8839 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// `<foundation>`
    pub foundation: &'a str,
    /// `<component-id>`: 1 for RTP, 2 for RTCP.
    pub component_id: u16,
    /// `<transport>`, e.g. `UDP`.
    pub transport: &'a str,
    /// `<priority>`
    pub priority: u32,
    /// `<connection-address>`: an IP address or an mDNS host name.
    pub address: &'a str,
    /// `<port>`
    pub port: u16,
    /// `typ <cand-type>`: `host`, `srflx`, `prflx` or `relay`.
    pub candidate_type: &'a str,
    /// `raddr`, `rport` and extension attributes as written; empty if none.
    pub extensions: &'a str,
}

/// Where the peer wants to receive one media section's packets: the media
/// section's `c=` (else the session's) and its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint<'a> {
    /// The address as written.
    pub address: &'a str,
    /// The address as an IP, `None` for a host name.
    pub ip: Option<IpAddr>,
    /// The `m=` port; 0 for a rejected stream.
    pub rtp_port: u16,
    /// The `a=rtcp` port, else the RTP port + 1 (RFC 3550 section 11);
    /// `None` when the RTP port is 65535 and there is no `a=rtcp`. With
    /// rtcp-mux in use RTCP goes to the RTP port instead.
    pub rtcp_port: Option<u16>,
    /// The `a=rtcp` address, when given as an IP.
    pub rtcp_ip: Option<IpAddr>,
}

/// One media section of an [`Sdp`].
#[derive(Clone, Copy, Debug)]
pub struct Media<'a> {
    sdp: &'a Sdp,
    section: &'a Section,
}

impl Sdp {
    /// The body as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The limits the body was parsed with.
    pub fn limits(&self) -> &SdpLimits {
        &self.limits
    }

    /// Every line as received: its bytes without the ending, and the ending.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = (&[u8], LineEnding)> + '_ {
        self.lines
            .iter()
            .map(|line| (line.raw.content.of(&self.body), line.raw.ending))
    }

    /// The `o=` line.
    pub fn origin(&self) -> Origin<'_> {
        let o = &self.session.origin.field;
        Origin {
            username: self.text(o.username),
            session_id: self.text(o.session_id),
            session_version: self.text(o.session_version),
            net_type: self.text(o.net_type),
            addr_type: self.text(o.addr_type),
            address: self.text(o.address),
        }
    }

    /// The session-level `c=` line.
    pub fn session_connection(&self) -> Option<Connection<'_>> {
        self.session
            .connection
            .map(|c| self.connection_view(&c.field))
    }

    /// The session-level direction attribute.
    pub fn direction(&self) -> Option<Direction> {
        self.session.direction
    }

    /// Whether the session-level `a=ice-lite` is present.
    pub fn ice_lite(&self) -> bool {
        self.session.ice.lite
    }

    /// How many media sections there are.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// The media sections in order.
    pub fn media(&self) -> impl ExactSizeIterator<Item = Media<'_>> + '_ {
        self.media
            .iter()
            .map(move |section| Media::new(self, section))
    }

    /// The media section at `index`, counting from 0.
    pub fn media_at(&self, index: usize) -> Option<Media<'_>> {
        self.media
            .get(index)
            .map(|section| Media::new(self, section))
    }

    /// The text of `span`.
    pub(crate) fn text(&self, span: Span) -> &str {
        // Views only hand out spans of lines `parse` checked are UTF-8, cut at
        // ASCII separators, so the fallback is never taken.
        std::str::from_utf8(span.of(&self.body)).unwrap_or_default()
    }

    pub(crate) fn connection_view(&self, c: &ConnectionField) -> Connection<'_> {
        Connection {
            net_type: self.text(c.net_type),
            addr_type: self.text(c.addr_type),
            address: self.text(c.address),
        }
    }

    /// The content span after `a=` of the attribute lines of `kind` in
    /// `lines`.
    fn attribute_values(
        &self,
        lines: std::ops::Range<usize>,
        kind: Attribute,
    ) -> impl Iterator<Item = Span> + '_ {
        self.lines
            .get(lines)
            .unwrap_or_default()
            .iter()
            .filter(move |line| line.kind == LineKind::Attribute(kind))
            .map(|line| line.raw.value())
    }
}

impl<'a> Media<'a> {
    pub(crate) fn new(sdp: &'a Sdp, section: &'a Section) -> Self {
        Media { sdp, section }
    }

    /// `<media>`: `audio`, `video`, `application`, ...
    pub fn media_type(&self) -> &'a str {
        self.sdp.text(self.section.media.field.media_type)
    }

    /// The `m=` port; 0 marks a rejected stream.
    pub fn port(&self) -> u16 {
        self.section.media.field.port
    }

    /// The `/<number of ports>` of the `m=` line, if given.
    pub fn port_count(&self) -> Option<u16> {
        self.section.media.field.port_count
    }

    /// `<proto>`: `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, ...
    pub fn proto(&self) -> &'a str {
        self.sdp.text(self.section.media.field.proto)
    }

    /// The `<fmt>` list of the `m=` line.
    pub fn formats(&self) -> impl Iterator<Item = &'a str> + 'a {
        let span = self.section.media.field.formats;
        fields::tokens(&self.sdp.body, span).map(|token| self.sdp.text(token))
    }

    /// The media-level `c=` line (the first, if there are several).
    pub fn connection(&self) -> Option<Connection<'a>> {
        self.section
            .connection
            .map(|c| self.sdp.connection_view(&c.field))
    }

    /// The `c=` that applies: the media level's, else the session level's.
    pub fn effective_connection(&self) -> Option<Connection<'a>> {
        self.connection().or_else(|| self.sdp.session_connection())
    }

    /// The `a=rtcp` attribute (the first, if there are several).
    pub fn rtcp(&self) -> Option<RtcpAttribute<'a>> {
        self.section.rtcp.map(|r| RtcpAttribute {
            port: r.field.port,
            connection: r.field.connection.map(|c| self.sdp.connection_view(&c)),
        })
    }

    /// Whether `a=rtcp-mux` is present.
    pub fn rtcp_mux(&self) -> bool {
        self.section.rtcp_mux
    }

    /// The media-level direction attribute, else the session level's, else
    /// `sendrecv` (RFC 4566 section 6).
    pub fn direction(&self) -> Direction {
        self.section
            .direction
            .or(self.sdp.session.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// Where the peer receives this section's media; `None` when there is no
    /// `c=` (allowed only for a rejected stream).
    pub fn remote_endpoint(&self) -> Option<RemoteEndpoint<'a>> {
        let connection = self.effective_connection()?;
        let rtcp = self.rtcp();
        Some(RemoteEndpoint {
            address: connection.address,
            ip: connection.ip(),
            rtp_port: self.port(),
            rtcp_port: rtcp.map_or(self.port().checked_add(1), |r| Some(r.port)),
            rtcp_ip: rtcp.and_then(|r| r.connection).and_then(|c| c.ip()),
        })
    }

    /// `a=ice-ufrag`, the media level's else the session level's.
    pub fn ice_ufrag(&self) -> Option<&'a str> {
        self.ice_value(|ice| ice.ufrag)
    }

    /// `a=ice-pwd`, the media level's else the session level's.
    pub fn ice_pwd(&self) -> Option<&'a str> {
        self.ice_value(|ice| ice.pwd)
    }

    /// `a=ice-options`, the media level's else the session level's.
    pub fn ice_options(&self) -> Option<&'a str> {
        self.ice_value(|ice| ice.options)
    }

    /// The value of the media-level `a=remote-candidates`.
    pub fn remote_candidates(&self) -> Option<&'a str> {
        self.section.ice.remote_candidates.map(|s| self.sdp.text(s))
    }

    /// Whether `a=end-of-candidates` is present at media or session level.
    pub fn end_of_candidates(&self) -> bool {
        self.section.ice.end_of_candidates || self.sdp.session.ice.end_of_candidates
    }

    /// The section's `a=candidate` attributes in order.
    pub fn candidates(&self) -> impl Iterator<Item = Candidate<'a>> + 'a {
        let sdp = self.sdp;
        sdp.attribute_values(self.lines(), Attribute::Ice(Ice::Candidate))
            // `parse` checked every one, so none is dropped here.
            .filter_map(move |value| fields::candidate(&sdp.body, value).ok())
            .map(move |c| candidate_view(sdp, &c))
    }

    /// The section's `a=rtpmap` attributes in order.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Rtpmap<'a>> + 'a {
        let sdp = self.sdp;
        sdp.attribute_values(self.lines(), Attribute::Rtpmap)
            // `parse` checked every one, so none is dropped here.
            .filter_map(move |value| fields::rtpmap(&sdp.body, value).ok())
            .map(move |r| rtpmap_view(sdp, &r))
    }

    /// The indices, in [`Sdp::lines`], of the section's lines: its `m=` line
    /// and every line up to the next `m=` line or the end of the body.
    pub fn lines(&self) -> std::ops::Range<usize> {
        self.section.first_line()..self.section.end_line
    }

    fn ice_value(&self, pick: impl Fn(&IceLevel) -> Option<Span>) -> Option<&'a str> {
        pick(&self.section.ice)
            .or_else(|| pick(&self.sdp.session.ice))
            .map(|span| self.sdp.text(span))
    }
}

fn candidate_view<'a>(sdp: &'a Sdp, c: &CandidateField) -> Candidate<'a> {
    Candidate {
        foundation: sdp.text(c.foundation),
        component_id: c.component_id,
        transport: sdp.text(c.transport),
        priority: c.priority,
        address: sdp.text(c.address),
        port: c.port,
        candidate_type: sdp.text(c.candidate_type),
        extensions: sdp.text(c.extensions),
    }
}

fn rtpmap_view<'a>(sdp: &'a Sdp, r: &RtpmapField) -> Rtpmap<'a> {
    Rtpmap {
        payload_type: r.payload_type,
        encoding: sdp.text(r.encoding),
        clock_rate_hz: r.clock_rate_hz,
        encoding_params: r.encoding_params.map(|s| sdp.text(s)),
    }
}
