//! Digest credentials and challenges (RFC 3261 20.7, 20.27, 20.28, 20.44; RFC
//! 2617 and 8760): `Digest username="bob", realm="example.com", ...`.

use std::borrow::Cow;

use super::lex;
use super::params::{Param, MAX_PARAMS};

/// The value of Authorization, Proxy-Authorization (credentials) or
/// WWW-Authenticate, Proxy-Authenticate (a challenge): a scheme and its
/// comma-separated `name=value` parameters, validated and kept as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthParams<'a> {
    scheme: &'a [u8],
    params: &'a [u8],
}

impl<'a> AuthParams<'a> {
    /// Parses one header value.
    pub fn parse(value: &'a [u8]) -> Result<AuthParams<'a>, &'static str> {
        let v = lex::trim(value);
        let n = v.iter().take_while(|&&b| lex::is_token_char(b)).count();
        if n == 0 {
            return Err("no auth scheme");
        }
        let rest = &v[n..];
        if !rest.is_empty() && !lex::is_lws(rest[0]) {
            return Err("no space after auth scheme");
        }
        let auth = AuthParams {
            scheme: &v[..n],
            params: lex::trim_start(rest),
        };
        let mut count = 0;
        for (piece, _) in lex::CommaSplit::new(auth.params) {
            count += 1;
            if count > MAX_PARAMS {
                return Err("too many auth parameters");
            }
            check_auth_param(piece)?;
        }
        Ok(auth)
    }

    /// The scheme, `Digest` (compare case-insensitively).
    pub fn scheme(&self) -> &'a [u8] {
        self.scheme
    }

    /// Is the scheme Digest?
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// The parameters in order; values keep their quotes.
    pub fn iter(&self) -> impl Iterator<Item = Param<'a>> {
        let params = self.params;
        lex::CommaSplit::new(params)
            .take(MAX_PARAMS)
            .filter_map(|(piece, _)| {
                let eq = memchr::memchr(b'=', piece)?;
                Some(Param {
                    name: lex::trim(&piece[..eq]),
                    value: Some(lex::trim(&piece[eq + 1..])),
                })
            })
    }

    /// The value of parameter `name` (case-insensitive), unquoted.
    pub fn get(&self, name: &str) -> Option<Cow<'a, [u8]>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|p| p.value_unquoted())
    }

    /// `username=`.
    pub fn username(&self) -> Option<Cow<'a, [u8]>> {
        self.get("username")
    }

    /// `realm=`.
    pub fn realm(&self) -> Option<Cow<'a, [u8]>> {
        self.get("realm")
    }

    /// `nonce=`.
    pub fn nonce(&self) -> Option<Cow<'a, [u8]>> {
        self.get("nonce")
    }

    /// `response=`.
    pub fn response(&self) -> Option<Cow<'a, [u8]>> {
        self.get("response")
    }

    /// `uri=` (the digest-uri).
    pub fn uri(&self) -> Option<Cow<'a, [u8]>> {
        self.get("uri")
    }
}

fn check_auth_param(piece: &[u8]) -> Result<(), &'static str> {
    let eq = memchr::memchr(b'=', piece).ok_or("auth parameter without =")?;
    let name = lex::trim(&piece[..eq]);
    let value = lex::trim(&piece[eq + 1..]);
    if !lex::is_token(name) {
        return Err("bad auth parameter name");
    }
    let valid_value = if value.first() == Some(&b'"') {
        lex::quoted_len(value) == Some(value.len())
    } else {
        lex::is_token(value)
    };
    if !valid_value {
        return Err("bad auth parameter value");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let a = AuthParams::parse(
            b"Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, response=\"6629fae4\"",
        )
        .unwrap();
        assert!(a.is_digest());
        assert_eq!(&*a.username().unwrap(), b"bob");
        assert_eq!(&*a.get("QOP").unwrap(), b"auth");
        assert_eq!(a.iter().count(), 7);
    }

    #[test]
    fn rejects_malformed() {
        assert!(AuthParams::parse(b"").is_err());
        assert!(AuthParams::parse(b"Digest realm").is_err());
        assert!(AuthParams::parse(b"Digest realm=\"open").is_err());
        assert!(AuthParams::parse(b"Digest realm=a b").is_err());
    }
}
