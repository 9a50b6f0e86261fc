//! The SIP message codec (RFC 3261 section 7, 20 and 25): sans-IO, zero-copy.
//!
//! [`Message::parse_datagram`] and [`Message::parse_stream`] frame and index a
//! message held in a [`bytes::Bytes`] without copying it: the start line, every
//! header field as ranges into the buffer (in order), and the body. Typed views
//! ([`Via`], [`NameAddr`], [`CSeq`], [`Uri`], ...) are parsed on demand from those
//! ranges and borrow from the buffer. [`Message::validate`] runs every typed parser
//! once, which is the gate a proxy passes a request through before acting on it.
//! [`Editor`] writes the outgoing bytes of a proxied message in one pass.

#![warn(missing_docs)]

mod auth;
mod call_id;
mod editor;
mod error;
mod header;
mod lex;
mod limits;
mod message;
mod name_addr;
mod params;
mod start_line;
mod uri;
mod via;

pub use auth::AuthParams;
pub use call_id::{owner_shard, peek_call_id};
pub use editor::{EditError, Editor};
pub use error::ParseError;
pub use header::{Header, HeaderKind};
pub use limits::ParseLimits;
pub use message::{CSeq, ContentType, Message};
pub use name_addr::{Contact, NameAddr};
pub use params::{Param, Params};
pub use start_line::{Method, StartLine};
pub use uri::{Host, Scheme, Uri};
pub use via::Via;
