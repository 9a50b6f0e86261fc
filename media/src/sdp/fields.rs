//! The grammars of the fields the relay reads (RFC 4566 section 5, RFC 3605,
//! RFC 8839), over byte ranges of the body. Each function takes the span after
//! `<type>=` and returns the field's parts as spans, or why it is malformed.
//!
//! Fields are separated by one space in RFC 4566; runs of spaces and tabs are
//! tolerated because some user agents send them and nothing is ambiguous.

use super::lines::Span;

/// Why a field is malformed, shown after the line number.
pub(crate) type FieldError = &'static str;

/// The space-separated tokens of a span.
pub(crate) struct Tokens<'b> {
    body: &'b [u8],
    pos: usize,
    end: usize,
}

/// The tokens of `span`, which lies in `body`.
pub(crate) fn tokens(body: &[u8], span: Span) -> Tokens<'_> {
    Tokens {
        body,
        pos: span.start,
        end: span.end.min(body.len()),
    }
}

fn is_space(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

impl Tokens<'_> {
    /// The next token, or `Err(missing)` when there is none.
    fn expect_token(&mut self, missing: FieldError) -> Result<Span, FieldError> {
        self.next().ok_or(missing)
    }

    /// The span from the next token to the end of the last one, if any token
    /// is left.
    fn rest(&mut self) -> Option<Span> {
        let first = self.next()?;
        let last_end = self.by_ref().last().map_or(first.end, |last| last.end);
        Some(Span::new(first.start, last_end))
    }
}

impl Iterator for Tokens<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.pos < self.end && is_space(self.body[self.pos]) {
            self.pos += 1;
        }
        if self.pos == self.end {
            return None;
        }
        let start = self.pos;
        while self.pos < self.end && !is_space(self.body[self.pos]) {
            self.pos += 1;
        }
        Some(Span::new(start, self.pos))
    }
}

/// Whether `text` is a non-empty run of ASCII digits.
pub(crate) fn is_decimal(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(u8::is_ascii_digit)
}

/// `text` as a decimal number of at most `max_digits` digits.
fn decimal(text: &[u8], max_digits: usize) -> Option<u64> {
    if text.len() > max_digits || !is_decimal(text) {
        return None;
    }
    // At most 19 digits are asked for, so this cannot overflow a u64.
    Some(
        text.iter()
            .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')),
    )
}

fn parse_u16(text: &[u8]) -> Option<u16> {
    decimal(text, 5).and_then(|value| u16::try_from(value).ok())
}

fn parse_u32(text: &[u8]) -> Option<u32> {
    decimal(text, 10).and_then(|value| u32::try_from(value).ok())
}

/// Splits `span` at the first `separator`: the part before it and, if the
/// separator occurs, the part after it.
fn split_at_byte(body: &[u8], span: Span, separator: u8) -> (Span, Option<Span>) {
    match memchr::memchr(separator, span.of(body)) {
        Some(offset) => {
            let at = span.start + offset;
            (Span::new(span.start, at), Some(Span::new(at + 1, span.end)))
        }
        None => (span, None),
    }
}

/// The value of an attribute: what follows the `:` in `<name>:<value>`, or
/// `None` for a flag attribute without one.
pub(crate) fn attribute_value(body: &[u8], after_type: Span) -> Option<Span> {
    split_at_byte(body, after_type, b':').1
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OriginField {
    pub(crate) username: Span,
    pub(crate) session_id: Span,
    pub(crate) session_version: Span,
    pub(crate) net_type: Span,
    pub(crate) addr_type: Span,
    pub(crate) address: Span,
}

pub(crate) fn origin(body: &[u8], value: Span) -> Result<OriginField, FieldError> {
    const SHORT: FieldError = "o= needs 6 fields";
    let mut t = tokens(body, value);
    let field = OriginField {
        username: t.expect_token(SHORT)?,
        session_id: t.expect_token(SHORT)?,
        session_version: t.expect_token(SHORT)?,
        net_type: t.expect_token(SHORT)?,
        addr_type: t.expect_token(SHORT)?,
        address: t.expect_token(SHORT)?,
    };
    if t.next().is_some() {
        return Err("o= has more than 6 fields");
    }
    // The relay may increment the version, so it must be a number.
    if !is_decimal(field.session_version.of(body)) {
        return Err("o= sess-version is not a number");
    }
    Ok(field)
}

/// `c=<nettype> <addrtype> <connection-address>`; a multicast address's
/// `/ttl` and `/count` suffixes are left out of `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionField {
    pub(crate) net_type: Span,
    pub(crate) addr_type: Span,
    pub(crate) address: Span,
}

pub(crate) fn connection(body: &[u8], value: Span) -> Result<ConnectionField, FieldError> {
    const SHORT: FieldError = "c= needs nettype, addrtype and address";
    let mut t = tokens(body, value);
    let net_type = t.expect_token(SHORT)?;
    let addr_type = t.expect_token(SHORT)?;
    let address = t.expect_token(SHORT)?;
    if t.next().is_some() {
        return Err("c= has more than 3 fields");
    }
    let (address, _suffix) = split_at_byte(body, address, b'/');
    if address.is_empty() {
        return Err("c= address is empty");
    }
    Ok(ConnectionField {
        net_type,
        addr_type,
        address,
    })
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MediaField {
    pub(crate) media_type: Span,
    /// The port and its `/count` suffix: what a rewrite replaces.
    pub(crate) port_span: Span,
    pub(crate) port: u16,
    pub(crate) port_count: Option<u16>,
    pub(crate) proto: Span,
    /// From the first format to the end of the last; empty if there is none.
    pub(crate) formats: Span,
}

pub(crate) fn media(body: &[u8], value: Span) -> Result<MediaField, FieldError> {
    const SHORT: FieldError = "m= needs media, port and proto";
    let mut t = tokens(body, value);
    let media_type = t.expect_token(SHORT)?;
    let port_span = t.expect_token(SHORT)?;
    let proto = t.expect_token(SHORT)?;
    // RFC 4566 asks for at least one format; a rejected stream is sometimes
    // sent without, and nothing the relay does needs one.
    let formats = t.rest().unwrap_or(Span::new(proto.end, proto.end));
    let (port, count) = split_at_byte(body, port_span, b'/');
    let port = parse_u16(port.of(body)).ok_or("m= port is not a number from 0 to 65535")?;
    let port_count = match count {
        None => None,
        Some(count) => Some(
            parse_u16(count.of(body))
                .filter(|&count| count > 0)
                .ok_or("m= port count is not a number from 1 to 65535")?,
        ),
    };
    Ok(MediaField {
        media_type,
        port_span,
        port,
        port_count,
        proto,
        formats,
    })
}

/// `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]` (RFC 3605).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtcpField {
    pub(crate) port: u16,
    pub(crate) connection: Option<ConnectionField>,
}

pub(crate) fn rtcp(body: &[u8], after_type: Span) -> Result<RtcpField, FieldError> {
    const NO_PORT: FieldError = "a=rtcp port is not a number from 0 to 65535";
    let value = attribute_value(body, after_type).ok_or(NO_PORT)?;
    let mut t = tokens(body, value);
    let port = parse_u16(t.expect_token(NO_PORT)?.of(body)).ok_or(NO_PORT)?;
    let connection = match t.rest() {
        None => None,
        Some(rest) => Some(connection(body, rest).map_err(|_| "a=rtcp address is malformed")?),
    };
    Ok(RtcpField { port, connection })
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtpmapField {
    pub(crate) payload_type: u8,
    pub(crate) encoding: Span,
    pub(crate) clock_rate_hz: u32,
    pub(crate) encoding_params: Option<Span>,
}

pub(crate) fn rtpmap(body: &[u8], after_type: Span) -> Result<RtpmapField, FieldError> {
    const SHORT: FieldError = "a=rtpmap needs payload type and encoding";
    let value = attribute_value(body, after_type).ok_or(SHORT)?;
    let mut t = tokens(body, value);
    let payload_type = t.expect_token(SHORT)?;
    let encoding = t.expect_token(SHORT)?;
    if t.next().is_some() {
        return Err("a=rtpmap has more than 2 fields");
    }
    let payload_type = decimal(payload_type.of(body), 3)
        .and_then(|pt| u8::try_from(pt).ok())
        .filter(|&pt| pt <= 127)
        .ok_or("a=rtpmap payload type is not a number from 0 to 127")?;
    let (name, rate) = split_at_byte(body, encoding, b'/');
    let rate = rate.ok_or("a=rtpmap has no clock rate")?;
    let (rate, encoding_params) = split_at_byte(body, rate, b'/');
    if name.is_empty() {
        return Err("a=rtpmap encoding name is empty");
    }
    let clock_rate_hz = parse_u32(rate.of(body)).ok_or("a=rtpmap clock rate is not a number")?;
    Ok(RtpmapField {
        payload_type,
        encoding: name,
        clock_rate_hz,
        encoding_params,
    })
}

/// `a=candidate:<foundation> <component-id> <transport> <priority>
/// <connection-address> <port> typ <cand-type> [extensions]` (RFC 8839 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CandidateField {
    pub(crate) foundation: Span,
    pub(crate) component_id: u16,
    pub(crate) transport: Span,
    pub(crate) priority: u32,
    pub(crate) address: Span,
    pub(crate) port: u16,
    pub(crate) candidate_type: Span,
    /// `raddr`, `rport` and extension attributes; empty if none.
    pub(crate) extensions: Span,
}

pub(crate) fn candidate(body: &[u8], after_type: Span) -> Result<CandidateField, FieldError> {
    const SHORT: FieldError = "a=candidate needs 8 fields";
    let value = attribute_value(body, after_type).ok_or(SHORT)?;
    let mut t = tokens(body, value);
    let foundation = t.expect_token(SHORT)?;
    let component = t.expect_token(SHORT)?;
    let transport = t.expect_token(SHORT)?;
    let priority = t.expect_token(SHORT)?;
    let address = t.expect_token(SHORT)?;
    let port = t.expect_token(SHORT)?;
    if t.expect_token(SHORT)?.of(body) != b"typ" {
        return Err("a=candidate has no typ");
    }
    let candidate_type = t.expect_token(SHORT)?;
    let extensions = t.rest().unwrap_or(Span::new(value.end, value.end));
    Ok(CandidateField {
        foundation,
        component_id: parse_u16(component.of(body))
            .ok_or("a=candidate component is not a number")?,
        transport,
        priority: parse_u32(priority.of(body)).ok_or("a=candidate priority is not a number")?,
        address,
        port: parse_u16(port.of(body)).ok_or("a=candidate port is not a number")?,
        candidate_type,
        extensions,
    })
}

/// The value of an attribute that carries one or more tokens
/// (`a=ice-ufrag:<ufrag>`, `a=ice-options:<option> ...`), from its first
/// token to the end of its last.
pub(crate) fn tokens_value(
    body: &[u8],
    after_type: Span,
    missing: FieldError,
) -> Result<Span, FieldError> {
    let value = attribute_value(body, after_type).ok_or(missing)?;
    tokens(body, value).rest().ok_or(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Span {
        Span::new(0, body.len())
    }

    fn text(body: &[u8], span: Span) -> &str {
        std::str::from_utf8(span.of(body)).unwrap()
    }

    #[test]
    fn media_line_with_count_and_formats() {
        let body = b"video 49170/2 RTP/AVP 31 32 ";
        let m = media(body, whole(body)).unwrap();
        assert_eq!(text(body, m.media_type), "video");
        assert_eq!((m.port, m.port_count), (49170, Some(2)));
        assert_eq!(text(body, m.port_span), "49170/2");
        assert_eq!(text(body, m.proto), "RTP/AVP");
        assert_eq!(text(body, m.formats), "31 32");
    }

    #[test]
    fn media_port_errors() {
        for body in [
            &b"audio 65536 RTP/AVP 0"[..],
            b"audio -1 RTP/AVP 0",
            b"audio x RTP/AVP 0",
            b"audio 1/0 RTP/AVP 0",
            b"audio 1/ RTP/AVP 0",
        ] {
            assert!(media(body, whole(body)).is_err(), "{body:?}");
        }
        assert_eq!(
            media(b"audio 1", whole(b"audio 1")),
            Err("m= needs media, port and proto")
        );
    }

    #[test]
    fn connection_drops_multicast_suffix() {
        let body = b"IN IP4 224.2.36.42/127/3";
        let c = connection(body, whole(body)).unwrap();
        assert_eq!(text(body, c.address), "224.2.36.42");
        assert!(connection(b"IN IP4", whole(b"IN IP4")).is_err());
        assert!(connection(b"IN IP4 /1", whole(b"IN IP4 /1")).is_err());
    }

    #[test]
    fn rtcp_with_and_without_address() {
        let body = b"rtcp:53020 IN IP6 2001:db8::1";
        let r = rtcp(body, whole(body)).unwrap();
        assert_eq!(r.port, 53020);
        assert_eq!(text(body, r.connection.unwrap().address), "2001:db8::1");
        assert_eq!(rtcp(b"rtcp:9", whole(b"rtcp:9")).unwrap().connection, None);
        assert!(rtcp(b"rtcp", whole(b"rtcp")).is_err());
        assert!(rtcp(b"rtcp:9 IN", whole(b"rtcp:9 IN")).is_err());
    }

    #[test]
    fn rtpmap_fields() {
        let body = b"rtpmap:111 opus/48000/2";
        let r = rtpmap(body, whole(body)).unwrap();
        assert_eq!((r.payload_type, r.clock_rate_hz), (111, 48000));
        assert_eq!(text(body, r.encoding), "opus");
        assert_eq!(text(body, r.encoding_params.unwrap()), "2");
        assert!(rtpmap(b"rtpmap:128 x/8000", whole(b"rtpmap:128 x/8000")).is_err());
        assert!(rtpmap(b"rtpmap:0 PCMU", whole(b"rtpmap:0 PCMU")).is_err());
    }

    #[test]
    fn candidate_fields() {
        let body = b"candidate:1 1 UDP 2130706431 10.0.1.1 8998 typ host raddr 1.2.3.4 rport 9";
        let c = candidate(body, whole(body)).unwrap();
        assert_eq!((c.component_id, c.priority, c.port), (1, 2130706431, 8998));
        assert_eq!(text(body, c.candidate_type), "host");
        assert_eq!(text(body, c.extensions), "raddr 1.2.3.4 rport 9");
        let short = b"candidate:1 1 UDP 1 10.0.1.1 8998 host";
        assert!(candidate(short, whole(short)).is_err());
    }

    #[test]
    fn origin_needs_six_fields_and_numeric_version() {
        let body = b"- 1 2 IN IP4 192.0.2.1";
        assert!(origin(body, whole(body)).is_ok());
        assert!(origin(b"- 1 2 IN IP4", whole(b"- 1 2 IN IP4")).is_err());
        let bad = b"- 1 x IN IP4 192.0.2.1";
        assert_eq!(
            origin(bad, whole(bad)),
            Err("o= sess-version is not a number")
        );
    }
}
