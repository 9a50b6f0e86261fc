//! Bencode, the encoding of rtpengine's ng protocol: values, a bounded
//! parser and a writer.
//!
//! Four kinds of value: integers `i42e`, byte strings `4:spam`, lists
//! `l...e` and dictionaries `d...e`. Kamailio does not sort dictionary keys
//! (the BitTorrent rule), so [`Dict`] keeps them in arrival order, and the
//! writer emits them in the order they were pushed (rtpengine puts `result`
//! last in its replies).
//!
//! The parser is zero-copy: byte strings are slices of the input [`Bytes`].
//! Every input it is given either parses or returns a [`DecodeError`] with
//! the byte offset where it went wrong; the size of the input, the nesting
//! depth and the number of items are bounded by [`Limits`].
//!
//! [`parse`] also takes JSON when the first byte is `{` (rtpengine accepts
//! both on the ng port); see [`parse_json`] for how JSON maps onto bencode.

use bytes::Bytes;
use thiserror::Error;

pub use super::json::parse_json;

/// The deepest nesting [`Limits::max_depth`] can allow, whatever it is set
/// to: the parser and the writer recurse once per level, and this keeps
/// their stack use small.
pub const MAX_DEPTH_CEILING: usize = 64;

/// Bounds on the work one input may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inputs longer than this are refused before any parsing.
    pub max_input_bytes: usize,
    /// Containers (lists and dictionaries) nested deeper than this are
    /// refused; the top-level dictionary is depth 1. Capped at
    /// [`MAX_DEPTH_CEILING`].
    pub max_depth: usize,
    /// Values parsed in total, dictionary keys and containers included.
    pub max_items: usize,
}

impl Default for Limits {
    /// Room for the largest UDP datagram; Kamailio's requests nest two
    /// levels deep (`received-from` inside the top dictionary) and hold a
    /// few dozen items, so 16 levels and 1,024 items leave ample room.
    fn default() -> Self {
        Limits {
            max_input_bytes: 65_536,
            max_depth: 16,
            max_items: 1_024,
        }
    }
}

/// Why an input is not a bencode (or JSON) value. Every variant carries the
/// byte offset into the input where the problem was found.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input is longer than [`Limits::max_input_bytes`].
    #[error("input of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended where more was expected.
    #[error("input ends early at byte {offset}")]
    Truncated {
        /// The input's length, where reading stopped.
        offset: usize,
    },
    /// A byte that cannot start or continue what is being parsed.
    #[error("unexpected byte 0x{byte:02x} at byte {offset}")]
    UnexpectedByte {
        /// Where the byte is.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// An integer with no digits, a leading zero, `-0`, or out of `i64`.
    #[error("bad integer at byte {offset}: {reason}")]
    BadInteger {
        /// Where the integer starts (its `i`).
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A string length with a leading zero or too large to be a length.
    #[error("bad string length at byte {offset}: {reason}")]
    BadLength {
        /// Where the length starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {offset} is not a string")]
    NonStringKey {
        /// Where the key starts.
        offset: usize,
    },
    /// Containers nested deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {max} at byte {offset}")]
    TooDeep {
        /// Where the container that went too deep starts.
        offset: usize,
        /// The limit in force.
        max: usize,
    },
    /// More values than [`Limits::max_items`].
    #[error("more than {max} items at byte {offset}")]
    TooManyItems {
        /// Where the first item over the limit starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes after the end of the top-level value.
    #[error("trailing bytes after the value, from byte {offset}")]
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: usize,
    },
    /// JSON that serde_json refuses, or that has no bencode form (floats,
    /// `true`, `false`, `null`).
    #[error("bad JSON at byte {offset}: {reason}")]
    Json {
        /// Where the problem is, as close as serde_json tells.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The byte offset into the input where the problem was found.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::TooLarge { max, .. } => *max,
            DecodeError::Truncated { offset }
            | DecodeError::UnexpectedByte { offset, .. }
            | DecodeError::BadInteger { offset, .. }
            | DecodeError::BadLength { offset, .. }
            | DecodeError::NonStringKey { offset }
            | DecodeError::TooDeep { offset, .. }
            | DecodeError::TooManyItems { offset, .. }
            | DecodeError::TrailingBytes { offset }
            | DecodeError::Json { offset, .. } => *offset,
        }
    }
}

/// One bencode value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `i<decimal>e`: a signed 64-bit integer.
    Int(i64),
    /// `<length>:<bytes>`: a byte string, not necessarily UTF-8.
    Bytes(Bytes),
    /// `l<values>e`.
    List(Vec<Value>),
    /// `d<key><value>...e`, keys in arrival order.
    Dict(Dict),
}

impl Value {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list's items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Bytes(_) => "a string",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dictionary",
        }
    }

    /// The length of the bencode form, to size buffers up front.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Int(n) => 2 + int_len(*n),
            Value::Bytes(b) => string_len(b),
            Value::List(items) => 2 + items.iter().map(Value::encoded_len).sum::<usize>(),
            Value::Dict(d) => d.encoded_len(),
        }
    }

    /// Appends the bencode form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => {
                out.push(b'i');
                push_int(out, *n);
                out.push(b'e');
            }
            Value::Bytes(b) => push_string(out, b),
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.write_to(out));
                out.push(b'e');
            }
            Value::Dict(d) => d.write_to(out),
        }
    }

    /// The bencode form in a buffer of exactly the right size.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(Bytes::from(s))
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(items)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Value::Dict(d)
    }
}

/// A dictionary: keys (byte strings) with their values, in arrival order.
///
/// Duplicate keys are kept as they came, so that writing a parsed
/// dictionary gives back the same bytes; [`Dict::get`] returns the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dict {
    entries: Vec<(Bytes, Value)>,
}

impl Dict {
    /// An empty dictionary.
    pub fn new() -> Self {
        Dict::default()
    }

    /// An empty dictionary with room for `entries` keys.
    pub fn with_capacity(entries: usize) -> Self {
        Dict {
            entries: Vec::with_capacity(entries),
        }
    }

    /// Appends `key` with `value`; written after the keys pushed before.
    pub fn push(&mut self, key: impl Into<Bytes>, value: impl Into<Value>) {
        self.entries.push((key.into(), value.into()));
    }

    /// The value of the first entry whose key is exactly `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The entries in order.
    pub fn iter(&self) -> std::slice::Iter<'_, (Bytes, Value)> {
        self.entries.iter()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The length of the bencode form.
    pub fn encoded_len(&self) -> usize {
        let body: usize = self
            .entries
            .iter()
            .map(|(k, v)| string_len(k) + v.encoded_len())
            .sum();
        2 + body
    }

    /// Appends the bencode form to `out`, keys in the order pushed.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        for (k, v) in &self.entries {
            push_string(out, k);
            v.write_to(out);
        }
        out.push(b'e');
    }

    /// The bencode form in a buffer of exactly the right size.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// Parses one value from `input`: JSON if the first byte is `{`, bencode
/// otherwise. The whole input must be that one value.
pub fn parse(input: &Bytes, limits: &Limits) -> Result<Value, DecodeError> {
    if input.first() == Some(&b'{') {
        parse_json(input, limits)
    } else {
        parse_bencode(input, limits)
    }
}

/// Parses one bencode value; the whole input must be that value.
pub fn parse_bencode(input: &Bytes, limits: &Limits) -> Result<Value, DecodeError> {
    check_size(input, limits)?;
    let mut parser = Parser {
        input,
        pos: 0,
        items: 0,
        max_items: limits.max_items,
        max_depth: limits.max_depth.min(MAX_DEPTH_CEILING),
    };
    let value = parser.value(0)?;
    if parser.pos != input.len() {
        return Err(DecodeError::TrailingBytes { offset: parser.pos });
    }
    Ok(value)
}

/// The length of the one complete bencode value at the start of `input`,
/// or `None` while it is incomplete: how a byte stream (ng over TCP, where
/// a message ends where its dictionary does) is cut into messages. An
/// input that can never become a value is an error.
pub fn value_len(input: &Bytes, limits: &Limits) -> Result<Option<usize>, DecodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        items: 0,
        max_items: limits.max_items,
        max_depth: limits.max_depth.min(MAX_DEPTH_CEILING),
    };
    match parser.value(0) {
        Ok(_) if parser.pos > limits.max_input_bytes => Err(DecodeError::TooLarge {
            len: parser.pos,
            max: limits.max_input_bytes,
        }),
        Ok(_) => Ok(Some(parser.pos)),
        Err(DecodeError::Truncated { .. }) if input.len() <= limits.max_input_bytes => Ok(None),
        Err(DecodeError::Truncated { .. }) => Err(DecodeError::TooLarge {
            len: input.len(),
            max: limits.max_input_bytes,
        }),
        Err(e) => Err(e),
    }
}

/// Refuses an input over [`Limits::max_input_bytes`].
pub(super) fn check_size(input: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if input.len() > limits.max_input_bytes {
        return Err(DecodeError::TooLarge {
            len: input.len(),
            max: limits.max_input_bytes,
        });
    }
    Ok(())
}

/// A recursive-descent parser over one input. Recursion is bounded by
/// `max_depth`, loops by `max_items` (each turn parses an item or fails).
struct Parser<'a> {
    input: &'a Bytes,
    pos: usize,
    items: usize,
    max_items: usize,
    max_depth: usize,
}

impl Parser<'_> {
    /// One value of any kind; `depth` counts the containers around it.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.count_item()?;
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.string().map(Value::Bytes),
            b'l' => self.list(depth + 1),
            b'd' => self.dict(depth + 1),
            byte => Err(DecodeError::UnexpectedByte {
                offset: self.pos,
                byte,
            }),
        }
    }

    fn count_item(&mut self) -> Result<(), DecodeError> {
        self.items += 1;
        if self.items > self.max_items {
            return Err(DecodeError::TooManyItems {
                offset: self.pos,
                max: self.max_items,
            });
        }
        Ok(())
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated { offset: self.pos })
    }

    /// Steps over the `l` or `d` of a container at `depth`.
    fn enter(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.max_depth {
            return Err(DecodeError::TooDeep {
                offset: self.pos,
                max: self.max_depth,
            });
        }
        self.pos += 1;
        Ok(())
    }

    /// Steps over a container's closing `e` if it is next.
    fn at_end(&mut self) -> Result<bool, DecodeError> {
        let end = self.peek()? == b'e';
        if end {
            self.pos += 1;
        }
        Ok(end)
    }

    fn list(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.enter(depth)?;
        let mut items = Vec::new();
        while !self.at_end()? {
            items.push(self.value(depth)?);
        }
        Ok(Value::List(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.enter(depth)?;
        let mut dict = Dict::new();
        while !self.at_end()? {
            if !self.peek()?.is_ascii_digit() {
                return Err(DecodeError::NonStringKey { offset: self.pos });
            }
            self.count_item()?;
            let key = self.string()?;
            let value = self.value(depth)?;
            dict.entries.push((key, value));
        }
        Ok(Value::Dict(dict))
    }

    /// `i<digits>e`, with `self.pos` on the `i`.
    fn int(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let digits_at = start + 1;
        let rest = &self.input[digits_at..];
        let Some(len) = memchr::memchr(b'e', rest) else {
            return Err(DecodeError::Truncated {
                offset: self.input.len(),
            });
        };
        let n = parse_int(&rest[..len], start, digits_at)?;
        self.pos = digits_at + len + 1;
        Ok(n)
    }

    /// `<length>:<bytes>`, with `self.pos` on the first digit.
    fn string(&mut self) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let len = parse_length(&rest[..digits], start)?;
        let colon_at = start + digits;
        match self.input.get(colon_at) {
            Some(b':') => {}
            Some(&byte) => {
                return Err(DecodeError::UnexpectedByte {
                    offset: colon_at,
                    byte,
                })
            }
            None => return Err(DecodeError::Truncated { offset: colon_at }),
        }
        let body_at = colon_at + 1;
        // A length near usize::MAX saturates here and then fails the
        // comparison, like any other length that runs past the end.
        let end = body_at.saturating_add(len);
        if end > self.input.len() {
            return Err(DecodeError::Truncated {
                offset: self.input.len(),
            });
        }
        self.pos = end;
        Ok(self.input.slice(body_at..end))
    }
}

/// The digits of an integer, `-` allowed first. `start` is the offset of
/// the `i`, `digits_at` of the first byte after it.
fn parse_int(text: &[u8], start: usize, digits_at: usize) -> Result<i64, DecodeError> {
    let bad = |reason| DecodeError::BadInteger {
        offset: start,
        reason,
    };
    let (negative, digits, first_digit_at) = match text.split_first() {
        Some((b'-', rest)) => (true, rest, digits_at + 1),
        _ => (false, text, digits_at),
    };
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err(DecodeError::UnexpectedByte {
            offset: first_digit_at + i,
            byte: digits[i],
        });
    }
    match digits {
        [] => return Err(bad("no digits")),
        [b'0'] if negative => return Err(bad("negative zero")),
        [b'0', _, ..] => return Err(bad("leading zero")),
        _ => {}
    }
    // Accumulate towards the sign so that i64::MIN parses.
    let mut n: i64 = 0;
    for &b in digits {
        let d = i64::from(b - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(bad("out of range"))?;
    }
    Ok(n)
}

/// The digits of a string length (already known to be digits only).
fn parse_length(digits: &[u8], start: usize) -> Result<usize, DecodeError> {
    let bad = |reason| DecodeError::BadLength {
        offset: start,
        reason,
    };
    match digits {
        [] => return Err(bad("no digits")),
        [b'0', _, ..] => return Err(bad("leading zero")),
        _ => {}
    }
    let mut n: usize = 0;
    for &b in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(bad("out of range"))?;
    }
    Ok(n)
}

fn string_len(b: &[u8]) -> usize {
    decimal_len(b.len() as u64) + 1 + b.len()
}

fn int_len(n: i64) -> usize {
    usize::from(n < 0) + decimal_len(n.unsigned_abs())
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn push_string(out: &mut Vec<u8>, b: &[u8]) {
    push_decimal(out, b.len() as u64);
    out.push(b':');
    out.extend_from_slice(b);
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(out, n.unsigned_abs());
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_str(s: &str) -> Result<Value, DecodeError> {
        parse(&Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
    }

    fn b(s: &'static str) -> Value {
        Value::from(s)
    }

    fn dict(entries: Vec<(&'static str, Value)>) -> Value {
        let mut d = Dict::new();
        for (k, v) in entries {
            d.push(k, v);
        }
        Value::Dict(d)
    }

    #[test]
    fn scalars_parse() {
        assert_eq!(parse_str("i0e"), Ok(Value::Int(0)));
        assert_eq!(parse_str("i42e"), Ok(Value::Int(42)));
        assert_eq!(parse_str("i-17e"), Ok(Value::Int(-17)));
        assert_eq!(parse_str("i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(
            parse_str("i-9223372036854775808e"),
            Ok(Value::Int(i64::MIN))
        );
        assert_eq!(parse_str("0:"), Ok(b("")));
        assert_eq!(parse_str("4:spam"), Ok(b("spam")));
    }

    #[test]
    fn strings_keep_any_bytes() {
        let input = Bytes::from_static(b"5:a\r\n\x00\xff");
        let v = parse(&input, &Limits::default());
        assert_eq!(v, Ok(Value::Bytes(Bytes::from_static(b"a\r\n\x00\xff"))));
    }

    #[test]
    fn strings_are_slices_of_the_input() {
        let input = Bytes::from_static(b"l4:spame");
        let v = parse(&input, &Limits::default()).expect("valid");
        let s = v.as_list().and_then(|l| l[0].as_bytes()).expect("string");
        assert_eq!(s.as_ptr(), input[3..].as_ptr());
    }

    #[test]
    fn nested_containers_parse() {
        let v = parse_str("d4:listli1e4:spamd1:ai2eee1:x0:e").expect("valid");
        let want = dict(vec![
            (
                "list",
                Value::List(vec![
                    Value::Int(1),
                    b("spam"),
                    dict(vec![("a", Value::Int(2))]),
                ]),
            ),
            ("x", b("")),
        ]);
        assert_eq!(v, want);
    }

    #[test]
    fn unsorted_keys_keep_arrival_order_and_write_back_the_same() {
        let input = "d3:zzz1:a3:aaa1:b7:command4:pinge";
        let v = parse_str(input).expect("valid");
        let keys: Vec<&[u8]> = v
            .as_dict()
            .expect("dict")
            .iter()
            .map(|(k, _)| k.as_ref())
            .collect();
        assert_eq!(keys, [&b"zzz"[..], b"aaa", b"command"]);
        assert_eq!(v.to_bytes(), input.as_bytes());
    }

    #[test]
    fn duplicate_keys_are_kept_and_get_returns_the_first() {
        let v = parse_str("d1:ai1e1:ai2ee").expect("valid");
        let d = v.as_dict().expect("dict");
        assert_eq!(d.len(), 2);
        assert_eq!(d.get(b"a"), Some(&Value::Int(1)));
        assert_eq!(v.to_bytes(), &b"d1:ai1e1:ai2ee"[..]);
    }

    #[test]
    fn writer_emits_keys_in_push_order() {
        let mut d = Dict::new();
        d.push("sdp", "v=0");
        d.push("result", "ok");
        assert_eq!(d.to_bytes(), &b"d3:sdp3:v=06:result2:oke"[..]);
        assert_eq!(d.encoded_len(), d.to_bytes().len());
    }

    #[test]
    fn malformed_integers_are_errors() {
        let bad = |s: &str, reason: &str| match parse_str(s) {
            Err(DecodeError::BadInteger {
                offset: 0,
                reason: r,
            }) => assert_eq!(r, reason, "{s}"),
            other => panic!("{s}: {other:?}"),
        };
        bad("ie", "no digits");
        bad("i-e", "no digits");
        bad("i03e", "leading zero");
        bad("i00e", "leading zero");
        bad("i-03e", "leading zero");
        bad("i-0e", "negative zero");
        bad("i9223372036854775808e", "out of range");
        bad("i-9223372036854775809e", "out of range");
        assert_eq!(
            parse_str("i1x2e"),
            Err(DecodeError::UnexpectedByte {
                offset: 2,
                byte: b'x'
            })
        );
        assert_eq!(
            parse_str("i--1e"),
            Err(DecodeError::UnexpectedByte {
                offset: 2,
                byte: b'-'
            })
        );
        assert_eq!(parse_str("i12"), Err(DecodeError::Truncated { offset: 3 }));
    }

    #[test]
    fn malformed_lengths_are_errors() {
        assert!(matches!(
            parse_str("04:spam"),
            Err(DecodeError::BadLength { offset: 0, .. })
        ));
        assert!(matches!(
            parse_str("99999999999999999999999:x"),
            Err(DecodeError::BadLength {
                offset: 0,
                reason: "out of range"
            })
        ));
        assert_eq!(
            parse_str("5:spam"),
            Err(DecodeError::Truncated { offset: 6 })
        );
        assert_eq!(
            parse_str("18446744073709551615:x"),
            Err(DecodeError::Truncated { offset: 22 })
        );
        assert_eq!(
            parse_str("4spam"),
            Err(DecodeError::UnexpectedByte {
                offset: 1,
                byte: b's'
            })
        );
        assert_eq!(parse_str("4"), Err(DecodeError::Truncated { offset: 1 }));
    }

    #[test]
    fn truncated_containers_are_errors() {
        for (input, offset) in [
            ("", 0),
            ("l", 1),
            ("li1e", 4),
            ("d", 1),
            ("d1:a", 4),
            ("d1:ai1e", 7),
            ("d3:sdp", 6),
        ] {
            assert_eq!(
                parse_str(input),
                Err(DecodeError::Truncated { offset }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn other_malformed_forms_are_errors() {
        assert_eq!(
            parse_str("x"),
            Err(DecodeError::UnexpectedByte {
                offset: 0,
                byte: b'x'
            })
        );
        assert_eq!(
            parse_str("di1ei2ee"),
            Err(DecodeError::NonStringKey { offset: 1 })
        );
        assert_eq!(
            parse_str("d1:ae"),
            Err(DecodeError::UnexpectedByte {
                offset: 4,
                byte: b'e'
            })
        );
        assert_eq!(
            parse_str("i1ei2e"),
            Err(DecodeError::TrailingBytes { offset: 3 })
        );
        assert_eq!(
            parse_str("de\n"),
            Err(DecodeError::TrailingBytes { offset: 2 })
        );
    }

    #[test]
    fn depth_limit_is_an_error_with_the_offset() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let ok = Bytes::from_static(b"llleee");
        assert!(parse(&ok, &limits).is_ok());
        let deep = Bytes::from_static(b"lllleeee");
        assert_eq!(
            parse(&deep, &limits),
            Err(DecodeError::TooDeep { offset: 3, max: 3 })
        );
    }

    #[test]
    fn depth_is_capped_even_when_configured_higher() {
        let limits = Limits {
            max_depth: usize::MAX,
            max_items: usize::MAX,
            ..Limits::default()
        };
        let mut deep = vec![b'l'; 1000];
        deep.extend(vec![b'e'; 1000]);
        let err = parse(&Bytes::from(deep), &limits).expect_err("too deep");
        assert_eq!(
            err,
            DecodeError::TooDeep {
                offset: MAX_DEPTH_CEILING,
                max: MAX_DEPTH_CEILING
            }
        );
    }

    #[test]
    fn size_and_item_limits_are_errors() {
        let small = Limits {
            max_input_bytes: 8,
            ..Limits::default()
        };
        let big = Bytes::from_static(b"9:123456789");
        assert_eq!(
            parse(&big, &small),
            Err(DecodeError::TooLarge { len: 11, max: 8 })
        );
        assert_eq!(parse(&big, &small).map_err(|e| e.offset()), Err(8));
        assert!(parse(
            &Bytes::from_static(b"8:12345678"),
            &Limits {
                max_input_bytes: 10,
                ..small
            }
        )
        .is_ok());
        let limits = Limits {
            max_items: 3,
            ..Limits::default()
        };
        assert!(parse(&Bytes::from_static(b"li1ei2ee"), &limits).is_ok());
        assert_eq!(
            parse(&Bytes::from_static(b"li1ei2ei3ee"), &limits),
            Err(DecodeError::TooManyItems { offset: 7, max: 3 })
        );
        // Keys count as items too.
        assert_eq!(
            parse(&Bytes::from_static(b"d1:ai1ee"), &limits).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            parse(&Bytes::from_static(b"d1:a0:1:be"), &limits),
            Err(DecodeError::TooManyItems { offset: 6, max: 3 })
        );
    }

    #[test]
    fn errors_say_where() {
        let err = parse_str("d3:abci03ee").expect_err("leading zero");
        assert_eq!(err.offset(), 6);
        assert_eq!(err.to_string(), "bad integer at byte 6: leading zero");
    }

    #[test]
    fn integers_write_at_the_extremes() {
        for n in [0, 1, -1, 9, 10, -10, i64::MAX, i64::MIN] {
            let v = Value::Int(n);
            let bytes = v.to_bytes();
            assert_eq!(bytes, format!("i{n}e").as_bytes());
            assert_eq!(v.encoded_len(), bytes.len());
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..12)
                .prop_map(|v| Value::Bytes(Bytes::from(v))),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..8), inner),
                    0..6
                )
                .prop_map(|entries| {
                    let mut d = Dict::new();
                    for (k, v) in entries {
                        d.push(Bytes::from(k), v);
                    }
                    Value::Dict(d)
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let input = Bytes::from(input);
            if let Ok(v) = parse(&input, &Limits::default()) {
                let again = parse_bencode(&v.to_bytes(), &Limits::default());
                prop_assert_eq!(again, Ok(v));
            }
        }

        #[test]
        fn bencode_shaped_bytes_never_panic(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'i'), Just(b'e'), Just(b'l'), Just(b'd'), Just(b':'),
                    Just(b'-'), Just(b'0'), Just(b'1'), Just(b'9'), any::<u8>()
                ],
                0..64,
            )
        ) {
            let _ = parse(&Bytes::from(input), &Limits::default());
        }

        #[test]
        fn write_then_parse_gives_the_same_value(v in arb_value()) {
            let bytes = v.to_bytes();
            prop_assert_eq!(bytes.len(), v.encoded_len());
            prop_assert_eq!(parse_bencode(&bytes, &Limits::default()), Ok(v));
        }
    }

    #[test]
    fn value_len_cuts_a_stream_into_values() {
        let limits = Limits::default();
        let len = |s: &'static str| value_len(&Bytes::from_static(s.as_bytes()), &limits);
        assert_eq!(len("d7:command4:pinge"), Ok(Some(17)));
        assert_eq!(len("d7:command4:pinged3:"), Ok(Some(17)));
        assert_eq!(len("d7:command4:pi"), Ok(None));
        assert_eq!(len("d7:comm"), Ok(None));
        assert_eq!(len(""), Ok(None));
        assert!(len("x").is_err());
        let small = Limits {
            max_input_bytes: 8,
            ..Limits::default()
        };
        let long = Bytes::from_static(b"d7:command4:pinge");
        assert!(matches!(
            value_len(&long, &small),
            Err(DecodeError::TooLarge { .. })
        ));
        let open = Bytes::from_static(b"d7:command4:pin");
        assert!(matches!(
            value_len(&open, &small),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
