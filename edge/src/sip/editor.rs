//! The proxy's message editor: collects edits as ranges of the received message,
//! then writes the outgoing message in one pass into a buffer sized up front.

use bytes::{Bytes, BytesMut};

use super::header::HeaderKind;
use super::lex;
use super::limits::ParseLimits;
use super::message::{Field, Message};
use super::start_line::StartLine;

/// Most edits on one message: a proxy makes a handful.
const MAX_EDITS: usize = 32;

/// Why an edit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// More than the editor's fixed number of edits.
    #[error("too many edits")]
    TooManyEdits,
    /// The edit touches bytes another edit already changes.
    #[error("edit overlaps an earlier edit")]
    Overlap,
    /// There is no header of this kind to remove a value from.
    #[error("no {0} header")]
    Missing(HeaderKind),
    /// A value holds CR, LF or another byte that would break the message framing.
    #[error("value would break the message")]
    BadValue,
    /// The edit applies only to requests.
    #[error("not a request")]
    NotARequest,
    /// The result would exceed the size limit.
    #[error("message would exceed {max_bytes} bytes")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
}

/// One replacement: `message[start..end]` becomes `text[text_start..text_end]`.
#[derive(Clone, Copy, Debug)]
struct Edit {
    start: u32,
    end: u32,
    text: (u32, u32),
    order: u16,
}

/// Edits a parsed message. Each method records a replacement of a byte range of
/// the received message; [`Editor::finish`] copies the untouched ranges and the
/// new text into one buffer of the exact final size.
pub struct Editor<'m> {
    message: &'m Message,
    edits: Vec<Edit>,
    text: Vec<u8>,
    /// Headers a set-style edit has claimed: each may be set once.
    sets: Vec<(HeaderKind, String)>,
    max_bytes: usize,
}

impl<'m> Editor<'m> {
    /// An editor for `message`; the result may be at most a UDP datagram.
    pub fn new(message: &'m Message) -> Self {
        Editor {
            message,
            edits: Vec::with_capacity(8),
            text: Vec::with_capacity(256),
            sets: Vec::new(),
            max_bytes: ParseLimits::MAX_DATAGRAM_BYTES,
        }
    }

    /// Sets the largest message [`Editor::finish`] may produce.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Adds `Via: value` above the top Via (RFC 3261 16.6 step 8).
    pub fn prepend_via(&mut self, value: &[u8]) -> Result<&mut Self, EditError> {
        let at = self.first_line_start(HeaderKind::Via);
        self.insert_header(at, HeaderKind::Via.name(), value)
    }

    /// Removes the top Via value (a proxy forwarding a response, RFC 3261 16.7).
    pub fn remove_top_via(&mut self) -> Result<&mut Self, EditError> {
        self.remove_top_value(HeaderKind::Via)
    }

    /// Adds `Record-Route: value` above any existing Record-Route (RFC 3261 16.6
    /// step 4).
    pub fn prepend_record_route(&mut self, value: &[u8]) -> Result<&mut Self, EditError> {
        let at = self.first_line_start(HeaderKind::RecordRoute);
        self.insert_header(at, HeaderKind::RecordRoute.name(), value)
    }

    /// Removes the top Route value (RFC 3261 16.4, a loose-routing proxy's own).
    pub fn pop_route(&mut self) -> Result<&mut Self, EditError> {
        self.remove_top_value(HeaderKind::Route)
    }

    /// Sets Max-Forwards, adding the header if absent (RFC 3261 16.6 step 3).
    pub fn set_max_forwards(&mut self, hops: u8) -> Result<&mut Self, EditError> {
        let mut digits = [0u8; 3];
        let text = format_u32(u32::from(hops), &mut digits);
        let existing = self
            .message
            .field(HeaderKind::MaxForwards)
            .map(|f| f.value_range());
        let end = self.message.headers_end();
        self.all_or_nothing(|e| {
            e.claim_set(HeaderKind::MaxForwards.name())?;
            match existing {
                Some(r) => e.replace(r.start, r.end, &[text])?,
                None => e.insert_header(end, HeaderKind::MaxForwards.name(), text)?,
            };
            Ok(())
        })
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &[u8]) -> Result<&mut Self, EditError> {
        let StartLine::Request { uri_range, .. } = self.message.start_line() else {
            return Err(EditError::NotARequest);
        };
        if uri.is_empty() || uri.iter().any(|&b| lex::is_lws(b) || b == 0) {
            return Err(EditError::BadValue);
        }
        self.replace(uri_range.start, uri_range.end, &[uri])
    }

    /// Adds `name: value` at the end of the header section.
    pub fn add_header(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, EditError> {
        self.insert_header(self.message.headers_end(), name, value)
    }

    /// Sets header `name` to `value`: the first such header gets the new value,
    /// any others are removed; added at the end if there is none.
    /// Setting the same header twice is [`EditError::Overlap`]; on error the
    /// message is left as it was.
    pub fn set_header(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, EditError> {
        check_header(name, value)?;
        let mut matching = matching_fields(self.message, name);
        let first = matching.next().map(|f| f.value_range());
        let rest: Vec<_> = matching.map(|f| f.line_range()).collect();
        self.all_or_nothing(|e| {
            e.claim_set(name)?;
            let Some(r) = first else {
                e.add_header(name, value)?;
                return Ok(());
            };
            e.replace(r.start, r.end, &[value])?;
            for line in rest {
                e.replace(line.start, line.end, &[])?;
            }
            Ok(())
        })
    }

    /// Removes every header named `name`; on error nothing is removed.
    pub fn remove_header(&mut self, name: &str) -> Result<&mut Self, EditError> {
        let lines: Vec<_> = matching_fields(self.message, name)
            .map(|f| f.line_range())
            .collect();
        self.all_or_nothing(|e| {
            for line in lines {
                e.replace(line.start, line.end, &[])?;
            }
            Ok(())
        })
    }

    /// Replaces the body and sets Content-Length to match; sets Content-Type
    /// when given.
    pub fn set_body(
        &mut self,
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Result<&mut Self, EditError> {
        let mut digits = [0u8; 10];
        let len = u32::try_from(body.len()).map_err(|_| EditError::TooLarge {
            max_bytes: self.max_bytes,
        })?;
        let len_text = format_u32(len, &mut digits);
        let body_range = self.message.body_range();
        self.all_or_nothing(|e| {
            e.set_header(HeaderKind::ContentLength.name(), len_text)?;
            if let Some(ct) = content_type {
                e.set_header(HeaderKind::ContentType.name(), ct)?;
            }
            e.replace(body_range.start, body_range.end, &[body])?;
            Ok(())
        })
    }

    /// Runs a multi-step edit; when a step fails, the steps before it are
    /// undone, so a failed call leaves the message as it was.
    fn all_or_nothing(
        &mut self,
        edit: impl FnOnce(&mut Self) -> Result<(), EditError>,
    ) -> Result<&mut Self, EditError> {
        let (edits, text, sets) = (self.edits.len(), self.text.len(), self.sets.len());
        match edit(self) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.edits.truncate(edits);
                self.text.truncate(text);
                self.sets.truncate(sets);
                Err(e)
            }
        }
    }

    /// Records that header `name` is being set; a second set of it would
    /// write it twice when it was absent, so it is refused like any overlap.
    fn claim_set(&mut self, name: &str) -> Result<(), EditError> {
        let kind = HeaderKind::from_name(name.as_bytes());
        let taken = self.sets.iter().any(|(k, n)| {
            *k == kind && (kind != HeaderKind::Other || n.eq_ignore_ascii_case(name))
        });
        if taken {
            return Err(EditError::Overlap);
        }
        // The name is compared only for `Other`: no copy of a known one.
        let name = match kind {
            HeaderKind::Other => name.to_owned(),
            _ => String::new(),
        };
        self.sets.push((kind, name));
        Ok(())
    }

    /// Writes the edited message.
    pub fn finish(mut self) -> Result<Bytes, EditError> {
        let source = self.message.as_bytes();
        let removed: usize = self.edits.iter().map(|e| (e.end - e.start) as usize).sum();
        let size = source.len() - removed + self.text.len();
        if size > self.max_bytes {
            return Err(EditError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        self.edits
            .sort_unstable_by_key(|e| (e.start, e.end, e.order));
        let mut out = BytesMut::with_capacity(size);
        let mut cursor = 0;
        for e in &self.edits {
            debug_assert!(cursor <= e.start as usize, "edits overlap");
            out.extend_from_slice(&source[cursor..e.start as usize]);
            out.extend_from_slice(&self.text[e.text.0 as usize..e.text.1 as usize]);
            cursor = e.end as usize;
        }
        out.extend_from_slice(&source[cursor..]);
        debug_assert_eq!(out.len(), size);
        Ok(out.freeze())
    }

    fn first_line_start(&self, kind: HeaderKind) -> usize {
        match self.message.field(kind) {
            Some(f) => f.line_range().start,
            None => self
                .message
                .fields()
                .first()
                .map_or(self.message.headers_end(), |f| f.line_range().start),
        }
    }

    /// Removes the first comma-separated value of the first header of `kind`,
    /// or the whole header line when it holds only that value.
    fn remove_top_value(&mut self, kind: HeaderKind) -> Result<&mut Self, EditError> {
        let field = self.message.field(kind).ok_or(EditError::Missing(kind))?;
        let value_range = field.value_range();
        let value = &self.message.as_bytes()[value_range.clone()];
        let mut pieces = lex::CommaSplit::new(value);
        pieces.next();
        match pieces.next() {
            None => {
                let line = field.line_range();
                self.replace(line.start, line.end, &[])
            }
            Some((second, offset)) => {
                let lead = second.len() - lex::trim_start(second).len();
                let end = value_range.start + offset + lead;
                self.replace(value_range.start, end, &[])
            }
        }
    }

    fn insert_header(
        &mut self,
        at: usize,
        name: &str,
        value: &[u8],
    ) -> Result<&mut Self, EditError> {
        check_header(name, value)?;
        self.replace(at, at, &[name.as_bytes(), b": ", value, b"\r\n"])
    }

    /// Records that `message[start..end]` becomes the concatenation of `parts`.
    fn replace(
        &mut self,
        start: usize,
        end: usize,
        parts: &[&[u8]],
    ) -> Result<&mut Self, EditError> {
        debug_assert!(start <= end && end <= self.message.as_bytes().len());
        if self.edits.len() == MAX_EDITS {
            return Err(EditError::TooManyEdits);
        }
        if self.edits.iter().any(|e| overlaps(e, start, end)) {
            return Err(EditError::Overlap);
        }
        let text_start = self.text.len();
        for part in parts {
            self.text.extend_from_slice(part);
        }
        self.edits.push(Edit {
            start: start as u32,
            end: end as u32,
            text: (text_start as u32, self.text.len() as u32),
            order: self.edits.len() as u16,
        });
        Ok(self)
    }
}

/// The fields of `message` named `name` (compact and long forms alike).
fn matching_fields<'m>(
    message: &'m Message,
    name: &'m str,
) -> impl Iterator<Item = &'m Field> + 'm {
    let kind = HeaderKind::from_name(name.as_bytes());
    message.fields().iter().filter(move |f| {
        f.kind == kind
            && (kind != HeaderKind::Other
                || message.as_bytes()[f.name.0 as usize..f.name.1 as usize]
                    .eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// Two edits conflict when they change a common byte, or one inserts strictly
/// inside the range the other replaces.
fn overlaps(e: &Edit, start: usize, end: usize) -> bool {
    let (s, t) = (e.start as usize, e.end as usize);
    if start == end {
        return s < start && start < t;
    }
    if s == t {
        return start < s && s < end;
    }
    start < t && s < end
}

fn check_header(name: &str, value: &[u8]) -> Result<(), EditError> {
    let value_ok = value.iter().all(|&b| b != b'\r' && b != b'\n' && b != 0);
    if !lex::is_token(name.as_bytes()) || !value_ok {
        return Err(EditError::BadValue);
    }
    Ok(())
}

/// Decimal digits of `n` in `digits`, without allocating.
fn format_u32(mut n: u32, digits: &mut [u8]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ParseLimits;

    const REQUEST: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 ,  SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@biloxi.com>\r\n\
From: <sip:alice@atlanta.com>;tag=1\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

    fn message(b: &'static [u8]) -> Message {
        Message::parse_datagram(Bytes::from_static(b), &ParseLimits::datagram()).unwrap()
    }

    fn reparse(b: Bytes) -> Message {
        Message::parse_datagram(b, &ParseLimits::datagram()).unwrap()
    }

    #[test]
    fn proxy_edit_pass() {
        let m = message(REQUEST);
        let mut e = Editor::new(&m);
        e.prepend_via(b"SIP/2.0/UDP edge.example.net;branch=z9hG4bKnew")
            .unwrap();
        e.prepend_record_route(b"<sip:edge.example.net;lr>")
            .unwrap();
        e.pop_route().unwrap();
        e.set_max_forwards(69).unwrap();
        let out = reparse(e.finish().unwrap());
        out.validate().unwrap();
        let branches: Vec<_> = out
            .vias()
            .map(|v| v.unwrap().branch().unwrap().to_vec())
            .collect();
        assert_eq!(branches, [&b"z9hG4bKnew"[..], b"z9hG4bK1", b"z9hG4bK2"]);
        let routes: Vec<_> = out
            .routes()
            .map(|r| r.unwrap().uri().as_bytes().to_vec())
            .collect();
        assert_eq!(routes, [&b"sip:p2.example.com;lr"[..]]);
        assert_eq!(out.record_routes().count(), 1);
        assert_eq!(out.max_forwards(), Ok(Some(69)));
    }

    #[test]
    fn remove_top_via_of_list_and_of_line() {
        let m = message(REQUEST);
        let mut e = Editor::new(&m);
        e.remove_top_via().unwrap();
        let once = reparse(e.finish().unwrap());
        assert_eq!(once.vias().count(), 1);
        assert_eq!(once.top_via().unwrap().branch(), Some(&b"z9hG4bK2"[..]));
        let mut e = Editor::new(&once);
        e.remove_top_via().unwrap();
        let bytes = e.finish().unwrap();
        assert!(!bytes.windows(4).any(|w| w == b"Via:"));
    }

    #[test]
    fn body_and_headers() {
        let m = message(REQUEST);
        let mut e = Editor::new(&m);
        e.set_body(Some(b"application/sdp"), b"v=0\r\n").unwrap();
        e.set_request_uri(b"sip:bob@192.0.2.4:5060").unwrap();
        e.add_header("X-Carrier", b"blue").unwrap();
        let out = reparse(e.finish().unwrap());
        assert_eq!(out.body(), b"v=0\r\n");
        assert_eq!(out.content_length(), Some(5));
        assert_eq!(out.request_uri_raw(), Some(&b"sip:bob@192.0.2.4:5060"[..]));
        assert_eq!(
            out.headers_named("x-carrier").next().unwrap().value,
            b"blue"
        );
    }

    #[test]
    fn refuses_bad_edits() {
        let m = message(REQUEST);
        let mut e = Editor::new(&m);
        assert_eq!(
            e.add_header("X", b"a\r\nVia: x").err(),
            Some(EditError::BadValue)
        );
        assert_eq!(
            e.set_request_uri(b"sip:a b").err(),
            Some(EditError::BadValue)
        );
        e.set_max_forwards(1).unwrap();
        assert_eq!(
            e.set_header("Max-Forwards", b"2").err(),
            Some(EditError::Overlap)
        );
        assert_eq!(e.remove_header("Record-Route").map(|_| ()), Ok(()));
        assert_eq!(
            Editor::new(&m).max_bytes(10).finish().err(),
            Some(EditError::TooLarge { max_bytes: 10 })
        );
    }

    const NO_MAX_FORWARDS: &[u8] = b"OPTIONS sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
To: <sip:bob@biloxi.com>\r\n\
From: <sip:alice@atlanta.com>;tag=1\r\n\
Call-ID: c1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

    /// Found by the edit fuzz target: a second set of an absent header wrote it twice.
    #[test]
    fn an_absent_header_is_set_once() {
        let m = message(NO_MAX_FORWARDS);
        let mut e = Editor::new(&m);
        e.set_max_forwards(70).unwrap();
        assert_eq!(e.set_max_forwards(69).err(), Some(EditError::Overlap));
        assert_eq!(
            e.set_header("max-forwards", b"10").err(),
            Some(EditError::Overlap)
        );
        e.set_header("X-A", b"1").unwrap();
        assert_eq!(e.set_header("x-a", b"2").err(), Some(EditError::Overlap));
        let out = reparse(e.finish().unwrap());
        assert_eq!(out.max_forwards(), Ok(Some(70)));
    }

    /// Found by the edit fuzz target: a failed set_body left its Content-Length.
    #[test]
    fn a_failed_edit_changes_nothing() {
        let m = message(NO_MAX_FORWARDS);
        let mut e = Editor::new(&m);
        assert_eq!(
            e.set_body(Some(b"a\r\nb"), b"v=0\r\n").err(),
            Some(EditError::BadValue)
        );
        assert_eq!(e.finish().unwrap(), Bytes::from_static(NO_MAX_FORWARDS));
        let mut e = Editor::new(&m);
        assert!(e.set_body(Some(b"a\r\nb"), b"v=0\r\n").is_err());
        e.set_body(Some(b"application/sdp"), b"v=0\r\n").unwrap();
        let out = reparse(e.finish().unwrap());
        assert_eq!(out.body(), b"v=0\r\n");
        assert_eq!(out.content_length(), Some(5));
    }
}
