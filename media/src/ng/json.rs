//! The JSON form of ng requests: rtpengine takes JSON on the ng port when
//! the first byte is `{`, and so do we.
//!
//! JSON maps onto bencode as: objects become dictionaries, arrays lists,
//! strings byte strings (UTF-8), integers integers. Floats, `true`, `false`
//! and `null` have no bencode form and are refused. Keys come out in the
//! order serde_json's map keeps them (sorted, with serde_json's default
//! features), which is harmless: ng requests are looked up by key, and JSON
//! objects are unordered anyway (RFC 8259 section 4).
//!
//! Before serde_json sees the input, one pass over the bytes enforces the
//! depth and item limits and refuses the values with no bencode form, so
//! that those errors carry the exact byte offset and an input over the
//! limits costs no allocation.

use bytes::Bytes;

use super::bencode::{check_size, DecodeError, Dict, Limits, Value, MAX_DEPTH_CEILING};

/// Parses a JSON object (or any JSON value) into a [`Value`], under the
/// same limits as bencode.
pub fn parse_json(input: &Bytes, limits: &Limits) -> Result<Value, DecodeError> {
    check_size(input, limits)?;
    Scan::new(limits).run(input)?;
    let json: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| serde_error(input, &e))?;
    convert(json)
}

/// The byte offset serde_json means by its line and column (both count
/// from 1; the column in bytes).
fn serde_error(input: &[u8], e: &serde_json::Error) -> DecodeError {
    let line_start = if e.line() <= 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', input)
            .nth(e.line() - 2)
            .map_or(input.len(), |nl| nl + 1)
    };
    let offset = (line_start + e.column().saturating_sub(1)).min(input.len());
    DecodeError::Json {
        offset,
        reason: e.to_string(),
    }
}

fn convert(json: serde_json::Value) -> Result<Value, DecodeError> {
    use serde_json::Value as J;
    match json {
        J::String(s) => Ok(Value::Bytes(Bytes::from(s))),
        J::Number(n) => n.as_i64().map(Value::Int).ok_or_else(|| unsupported(0)),
        J::Array(items) => items
            .into_iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        J::Object(map) => {
            let mut dict = Dict::with_capacity(map.len());
            for (k, v) in map {
                dict.push(k, convert(v)?);
            }
            Ok(Value::Dict(dict))
        }
        // The scan refuses these (and floats, and integers out of range)
        // with their offsets, so this is only a second line of defence.
        J::Null | J::Bool(_) => Err(unsupported(0)),
    }
}

fn unsupported(offset: usize) -> DecodeError {
    DecodeError::Json {
        offset,
        reason: "floats, true, false and null have no bencode form".into(),
    }
}

/// One pass over JSON bytes outside serde_json: the limits, and the values
/// with no bencode form. It does not check the syntax (serde_json does);
/// on input that is not JSON it may report one of its own errors instead,
/// which is still an error at a true offset.
struct Scan {
    max_depth: usize,
    max_items: usize,
    depth: usize,
    items: usize,
    in_string: bool,
    escaped: bool,
    /// Where the number being read started, while reading one.
    number_at: Option<usize>,
}

impl Scan {
    fn new(limits: &Limits) -> Self {
        Scan {
            max_depth: limits.max_depth.min(MAX_DEPTH_CEILING),
            max_items: limits.max_items,
            depth: 0,
            items: 0,
            in_string: false,
            escaped: false,
            number_at: None,
        }
    }

    fn run(mut self, input: &[u8]) -> Result<(), DecodeError> {
        for (at, &byte) in input.iter().enumerate() {
            if self.in_string {
                self.string_byte(byte);
            } else {
                self.byte(input, at, byte)?;
            }
        }
        self.end_number(input, input.len())
    }

    fn string_byte(&mut self, byte: u8) {
        if self.escaped {
            self.escaped = false;
        } else if byte == b'\\' {
            self.escaped = true;
        } else if byte == b'"' {
            self.in_string = false;
        }
    }

    fn byte(&mut self, input: &[u8], at: usize, byte: u8) -> Result<(), DecodeError> {
        let in_number = self.number_at.is_some();
        match byte {
            b'-' | b'0'..=b'9' if !in_number => {
                self.count_item(at)?;
                self.number_at = Some(at);
            }
            b'-' | b'0'..=b'9' => {}
            b'.' | b'e' | b'E' | b'+' if in_number => return Err(unsupported(at)),
            _ => {
                self.end_number(input, at)?;
                self.structural(at, byte)?;
            }
        }
        Ok(())
    }

    /// A byte outside strings and numbers.
    fn structural(&mut self, at: usize, byte: u8) -> Result<(), DecodeError> {
        match byte {
            b'"' => {
                self.count_item(at)?;
                self.in_string = true;
            }
            b'{' | b'[' => {
                self.count_item(at)?;
                self.depth += 1;
                if self.depth > self.max_depth {
                    return Err(DecodeError::TooDeep {
                        offset: at,
                        max: self.max_depth,
                    });
                }
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b't' | b'f' | b'n' => return Err(unsupported(at)),
            // Whitespace, `,` and `:`; anything else serde_json refuses.
            _ => {}
        }
        Ok(())
    }

    fn count_item(&mut self, at: usize) -> Result<(), DecodeError> {
        self.items += 1;
        if self.items > self.max_items {
            return Err(DecodeError::TooManyItems {
                offset: at,
                max: self.max_items,
            });
        }
        Ok(())
    }

    /// Checks the number that ends before `end`, if one was being read:
    /// it must be an `i64`, and not `-0` (bencode has no negative zero).
    fn end_number(&mut self, input: &[u8], end: usize) -> Result<(), DecodeError> {
        let Some(start) = self.number_at.take() else {
            return Ok(());
        };
        let text = &input[start..end];
        let bad = |reason| DecodeError::BadInteger {
            offset: start,
            reason,
        };
        if text == b"-0" {
            return Err(bad("negative zero"));
        }
        // The text is ASCII digits and `-` only, so it is UTF-8.
        let parsed = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        match parsed {
            Some(_) => Ok(()),
            None if text.iter().skip(1).any(|&b| b == b'-') || text == b"-" => {
                Err(DecodeError::Json {
                    offset: start,
                    reason: "malformed number".into(),
                })
            }
            None => Err(bad("out of range")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::bencode::parse;

    fn json(s: &str) -> Result<Value, DecodeError> {
        parse(&Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
    }

    #[test]
    fn json_object_becomes_a_dictionary() {
        let v = json(r#"{"command":"offer","flags":["trust-address"],"n":-5,"d":{"x":[]}}"#)
            .expect("valid");
        let d = v.as_dict().expect("dict");
        assert_eq!(d.get(b"command"), Some(&Value::from("offer")));
        assert_eq!(
            d.get(b"flags"),
            Some(&Value::List(vec![Value::from("trust-address")]))
        );
        assert_eq!(d.get(b"n"), Some(&Value::Int(-5)));
        let inner = d.get(b"d").and_then(Value::as_dict).expect("inner");
        assert_eq!(inner.get(b"x"), Some(&Value::List(vec![])));
    }

    #[test]
    fn json_escapes_become_bytes() {
        let v = json(r#"{"sdp":"v=0\r\nc=IN IP4 \u0031.2.3.4\r\n"}"#).expect("valid");
        let sdp = v.as_dict().and_then(|d| d.get(b"sdp")).expect("sdp");
        assert_eq!(sdp, &Value::from("v=0\r\nc=IN IP4 1.2.3.4\r\n"));
    }

    #[test]
    fn json_without_bencode_form_is_refused_with_the_offset() {
        for (input, offset) in [
            (r#"{"a":1.5}"#, 6),
            (r#"{"a":1e3}"#, 6),
            (r#"{"a":true}"#, 5),
            (r#"{"a":null}"#, 5),
            (r#"{"a":false}"#, 5),
        ] {
            match json(input) {
                Err(DecodeError::Json { offset: o, .. }) => assert_eq!(o, offset, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert_eq!(
            json(r#"{"a":99999999999999999999}"#),
            Err(DecodeError::BadInteger {
                offset: 5,
                reason: "out of range"
            })
        );
        assert_eq!(
            json(r#"{"a":-0}"#),
            Err(DecodeError::BadInteger {
                offset: 5,
                reason: "negative zero"
            })
        );
    }

    #[test]
    fn json_strings_may_hold_anything() {
        let v = json(r#"{"a":"true 1.5 [[[ { \" null"}"#).expect("valid");
        let a = v.as_dict().and_then(|d| d.get(b"a")).expect("a");
        assert_eq!(a, &Value::from("true 1.5 [[[ { \" null"));
    }

    #[test]
    fn json_limits_apply() {
        let limits = Limits {
            max_depth: 2,
            max_items: 4,
            ..Limits::default()
        };
        let p = |s: &'static str| parse(&Bytes::from_static(s.as_bytes()), &limits);
        assert!(p(r#"{"a":[1]}"#).is_ok());
        assert_eq!(
            p(r#"{"a":[[1]]}"#),
            Err(DecodeError::TooDeep { offset: 6, max: 2 })
        );
        assert_eq!(
            p(r#"{"a":[1,2,3]}"#),
            Err(DecodeError::TooManyItems { offset: 8, max: 4 })
        );
    }

    #[test]
    fn bad_json_is_an_error_near_the_problem() {
        let err = json("{\"a\":\n  \"b\" \"c\"}").expect_err("missing comma");
        assert!(matches!(err, DecodeError::Json { .. }), "{err:?}");
        assert!((10..=13).contains(&err.offset()), "{err:?}");
        assert!(json(r#"{"a":1} x"#).is_err());
        assert!(json(r#"{"a":01}"#).is_err());
        assert!(json(r#"{"a":1-2}"#).is_err());
        assert!(json(r#"{"a":"#).is_err());
    }
}
