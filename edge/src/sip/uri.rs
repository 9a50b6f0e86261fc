//! SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966), borrowed from the message.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::{self, UriPart};

/// Most parameters or headers looked at in one URI: bounds loops over peer input.
const MAX_URI_ITEMS: usize = 64;

/// The scheme of a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other absolute URI; only its raw text is kept.
    Other,
}

/// The host of a SIP or SIPS URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as received (compare case-insensitively).
    Name(&'a [u8]),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference, `[...]` in the URI.
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// Same host per RFC 3261 19.1.4: names case-insensitively, addresses by value.
    pub fn equivalent(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

/// A parsed URI. Components are slices of the original text, still escaped;
/// [`Uri::user_unescaped`] and friends decode them when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: Scheme,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Option<Host<'a>>,
    host_raw: &'a [u8],
    port: Option<u16>,
    params: &'a [u8],
    headers: Option<&'a [u8]>,
}

type UriResult<'a> = Result<Uri<'a>, &'static str>;

impl<'a> Uri<'a> {
    /// Parses `raw` strictly: no whitespace, valid escapes, a valid host and port.
    pub fn parse(raw: &'a [u8]) -> UriResult<'a> {
        // Every component check below rejects whitespace, so a URI that parses has
        // none: the scan for it is needed only to name the error.
        match Self::parse_components(raw) {
            Ok(uri) => {
                debug_assert!(!raw.iter().any(|&b| lex::is_lws(b)));
                Ok(uri)
            }
            Err(_) if raw.iter().any(|&b| lex::is_lws(b)) => Err("whitespace in URI"),
            Err(e) => Err(e),
        }
    }

    fn parse_components(raw: &'a [u8]) -> UriResult<'a> {
        let colon = lex::find(b':', raw).ok_or("no scheme")?;
        let (scheme_raw, rest) = (&raw[..colon], &raw[colon + 1..]);
        let mut uri = Uri {
            raw,
            scheme: Scheme::Other,
            user: None,
            password: None,
            host: None,
            host_raw: &[],
            port: None,
            params: &[],
            headers: None,
        };
        if scheme_raw.eq_ignore_ascii_case(b"sip") {
            uri.scheme = Scheme::Sip;
            uri.parse_sip(rest)?;
        } else if scheme_raw.eq_ignore_ascii_case(b"sips") {
            uri.scheme = Scheme::Sips;
            uri.parse_sip(rest)?;
        } else if scheme_raw.eq_ignore_ascii_case(b"tel") {
            uri.scheme = Scheme::Tel;
            uri.parse_tel(rest)?;
        } else {
            check_absolute(scheme_raw, rest)?;
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a [u8]) -> Result<(), &'static str> {
        let hostpart = match lex::find(b'@', rest) {
            Some(at) => {
                self.parse_userinfo(&rest[..at])?;
                &rest[at + 1..]
            }
            None => rest,
        };
        let hostport_end = hostpart
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(hostpart.len());
        self.parse_hostport(&hostpart[..hostport_end])?;
        let tail = &hostpart[hostport_end..];
        let (params, headers) = match lex::find(b'?', tail) {
            Some(q) => (&tail[..q], Some(&tail[q + 1..])),
            None => (tail, None),
        };
        if let Some(p) = params.strip_prefix(b";") {
            check_params(p)?;
            self.params = p;
        }
        if let Some(h) = headers {
            check_headers(h)?;
            self.headers = Some(h);
        }
        Ok(())
    }

    fn parse_userinfo(&mut self, userinfo: &'a [u8]) -> Result<(), &'static str> {
        let (user, password) = match lex::find(b':', userinfo) {
            Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
            None => (userinfo, None),
        };
        if user.is_empty() || !lex::is_uri_component(user, UriPart::User) {
            return Err("bad user part");
        }
        if let Some(p) = password {
            if !lex::is_uri_component(p, UriPart::Password) {
                return Err("bad password");
            }
        }
        self.user = Some(user);
        self.password = password;
        Ok(())
    }

    fn parse_hostport(&mut self, hostport: &'a [u8]) -> Result<(), &'static str> {
        let (host_raw, port) = if hostport.first() == Some(&b'[') {
            let close = lex::find(b']', hostport).ok_or("unterminated IPv6 reference")?;
            (&hostport[..=close], &hostport[close + 1..])
        } else {
            match lex::find(b':', hostport) {
                Some(c) => (&hostport[..c], &hostport[c..]),
                None => (hostport, &hostport[hostport.len()..]),
            }
        };
        self.host = Some(parse_host(host_raw)?);
        self.host_raw = host_raw;
        if !port.is_empty() {
            let digits = port.strip_prefix(b":").ok_or("junk after host")?;
            let port = lex::parse_decimal(digits, u64::from(u16::MAX)).ok_or("bad port")?;
            self.port = Some(port as u16);
        }
        Ok(())
    }

    fn parse_tel(&mut self, rest: &'a [u8]) -> Result<(), &'static str> {
        let end = lex::find(b';', rest).unwrap_or(rest.len());
        let number = &rest[..end];
        let valid = |b: &u8| b.is_ascii_hexdigit() || b"*#+-.()pPwW".contains(b);
        if number.is_empty() || !number.iter().all(valid) {
            return Err("bad telephone number");
        }
        self.user = Some(number);
        if let Some(p) = rest[end..].strip_prefix(b";") {
            check_params(p)?;
            self.params = p;
        }
        Ok(())
    }

    /// The URI text as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user part (escaped as received); the number of a tel URI.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The user part with `%HH` escapes decoded. An escaped NUL stays a byte of the
    /// user name (RFC 4475 3.1.1.4); nothing is truncated.
    pub fn user_unescaped(&self) -> Option<std::borrow::Cow<'a, [u8]>> {
        self.user.map(lex::unescape)
    }

    /// The password (escaped as received).
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    /// The host of a SIP or SIPS URI.
    pub fn host(&self) -> Option<Host<'a>> {
        self.host
    }

    /// The host as written, brackets of an IPv6 reference included.
    pub fn host_raw(&self) -> &'a [u8] {
        self.host_raw
    }

    /// The port, if the URI names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Parameters `(name, value)` as received; `value` is `None` for a flag like `lr`.
    pub fn params(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        split_pairs(self.params, b';')
    }

    /// The parameter `name` (case-insensitive): `Some(None)` when present without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// `transport=` parameter.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param("transport").flatten()
    }

    /// Is the `lr` (loose routing) flag present?
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// `maddr=` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param("maddr").flatten()
    }

    /// `user=` parameter (`phone`, `ip`, ...).
    pub fn user_param(&self) -> Option<&'a [u8]> {
        self.param("user").flatten()
    }

    /// `ttl=` parameter.
    pub fn ttl(&self) -> Option<u8> {
        let v = self.param("ttl").flatten()?;
        lex::parse_decimal(v, 255).map(|t| t as u8)
    }

    /// The headers component (after `?`), as received.
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }

    /// Header components `(name, value)` as received.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        split_pairs(self.headers.unwrap_or_default(), b'&')
    }

    /// URI equivalence of RFC 3261 19.1.4 (and RFC 3966 for tel).
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self.scheme, other.scheme) {
            (Scheme::Sip, Scheme::Sip) | (Scheme::Sips, Scheme::Sips) => self.sip_equivalent(other),
            (Scheme::Tel, Scheme::Tel) => self.tel_equivalent(other),
            (Scheme::Other, Scheme::Other) => self.raw.eq_ignore_ascii_case(other.raw),
            _ => false,
        }
    }

    fn sip_equivalent(&self, other: &Uri<'_>) -> bool {
        let hosts_match = match (self.host, other.host) {
            (Some(a), Some(b)) => a.equivalent(&b),
            _ => false,
        };
        hosts_match
            && opt_eq(self.user, other.user, false)
            && opt_eq(self.password, other.password, false)
            && self.port == other.port
            && self.params_equivalent(other)
            && other.params_equivalent(self)
            && self.headers_subset_of(other)
            && other.headers_subset_of(self)
    }

    /// Every parameter of `self` matches in `other` where RFC 3261 19.1.4 says it
    /// must: always when both have it, and for user, ttl, method, maddr and
    /// transport also when only one has it.
    ///
    /// A name given twice counts by its first value, as lookups do, which keeps
    /// the relation reflexive.
    fn params_equivalent(&self, other: &Uri<'_>) -> bool {
        const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
        let repeated = |i: usize, name: &[u8]| {
            self.params()
                .take(i)
                .any(|(n, _)| uri_text_eq(n, name, true))
        };
        let mut params = self.params().take(MAX_URI_ITEMS).enumerate();
        params.all(|(i, (name, value))| {
            if repeated(i, name) {
                return true;
            }
            let theirs = other
                .params()
                .take(MAX_URI_ITEMS)
                .find(|(n, _)| uri_text_eq(n, name, true));
            match theirs {
                Some((_, v)) => opt_eq(value, v, true),
                None => !MUST_MATCH
                    .iter()
                    .any(|m| uri_text_eq(name, m.as_bytes(), true)),
            }
        })
    }

    fn headers_subset_of(&self, other: &Uri<'_>) -> bool {
        self.header_pairs()
            .take(MAX_URI_ITEMS)
            .all(|(name, value)| {
                other
                    .header_pairs()
                    .take(MAX_URI_ITEMS)
                    .any(|(n, v)| uri_text_eq(n, name, true) && opt_eq(v, value, false))
            })
    }

    fn tel_equivalent(&self, other: &Uri<'_>) -> bool {
        let numbers_match = match (self.user, other.user) {
            (Some(a), Some(b)) => tel_digits(a).eq(tel_digits(b)),
            _ => false,
        };
        numbers_match && self.params_equivalent(other) && other.params_equivalent(self)
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw))
    }
}

/// A telephone number without its visual separators (RFC 3966 5.1.1).
fn tel_digits(number: &[u8]) -> impl Iterator<Item = u8> + '_ {
    number
        .iter()
        .filter(|b| !b"-.()".contains(b))
        .map(u8::to_ascii_lowercase)
}

fn opt_eq(a: Option<&[u8]>, b: Option<&[u8]>, ignore_case: bool) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => uri_text_eq(a, b, ignore_case),
        (None, None) => true,
        _ => false,
    }
}

/// Compares two URI components after unescaping; an escaped reserved character
/// differs from the literal one.
fn uri_text_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    let fold = |c: lex::UriChar| {
        if ignore_case {
            (c.byte.to_ascii_lowercase(), c.escaped_reserved)
        } else {
            (c.byte, c.escaped_reserved)
        }
    };
    lex::uri_chars(a).map(fold).eq(lex::uri_chars(b).map(fold))
}

fn split_pairs(s: &[u8], sep: u8) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    s.split(move |&b| b == sep)
        .filter(|p| !p.is_empty())
        .map(|p| match lex::find(b'=', p) {
            Some(eq) => (&p[..eq], Some(&p[eq + 1..])),
            None => (p, None),
        })
}

pub(crate) fn parse_host(raw: &[u8]) -> Result<Host<'_>, &'static str> {
    if raw.is_empty() {
        return Err("empty host");
    }
    if let Some(inner) = raw.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
        let text = std::str::from_utf8(inner).map_err(|_| "bad IPv6 reference")?;
        return text
            .parse()
            .map(Host::Ipv6)
            .map_err(|_| "bad IPv6 reference");
    }
    // One pass: which classes every byte belongs to.
    let class = raw.iter().fold(HOST_CHAR | DIGIT_OR_DOT, |acc, &b| {
        acc & HOST_CLASS[b as usize]
    });
    if class & DIGIT_OR_DOT != 0 {
        return parse_ipv4(raw).map(Host::Ipv4).ok_or("bad IPv4 address");
    }
    if class & HOST_CHAR == 0 || raw[0] == b'.' || raw[0] == b'-' {
        return Err("bad host name");
    }
    Ok(Host::Name(raw))
}

/// Class bit of `alphanum / "-" / "." / "_"`, the bytes of a host name.
const HOST_CHAR: u8 = 1;
/// Class bit of `DIGIT / "."`, the bytes of an IPv4 address.
const DIGIT_OR_DOT: u8 = 2;

static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            t[c] |= HOST_CHAR;
        }
        if b.is_ascii_digit() || b == b'.' {
            t[c] |= DIGIT_OR_DOT;
        }
        c += 1;
    }
    t
};

/// A dotted-quad IPv4 address as `Ipv4Addr`'s `FromStr` reads it: four decimal
/// octets of one to three digits, no leading zero, each at most 255.
fn parse_ipv4(raw: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = raw.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        let leading_zero = part.len() > 1 && part[0] == b'0';
        if part.is_empty() || part.len() > 3 || leading_zero {
            return None;
        }
        let mut value: u16 = 0;
        for &d in part {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(d - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn check_params(params: &[u8]) -> Result<(), &'static str> {
    for (i, p) in params.split(|&b| b == b';').enumerate() {
        if i >= MAX_URI_ITEMS {
            return Err("too many URI parameters");
        }
        // Parameters are a few bytes: a plain loop beats a vector search.
        let (name, value) = match p.iter().position(|&b| b == b'=') {
            Some(eq) => (&p[..eq], Some(&p[eq + 1..])),
            None => (p, None),
        };
        if name.is_empty() || !lex::is_uri_component(name, UriPart::Param) {
            return Err("bad URI parameter");
        }
        if let Some(v) = value {
            if v.is_empty() || !lex::is_uri_component(v, UriPart::Param) {
                return Err("bad URI parameter value");
            }
        }
    }
    Ok(())
}

fn check_headers(headers: &[u8]) -> Result<(), &'static str> {
    for (i, h) in headers.split(|&b| b == b'&').enumerate() {
        if i >= MAX_URI_ITEMS {
            return Err("too many URI headers");
        }
        let eq = lex::find(b'=', h).ok_or("URI header without =")?;
        let (name, value) = (&h[..eq], &h[eq + 1..]);
        if name.is_empty()
            || !lex::is_uri_component(name, UriPart::Header)
            || !lex::is_uri_component(value, UriPart::Header)
        {
            return Err("bad URI header");
        }
    }
    Ok(())
}

fn check_absolute(scheme: &[u8], rest: &[u8]) -> Result<(), &'static str> {
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err("bad scheme");
    }
    let bad = |b: &u8| lex::is_lws(*b) || matches!(b, b'<' | b'>' | b'"') || *b < 0x20;
    if rest.is_empty() || rest.iter().any(bad) {
        return Err("bad absolute URI");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn ipv4_agrees_with_std(
            s in proptest::collection::vec(
                proptest::sample::select(b"0123456789...".to_vec()), 0..20)
        ) {
            let text = std::str::from_utf8(&s).unwrap();
            proptest::prop_assert_eq!(parse_ipv4(&s), text.parse::<Ipv4Addr>().ok());
        }

        #[test]
        fn dotted_quads_agree_with_std(a in 0u16..1100, b in 0u16..300, c: u8, d in 0u16..300, z: bool) {
            let text = if z { format!("{a}.0{b}.{c}.{d}") } else { format!("{a}.{b}.{c}.{d}") };
            proptest::prop_assert_eq!(parse_ipv4(text.as_bytes()), text.parse::<Ipv4Addr>().ok());
        }
    }

    #[test]
    fn sip_uri_components() {
        let u = uri("sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?subject=hi&x=y");
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secret"[..]));
        assert_eq!(u.host(), Some(Host::Ipv6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.lr());
        assert_eq!(u.header_pairs().count(), 2);
    }

    #[test]
    fn user_with_semicolons_is_one_user_part() {
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.params().count(), 0);
    }

    #[test]
    fn repeated_parameter_compares_by_first_value() {
        let u = uri("sip:a@example.com;x=1;X=2");
        assert!(u.equivalent(&u));
        assert!(u.equivalent(&uri("sip:a@example.com;x=1")));
        assert!(!u.equivalent(&uri("sip:a@example.com;x=2")));
    }

    #[test]
    fn tel_uri() {
        let u = uri("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme(), Scheme::Tel);
        assert!(u.equivalent(&uri("tel:+12015550123;PHONE-CONTEXT=example.com")));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "sip:",
            "sip:@host",
            "sip:a b@host",
            "sip:host:99999",
            "sip:host;;lr",
            "sip:host?x",
            "sip:[::1",
            "sip:1.2.3.999",
            "sip:user@%zz",
            "nocolon",
        ] {
            assert!(Uri::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    /// The equivalent and non-equivalent pairs listed in RFC 3261 19.1.4.
    #[test]
    fn rfc3261_comparison_examples() {
        let equal = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:carol@chicago.com;newparam=5",
                "sip:carol@chicago.com;security=on",
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (a, b) in equal {
            assert!(uri(a).equivalent(&uri(b)), "{a} == {b}");
            assert!(uri(b).equivalent(&uri(a)), "{b} == {a}");
        }
        let different = [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            ("sip:a%3Bb@host", "sip:a;b@host"),
            ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ];
        for (a, b) in different {
            assert!(!uri(a).equivalent(&uri(b)), "{a} != {b}");
            assert!(!uri(b).equivalent(&uri(a)), "{b} != {a}");
        }
    }
}
