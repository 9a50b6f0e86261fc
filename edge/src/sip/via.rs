//! The Via header value (RFC 3261 20.42): `SIP/2.0/UDP host:port;branch=...`.

use super::lex;
use super::params::Params;
use super::uri::{parse_host, Host};

/// One Via value: the sent protocol, the sent-by address and the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    protocol_name: &'a [u8],
    protocol_version: &'a [u8],
    transport: &'a [u8],
    host: Host<'a>,
    host_raw: &'a [u8],
    port: Option<u16>,
    params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a comma-separated list). LWS may
    /// surround the `/` of the sent protocol, the `:` of the port, `;` and `=`.
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>, &'static str> {
        let v = lex::trim(value);
        let (protocol_name, rest) = take_token(v).ok_or("bad protocol name")?;
        let rest = expect_slash(rest)?;
        let (protocol_version, rest) = take_token(rest).ok_or("bad protocol version")?;
        let rest = expect_slash(rest)?;
        let (transport, rest) = take_token(rest).ok_or("bad transport")?;
        if !rest.first().is_some_and(|&b| lex::is_lws(b)) {
            return Err("no space before sent-by");
        }
        let rest = lex::trim_start(rest);
        let (host_raw, rest) = split_host(rest)?;
        let host = parse_host(host_raw)?;
        let (port, rest) = parse_port(lex::trim_start(rest))?;
        let params = Params::parse(rest)?;
        Ok(Via {
            protocol_name,
            protocol_version,
            transport,
            host,
            host_raw,
            port,
            params,
        })
    }

    /// Protocol name, `SIP`.
    pub fn protocol_name(&self) -> &'a [u8] {
        self.protocol_name
    }

    /// Protocol version, `2.0`.
    pub fn protocol_version(&self) -> &'a [u8] {
        self.protocol_version
    }

    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or an unknown token).
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// Sent-by host.
    pub fn host(&self) -> Host<'a> {
        self.host
    }

    /// Sent-by host as written.
    pub fn host_raw(&self) -> &'a [u8] {
        self.host_raw
    }

    /// Sent-by port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// `branch=`: the transaction id when it starts with `z9hG4bK` (RFC 3261 8.1.1.7).
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.value("branch")
    }

    /// `received=`, added by the server that saw a different source address.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.value("received")
    }

    /// `rport` (RFC 3581): `Some(None)` when the client asks for it, `Some(Some(p))`
    /// once a server filled it in.
    pub fn rport(&self) -> Option<Option<u16>> {
        let p = self.params.get("rport")?;
        Some(
            p.value
                .and_then(|v| lex::parse_decimal(v, 65_535).map(|n| n as u16)),
        )
    }

    /// `maddr=`.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.value("maddr")
    }

    /// `ttl=` (0 to 255).
    pub fn ttl(&self) -> Option<u8> {
        let v = self.params.value("ttl")?;
        lex::parse_decimal(v, 255).map(|n| n as u8)
    }
}

fn take_token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = s.iter().take_while(|&&b| lex::is_token_char(b)).count();
    (n > 0).then(|| (&s[..n], &s[n..]))
}

fn expect_slash(s: &[u8]) -> Result<&[u8], &'static str> {
    let s = lex::trim_start(s);
    match s.strip_prefix(b"/") {
        Some(rest) => Ok(lex::trim_start(rest)),
        None => Err("bad sent-protocol"),
    }
}

fn split_host(s: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    if s.first() == Some(&b'[') {
        let close = lex::find(b']', s).ok_or("unterminated IPv6 reference")?;
        return Ok((&s[..=close], &s[close + 1..]));
    }
    let end = s
        .iter()
        .position(|&b| b == b':' || b == b';' || lex::is_lws(b))
        .unwrap_or(s.len());
    Ok((&s[..end], &s[end..]))
}

fn parse_port(s: &[u8]) -> Result<(Option<u16>, &[u8]), &'static str> {
    let Some(rest) = s.strip_prefix(b":") else {
        return Ok((None, s));
    };
    let rest = lex::trim_start(rest);
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let port = lex::parse_decimal(&rest[..n], 65_535).ok_or("bad sent-by port")?;
    Ok((Some(port as u16), &rest[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_via_from_rfc4475() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
    }

    #[test]
    fn params_and_port() {
        let v = Via::parse(b"SIP/2.0/TCP [2001:db8::1]:5070;rport;received=2001:db8::9;ttl=16")
            .unwrap();
        assert_eq!(v.port(), Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"2001:db8::9"[..]));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), None);
    }

    #[test]
    fn rejects_malformed() {
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
        assert!(Via::parse(b"SIP/2.0 host").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP host:99999").is_err());
        assert!(Via::parse(b"").is_err());
    }
}
