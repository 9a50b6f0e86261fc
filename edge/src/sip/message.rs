//! Framing and indexing of a SIP message (RFC 3261 7 and 18.3), and typed access
//! to the header fields a proxy, registrar and balancer read.

use std::ops::Range;

use bytes::Bytes;

use super::auth::AuthParams;
use super::error::ParseError;
use super::header::{Header, HeaderKind};
use super::lex;
use super::limits::ParseLimits;
use super::name_addr::{Contact, NameAddr};
use super::params::Params;
use super::start_line::{self, Method, StartLine};
use super::uri::Uri;
use super::via::Via;

/// Marks a kind that has no header in [`Message`]'s first-index table.
const NONE: u16 = u16::MAX;

/// One header field line (with its continuation lines), as offsets into the buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub kind: HeaderKind,
    pub name: (u32, u32),
    pub value: (u32, u32),
    /// From the first byte of the name to after the line's final LF.
    pub line: (u32, u32),
}

impl Field {
    pub(crate) fn value_range(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }

    pub(crate) fn line_range(&self) -> Range<usize> {
        self.line.0 as usize..self.line.1 as usize
    }
}

/// The CSeq header: sequence number and method (RFC 3261 20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, below 2^31 (RFC 3261 8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
    /// The method token as received (for extension methods).
    pub method_name: &'a [u8],
}

/// A Content-Type value: `type/subtype;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentType<'a> {
    /// Media type, e.g. `application`.
    pub media_type: &'a [u8],
    /// Media subtype, e.g. `sdp`.
    pub subtype: &'a [u8],
    /// Parameters, e.g. `boundary`.
    pub params: Params<'a>,
}

impl<'a> ContentType<'a> {
    /// Parses a media type (RFC 3261 20.15).
    pub fn parse(value: &'a [u8]) -> Result<ContentType<'a>, &'static str> {
        let v = lex::trim(value);
        let slash = memchr::memchr(b'/', v).ok_or("no / in media type")?;
        let media_type = lex::trim(&v[..slash]);
        let rest = lex::trim_start(&v[slash + 1..]);
        let n = rest.iter().take_while(|&&b| lex::is_token_char(b)).count();
        let subtype = &rest[..n];
        if !lex::is_token(media_type) || !lex::is_token(subtype) {
            return Err("bad media type");
        }
        Ok(ContentType {
            media_type,
            subtype,
            params: Params::parse(&rest[n..])?,
        })
    }

    /// Is this `type/subtype` (case-insensitive)?
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }
}

/// What [`Message::validated`] parsed: the values a proxy reads on every
/// message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validated<'a> {
    /// The top Via value (`None` when the Via headers hold no value).
    pub top_via: Option<Via<'a>>,
    /// The From header.
    pub from: NameAddr<'a>,
    /// The To header.
    pub to: NameAddr<'a>,
    /// Max-Forwards, if present.
    pub max_forwards: Option<u8>,
}

/// A parsed SIP message: the received bytes and an index into them.
///
/// Parsing checks the framing, the start line, that each header line is
/// `name: value`, the mandatory headers (Via, From, To, Call-ID, CSeq), the
/// CSeq and Content-Length values, and the limits. Everything else is parsed on
/// demand; [`Message::validate`] parses all of it once.
#[derive(Clone, Debug)]
pub struct Message {
    buf: Bytes,
    start_line: StartLine,
    fields: Vec<Field>,
    first: [u16; HeaderKind::COUNT],
    /// Offset of the empty line that ends the header section.
    headers_end: usize,
    body_start: usize,
    seq: u32,
    cseq_method: (Method, Range<usize>),
    content_length: Option<u32>,
    max_via_values: usize,
}

/// What the header-section scan found before the body is framed.
struct Head {
    start_line: StartLine,
    fields: Vec<Field>,
    first: [u16; HeaderKind::COUNT],
    headers_end: usize,
    body_start: usize,
}

/// Why the header section could not be scanned to its end.
enum Scan {
    Error(ParseError),
    /// The buffer ends inside the header section.
    NeedMore,
}

impl From<ParseError> for Scan {
    fn from(e: ParseError) -> Self {
        Scan::Error(e)
    }
}

impl Message {
    /// Parses one UDP datagram. Bytes after Content-Length are dropped (RFC 3261
    /// 18.3); fewer bytes than Content-Length is an error. Without Content-Length
    /// the body runs to the end of the datagram.
    pub fn parse_datagram(buf: Bytes, limits: &ParseLimits) -> Result<Message, ParseError> {
        if buf.len() > limits.max_message_bytes {
            return Err(ParseError::TooLarge {
                max_bytes: limits.max_message_bytes,
            });
        }
        let buf = buf.slice(leading_crlf_len(&buf)..);
        let head = match scan_head(&buf, limits) {
            Ok(head) => head,
            Err(Scan::Error(e)) => return Err(e),
            Err(Scan::NeedMore) => return Err(ParseError::Unterminated),
        };
        let content_length = content_length(&buf, &head)?;
        let present = buf.len() - head.body_start;
        let end = match content_length {
            Some(cl) if cl as usize > present => {
                return Err(ParseError::BodyTooShort {
                    declared: cl as usize,
                    present,
                })
            }
            Some(cl) => head.body_start + cl as usize,
            None => buf.len(),
        };
        Self::finish(buf.slice(..end), head, content_length, limits)
    }

    /// Parses the first message of a stream (TCP, TLS). Returns the message and
    /// how many bytes of `buf` it used (leading CRLF keep-alives included), or
    /// [`ParseError::Incomplete`] when more bytes are needed. Content-Length is
    /// mandatory on streams. A buffer of nothing but CRLFs gives
    /// [`ParseError::Empty`]: keep-alives the caller may discard.
    pub fn parse_stream(buf: &Bytes, limits: &ParseLimits) -> Result<(Message, usize), ParseError> {
        let too_large = ParseError::TooLarge {
            max_bytes: limits.max_message_bytes,
        };
        let skip = leading_crlf_len(buf);
        let buf = &buf.slice(skip..);
        let window = &buf[..buf.len().min(limits.max_message_bytes)];
        let head = match scan_head(window, limits) {
            Ok(head) => head,
            Err(Scan::Error(e)) => return Err(e),
            Err(Scan::NeedMore) if buf.len() >= limits.max_message_bytes => return Err(too_large),
            Err(Scan::NeedMore) => return Err(ParseError::Incomplete),
        };
        let cl = content_length(buf, &head)?
            .ok_or(ParseError::MissingHeader(HeaderKind::ContentLength))?;
        let end = head.body_start + cl as usize;
        if end > limits.max_message_bytes {
            return Err(too_large);
        }
        if end > buf.len() {
            return Err(ParseError::Incomplete);
        }
        let message = Self::finish(buf.slice(..end), head, Some(cl), limits)?;
        Ok((message, skip + end))
    }

    fn finish(
        buf: Bytes,
        head: Head,
        content_length: Option<u32>,
        limits: &ParseLimits,
    ) -> Result<Message, ParseError> {
        for kind in [
            HeaderKind::Via,
            HeaderKind::From,
            HeaderKind::To,
            HeaderKind::CallId,
            HeaderKind::CSeq,
        ] {
            if head.first[kind as usize] == NONE {
                return Err(ParseError::MissingHeader(kind));
            }
        }
        let mut message = Message {
            buf,
            start_line: head.start_line,
            fields: head.fields,
            first: head.first,
            headers_end: head.headers_end,
            body_start: head.body_start,
            seq: 0,
            cseq_method: (Method::Extension, 0..0),
            content_length,
            max_via_values: limits.max_via_values,
        };
        message.check_call_id()?;
        message.parse_cseq()?;
        Ok(message)
    }

    fn check_call_id(&self) -> Result<(), ParseError> {
        let id = self.call_id();
        let bad = ParseError::BadHeader {
            kind: HeaderKind::CallId,
            what: "not word[@word]",
        };
        let (left, right) = match memchr::memchr(b'@', id) {
            Some(at) => (&id[..at], Some(&id[at + 1..])),
            None => (id, None),
        };
        if !lex::is_word(left) || right.is_some_and(|r| !lex::is_word(r)) {
            return Err(bad);
        }
        Ok(())
    }

    fn parse_cseq(&mut self) -> Result<(), ParseError> {
        let bad = |what| ParseError::BadHeader {
            kind: HeaderKind::CSeq,
            what,
        };
        let field = self.field(HeaderKind::CSeq).ok_or(bad("missing"))?;
        let range = field.value_range();
        let value = &self.buf[range.clone()];
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq = lex::parse_decimal(&value[..digits], (1 << 31) - 1)
            .ok_or(bad("sequence number out of range"))?;
        let rest = &value[digits..];
        let method = lex::trim(rest);
        if !rest.first().is_some_and(|&b| lex::is_lws(b)) || !lex::is_token(method) {
            return Err(bad("no method"));
        }
        let method_start = range.start + digits + (rest.len() - lex::trim_start(rest).len());
        let method_range = method_start..method_start + method.len();
        if let StartLine::Request {
            method_range: m, ..
        } = &self.start_line
        {
            if self.buf[m.clone()] != *method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        self.seq = seq as u32;
        self.cseq_method = (Method::from_token(method), method_range);
        Ok(())
    }

    /// The message bytes, start line to the end of the body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The message buffer (cheap to clone: shares the received allocation).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start_line
    }

    /// Is this a request?
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The request method; `None` for a response.
    pub fn method(&self) -> Option<Method> {
        match &self.start_line {
            StartLine::Request { method, .. } => Some(*method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method token as received; `None` for a response.
    pub fn method_name(&self) -> Option<&[u8]> {
        match &self.start_line {
            StartLine::Request { method_range, .. } => Some(&self.buf[method_range.clone()]),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text; `None` for a response.
    pub fn request_uri_raw(&self) -> Option<&[u8]> {
        match &self.start_line {
            StartLine::Request { uri_range, .. } => Some(&self.buf[uri_range.clone()]),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI (validated when the message was parsed).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_raw().and_then(|raw| Uri::parse(raw).ok())
    }

    /// The status code; `None` for a request.
    pub fn status_code(&self) -> Option<u16> {
        match &self.start_line {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, byte-exact (UTF-8 by the grammar, not checked).
    pub fn reason_phrase(&self) -> Option<&[u8]> {
        match &self.start_line {
            StartLine::Response { reason_range, .. } => Some(&self.buf[reason_range.clone()]),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header field in order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.fields.iter().map(|f| self.header_at(f))
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// The first header of `kind`.
    pub fn header(&self, kind: HeaderKind) -> Option<Header<'_>> {
        self.field(kind).map(|f| self.header_at(f))
    }

    /// Every header of `kind`, in order. For `Other` use [`Message::headers_named`].
    pub fn headers_of(&self, kind: HeaderKind) -> impl Iterator<Item = Header<'_>> + '_ {
        let start = match self.first[kind as usize] {
            NONE => self.fields.len(),
            i => i as usize,
        };
        self.fields[start..]
            .iter()
            .filter(move |f| f.kind == kind)
            .map(|f| self.header_at(f))
    }

    /// Every header whose name is `name` (case-insensitive; long and compact
    /// forms of a known header are the same name).
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Header<'s>> + 's {
        let kind = HeaderKind::from_name(name.as_bytes());
        self.headers().filter(move |h| {
            h.kind == kind
                && (kind != HeaderKind::Other || h.name.eq_ignore_ascii_case(name.as_bytes()))
        })
    }

    pub(crate) fn field(&self, kind: HeaderKind) -> Option<&Field> {
        match self.first[kind as usize] {
            NONE => None,
            i => self.fields.get(i as usize),
        }
    }

    pub(crate) fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub(crate) fn headers_end(&self) -> usize {
        self.headers_end
    }

    pub(crate) fn body_range(&self) -> Range<usize> {
        self.body_start..self.buf.len()
    }

    fn header_at(&self, f: &Field) -> Header<'_> {
        Header {
            kind: f.kind,
            name: &self.buf[f.name.0 as usize..f.name.1 as usize],
            value: &self.buf[f.value_range()],
        }
    }

    /// Values of every header of `kind`, split at top-level commas, trimmed,
    /// with their absolute offsets; at most `limit` of them.
    pub(crate) fn list_values(
        &self,
        kind: HeaderKind,
        limit: usize,
    ) -> impl Iterator<Item = (&[u8], usize)> + '_ {
        // Headers of `kind` start at its first index (none: an empty tail).
        let start = match self.first[kind as usize] {
            NONE => self.fields.len(),
            i => i as usize,
        };
        self.fields[start..]
            .iter()
            .filter(move |f| f.kind == kind)
            .flat_map(move |f| {
                let value = &self.buf[f.value_range()];
                lex::CommaSplit::new(value)
                    .map(move |(piece, off)| (piece, f.value.0 as usize + off))
            })
            .take(limit)
    }

    /// The Call-ID, trimmed.
    pub fn call_id(&self) -> &[u8] {
        self.header(HeaderKind::CallId)
            .map_or(&[][..], |h| lex::trim(h.value))
    }

    /// The CSeq (validated when the message was parsed).
    pub fn cseq(&self) -> CSeq<'_> {
        CSeq {
            seq: self.seq,
            method: self.cseq_method.0,
            method_name: &self.buf[self.cseq_method.1.clone()],
        }
    }

    /// The Content-Length value, if the header is present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The body (opaque: multipart bodies are not split).
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body_range()]
    }

    /// The body as a zero-copy slice of the message buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body_range())
    }

    /// Every Via value, top first, over all Via headers; stops after the limit on
    /// Via values ([`Message::validate`] reports going over it).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.list_values(HeaderKind::Via, self.max_via_values)
            .map(|(v, _)| Via::parse(v).map_err(bad(HeaderKind::Via)))
    }

    /// The top Via value: the one a response is routed back by.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::MissingHeader(HeaderKind::Via)))
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderKind::From)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderKind::To)
    }

    fn name_addr(&self, kind: HeaderKind) -> Result<NameAddr<'_>, ParseError> {
        let h = self.header(kind).ok_or(ParseError::MissingHeader(kind))?;
        NameAddr::parse(h.value).map_err(bad(kind))
    }

    /// Every Contact value.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, ParseError>> + '_ {
        self.list_values(HeaderKind::Contact, usize::MAX)
            .map(|(v, _)| Contact::parse(v).map_err(bad(HeaderKind::Contact)))
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.route_set(HeaderKind::Route)
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.route_set(HeaderKind::RecordRoute)
    }

    fn route_set(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list_values(kind, usize::MAX).map(move |(v, _)| {
            let addr = NameAddr::parse(v).map_err(bad(kind))?;
            if !addr.in_brackets() {
                return Err(bad(kind)("route URI not in <>"));
            }
            Ok(addr)
        })
    }

    /// Max-Forwards, 0 to 255, if present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        let Some(h) = self.header(HeaderKind::MaxForwards) else {
            return Ok(None);
        };
        lex::parse_decimal(lex::trim(h.value), 255)
            .map(|n| Some(n as u8))
            .ok_or(bad(HeaderKind::MaxForwards)("not 0 to 255"))
    }

    /// The Expires header in seconds; saturates above 2^32-1 and reads a
    /// non-numeric value as absent (RFC 3261 20.19 lets the default apply).
    pub fn expires(&self) -> Option<u32> {
        let v = lex::trim(self.header(HeaderKind::Expires)?.value);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(lex::parse_decimal(v, u64::from(u32::MAX)).map_or(u32::MAX, |n| n as u32))
    }

    /// The Content-Type, if present.
    pub fn content_type(&self) -> Result<Option<ContentType<'_>>, ParseError> {
        self.header(HeaderKind::ContentType)
            .map(|h| ContentType::parse(h.value).map_err(bad(HeaderKind::ContentType)))
            .transpose()
    }

    /// Every credential or challenge in headers of `kind` (Authorization,
    /// Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate), one a header.
    pub fn auth(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<AuthParams<'_>, ParseError>> + '_ {
        self.headers_of(kind)
            .map(move |h| AuthParams::parse(h.value).map_err(bad(kind)))
    }

    /// Tokens of Supported, Require, Proxy-Require or Allow (any list header),
    /// each trimmed; empty elements are skipped.
    pub fn tokens(&self, kind: HeaderKind) -> impl Iterator<Item = &[u8]> + '_ {
        self.list_values(kind, usize::MAX)
            .map(|(v, _)| lex::trim(v))
            .filter(|t| !t.is_empty())
    }

    /// Does the list header `kind` contain `token` (case-insensitive)?
    pub fn has_token(&self, kind: HeaderKind, token: &str) -> bool {
        self.tokens(kind)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The User-Agent value as received.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.header(HeaderKind::UserAgent).map(|h| h.value)
    }

    /// Parses every header the codec knows the grammar of, and checks the limit on
    /// Via values: the gate before a proxy or registrar acts on a message.
    /// Expires, Date and unknown headers are not checked (a proxy forwards them).
    pub fn validate(&self) -> Result<(), ParseError> {
        self.validated().map(|_| ())
    }

    /// [`Message::validate`], handing back the typed values it parsed that a
    /// proxy reads on every message, so they need not be parsed again.
    pub(crate) fn validated(&self) -> Result<Validated<'_>, ParseError> {
        // One pass counts the Via values and parses those within the limit; going
        // over the limit is reported before a malformed value.
        let mut via_count = 0;
        let mut via_error = None;
        let mut top_via = None;
        for (v, _) in self.list_values(HeaderKind::Via, self.max_via_values + 1) {
            via_count += 1;
            if via_count <= self.max_via_values && via_error.is_none() {
                match Via::parse(v) {
                    Ok(via) if via_count == 1 => top_via = Some(via),
                    Ok(_) => {}
                    Err(e) => via_error = Some(e),
                }
            }
        }
        if via_count > self.max_via_values {
            return Err(ParseError::TooManyVias {
                max: self.max_via_values,
            });
        }
        if let Some(what) = via_error {
            return Err(bad(HeaderKind::Via)(what));
        }
        let from = self.from()?;
        let to = self.to()?;
        let max_forwards = self.max_forwards()?;
        self.content_type()?;
        self.validate_contacts()?;
        for route in self.routes().chain(self.record_routes()) {
            route?;
        }
        for kind in [
            HeaderKind::Authorization,
            HeaderKind::ProxyAuthorization,
            HeaderKind::WwwAuthenticate,
            HeaderKind::ProxyAuthenticate,
        ] {
            for a in self.auth(kind) {
                a?;
            }
        }
        for kind in [
            HeaderKind::Supported,
            HeaderKind::Require,
            HeaderKind::ProxyRequire,
            HeaderKind::Allow,
        ] {
            if self.tokens(kind).any(|t| !lex::is_token(t)) {
                return Err(bad(kind)("not a token list"));
            }
        }
        Ok(Validated {
            top_via,
            from,
            to,
            max_forwards,
        })
    }

    /// The raw Via values (top first, within the Via limit), unparsed.
    pub(crate) fn via_values(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.list_values(HeaderKind::Via, self.max_via_values)
            .map(|(v, _)| v)
    }

    fn validate_contacts(&self) -> Result<(), ParseError> {
        let mut count = 0;
        let mut star = false;
        for contact in self.contacts() {
            count += 1;
            star |= contact? == Contact::Star;
        }
        if star && count > 1 {
            return Err(bad(HeaderKind::Contact)("* with other contacts"));
        }
        Ok(())
    }
}

fn bad(kind: HeaderKind) -> impl Fn(&'static str) -> ParseError {
    move |what| ParseError::BadHeader { kind, what }
}

/// Scans the start line and header section of `buf`.
/// CRLFs before the start line, which RFC 3261 7.5 says to ignore (on streams
/// they are RFC 5626 keep-alives).
fn leading_crlf_len(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Scans the start line and header section of `buf`, which starts at the start line.
fn scan_head(buf: &[u8], limits: &ParseLimits) -> Result<Head, Scan> {
    let mut pos = 0;
    if buf.is_empty() {
        return Err(ParseError::Empty.into());
    }
    let (line, next) = next_line(buf, pos).ok_or(Scan::NeedMore)?;
    let start_line = start_line::parse(&buf[line.clone()], line.start)?;
    pos = next;
    // Header indexes are u16 in the first-index table, NONE excluded.
    let max_headers = limits.max_headers.min(usize::from(NONE - 1));
    let mut fields: Vec<Field> = Vec::with_capacity(24.min(max_headers));
    let mut first = [NONE; HeaderKind::COUNT];
    loop {
        let (line, next) = next_header_line(buf, pos)?;
        if line.is_empty() {
            return Ok(Head {
                start_line,
                fields,
                first,
                headers_end: pos,
                body_start: next,
            });
        }
        if buf[pos] == b' ' || buf[pos] == b'\t' {
            let last = fields.last_mut().ok_or(ParseError::BadHeaderLine)?;
            continue_field(buf, last, line, next);
        } else {
            if fields.len() >= max_headers {
                return Err(ParseError::TooManyHeaders { max: max_headers }.into());
            }
            let field = header_line(buf, line, next)?;
            let slot = &mut first[field.kind as usize];
            if *slot == NONE {
                *slot = fields.len() as u16;
            } else if field.kind.is_singleton() {
                return Err(ParseError::DuplicateHeader(field.kind).into());
            }
            fields.push(field);
        }
        pos = next;
    }
}

/// Like [`next_line`] for the header section, in the same single scan: a CR
/// that does not end its line is an error, not whitespace (RFC 3261 25.1); a
/// peer that took it for a line end would see other headers than we do.
#[inline]
fn next_header_line(buf: &[u8], pos: usize) -> Result<(Range<usize>, usize), Scan> {
    let rest = &buf[pos..];
    let i = memchr::memchr2(b'\r', b'\n', rest).ok_or(Scan::NeedMore)?;
    if rest[i] == b'\n' {
        return Ok((pos..pos + i, pos + i + 1));
    }
    match rest.get(i + 1) {
        Some(b'\n') => Ok((pos..pos + i, pos + i + 2)),
        Some(_) => Err(ParseError::BadHeaderLine.into()),
        None => Err(Scan::NeedMore),
    }
}

/// The line starting at `pos` without its CRLF (a bare LF is accepted), and the
/// offset after it; `None` if no LF follows.
#[inline]
fn next_line(buf: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let nl = pos + memchr::memchr(b'\n', &buf[pos..])?;
    let end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((pos..end, nl + 1))
}

fn header_line(buf: &[u8], line: Range<usize>, next: usize) -> Result<Field, ParseError> {
    let text = &buf[line.clone()];
    // `token *(SP / HT) ":"`: one pass over the name instead of a search for the
    // colon and a second check of what came before it.
    let name_len = text.iter().take_while(|&&b| lex::is_token_char(b)).count();
    let mut colon = name_len;
    while colon < text.len() && matches!(text[colon], b' ' | b'\t') {
        colon += 1;
    }
    if name_len == 0 || text.get(colon) != Some(&b':') {
        return Err(ParseError::BadHeaderLine);
    }
    let name = &text[..name_len];
    let value = &text[colon + 1..];
    let value_start = line.start + colon + 1 + (value.len() - lex::trim_start(value).len());
    let value_end = (line.start + colon + 1 + lex::trim_end(value).len()).max(value_start);
    Ok(Field {
        kind: HeaderKind::from_name(name),
        name: (line.start as u32, (line.start + name_len) as u32),
        value: (value_start as u32, value_end as u32),
        line: (line.start as u32, next as u32),
    })
}

/// Extends `field` over a folded continuation line (RFC 3261 7.3.1).
fn continue_field(buf: &[u8], field: &mut Field, line: Range<usize>, next: usize) {
    let text = &buf[line.clone()];
    let lead = text.len() - lex::trim_start(text).len();
    let content = lex::trim_end(text);
    if content.len() > lead {
        if field.value.0 == field.value.1 {
            field.value.0 = (line.start + lead) as u32;
        }
        field.value.1 = (line.start + content.len()) as u32;
    }
    field.line.1 = next as u32;
}

fn content_length(buf: &[u8], head: &Head) -> Result<Option<u32>, ParseError> {
    let index = head.first[HeaderKind::ContentLength as usize];
    if index == NONE {
        return Ok(None);
    }
    let field = &head.fields[index as usize];
    let value = lex::trim(&buf[field.value_range()]);
    lex::parse_decimal(value, u64::from(u32::MAX))
        .map(|n| Some(n as u32))
        .ok_or(ParseError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn parse(b: &[u8]) -> Result<Message, ParseError> {
        Message::parse_datagram(Bytes::copy_from_slice(b), &ParseLimits::datagram())
    }

    /// Found by fuzzing: `cseq:9\rINVITE` read as `CSeq: 9 INVITE`.
    #[test]
    fn bare_cr_in_a_header_is_an_error() {
        let text = String::from_utf8(INVITE.to_vec()).unwrap();
        let smuggled = text.replace("CSeq: 314159 INVITE", "CSeq: 314159\rINVITE");
        assert_eq!(
            parse(smuggled.as_bytes()).err(),
            Some(ParseError::BadHeaderLine)
        );
        let folded = text.replace("CSeq: 314159 INVITE", "CSeq: 314159\r\n INVITE");
        assert_eq!(parse(folded.as_bytes()).unwrap().cseq().seq, 314159);
    }

    #[test]
    fn indexes_a_request() {
        let m = parse(INVITE).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri_raw(), Some(&b"sip:bob@biloxi.com"[..]));
        assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(m.cseq().seq, 314159);
        assert_eq!(m.cseq().method, Method::Invite);
        assert_eq!(m.vias().count(), 2);
        assert_eq!(
            m.top_via().unwrap().branch(),
            Some(&b"z9hG4bK776asdhds"[..])
        );
        assert_eq!(m.from().unwrap().tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        assert_eq!(m.body(), b"v=0\n");
        assert!(m.content_type().unwrap().unwrap().is("application", "SDP"));
        m.validate().unwrap();
    }

    #[test]
    fn udp_content_length_rules() {
        let mut longer = INVITE.to_vec();
        longer.extend_from_slice(b"garbage");
        assert_eq!(parse(&longer).unwrap().body(), b"v=0\n");
        let shorter = &INVITE[..INVITE.len() - 1];
        assert_eq!(
            parse(shorter).unwrap_err(),
            ParseError::BodyTooShort {
                declared: 4,
                present: 3
            }
        );
    }

    #[test]
    fn stream_framing() {
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(INVITE);
        two.extend_from_slice(INVITE);
        let buf = Bytes::from(two);
        let (m, used) = Message::parse_stream(&buf, &ParseLimits::stream()).unwrap();
        assert_eq!(used, INVITE.len() + 4);
        assert_eq!(m.as_bytes(), INVITE);
        let rest = buf.slice(used..);
        let (_, used2) = Message::parse_stream(&rest, &ParseLimits::stream()).unwrap();
        assert_eq!(used2, INVITE.len());
        let partial = buf.slice(..40);
        assert_eq!(
            Message::parse_stream(&partial, &ParseLimits::stream()).unwrap_err(),
            ParseError::Incomplete
        );
        let body_partial = buf.slice(..buf.len() - 2);
        let second = body_partial.slice(used..);
        assert_eq!(
            Message::parse_stream(&second, &ParseLimits::stream()).unwrap_err(),
            ParseError::Incomplete
        );
    }

    #[test]
    fn limits_are_typed_errors() {
        let limits = ParseLimits {
            max_headers: 4,
            ..ParseLimits::datagram()
        };
        let err = Message::parse_datagram(Bytes::from_static(INVITE), &limits).unwrap_err();
        assert_eq!(err, ParseError::TooManyHeaders { max: 4 });
        let limits = ParseLimits {
            max_via_values: 1,
            ..ParseLimits::datagram()
        };
        let m = Message::parse_datagram(Bytes::from_static(INVITE), &limits).unwrap();
        assert_eq!(m.validate(), Err(ParseError::TooManyVias { max: 1 }));
        let limits = ParseLimits {
            max_message_bytes: 100,
            ..ParseLimits::datagram()
        };
        let err = Message::parse_datagram(Bytes::from_static(INVITE), &limits).unwrap_err();
        assert_eq!(err.status_code(), 513);
    }

    #[test]
    fn missing_and_duplicate_headers() {
        let no_call_id: Vec<u8> = String::from_utf8_lossy(INVITE)
            .replace("Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", "")
            .into_bytes();
        assert_eq!(
            parse(&no_call_id).unwrap_err(),
            ParseError::MissingHeader(HeaderKind::CallId)
        );
        let two_cl = String::from_utf8_lossy(INVITE)
            .replace("Content-Length: 4\r\n", "Content-Length: 4\r\nl: 4\r\n")
            .into_bytes();
        assert_eq!(
            parse(&two_cl).unwrap_err(),
            ParseError::DuplicateHeader(HeaderKind::ContentLength)
        );
    }
}
