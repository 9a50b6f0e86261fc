//! The frame of an ng datagram: `COOKIE SP DICT`, and the same cookie in
//! front of the reply.
//!
//! The cookie is how a client matches a reply to its request, and how we
//! recognise a retransmission (see [`super::cache`]). A datagram without
//! one cannot be answered in a way the client would recognise, so it gets
//! no reply at all, as with rtpengine.

use bytes::Bytes;
use thiserror::Error;

/// The cookie that starts a request and its reply: 1 to
/// [`Cookie::MAX_BYTES`] visible ASCII bytes (`0x21..=0x7e`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cookie(Bytes);

impl Cookie {
    /// The longest cookie we answer. Kamailio's are about 20 bytes
    /// (`<pid>_<counter>_<random>`); the bound keeps the reply cache's
    /// memory per entry small.
    pub const MAX_BYTES: usize = 64;

    /// A cookie from its bytes, or why they cannot be one.
    pub fn new(bytes: Bytes) -> Result<Self, NoReply> {
        if bytes.is_empty() {
            return Err(NoReply::EmptyCookie);
        }
        if bytes.len() > Self::MAX_BYTES {
            return Err(NoReply::CookieTooLong {
                len: bytes.len(),
                max: Self::MAX_BYTES,
            });
        }
        if let Some(offset) = bytes.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(NoReply::CookieNotPrintable { offset });
        }
        Ok(Cookie(bytes))
    }

    /// The cookie's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A copy in its own small buffer: a cookie cut from a datagram keeps
    /// the whole datagram alive, which a long-lived holder should not.
    pub fn detached(&self) -> Cookie {
        Cookie(Bytes::copy_from_slice(&self.0))
    }
}

/// Why a datagram gets no reply at all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NoReply {
    /// No space in the datagram, so no cookie to answer with.
    #[error("no space after a cookie")]
    NoSpace,
    /// The datagram starts with the space.
    #[error("empty cookie")]
    EmptyCookie,
    /// A cookie longer than [`Cookie::MAX_BYTES`]: answering it would mean
    /// either caching it (unbounded memory) or not caching it (a
    /// retransmitted offer would then run twice), so it is dropped.
    #[error("cookie of {len} bytes is over the limit of {max}")]
    CookieTooLong {
        /// The cookie's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A control byte or non-ASCII byte in the cookie.
    #[error("cookie byte {offset} is not visible ASCII")]
    CookieNotPrintable {
        /// Where the byte is.
        offset: usize,
    },
}

/// Splits a datagram at its first space into the cookie and the rest (the
/// dictionary, possibly empty). Zero-copy: both are slices of `datagram`.
pub fn split_datagram(datagram: &Bytes) -> Result<(Cookie, Bytes), NoReply> {
    let space = memchr::memchr(b' ', datagram).ok_or(NoReply::NoSpace)?;
    let cookie = Cookie::new(datagram.slice(..space))?;
    Ok((cookie, datagram.slice(space + 1..)))
}

/// `COOKIE SP body`: the datagram to send for a reply body.
pub fn frame_reply(cookie: &Cookie, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(cookie.0.len() + 1 + body.len());
    out.extend_from_slice(&cookie.0);
    out.push(b' ');
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &'static [u8]) -> Result<(Cookie, Bytes), NoReply> {
        split_datagram(&Bytes::from_static(s))
    }

    #[test]
    fn cookie_and_dictionary_split_at_the_first_space() {
        let (cookie, body) = split(b"1_27_17 d3:sdp3:a ce").expect("framed");
        assert_eq!(cookie.as_bytes(), b"1_27_17");
        assert_eq!(body, &b"d3:sdp3:a ce"[..]);
    }

    #[test]
    fn an_empty_body_still_has_a_cookie() {
        let (cookie, body) = split(b"abc ").expect("framed");
        assert_eq!(cookie.as_bytes(), b"abc");
        assert!(body.is_empty());
    }

    #[test]
    fn no_cookie_means_no_reply() {
        assert_eq!(split(b"d7:command4:pinge"), Err(NoReply::NoSpace));
        assert_eq!(split(b""), Err(NoReply::NoSpace));
        assert_eq!(split(b" d7:command4:pinge"), Err(NoReply::EmptyCookie));
        assert_eq!(
            split(b"a\x01b d7:command4:pinge"),
            Err(NoReply::CookieNotPrintable { offset: 1 })
        );
        let long = Bytes::from([vec![b'x'; 65], b" de".to_vec()].concat());
        assert_eq!(
            split_datagram(&long),
            Err(NoReply::CookieTooLong { len: 65, max: 64 })
        );
        let longest = Bytes::from([vec![b'x'; 64], b" de".to_vec()].concat());
        assert!(split_datagram(&longest).is_ok());
    }

    #[test]
    fn replies_carry_the_cookie() {
        let (cookie, _) = split(b"1_27_17 de").expect("framed");
        assert_eq!(
            frame_reply(&cookie, b"d6:result4:ponge"),
            &b"1_27_17 d6:result4:ponge"[..]
        );
    }
}
