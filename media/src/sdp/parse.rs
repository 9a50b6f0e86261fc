//! The parser: one pass over the lines, session level then media sections,
//! checking the lines the relay reads and indexing them.

use bytes::Bytes;

use super::description::{At, IceLevel, Line, Sdp, Section, SessionLevel};
use super::error::SdpError;
use super::fields::{self, ConnectionField, FieldError, OriginField};
use super::limits::SdpLimits;
use super::lines::{self, Attribute, Ice, LineKind, RawLine, Span};

impl Sdp {
    /// Parses an SDP body (RFC 4566) within `limits`.
    ///
    /// Accepted beyond the letter of RFC 4566, because user agents send it
    /// and nothing is ambiguous: bare-LF line endings, empty lines after the
    /// `v=` line, runs of spaces between fields, unknown line types (copied,
    /// never read), a missing `s=` or `t=`, an `m=` line without formats, and
    /// a rejected (`m=` port 0) stream without a `c=`.
    ///
    /// Refused with an [`SdpError`] naming the line: a body over the limits, a
    /// first line other than `v=0`, a line that is not `<type>=<value>`, a
    /// missing, repeated or malformed `o=`, a malformed `c=`, `m=`, `a=rtcp`,
    /// `a=rtpmap`, `a=candidate` or other ICE attribute, a second
    /// session-level `c=`, an `o=` after the first `m=`, a media section with
    /// a port but no `c=`, and non-UTF-8 bytes in any of those lines.
    pub fn parse(body: impl Into<Bytes>, limits: &SdpLimits) -> Result<Sdp, SdpError> {
        let body = body.into();
        if body.is_empty() {
            return Err(SdpError::Empty);
        }
        if body.len() > limits.max_body_bytes {
            return Err(SdpError::TooLarge {
                len_bytes: body.len(),
                max_bytes: limits.max_body_bytes,
            });
        }
        let raw_lines = lines::split(&body, limits)?;
        let mut parser = Parser::new(&body, limits, raw_lines.len());
        for (index, raw) in raw_lines.into_iter().enumerate() {
            parser.line(index, raw)?;
        }
        let (lines, session, media) = parser.finish()?;
        Ok(Sdp {
            body,
            lines,
            session,
            media,
            limits: *limits,
        })
    }
}

/// The session level as far as it has been read.
#[derive(Default)]
struct SessionSoFar {
    origin: Option<At<OriginField>>,
    connection: Option<At<ConnectionField>>,
    direction: Option<super::Direction>,
    ice: IceLevel,
}

struct Parser<'b> {
    body: &'b [u8],
    max_media: usize,
    lines: Vec<Line>,
    session: SessionSoFar,
    /// The sections read so far; the last is the one being read.
    media: Vec<Section>,
}

impl<'b> Parser<'b> {
    fn new(body: &'b [u8], limits: &SdpLimits, line_count: usize) -> Self {
        Parser {
            body,
            max_media: limits.max_media,
            lines: Vec::with_capacity(line_count),
            session: SessionSoFar::default(),
            media: Vec::new(),
        }
    }

    /// Reads the line at `index` (from 0).
    fn line(&mut self, index: usize, raw: RawLine) -> Result<(), SdpError> {
        let number = index + 1;
        let malformed = |what| SdpError::Malformed { line: number, what };
        let content = raw.content.of(self.body);
        let mut kind = lines::classify(content).map_err(malformed)?;
        if index == 0 && kind != LineKind::Version {
            return Err(malformed("SDP does not start with v="));
        }
        if self.media.is_empty() {
            kind = session_level_kind(kind);
        }
        if kind.is_read() && std::str::from_utf8(content).is_err() {
            return Err(SdpError::NotUtf8 { line: number });
        }
        if kind == LineKind::Media {
            self.media_line(index, raw.value())?;
        } else {
            self.read(index, kind, raw.value()).map_err(malformed)?;
        }
        self.lines.push(Line { raw, kind });
        Ok(())
    }

    /// Reads a line other than `m=`; `value` is what follows `<type>=`.
    fn read(&mut self, index: usize, kind: LineKind, value: Span) -> Result<(), FieldError> {
        match kind {
            LineKind::Version => self.version(index, value),
            LineKind::Origin => self.origin(index, value),
            LineKind::Connection => self.connection(index, value),
            LineKind::Attribute(attribute) => self.attribute(attribute, index, value),
            LineKind::Media | LineKind::Blank | LineKind::Other => Ok(()),
        }
    }

    fn version(&self, index: usize, value: Span) -> Result<(), FieldError> {
        if index != 0 {
            return Err("second v= line");
        }
        if value.of(self.body) != b"0" {
            return Err("v= is not 0");
        }
        Ok(())
    }

    fn origin(&mut self, index: usize, value: Span) -> Result<(), FieldError> {
        if !self.media.is_empty() {
            return Err("o= inside a media section");
        }
        if self.session.origin.is_some() {
            return Err("second o= line");
        }
        let field = fields::origin(self.body, value)?;
        self.session.origin = Some(At { line: index, field });
        Ok(())
    }

    fn connection(&mut self, index: usize, value: Span) -> Result<(), FieldError> {
        let field = At {
            line: index,
            field: fields::connection(self.body, value)?,
        };
        match self.media.last_mut() {
            // Further c= lines of a section (layered multicast) are kept but
            // not used: the first says where to send.
            Some(section) => {
                section.connection.get_or_insert(field);
            }
            None if self.session.connection.is_some() => {
                return Err("second session-level c= line")
            }
            None => self.session.connection = Some(field),
        }
        Ok(())
    }

    /// Starts a media section at the `m=` line at `index`.
    fn media_line(&mut self, index: usize, value: Span) -> Result<(), SdpError> {
        let number = index + 1;
        if self.media.len() >= self.max_media {
            return Err(SdpError::TooManyMedia {
                line: number,
                max: self.max_media,
            });
        }
        let field = fields::media(self.body, value)
            .map_err(|what| SdpError::Malformed { line: number, what })?;
        if let Some(previous) = self.media.last_mut() {
            previous.end_line = index;
        }
        self.media.push(Section {
            media: At { line: index, field },
            end_line: index + 1,
            connection: None,
            rtcp: None,
            rtcp_mux: false,
            direction: None,
            ice: IceLevel::default(),
        });
        Ok(())
    }

    fn attribute(
        &mut self,
        attribute: Attribute,
        index: usize,
        value: Span,
    ) -> Result<(), FieldError> {
        let body = self.body;
        let (ice, direction) = match self.media.last_mut() {
            Some(section) => (&mut section.ice, &mut section.direction),
            None => (&mut self.session.ice, &mut self.session.direction),
        };
        match attribute {
            Attribute::Direction(d) => {
                direction.get_or_insert(d);
            }
            Attribute::Ice(kind) => ice_attribute(body, ice, kind, value)?,
            Attribute::Rtpmap => {
                fields::rtpmap(body, value)?;
            }
            Attribute::Rtcp => {
                let field = fields::rtcp(body, value)?;
                if let Some(section) = self.media.last_mut() {
                    section.rtcp.get_or_insert(At { line: index, field });
                }
            }
            Attribute::RtcpMux => {
                if let Some(section) = self.media.last_mut() {
                    section.rtcp_mux = true;
                }
            }
        }
        Ok(())
    }

    /// Closes the last section and checks what only the whole body shows.
    fn finish(mut self) -> Result<(Vec<Line>, SessionLevel, Vec<Section>), SdpError> {
        let origin = self.session.origin.ok_or(SdpError::MissingOrigin)?;
        let line_count = self.lines.len();
        if let Some(last) = self.media.last_mut() {
            last.end_line = line_count;
        }
        let has_session_connection = self.session.connection.is_some();
        for section in &self.media {
            if section.media.field.port != 0
                && section.connection.is_none()
                && !has_session_connection
            {
                return Err(SdpError::MissingConnection {
                    line: section.first_line() + 1,
                });
            }
        }
        let session = SessionLevel {
            origin,
            connection: self.session.connection,
            direction: self.session.direction,
            ice: self.session.ice,
            end_line: self.media.first().map_or(line_count, Section::first_line),
        };
        Ok((self.lines, session, self.media))
    }
}

/// `a=rtcp`, `a=rtcp-mux` and `a=rtpmap` mean nothing at session level
/// (RFC 3605, RFC 5761, RFC 4566 define them per media), so there they are
/// copied like any unknown attribute.
fn session_level_kind(kind: LineKind) -> LineKind {
    match kind {
        LineKind::Attribute(Attribute::Rtcp | Attribute::RtcpMux | Attribute::Rtpmap) => {
            LineKind::Other
        }
        other => other,
    }
}

/// Reads an ICE attribute into `ice`; the first of each kind counts.
fn ice_attribute(
    body: &[u8],
    ice: &mut IceLevel,
    kind: Ice,
    value: Span,
) -> Result<(), FieldError> {
    match kind {
        Ice::Ufrag => {
            let ufrag = fields::tokens_value(body, value, "a=ice-ufrag is empty")?;
            ice.ufrag.get_or_insert(ufrag);
        }
        Ice::Pwd => {
            let pwd = fields::tokens_value(body, value, "a=ice-pwd is empty")?;
            ice.pwd.get_or_insert(pwd);
        }
        Ice::Options => {
            let options = fields::tokens_value(body, value, "a=ice-options is empty")?;
            ice.options.get_or_insert(options);
        }
        Ice::RemoteCandidates => {
            let remote = fields::tokens_value(body, value, "a=remote-candidates is empty")?;
            ice.remote_candidates.get_or_insert(remote);
        }
        Ice::Candidate => {
            fields::candidate(body, value)?;
        }
        Ice::EndOfCandidates => ice.end_of_candidates = true,
        Ice::Lite => ice.lite = true,
        Ice::Mismatch | Ice::Pacing => {}
    }
    Ok(())
}
