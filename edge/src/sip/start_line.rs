//! Request-Line and Status-Line (RFC 3261 7.1 and 7.2).

use std::ops::Range;

use super::error::ParseError;
use super::lex;
use super::uri::Uri;

/// A SIP method. Methods are case-sensitive (RFC 3261 7.1), so `invite` is an
/// extension method, not INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// INFO (RFC 6086).
    Info,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other method token; read its name from the message.
    Extension,
}

impl Method {
    /// How many methods there are (extensions are one): the length of
    /// tables indexed by [`Method::index`].
    pub const COUNT: usize = 15;

    /// Every method, in [`Method::index`] order.
    pub const ALL: [Method; Method::COUNT] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Publish,
        Method::Info,
        Method::Refer,
        Method::Message,
        Method::Update,
        Method::Extension,
    ];

    /// A dense index below [`Method::COUNT`], for per-method counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method named by `token`, or `Extension`.
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Extension,
        }
    }

    /// The method's name, `None` for an extension.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension => return None,
        })
    }
}

/// The first line of a message, as ranges into the message buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request {
        /// The method.
        method: Method,
        /// Where the method token is.
        method_range: Range<usize>,
        /// Where the Request-URI is.
        uri_range: Range<usize>,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// The status code, 100 to 699.
        code: u16,
        /// Where the reason phrase is (may be empty).
        reason_range: Range<usize>,
    },
}

const SIP_VERSION: &[u8] = b"SIP/2.0";

/// Parses the start line `line`, which sits at `offset` in the message buffer.
/// Strict: single SPs between elements, no trailing whitespace (RFC 4475 3.1.2.9
/// and 3.1.2.10 allow rejecting these, and a proxy must not forward them).
pub(crate) fn parse(line: &[u8], offset: usize) -> Result<StartLine, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(line, offset);
    }
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine("no SP after method"))?;
    let method_token = &line[..sp1];
    if !lex::is_token(method_token) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::BadStartLine("no SIP version"))?;
    let uri = &rest[..sp2];
    check_version(&rest[sp2 + 1..])?;
    check_request_uri(uri)?;
    let uri_start = offset + sp1 + 1;
    Ok(StartLine::Request {
        method: Method::from_token(method_token),
        method_range: offset..offset + sp1,
        uri_range: uri_start..uri_start + uri.len(),
    })
}

fn check_version(version: &[u8]) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case(SIP_VERSION) {
        return Ok(());
    }
    let looks_like_version = version.len() > 4
        && version[..4].eq_ignore_ascii_case(b"SIP/")
        && version[4..]
            .iter()
            .all(|&b| b.is_ascii_digit() || b == b'.');
    if looks_like_version {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::BadStartLine("bad SIP version"))
    }
}

fn check_request_uri(uri: &[u8]) -> Result<(), ParseError> {
    if uri.is_empty() {
        return Err(ParseError::BadStartLine("empty Request-URI"));
    }
    if uri[0] == b'<' {
        return Err(ParseError::BadRequestUri("enclosed in <>"));
    }
    let parsed = Uri::parse(uri).map_err(ParseError::BadRequestUri)?;
    if parsed.headers().is_some() {
        // RFC 3261 19.1.1, table 1: headers are not allowed in a Request-URI.
        return Err(ParseError::BadRequestUri("headers in Request-URI"));
    }
    Ok(())
}

fn parse_status_line(line: &[u8], offset: usize) -> Result<StartLine, ParseError> {
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine("no status code"))?;
    check_version(&line[..sp1])?;
    let rest = &line[sp1 + 1..];
    let code_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if code_end != 3 {
        return Err(ParseError::BadStartLine("status code is not 3 digits"));
    }
    let code = lex::parse_decimal(&rest[..3], 699)
        .filter(|&c| c >= 100)
        .ok_or(ParseError::BadStartLine("status code out of range"))?;
    let reason_start = offset + sp1 + 1 + (3 + 1).min(rest.len());
    Ok(StartLine::Response {
        code: code as u16,
        reason_range: reason_start..offset + line.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_indexes_are_dense_and_match_all() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            let token = m.as_str().unwrap_or("FOO");
            assert_eq!(Method::from_token(token.as_bytes()), *m);
        }
    }

    #[test]
    fn request_line() {
        let l = parse(b"INVITE sip:bob@example.com SIP/2.0", 0).unwrap();
        assert_eq!(
            l,
            StartLine::Request {
                method: Method::Invite,
                method_range: 0..6,
                uri_range: 7..26
            }
        );
    }

    #[test]
    fn strict_separators() {
        assert!(parse(b"INVITE  sip:a@b  SIP/2.0", 0).is_err());
        assert!(parse(b"INVITE sip:a@b SIP/2.0  ", 0).is_err());
        assert!(parse(b"INVITE <sip:a@b> SIP/2.0", 0).is_err());
        assert_eq!(
            parse(b"INVITE sip:a@b SIP/7.0", 0),
            Err(ParseError::UnsupportedVersion)
        );
    }

    #[test]
    fn status_line() {
        let l = parse(b"SIP/2.0 100 ", 10).unwrap();
        assert_eq!(
            l,
            StartLine::Response {
                code: 100,
                reason_range: 22..22
            }
        );
        assert!(parse(b"SIP/2.0 4294967301 Big", 0).is_err());
        assert!(parse(b"SIP/2.0 099 Low", 0).is_err());
        assert!(parse(b"SIP/2.0 700 High", 0).is_err());
    }
}
