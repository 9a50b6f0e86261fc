//! Header parameters: `*( SEMI generic-param )` after a Via, a name-addr, a
//! Content-Type, ... (RFC 3261 25.1), with LWS allowed around `;` and `=`.

use std::borrow::Cow;

use super::lex;

/// Most parameters on one header value: bounds loops over peer input.
pub(crate) const MAX_PARAMS: usize = 64;

/// One parameter as received: the name and, unless it is a flag, the value (a
/// quoted value keeps its quotes; [`Param::value_unquoted`] removes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name (compare case-insensitively).
    pub name: &'a [u8],
    /// Parameter value as received, `None` for a flag.
    pub value: Option<&'a [u8]>,
}

impl<'a> Param<'a> {
    /// The value with surrounding quotes and quoted-pairs removed.
    pub fn value_unquoted(&self) -> Option<Cow<'a, [u8]>> {
        self.value.map(lex::unquote)
    }
}

/// A validated list of header parameters, kept as the received text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Validates `raw`, which is empty or starts with `;` (after LWS).
    pub(crate) fn parse(raw: &'a [u8]) -> Result<Params<'a>, &'static str> {
        let raw = lex::trim(raw);
        if raw.is_empty() {
            return Ok(Params { raw });
        }
        if raw[0] != b';' {
            return Err("junk before parameters");
        }
        let params = Params { raw: &raw[1..] };
        if params.raw.is_empty() {
            return Err("empty parameter");
        }
        let mut count = 0;
        for piece in split_params(params.raw) {
            count += 1;
            if count > MAX_PARAMS {
                return Err("too many parameters");
            }
            check_param(piece?)?;
        }
        Ok(params)
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = Param<'a>> {
        split_params(self.raw)
            .take(MAX_PARAMS)
            .filter_map(Result::ok)
            .map(to_param)
    }

    /// The first parameter named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Param<'a>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The value of `name`, `None` if absent or a flag.
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).and_then(|p| p.value)
    }

    /// Is there no parameter?
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameter text as received, without the first `;`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// Splits at `;` outside quoted strings; an unterminated quote is an error.
fn split_params(s: &[u8]) -> impl Iterator<Item = Result<&[u8], &'static str>> {
    // No text is no parameter, not one empty parameter.
    let mut rest = (!s.is_empty()).then_some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let mut i = 0;
        while let Some(j) = lex::find2(b';', b'"', &r[i..]) {
            let j = i + j;
            if r[j] == b';' {
                rest = Some(&r[j + 1..]);
                return Some(Ok(&r[..j]));
            }
            match lex::quoted_len(&r[j..]) {
                Some(n) => i = j + n,
                None => {
                    rest = None;
                    return Some(Err("unterminated quoted string"));
                }
            }
        }
        rest = None;
        Some(Ok(r))
    })
}

fn to_param(piece: &[u8]) -> Param<'_> {
    match lex::find(b'=', piece) {
        Some(eq) => Param {
            name: lex::trim(&piece[..eq]),
            value: Some(lex::trim(&piece[eq + 1..])),
        },
        None => Param {
            name: lex::trim(piece),
            value: None,
        },
    }
}

fn check_param(piece: &[u8]) -> Result<(), &'static str> {
    let param = to_param(piece);
    if param.name.is_empty() {
        return Err("empty parameter");
    }
    if !lex::is_token(param.name) {
        return Err("bad parameter name");
    }
    match param.value {
        None => Ok(()),
        Some(v) if v.first() == Some(&b'"') => match lex::quoted_len(v) {
            Some(n) if n == v.len() => Ok(()),
            _ => Err("bad quoted parameter value"),
        },
        Some(v) if is_gen_value(v) => Ok(()),
        Some(_) => Err("bad parameter value"),
    }
}

/// `token / host` (a host may be an IPv6 reference, or bare IPv6 in `received`).
fn is_gen_value(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| lex::is_token_char(b) || matches!(b, b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_around_separators() {
        let p = Params::parse(b" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33")
            .unwrap();
        let all: Vec<_> = p.iter().collect();
        assert_eq!(all.len(), 3);
        assert_eq!(p.value("NEWPARAM"), Some(&b"newvalue"[..]));
        assert_eq!(p.get("secondparam").unwrap().value, None);
        assert_eq!(p.value("q"), Some(&b"0.33"[..]));
    }

    #[test]
    fn quoted_values_may_hold_semicolons() {
        let p = Params::parse(b";a=\"x;y\";b").unwrap();
        assert_eq!(&*p.get("a").unwrap().value_unquoted().unwrap(), b"x;y");
        assert!(p.get("b").is_some());
    }

    #[test]
    fn no_text_is_no_parameter() {
        assert_eq!(Params::parse(b"").unwrap().iter().count(), 0);
        assert_eq!(Params::parse(b"  ").unwrap().iter().count(), 0);
    }

    #[test]
    fn rejects_empty_and_bad() {
        assert!(Params::parse(b";").is_err());
        assert!(Params::parse(b" ; ").is_err());
        assert!(Params::parse(b";;").is_err());
        assert!(Params::parse(b";a=").is_err());
        assert!(Params::parse(b";a=\"open").is_err());
        assert!(Params::parse(b"x;a").is_err());
        assert!(Params::parse(b";a b=c").is_err());
    }
}
