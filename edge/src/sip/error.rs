//! Why a message was rejected, in terms a 400 reason phrase can carry.

use super::header::HeaderKind;

/// A malformed or over-limit message. Each value says what is wrong; its
/// [`Display`](std::fmt::Display) is short enough to be a SIP reason phrase, and
/// [`ParseError::status_code`] is the response a server sends for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace was received.
    #[error("Empty Message")]
    Empty,
    /// The message is larger than [`ParseLimits::max_message_bytes`](super::ParseLimits).
    #[error("Message Too Large")]
    TooLarge {
        /// Configured maximum, in bytes.
        max_bytes: usize,
    },
    /// More header fields than [`ParseLimits::max_headers`](super::ParseLimits).
    #[error("Too Many Headers")]
    TooManyHeaders {
        /// Configured maximum.
        max: usize,
    },
    /// More Via values than [`ParseLimits::max_via_values`](super::ParseLimits).
    #[error("Too Many Via Values")]
    TooManyVias {
        /// Configured maximum.
        max: usize,
    },
    /// The start line is not a Request-Line or Status-Line.
    #[error("Bad Start Line: {0}")]
    BadStartLine(&'static str),
    /// The Request-URI is malformed.
    #[error("Bad Request-URI: {0}")]
    BadRequestUri(&'static str),
    /// The SIP version is not SIP/2.0 (a server answers 505).
    #[error("Version Not Supported")]
    UnsupportedVersion,
    /// A header line is not `name: value`, or a continuation has nothing to continue.
    #[error("Bad Header Line")]
    BadHeaderLine,
    /// The header section does not end with an empty line.
    #[error("Unterminated Header Section")]
    Unterminated,
    /// A stream holds only part of a message; read more and parse again.
    #[error("Incomplete Message")]
    Incomplete,
    /// A header every message must carry is missing.
    #[error("Missing {0} Header")]
    MissingHeader(HeaderKind),
    /// A header that may appear once appears more than once.
    #[error("Duplicate {0} Header")]
    DuplicateHeader(HeaderKind),
    /// A header's value does not follow its grammar.
    #[error("Bad {kind} Header: {what}")]
    BadHeader {
        /// Which header.
        kind: HeaderKind,
        /// What is wrong with it.
        what: &'static str,
    },
    /// Content-Length is not a non-negative decimal number in range.
    #[error("Bad Content-Length")]
    BadContentLength,
    /// Fewer body bytes arrived than Content-Length says (RFC 3261 18.3).
    #[error("Body Shorter Than Content-Length")]
    BodyTooShort {
        /// Content-Length value.
        declared: usize,
        /// Bytes present after the header section.
        present: usize,
    },
    /// The CSeq method differs from the request method.
    #[error("CSeq Method Does Not Match Request Method")]
    CSeqMethodMismatch,
}

impl ParseError {
    /// The status code a server answers a malformed request with (RFC 3261
    /// 21.4: 400 by default, 505 for the version, 513 for an oversized message).
    /// A malformed response is dropped, not answered.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }
}
