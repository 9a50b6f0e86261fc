//! `name-addr` and `addr-spec` values with parameters (RFC 3261 20.10): From, To,
//! Contact, Route, Record-Route.

use std::borrow::Cow;

use super::lex;
use super::params::Params;
use super::uri::Uri;

/// An address with an optional display name and header parameters, as in
/// `"Bob" <sip:bob@example.com>;tag=a6c85cf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    display: Option<&'a [u8]>,
    uri: Uri<'a>,
    in_brackets: bool,
    params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value. Without `<>`, the URI ends at the first `;` and may not
    /// contain `,` or `?` (RFC 3261 20: such URIs must be enclosed in `<>`).
    pub fn parse(value: &'a [u8]) -> Result<NameAddr<'a>, &'static str> {
        let v = lex::trim(value);
        if v.first() == Some(&b'"') {
            let n = lex::quoted_len(v).ok_or("unterminated quoted display name")?;
            let rest = lex::trim_start(&v[n..]);
            if rest.first() != Some(&b'<') {
                return Err("display name without <URI>");
            }
            return Self::parse_bracketed(Some(&v[..n]), rest);
        }
        // A display name is tokens, so the `<` of a name-addr comes before any
        // `;` or `"`; a later one is inside a parameter of an addr-spec.
        let display_end = lex::find2(b';', b'"', v).unwrap_or(v.len());
        if let Some(lt) = lex::find(b'<', &v[..display_end]) {
            let display = lex::trim(&v[..lt]);
            let tokens_only = display
                .iter()
                .all(|&b| lex::is_token_char(b) || lex::is_lws(b));
            if !tokens_only {
                return Err("display name is neither tokens nor quoted");
            }
            let display = (!display.is_empty()).then_some(display);
            return Self::parse_bracketed(display, &v[lt..]);
        }
        Self::parse_addr_spec(v)
    }

    fn parse_bracketed(
        display: Option<&'a [u8]>,
        rest: &'a [u8],
    ) -> Result<NameAddr<'a>, &'static str> {
        let gt = lex::find(b'>', rest).ok_or("no closing >")?;
        let uri = Uri::parse(&rest[1..gt])?;
        Ok(NameAddr {
            display,
            uri,
            in_brackets: true,
            params: Params::parse(&rest[gt + 1..])?,
        })
    }

    fn parse_addr_spec(v: &'a [u8]) -> Result<NameAddr<'a>, &'static str> {
        let end = lex::find(b';', v).unwrap_or(v.len());
        let uri_raw = lex::trim_end(&v[..end]);
        if uri_raw.iter().any(|&b| b == b',' || b == b'?') {
            return Err("URI with , or ? must be enclosed in <>");
        }
        Ok(NameAddr {
            display: None,
            uri: Uri::parse(uri_raw)?,
            in_brackets: false,
            params: Params::parse(&v[end..])?,
        })
    }

    /// The display name as received (quoted, or tokens with LWS).
    pub fn display_name_raw(&self) -> Option<&'a [u8]> {
        self.display
    }

    /// The display name without quotes and quoted-pairs (bytes may be any octet).
    pub fn display_name(&self) -> Option<Cow<'a, [u8]>> {
        self.display.map(lex::unquote)
    }

    /// The address.
    pub fn uri(&self) -> Uri<'a> {
        self.uri
    }

    /// Was the URI enclosed in `<>`?
    pub fn in_brackets(&self) -> bool {
        self.in_brackets
    }

    /// Header parameters after the address.
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// `tag=` of From and To (RFC 3261 19.3).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.value("tag")
    }

    /// `q=` of a Contact, in thousandths (`q=0.5` is 500); `None` if absent.
    pub fn q(&self) -> Option<Result<u16, &'static str>> {
        self.params.value("q").map(parse_qvalue)
    }

    /// `expires=` of a Contact in seconds. A value above 2^32-1 saturates; a
    /// non-numeric one reads as absent, so the registrar uses its default (RFC
    /// 3261 10.2.1.1 and RFC 4475 3.1.2.4).
    pub fn expires(&self) -> Option<u32> {
        let v = self.params.value("expires")?;
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(lex::parse_decimal(v, u64::from(u32::MAX)).map_or(u32::MAX, |n| n as u32))
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_qvalue(v: &[u8]) -> Result<u16, &'static str> {
    const BAD: &str = "bad q-value";
    let (int, frac) = match lex::find(b'.', v) {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &v[v.len()..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match (int, thousandths) {
        (b"0", t) => Ok(t),
        (b"1", 0) => Ok(1000),
        _ => Err(BAD),
    }
}

/// One Contact value: `*` (remove all bindings, REGISTER only) or an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *`.
    Star,
    /// An address with parameters.
    Address(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(value: &'a [u8]) -> Result<Contact<'a>, &'static str> {
        if lex::trim(value) == b"*" {
            return Ok(Contact::Star);
        }
        let addr = NameAddr::parse(value)?;
        if let Some(Err(e)) = addr.q() {
            return Err(e);
        }
        Ok(Contact::Address(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_name_with_escapes() {
        let a = NameAddr::parse(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(&*a.display_name().unwrap(), b"J Rosenberg \\\"");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
    }

    #[test]
    fn token_display_name_without_space() {
        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name_raw(), Some(&b"caller"[..]));
        assert!(a.in_brackets());
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let a = NameAddr::parse(b"sip:alice@example.com;tag=88").unwrap();
        assert_eq!(a.tag(), Some(&b"88"[..]));
        assert_eq!(a.uri().params().count(), 0);
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:x%3E").is_err());
    }

    #[test]
    fn angle_in_quoted_param_of_addr_spec() {
        let a = NameAddr::parse(b"sip:a@example.com;x=\"<b>\";tag=1").unwrap();
        assert!(!a.in_brackets());
        assert_eq!(a.tag(), Some(&b"1"[..]));
        assert_eq!(a.params().value("x"), Some(&b"\"<b>\""[..]));
    }

    #[test]
    fn contact_q_and_expires() {
        let Contact::Address(c) =
            Contact::parse(b"<sip:a@b>;q=0.7;expires=280297596632815").unwrap()
        else {
            panic!("not an address");
        };
        assert_eq!(c.q(), Some(Ok(700)));
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(Contact::parse(b" * ").unwrap(), Contact::Star);
        assert!(Contact::parse(b"<sip:a@b>;q=1.5").is_err());
    }

    #[test]
    fn rejects_malformed() {
        assert!(NameAddr::parse(b"\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(NameAddr::parse(b"\"Watson\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse(b"<sip:a@b>;;;;").is_err());
    }
}
