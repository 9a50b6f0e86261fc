//! Splits an SDP body into lines and names each line's kind. Nothing is
//! copied: a line is a pair of ranges into the received body, so a rewrite can
//! copy an untouched line, ending included, byte for byte.

use super::description::Direction;
use super::error::SdpError;
use super::limits::SdpLimits;

/// How a line ended in the received body. A rewrite keeps each line's ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnding {
    /// `\r\n`, what RFC 4566 section 5 prescribes.
    CrLf,
    /// A bare `\n`, which RFC 4566 section 5 tells parsers to accept and which
    /// some SIP user agents send.
    Lf,
    /// A CR with no LF after it, ending the body: a CRLF cut short. Kept
    /// apart from the content so that the line reads the same whether or not
    /// a rewrite completes the CRLF.
    Cr,
    /// No ending: the last line of a body that does not end with a newline.
    None,
}

impl LineEnding {
    /// The ending's bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
            LineEnding::Cr => b"\r",
            LineEnding::None => b"",
        }
    }
}

/// A byte range of the body, `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        debug_assert!(start <= end, "span {start}..{end} is reversed");
        Span { start, end }
    }

    /// The span's bytes of `body`; empty if the span does not lie in `body`,
    /// which cannot happen for spans the parser made from that body.
    pub(crate) fn of(self, body: &[u8]) -> &[u8] {
        body.get(self.start..self.end).unwrap_or_default()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// One line as received: its content (without the ending) and its ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawLine {
    pub(crate) content: Span,
    pub(crate) ending: LineEnding,
}

impl RawLine {
    /// The line's bytes including its ending.
    pub(crate) fn whole(self) -> Span {
        Span::new(
            self.content.start,
            self.content.end + self.ending.as_bytes().len(),
        )
    }

    /// The bytes after `<type>=`; empty for a line shorter than that.
    pub(crate) fn value(self) -> Span {
        let start = (self.content.start + 2).min(self.content.end);
        Span::new(start, self.content.end)
    }
}

/// Splits `body` into lines, enforcing the line count and line length limits.
/// A trailing newline ends the last line rather than starting an empty one.
pub(crate) fn split(body: &[u8], limits: &SdpLimits) -> Result<Vec<RawLine>, SdpError> {
    // Most bodies are a few dozen lines; the limit bounds the growth.
    let mut lines = Vec::with_capacity(limits.max_lines.min(64));
    let mut start = 0;
    // Each pass consumes at least one byte, and the line limit caps the passes.
    while start < body.len() {
        let number = lines.len() + 1;
        if number > limits.max_lines {
            return Err(SdpError::TooManyLines {
                line: number,
                max: limits.max_lines,
            });
        }
        let line = next_line(body, start);
        if line.content.end - line.content.start > limits.max_line_bytes {
            return Err(SdpError::LineTooLong {
                line: number,
                max_bytes: limits.max_line_bytes,
            });
        }
        start = line.whole().end;
        lines.push(line);
    }
    Ok(lines)
}

/// The line starting at `start`, which is inside `body`.
fn next_line(body: &[u8], start: usize) -> RawLine {
    match memchr::memchr(b'\n', &body[start..]) {
        Some(offset) => {
            let newline = start + offset;
            if newline > start && body[newline - 1] == b'\r' {
                RawLine {
                    content: Span::new(start, newline - 1),
                    ending: LineEnding::CrLf,
                }
            } else {
                RawLine {
                    content: Span::new(start, newline),
                    ending: LineEnding::Lf,
                }
            }
        }
        None if body.len() > start && body[body.len() - 1] == b'\r' => RawLine {
            content: Span::new(start, body.len() - 1),
            ending: LineEnding::Cr,
        },
        None => RawLine {
            content: Span::new(start, body.len()),
            ending: LineEnding::None,
        },
    }
}

/// What a line is, as far as the relay cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// An empty line. RFC 4566 has none, but a stray empty line at the end of
    /// a SIP body is common and harmless, so it is kept rather than refused.
    Blank,
    /// `v=`
    Version,
    /// `o=`
    Origin,
    /// `c=`
    Connection,
    /// `m=`
    Media,
    /// `a=` with a name the relay interprets.
    Attribute(Attribute),
    /// Any other line: copied, never read.
    Other,
}

impl LineKind {
    /// Whether the relay reads the line's content (so it must be UTF-8).
    pub(crate) fn is_read(self) -> bool {
        !matches!(self, LineKind::Blank | LineKind::Other)
    }
}

/// The attributes the relay interprets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attribute {
    /// `a=rtcp` (RFC 3605).
    Rtcp,
    /// `a=rtcp-mux` (RFC 5761).
    RtcpMux,
    /// `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
    Direction(Direction),
    /// An ICE attribute (RFC 8839): removed when the relay removes ICE.
    Ice(Ice),
    /// `a=rtpmap`.
    Rtpmap,
}

/// The ICE attributes of RFC 8839 (and RFC 8840's end-of-candidates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ice {
    Ufrag,
    Pwd,
    Candidate,
    Options,
    EndOfCandidates,
    Lite,
    RemoteCandidates,
    Mismatch,
    Pacing,
}

/// Attribute names the relay interprets. Names are case-sensitive (RFC 4566
/// section 5.13 leaves them so, and every implementation sends lower case).
const ATTRIBUTES: [(&[u8], Attribute); 16] = [
    (b"rtcp", Attribute::Rtcp),
    (b"rtcp-mux", Attribute::RtcpMux),
    (b"sendrecv", Attribute::Direction(Direction::SendRecv)),
    (b"sendonly", Attribute::Direction(Direction::SendOnly)),
    (b"recvonly", Attribute::Direction(Direction::RecvOnly)),
    (b"inactive", Attribute::Direction(Direction::Inactive)),
    (b"rtpmap", Attribute::Rtpmap),
    (b"ice-ufrag", Attribute::Ice(Ice::Ufrag)),
    (b"ice-pwd", Attribute::Ice(Ice::Pwd)),
    (b"candidate", Attribute::Ice(Ice::Candidate)),
    (b"ice-options", Attribute::Ice(Ice::Options)),
    (b"end-of-candidates", Attribute::Ice(Ice::EndOfCandidates)),
    (b"ice-lite", Attribute::Ice(Ice::Lite)),
    (b"remote-candidates", Attribute::Ice(Ice::RemoteCandidates)),
    (b"ice-mismatch", Attribute::Ice(Ice::Mismatch)),
    (b"ice-pacing", Attribute::Ice(Ice::Pacing)),
];

/// Names a line by its type letter and, for `a=`, its attribute name.
/// `Err` says why the line is not `<type>=<value>`.
pub(crate) fn classify(content: &[u8]) -> Result<LineKind, &'static str> {
    let [letter, rest @ ..] = content else {
        return Ok(LineKind::Blank);
    };
    if rest.first() != Some(&b'=') {
        return Err("line is not <type>=<value>");
    }
    if !letter.is_ascii_alphabetic() {
        return Err("line type is not a letter");
    }
    Ok(match letter {
        b'v' => LineKind::Version,
        b'o' => LineKind::Origin,
        b'c' => LineKind::Connection,
        b'm' => LineKind::Media,
        b'a' => attribute(&rest[1..]).map_or(LineKind::Other, LineKind::Attribute),
        _ => LineKind::Other,
    })
}

/// The interpreted attribute `value` (what follows `a=`) names, if any.
fn attribute(value: &[u8]) -> Option<Attribute> {
    let name_end = memchr::memchr(b':', value).unwrap_or(value.len());
    let name = &value[..name_end];
    ATTRIBUTES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, attribute)| attribute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(body: &[u8]) -> Vec<(&[u8], LineEnding)> {
        split(body, &SdpLimits::default())
            .unwrap()
            .into_iter()
            .map(|line| (line.content.of(body), line.ending))
            .collect()
    }

    #[test]
    fn endings_are_kept_per_line() {
        let body = b"v=0\r\no=x\ns=\r\r\nt=0 0";
        assert_eq!(
            contents(body),
            [
                (&b"v=0"[..], LineEnding::CrLf),
                (b"o=x", LineEnding::Lf),
                (b"s=\r", LineEnding::CrLf),
                (b"t=0 0", LineEnding::None),
            ]
        );
        assert_eq!(
            contents(b"v=0\r\na=x\r"),
            [(&b"v=0"[..], LineEnding::CrLf), (b"a=x", LineEnding::Cr)]
        );
    }

    #[test]
    fn trailing_newline_does_not_add_a_line() {
        assert_eq!(contents(b"v=0\n").len(), 1);
        assert_eq!(
            contents(b"v=0\n\n"),
            [(&b"v=0"[..], LineEnding::Lf), (b"", LineEnding::Lf)]
        );
    }

    #[test]
    fn limits_name_the_line() {
        let limits = SdpLimits {
            max_lines: 2,
            max_line_bytes: 4,
            ..SdpLimits::default()
        };
        assert_eq!(
            split(b"v=0\na=1\na=2\n", &limits),
            Err(SdpError::TooManyLines { line: 3, max: 2 })
        );
        assert_eq!(
            split(
                b"v=0\na=12\r\ns=123",
                &SdpLimits {
                    max_lines: 3,
                    ..limits
                }
            ),
            Err(SdpError::LineTooLong {
                line: 3,
                max_bytes: 4
            })
        );
    }

    #[test]
    fn classification() {
        assert_eq!(classify(b""), Ok(LineKind::Blank));
        assert_eq!(classify(b"v=0"), Ok(LineKind::Version));
        assert_eq!(
            classify(b"a=rtcp:9"),
            Ok(LineKind::Attribute(Attribute::Rtcp))
        );
        assert_eq!(
            classify(b"a=rtcp-mux"),
            Ok(LineKind::Attribute(Attribute::RtcpMux))
        );
        assert_eq!(classify(b"a=rtcp-fb:* nack"), Ok(LineKind::Other));
        assert_eq!(
            classify(b"a=ice-pacing:50"),
            Ok(LineKind::Attribute(Attribute::Ice(Ice::Pacing)))
        );
        assert_eq!(classify(b"x=unknown"), Ok(LineKind::Other));
        assert!(classify(b"v").is_err());
        assert!(classify(b"hello").is_err());
        assert!(classify(b"1=0").is_err());
    }
}
