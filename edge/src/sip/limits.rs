//! Limits on what the parser accepts from a peer.

/// Upper bounds the parser enforces on every message; over a bound is a typed
/// [`ParseError`](super::ParseError), never a panic or an unbounded allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest message accepted, start line to the end of the body, in bytes.
    pub max_message_bytes: usize,
    /// Most header fields (lines, after unfolding) in one message.
    pub max_headers: usize,
    /// Most Via values in one message, over all Via header fields.
    pub max_via_values: usize,
}

impl ParseLimits {
    /// The largest UDP payload: a datagram cannot be larger.
    pub const MAX_DATAGRAM_BYTES: usize = 65_507;
    /// Default largest message on a stream transport (TCP, TLS): 64 KiB.
    pub const DEFAULT_STREAM_MESSAGE_BYTES: usize = 64 * 1024;

    /// Defaults for a datagram transport: the message is at most one datagram.
    pub const fn datagram() -> Self {
        ParseLimits {
            max_message_bytes: Self::MAX_DATAGRAM_BYTES,
            max_headers: 128,
            max_via_values: 64,
        }
    }

    /// Defaults for a stream transport: at most 64 KiB a message.
    pub const fn stream() -> Self {
        ParseLimits {
            max_message_bytes: Self::DEFAULT_STREAM_MESSAGE_BYTES,
            max_headers: 128,
            max_via_values: 64,
        }
    }
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self::datagram()
    }
}
