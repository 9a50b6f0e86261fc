//! Lexical rules of RFC 3261 section 25.1: character classes, linear whitespace,
//! quoted strings and the comma split of multi-value header fields.
//!
//! Header values are kept as received, so folded values still hold their CRLFs;
//! every helper here treats CR and LF as whitespace, which is what unfolding means.

/// Below this length a plain loop finds a byte faster than `memchr`, whose
/// setup costs more than the scan of a short URI or parameter.
const SHORT: usize = 32;

/// `memchr::memchr`, cheaper on the short slices of URIs and parameters.
#[inline]
pub(crate) fn find(needle: u8, s: &[u8]) -> Option<usize> {
    if s.len() < SHORT {
        s.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, s)
    }
}

/// `memchr::memchr2`, cheaper on short slices.
#[inline]
pub(crate) fn find2(a: u8, b: u8, s: &[u8]) -> Option<usize> {
    if s.len() < SHORT {
        s.iter().position(|&c| c == a || c == b)
    } else {
        memchr::memchr2(a, b, s)
    }
}

/// Characters of RFC 3261 `token`.
const TOKEN_EXTRA: &[u8] = b"-.!%*_+`'~";
/// Characters of `word` (Call-ID) beyond `token`.
const WORD_EXTRA: &[u8] = b"()<>:\\\"/[]?{}";
/// `unreserved` marks (RFC 3261 25.1).
const MARK: &[u8] = b"-_.!~*'()";
/// `user-unreserved`.
const USER_UNRESERVED: &[u8] = b"&=+$,;?/";
/// `&=+$,` allowed in a password besides unreserved.
const PASSWORD_EXTRA: &[u8] = b"&=+$,";
/// `param-unreserved`.
const PARAM_UNRESERVED: &[u8] = b"[]/:&+$";
/// `hnv-unreserved`.
const HNV_UNRESERVED: &[u8] = b"[]/?:+$";
/// `reserved`: an escaped reserved character is not equal to the literal one.
const RESERVED: &[u8] = b";/?:@&=+$,";

const fn class_table(extra: &[u8], alnum: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = alnum && b.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

static TOKEN: [bool; 256] = class_table(TOKEN_EXTRA, true);
static WORD: [bool; 256] = {
    let mut t = class_table(TOKEN_EXTRA, true);
    let mut i = 0;
    while i < WORD_EXTRA.len() {
        t[WORD_EXTRA[i] as usize] = true;
        i += 1;
    }
    t
};
/// `unreserved`: the base of the URI component tables below.
const UNRESERVED: [bool; 256] = class_table(MARK, true);

/// `table` with the characters of `extra` added.
const fn with_extra(mut table: [bool; 256], extra: &[u8]) -> [bool; 256] {
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// Literal characters of each URI component (`unreserved` plus its extras);
/// escapes are handled apart.
static URI_USER: [bool; 256] = with_extra(UNRESERVED, USER_UNRESERVED);
static URI_PASSWORD: [bool; 256] = with_extra(UNRESERVED, PASSWORD_EXTRA);
static URI_PARAM: [bool; 256] = with_extra(UNRESERVED, PARAM_UNRESERVED);
static URI_HEADER: [bool; 256] = with_extra(UNRESERVED, HNV_UNRESERVED);

/// Is `b` a `token` character?
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// Is `s` a non-empty `token`?
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// Is `s` a non-empty `word` (the Call-ID alphabet)?
pub(crate) fn is_word(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| WORD[b as usize])
}

/// Linear whitespace, including the CR and LF of a folded line.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing LWS.
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

#[inline]
pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_lws(b)).count();
    &s[n..]
}

#[inline]
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| is_lws(b)).count();
    &s[..s.len() - n]
}

/// Which characters a URI component may hold besides `unreserved` and escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UriPart {
    User,
    Password,
    Param,
    Header,
}

/// Is `s` made of `unreserved`, escapes (`%HH`) and the extra characters of `part`?
pub(crate) fn is_uri_component(s: &[u8], part: UriPart) -> bool {
    let table = match part {
        UriPart::User => &URI_USER,
        UriPart::Password => &URI_PASSWORD,
        UriPart::Param => &URI_PARAM,
        UriPart::Header => &URI_HEADER,
    };
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if table[b as usize] {
            i += 1;
            continue;
        }
        // `%` is in no table, so anything else is not allowed.
        if b != b'%' || i + 2 >= s.len() {
            return false;
        }
        if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
            return false;
        }
        i += 3;
    }
    true
}

/// One character of a URI component after unescaping: the byte, and whether it was
/// an escaped reserved character (which RFC 3261 19.1.4 keeps distinct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UriChar {
    pub byte: u8,
    pub escaped_reserved: bool,
}

/// The characters of a URI component with `%HH` escapes decoded. A malformed escape
/// is taken literally (components are validated before they are compared).
pub(crate) fn uri_chars(s: &[u8]) -> impl Iterator<Item = UriChar> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *s.get(i)?;
        if b == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex_value(s[i + 1]), hex_value(s[i + 2])) {
                i += 3;
                let byte = h << 4 | l;
                return Some(UriChar {
                    byte,
                    escaped_reserved: RESERVED.contains(&byte),
                });
            }
        }
        i += 1;
        Some(UriChar {
            byte: b,
            escaped_reserved: false,
        })
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `%HH` escapes. Borrowed when there is nothing to decode.
pub(crate) fn unescape(s: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(uri_chars(s).map(|c| c.byte).collect())
}

/// Length of the quoted string at the start of `s` (which starts with `"`),
/// including both quotes, or `None` when it is not terminated.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    loop {
        // A backslash quotes the next byte, whatever it is.
        let j = i + memchr::memchr2(b'"', b'\\', s.get(i..)?)?;
        if s[j] == b'"' {
            return Some(j + 1);
        }
        i = j + 2;
    }
}

/// The content of a quoted string (without quotes) with quoted-pairs resolved.
/// Borrowed when there is no backslash.
pub(crate) fn unquote(quoted: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let inner = if quoted.len() >= 2 && quoted[0] == b'"' && quoted[quoted.len() - 1] == b'"' {
        &quoted[1..quoted.len() - 1]
    } else {
        quoted
    };
    if memchr::memchr(b'\\', inner).is_none() {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            i += 1;
        }
        out.push(inner[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Position of the first `needle` in `s` that is outside quoted strings and
/// angle brackets, or `None`.
pub(crate) fn find_top_level(s: &[u8], needle: u8) -> Option<usize> {
    debug_assert!(!matches!(needle, b'"' | b'<' | b'>'));
    let mut i = 0;
    loop {
        // Outside brackets only `"`, `<` and the needle matter; inside them only
        // the closing `>` does (quotes there are literal).
        let j = i + memchr::memchr3(needle, b'"', b'<', &s[i..])?;
        match s[j] {
            b'"' => i = j + quoted_len(&s[j..])?,
            b'<' => i = j + 2 + memchr::memchr(b'>', &s[j + 1..])?,
            _ => return Some(j),
        }
    }
}

/// Splits a header value at the commas that separate values (RFC 3261 7.3.1), not
/// at commas inside quoted strings or `<>`. Pieces are returned untrimmed, with
/// their offset in `s`.
pub(crate) struct CommaSplit<'a> {
    rest: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit {
            rest: s,
            offset: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    /// The piece and its offset in the split value.
    type Item = (&'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.offset;
        match find_top_level(self.rest, b',') {
            Some(i) => {
                let piece = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                self.offset += i + 1;
                Some((piece, start))
            }
            None => {
                self.done = true;
                Some((self.rest, start))
            }
        }
    }
}

/// Parses a decimal number of at most `max`, rejecting signs, empty input and
/// overflow. Leading zeros are allowed (RFC 4475 3.1.1.1).
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_skips_quoted_and_bracketed_commas() {
        let v = b"\"a, b\" <sip:x@y;p=1,2>;q=1, <sip:z@w>";
        let parts: Vec<_> = CommaSplit::new(v).map(|(p, _)| trim(p)).collect();
        assert_eq!(parts, [&b"\"a, b\" <sip:x@y;p=1,2>;q=1"[..], b"<sip:z@w>"]);
    }

    #[test]
    fn quoted_string_with_escaped_quote() {
        assert_eq!(quoted_len(b"\"a\\\"b\" rest"), Some(6));
        assert_eq!(quoted_len(b"\"open"), None);
        assert_eq!(&*unquote(b"\"a\\\"b\""), b"a\"b");
    }

    #[test]
    fn uri_component_escapes() {
        assert!(is_uri_component(b"null-%00-null", UriPart::User));
        assert!(!is_uri_component(b"bad%2", UriPart::User));
        assert!(!is_uri_component(b"bad%", UriPart::User));
        assert!(!is_uri_component(b"a b", UriPart::User));
        assert_eq!(&*unescape(b"%75se%72"), b"user");
    }

    /// The byte-at-a-time scanners the fast ones replaced: the oracle.
    fn quoted_len_reference(s: &[u8]) -> Option<usize> {
        let mut i = 1;
        while i < s.len() {
            match s[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    fn find_top_level_reference(s: &[u8], needle: u8) -> Option<usize> {
        let mut i = 0;
        let mut in_angle = false;
        while i < s.len() {
            let b = s[i];
            if b == b'"' && !in_angle {
                i += quoted_len_reference(&s[i..])?;
                continue;
            }
            if b == b'<' {
                in_angle = true;
            } else if b == b'>' {
                in_angle = false;
            } else if b == needle && !in_angle {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn is_uri_component_reference(s: &[u8], part: UriPart) -> bool {
        let extra = match part {
            UriPart::User => USER_UNRESERVED,
            UriPart::Password => PASSWORD_EXTRA,
            UriPart::Param => PARAM_UNRESERVED,
            UriPart::Header => HNV_UNRESERVED,
        };
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if b == b'%' {
                if i + 2 >= s.len()
                    || !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit())
                {
                    return false;
                }
                i += 3;
                continue;
            }
            if !(UNRESERVED[b as usize] || extra.contains(&b)) {
                return false;
            }
            i += 1;
        }
        true
    }

    proptest::proptest! {
        #[test]
        fn fast_scanners_match_the_reference(
            s in proptest::collection::vec(proptest::sample::select(
                b"a,\"<>\\; %2fF&=+$[]/?:x\r\n\t\x00\xff".to_vec()), 0..40)
        ) {
            proptest::prop_assert_eq!(find_top_level(&s, b','), find_top_level_reference(&s, b','));
            let split: Vec<_> = CommaSplit::new(&s).collect();
            let mut reference = Vec::new();
            let (mut rest, mut offset) = (&s[..], 0);
            loop {
                match find_top_level_reference(rest, b',') {
                    Some(i) => {
                        reference.push((&rest[..i], offset));
                        rest = &rest[i + 1..];
                        offset += i + 1;
                    }
                    None => {
                        reference.push((rest, offset));
                        break;
                    }
                }
            }
            proptest::prop_assert_eq!(split, reference);
            let mut quoted = vec![b'"'];
            quoted.extend_from_slice(&s);
            proptest::prop_assert_eq!(quoted_len(&quoted), quoted_len_reference(&quoted));
            for part in [UriPart::User, UriPart::Password, UriPart::Param, UriPart::Header] {
                proptest::prop_assert_eq!(
                    is_uri_component(&s, part),
                    is_uri_component_reference(&s, part)
                );
            }
        }
    }

    #[test]
    fn uri_tables_cover_every_byte() {
        for part in [
            UriPart::User,
            UriPart::Password,
            UriPart::Param,
            UriPart::Header,
        ] {
            for b in 0..=255u8 {
                assert_eq!(
                    is_uri_component(&[b], part),
                    is_uri_component_reference(&[b], part),
                    "{part:?} {b}"
                );
            }
        }
    }

    #[test]
    fn decimal_limits() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"300", 255), None);
        assert_eq!(parse_decimal(b"-1", 255), None);
        assert_eq!(parse_decimal(b"99999999999999999999999", u64::MAX), None);
    }
}
