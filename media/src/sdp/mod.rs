//! SDP (RFC 4566) parsing and rewriting for the relay.
//!
//! [`Sdp::parse`] keeps the received body as [`Bytes`](bytes::Bytes) and
//! indexes it line by line: every line keeps its bytes and its own line ending
//! (CRLF, or the bare LF some SIP user agents send), and the lines the relay
//! needs get typed views: `v=`, `o=`, the session-level `c=`, and per media
//! section the `m=` line, the media-level `c=`, `a=rtcp` (RFC 3605),
//! `a=rtcp-mux` (RFC 5761), the direction attributes, the ICE attributes
//! (RFC 8839) and `a=rtpmap`. Malformed or over-limit input is an
//! [`SdpError`] naming the line; nothing here panics on peer input.
//!
//! [`Sdp::rewrite`] writes the body the relay answers with, the way rtpengine
//! does: `c=` lines point at the relay, each `m=` port becomes the allocated
//! RTP port, `a=rtcp` advertises the RTCP port (RTP port + 1) unless rtcp-mux
//! is in use, `o=` changes only when asked, ICE attributes go when asked. Every
//! other line is copied byte for byte.
//!
//! ```
//! use media::sdp::{RelayEndpoint, RewriteOptions, Sdp, SdpLimits};
//!
//! let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n\
//!              t=0 0\r\nm=audio 2000 RTP/AVP 0\r\n";
//! let sdp = Sdp::parse(offer, &SdpLimits::default()).unwrap();
//! let remote = sdp.media_at(0).unwrap().remote_endpoint().unwrap();
//! assert_eq!((remote.address, remote.rtp_port), ("198.51.100.1", 2000));
//!
//! let relay = [RelayEndpoint { address: "203.0.113.1".parse().unwrap(), rtp_port: 30000 }];
//! let answer = sdp.rewrite(&relay, &RewriteOptions::default()).unwrap();
//! assert!(answer.ends_with(b"m=audio 30000 RTP/AVP 0\r\na=rtcp:30001\r\n"));
//! ```

mod description;
mod error;
mod fields;
mod limits;
mod lines;
mod parse;
mod rewrite;

pub use description::{
    Candidate, Connection, Direction, Media, Origin, RemoteEndpoint, RtcpAttribute, Rtpmap, Sdp,
};
pub use error::{RewriteError, SdpError};
pub use limits::SdpLimits;
pub use lines::LineEnding;
pub use rewrite::{RelayEndpoint, RewriteOptions, RtcpMux, SdpVersion};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
