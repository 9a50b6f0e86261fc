//! Why an SDP body was refused or could not be rewritten, in words the relay
//! can put into an ng `error-reason`.

/// A malformed or over-limit SDP body. Line numbers count from 1, as an editor
/// shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body holds no bytes at all.
    #[error("empty SDP")]
    Empty,
    /// The body is larger than [`SdpLimits::max_body_bytes`](super::SdpLimits).
    #[error("SDP of {len_bytes} bytes exceeds the limit of {max_bytes}")]
    TooLarge {
        /// Size of the body.
        len_bytes: usize,
        /// Configured maximum.
        max_bytes: usize,
    },
    /// More lines than [`SdpLimits::max_lines`](super::SdpLimits).
    #[error("SDP line {line}: more than {max} lines")]
    TooManyLines {
        /// The first line over the limit.
        line: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A line longer than [`SdpLimits::max_line_bytes`](super::SdpLimits).
    #[error("SDP line {line}: longer than {max_bytes} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// Configured maximum.
        max_bytes: usize,
    },
    /// More `m=` lines than [`SdpLimits::max_media`](super::SdpLimits).
    #[error("SDP line {line}: more than {max} media sections")]
    TooManyMedia {
        /// The first `m=` line over the limit.
        line: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A line the relay reads (`v=`, `o=`, `c=`, `m=`, or an attribute it
    /// interprets) is not UTF-8. Lines it only copies may hold any bytes.
    #[error("SDP line {line}: not UTF-8")]
    NotUtf8 {
        /// The line.
        line: usize,
    },
    /// A line does not follow its grammar.
    #[error("SDP line {line}: {what}")]
    Malformed {
        /// The line.
        line: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The session description has no `o=` line.
    #[error("SDP has no o= line")]
    MissingOrigin,
    /// A media section with a non-zero port has no `c=` line, neither its own
    /// nor at session level (RFC 4566 section 5.7), so there is nowhere to
    /// send its media.
    #[error("SDP line {line}: no c= line for this m= line")]
    MissingConnection {
        /// The `m=` line.
        line: usize,
    },
}

impl SdpError {
    /// The line the error is about, if it is about one line.
    pub fn line(&self) -> Option<usize> {
        match *self {
            SdpError::Empty | SdpError::TooLarge { .. } | SdpError::MissingOrigin => None,
            SdpError::TooManyLines { line, .. }
            | SdpError::LineTooLong { line, .. }
            | SdpError::TooManyMedia { line, .. }
            | SdpError::NotUtf8 { line }
            | SdpError::Malformed { line, .. }
            | SdpError::MissingConnection { line } => Some(line),
        }
    }
}

/// Why [`Sdp::rewrite`](super::Sdp::rewrite) refused: the caller's plan does
/// not fit the body, or the result would break the limits the body was parsed
/// with (so that the output always parses again under them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The caller gave a different number of relay endpoints than there are
    /// media sections.
    #[error("{got} relay endpoints for {expected} media sections")]
    EndpointCount {
        /// Media sections in the body.
        expected: usize,
        /// Endpoints given.
        got: usize,
    },
    /// A media section needs a separate RTCP port, but its RTP port is 65535.
    #[error("media section {index}: RTP port {rtp_port} leaves no port for RTCP")]
    NoRtcpPort {
        /// Index of the media section, from 0.
        index: usize,
        /// The RTP port given.
        rtp_port: u16,
    },
    /// The result would be larger than the body limit.
    #[error("rewritten SDP would exceed {max_bytes} bytes")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// The result would have more lines than the line limit.
    #[error("rewritten SDP would exceed {max} lines")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
    /// A rewritten line would be longer than the line limit.
    #[error("rewritten SDP line would exceed {max_bytes} bytes")]
    LineTooLong {
        /// The limit.
        max_bytes: usize,
    },
}
