//! Bounds on what the SDP parser accepts and the rewriter produces.

/// Upper bounds enforced on every SDP body; over a bound is a typed
/// [`SdpError`](super::SdpError) from the parser or a
/// [`RewriteError`](super::RewriteError) from the rewriter, never an unbounded
/// allocation or loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdpLimits {
    /// Largest body, in bytes. The ng protocol carries the body in one UDP
    /// datagram, so the default is the largest UDP payload.
    pub max_body_bytes: usize,
    /// Most lines in one body.
    pub max_lines: usize,
    /// Longest line, in bytes, not counting its line ending.
    pub max_line_bytes: usize,
    /// Most media sections (`m=` lines) in one body.
    pub max_media: usize,
}

impl SdpLimits {
    /// The largest UDP payload: the ng datagram carrying the SDP cannot be larger.
    pub const MAX_DATAGRAM_BYTES: usize = 65_507;

    /// Defaults: one datagram, 1,024 lines of at most 4 KiB (an `a=fmtp` with
    /// H.264 parameter sets runs to a few hundred bytes), 16 media sections.
    pub const fn new() -> Self {
        SdpLimits {
            max_body_bytes: Self::MAX_DATAGRAM_BYTES,
            max_lines: 1024,
            max_line_bytes: 4096,
            max_media: 16,
        }
    }
}

impl Default for SdpLimits {
    fn default() -> Self {
        Self::new()
    }
}
