//! Addresses and routing decisions of RFC 3261 16.4-16.6 and RFC 3581: is a
//! URI or Via ours, where does a request or response go, the Via and
//! Record-Route we add, and the branch with its loop-detection part.

use std::hash::{DefaultHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use super::ProxyConfig;
use crate::sip::{HeaderKind, Host, Message, NameAddr, Uri, Via};
use crate::transaction::{put_u32, MAGIC_COOKIE};

/// Most Route values looked at in one request.
const MAX_ROUTES: usize = 32;
/// The SIP port when a URI or Via names none.
const DEFAULT_PORT: u16 = 5060;

/// What happens to the Route header field of a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RouteEdit {
    /// Left as is.
    Keep,
    /// The top value (ours) is removed.
    PopTop,
    /// Replaced by this value list (empty: removed).
    Rewrite(Vec<u8>),
}

/// Where a request goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// An address from a Route or the Request-URI.
    Addr(SocketAddr),
    /// Ask the router (initial request, or a host name we cannot resolve).
    Router,
}

/// The routing decision for one request (16.4, 16.5, 16.6 steps 6-7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub edit: RouteEdit,
    /// The new Request-URI when the previous hop was a strict router.
    pub new_request_uri: Option<Vec<u8>>,
    pub target: Target,
    /// No Route left and the Request-URI is us with no user part.
    pub to_us: bool,
}

/// Decides route processing for `request` received on `local`.
/// `in_dialog`: the request's To has a tag.
pub(super) fn plan(
    request: &Message,
    config: &ProxyConfig,
    local: SocketAddr,
    in_dialog: bool,
) -> Plan {
    let routes: Vec<NameAddr<'_>> = request
        .routes()
        .take(MAX_ROUTES)
        .filter_map(Result::ok)
        .collect();
    let ruri = request.request_uri();
    let us = |u: &Uri<'_>| uri_is_us(config, local, u);
    // 16.4: the previous hop was a strict router when it put our Record-Route
    // URI (no user part) in the Request-URI.
    let strict = ruri.is_some_and(|u| us(&u) && u.user().is_none()) && !routes.is_empty();
    let (final_ruri, kept) = match (strict, routes.split_last()) {
        (true, Some((last, rest))) => (Some(last.uri()), rest),
        _ => (ruri, &routes[..]),
    };
    let ours = kept.iter().take_while(|r| us(&r.uri())).count();
    let remaining = &kept[ours..];
    let edit = match (strict || ours > 1, ours) {
        (true, _) => RouteEdit::Rewrite(join_routes(remaining)),
        (false, 1) => RouteEdit::PopTop,
        _ => RouteEdit::Keep,
    };
    let target = match (remaining.first(), final_ruri) {
        (Some(r), _) => uri_addr(&r.uri()).map_or(Target::Router, Target::Addr),
        (None, Some(u)) if (in_dialog || strict) && !us(&u) => {
            uri_addr(&u).map_or(Target::Router, Target::Addr)
        }
        _ => Target::Router,
    };
    Plan {
        edit,
        new_request_uri: strict
            .then(|| final_ruri.map(|u| u.as_bytes().to_vec()))
            .flatten(),
        target,
        to_us: remaining.is_empty() && final_ruri.is_some_and(|u| us(&u) && u.user().is_none()),
    }
}

fn join_routes(routes: &[NameAddr<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'<');
        out.extend_from_slice(r.uri().as_bytes());
        out.push(b'>');
        if !r.params().is_empty() {
            out.push(b';');
            out.extend_from_slice(r.params().as_bytes());
        }
    }
    out
}

/// Is `ip:port` one of our addresses?
fn addr_is_us(config: &ProxyConfig, local: SocketAddr, addr: SocketAddr) -> bool {
    addr == local || config.aliases.contains(&addr)
}

fn host_is_us(config: &ProxyConfig, local: SocketAddr, host: Host<'_>, port: Option<u16>) -> bool {
    match host {
        Host::Ipv4(ip) => addr_is_us(config, local, (ip, port.unwrap_or(DEFAULT_PORT)).into()),
        Host::Ipv6(ip) => addr_is_us(config, local, (ip, port.unwrap_or(DEFAULT_PORT)).into()),
        Host::Name(name) => {
            port.is_none_or(|p| p == local.port())
                && config
                    .domains
                    .iter()
                    .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
        }
    }
}

/// Does `uri` address this proxy (its host:port is `local`, an alias or one
/// of our domains)?
pub(super) fn uri_is_us(config: &ProxyConfig, local: SocketAddr, uri: &Uri<'_>) -> bool {
    uri.host()
        .is_some_and(|h| host_is_us(config, local, h, uri.port()))
}

/// Is `via` one we added (its sent-by is us)?
pub(super) fn via_is_us(config: &ProxyConfig, local: SocketAddr, via: &Via<'_>) -> bool {
    host_is_us(config, local, via.host(), via.port())
}

/// The address of a URI with a literal IP host (no DNS here).
pub(super) fn uri_addr(uri: &Uri<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = match uri.host()? {
        Host::Ipv4(ip) => ip.into(),
        Host::Ipv6(ip) => ip.into(),
        Host::Name(_) => return None,
    };
    Some((ip, uri.port().unwrap_or(DEFAULT_PORT)).into())
}

/// Where a response goes by `via` (RFC 3261 18.2.2 with RFC 3581): the
/// `received` address (else the sent-by IP) and the `rport` value (else the
/// sent-by port, else 5060).
pub(super) fn via_response_addr(via: &Via<'_>) -> Option<SocketAddr> {
    let received = via
        .received()
        .and_then(|r| std::str::from_utf8(r).ok())
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok());
    let ip = match (received, via.host()) {
        (Some(ip), _) => ip,
        (None, Host::Ipv4(ip)) => ip.into(),
        (None, Host::Ipv6(ip)) => ip.into(),
        (None, Host::Name(_)) => return None,
    };
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port().unwrap_or(DEFAULT_PORT),
    };
    Some((ip, port).into())
}

/// Where responses to a request whose top Via is `via`, received from `src`,
/// go: the source IP, and the source port when `rport` was asked for.
pub(super) fn reply_addr(via: &Via<'_>, src: SocketAddr) -> SocketAddr {
    let port = match via.rport() {
        Some(_) => src.port(),
        None => via.port().unwrap_or(DEFAULT_PORT),
    };
    (src.ip(), port).into()
}

/// The received top Via with `received` (source IP differs from sent-by, or
/// `rport` present) and `rport` (filled with the source port) of RFC 3581;
/// `None` when nothing changes.
pub(super) fn stamped_top_via(via: &Via<'_>, src: SocketAddr) -> Option<Bytes> {
    let rport = via.rport() == Some(None);
    let same_ip = match via.host() {
        Host::Ipv4(ip) => IpAddr::from(ip) == src.ip(),
        Host::Ipv6(ip) => IpAddr::from(ip) == src.ip(),
        Host::Name(_) => false,
    };
    if same_ip && !rport {
        return None;
    }
    let mut out = BytesMut::with_capacity(via.host_raw().len() + 128);
    let skip: &[&str] = if rport {
        &["received", "rport"]
    } else {
        &["received"]
    };
    crate::transaction::write_via(&mut out, via, skip);
    out.put_slice(b";received=");
    put_ip(&mut out, src.ip());
    if rport {
        out.put_slice(b";rport=");
        put_u32(&mut out, u32::from(src.port()));
    }
    Some(out.freeze())
}

/// `IP:port` with IPv6 in brackets.
pub(super) fn host_port(addr: SocketAddr) -> String {
    addr.to_string()
}

/// Appends `ip` as its `Display` writes it, without the formatter for IPv4.
fn put_ip(out: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(b'.');
                }
                put_u32(out, u32::from(octet));
            }
        }
        IpAddr::V6(v6) => out.put_slice(v6.to_string().as_bytes()),
    }
}

/// Appends `addr` as [`host_port`] writes it.
fn put_host_port(out: &mut impl BufMut, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            put_ip(out, IpAddr::V4(*a.ip()));
            out.put_u8(b':');
            put_u32(out, u32::from(a.port()));
        }
        SocketAddr::V6(_) => out.put_slice(host_port(addr).as_bytes()),
    }
}

/// Appends the `{:0width$x}` form of `n` (`width` at most 16).
fn put_hex(out: &mut [u8], n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let width = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((n >> (4 * (width - 1 - i))) & 0xf) as usize];
    }
}

/// The Via value we add: `SIP/2.0/UDP IP:port;branch=...`.
pub(super) fn our_via(local: SocketAddr, branch: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"SIP/2.0/UDP ");
    put_host_port(&mut out, local);
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(branch);
    out
}

/// The Record-Route value we add: `<sip:IP:port;lr>`.
pub(super) fn record_route(local: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"<sip:");
    put_host_port(&mut out, local);
    out.extend_from_slice(b";lr>");
    out
}

/// A keyed `DefaultHasher` (SipHash) fed the byte stream the `Hash` impls of
/// the values would feed it (native-endian integers, `usize` length prefixes
/// of slices, `isize` discriminants of options), gathered into few `write`
/// calls: SipHash depends only on the concatenated bytes, so the result is
/// the one of hashing the values one by one.
struct Feed {
    hasher: DefaultHasher,
    buf: [u8; 256],
    len: usize,
}

impl Feed {
    fn new(secret: u64) -> Feed {
        let mut f = Feed {
            hasher: DefaultHasher::new(),
            buf: [0; 256],
            len: 0,
        };
        f.bytes(&secret.to_ne_bytes());
        f
    }

    fn bytes(&mut self, b: &[u8]) {
        if self.len + b.len() > self.buf.len() {
            self.flush();
            if b.len() > self.buf.len() {
                self.hasher.write(b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn flush(&mut self) {
        self.hasher.write(&self.buf[..self.len]);
        self.len = 0;
    }

    /// `<[u8] as Hash>::hash`.
    fn slice(&mut self, s: &[u8]) {
        self.bytes(&s.len().to_ne_bytes());
        self.bytes(s);
    }

    /// `<Option<&[u8]> as Hash>::hash`.
    fn opt_slice(&mut self, s: Option<&[u8]>) {
        match s {
            None => self.bytes(&0isize.to_ne_bytes()),
            Some(s) => {
                self.bytes(&1isize.to_ne_bytes());
                self.slice(s);
            }
        }
    }

    /// `<Option<u16> as Hash>::hash`.
    fn opt_u16(&mut self, n: Option<u16>) {
        match n {
            None => self.bytes(&0isize.to_ne_bytes()),
            Some(n) => {
                self.bytes(&1isize.to_ne_bytes());
                self.bytes(&n.to_ne_bytes());
            }
        }
    }

    fn finish(mut self) -> u64 {
        self.flush();
        self.hasher.finish()
    }
}

/// The loop-detection hash of 16.6 step 8: Request-URI, Call-ID, From tag,
/// To tag and CSeq number (not the method, not the top Via: a request that
/// comes back unchanged hashes the same). `from_tag` and `to_tag` are the
/// request's.
pub(super) fn loop_hash(
    secret: u64,
    request: &Message,
    from_tag: Option<&[u8]>,
    to_tag: Option<&[u8]>,
) -> u32 {
    let mut h = Feed::new(secret);
    h.opt_slice(request.request_uri_raw());
    h.slice(request.call_id());
    h.opt_slice(from_tag);
    h.opt_slice(to_tag);
    h.bytes(&request.cseq().seq.to_ne_bytes());
    h.finish() as u32
}

/// Length of a branch we make: `z9hG4bK`, 16 hex digits, `.`, 8 hex digits.
pub(super) const BRANCH_LEN: usize = 32;

/// The branch of the Via we add: `z9hG4bK`, a hash of the received top Via's
/// branch and sent-by, Call-ID and CSeq number (so a retransmission, its ACK
/// and its CANCEL map to the same branch), then `.` and the loop hash
/// `loop_hash` of the request.
pub(super) fn branch(
    secret: u64,
    request: &Message,
    top_via: Option<&Via<'_>>,
    loop_hash: u32,
) -> [u8; BRANCH_LEN] {
    let mut h = Feed::new(secret);
    if let Some(via) = top_via {
        h.opt_slice(via.branch());
        h.slice(via.host_raw());
        h.opt_u16(via.port());
    }
    h.slice(request.call_id());
    h.bytes(&request.cseq().seq.to_ne_bytes());
    let mut out = [0u8; BRANCH_LEN];
    out[..7].copy_from_slice(MAGIC_COOKIE);
    put_hex(&mut out[7..23], h.finish());
    out[23] = b'.';
    put_hex(&mut out[24..], u64::from(loop_hash));
    out
}

/// The branch of another attempt (`attempt`) of the request we sent with our
/// branch `old`: `z9hG4bK`, a keyed hash of `old` and `attempt`, then `old`'s
/// loop-hash suffix, so loop detection sees the same request.
pub(super) fn retry_branch(secret: u64, old: &[u8], attempt: u8) -> Vec<u8> {
    let suffix = old
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(&[][..], |i| &old[i..]);
    let mut h = Feed::new(secret);
    h.slice(old);
    h.bytes(&[attempt]);
    let mut out = Vec::with_capacity(7 + 16 + suffix.len());
    out.extend_from_slice(MAGIC_COOKIE);
    out.extend_from_slice(&hex16(h.finish()));
    out.extend_from_slice(suffix);
    out
}

/// A keyed hash of a number, for identifiers this proxy makes up (probe
/// Call-IDs, branches, tags).
pub(super) fn keyed_u64(secret: u64, n: u64) -> u64 {
    let mut h = Feed::new(secret);
    h.bytes(&n.to_ne_bytes());
    h.finish()
}

/// `n` as 16 lowercase hex digits.
pub(super) fn hex16(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    put_hex(&mut out, n);
    out
}

/// RFC 3261 16.3 step 4: a Via of ours whose loop hash equals this request's
/// (`loop_hash`) means the request came back unchanged: a loop, not a spiral.
/// `top_via` is the request's top Via, parsed already.
pub(super) fn is_loop(
    config: &ProxyConfig,
    local: SocketAddr,
    request: &Message,
    top_via: Option<&Via<'_>>,
    loop_hash: u32,
) -> bool {
    let mut suffix = [0u8; 9];
    suffix[0] = b'.';
    put_hex(&mut suffix[1..], u64::from(loop_hash));
    let ours = |via: &Via<'_>| {
        via_is_us(config, local, via)
            && via
                .branch()
                .is_some_and(|b| b.starts_with(MAGIC_COOKIE) && b.ends_with(&suffix))
    };
    match top_via {
        Some(top) => {
            ours(top)
                || request
                    .via_values()
                    .skip(1)
                    .filter_map(|v| Via::parse(v).ok())
                    .any(|v| ours(&v))
        }
        None => request.vias().filter_map(Result::ok).any(|v| ours(&v)),
    }
}

/// The To tag of responses this proxy generates for `request`: stable across
/// retransmissions.
pub(super) fn to_tag(secret: u64, request: &Message) -> String {
    let mut h = Feed::new(secret ^ 0x0074_6f74_6167);
    h.slice(request.call_id());
    h.opt_slice(request.from().ok().and_then(|f| f.tag()));
    h.opt_slice(request.top_via().ok().and_then(|v| v.branch()));
    String::from_utf8_lossy(&hex16(h.finish())).into_owned()
}

/// Does `request` carry Proxy-Require (we support no extension, 16.3 step 6)?
pub(super) fn proxy_require(request: &Message) -> Option<Vec<u8>> {
    let mut tokens = request.tokens(HeaderKind::ProxyRequire).peekable();
    tokens.peek()?;
    let mut out = Vec::new();
    for (i, t) in tokens.take(MAX_ROUTES).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(t);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ParseLimits;
    use std::hash::Hash;

    fn keyed(secret: u64) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        secret.hash(&mut h);
        h
    }

    /// The hashes as first written, value by value through `Hash`: the
    /// buffered [`Feed`] must give the same branches, loop hashes and tags.
    fn reference(secret: u64, request: &Message) -> (String, u32, String) {
        let mut h = keyed(secret);
        request.request_uri_raw().hash(&mut h);
        request.call_id().hash(&mut h);
        request.from().ok().and_then(|f| f.tag()).hash(&mut h);
        request.to().ok().and_then(|t| t.tag()).hash(&mut h);
        request.cseq().seq.hash(&mut h);
        let loop_hash = h.finish() as u32;
        let mut h = keyed(secret);
        if let Ok(via) = request.top_via() {
            via.branch().hash(&mut h);
            via.host_raw().hash(&mut h);
            via.port().hash(&mut h);
        }
        request.call_id().hash(&mut h);
        request.cseq().seq.hash(&mut h);
        let branch = format!("z9hG4bK{:016x}.{:08x}", h.finish(), loop_hash);
        let mut h = keyed(secret ^ 0x0074_6f74_6167);
        request.call_id().hash(&mut h);
        request.from().ok().and_then(|f| f.tag()).hash(&mut h);
        request.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
        (branch, loop_hash, format!("{:016x}", h.finish()))
    }

    #[test]
    fn buffered_hashes_equal_value_by_value_hashes() {
        let long = "x".repeat(300);
        let vias = [
            "SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bKa;rport".to_owned(),
            "SIP/2.0/UDP h.example.com;branch=z9hG4bKb".to_owned(),
            "SIP/2.0/UDP [2001:db8::1]:5060".to_owned(),
            format!("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{long}"),
        ];
        let tos = ["<sip:b@example.com>", "<sip:b@example.com>;tag=t9"];
        for (i, via) in vias.iter().enumerate() {
            for to in tos {
                let text = format!(
                    "INVITE sip:b@example.com SIP/2.0\r\nVia: {via}\r\n\
From: <sip:a@example.com>;tag=f{i}\r\nTo: {to}\r\nCall-ID: c{i}{long}\r\n\
CSeq: {i} INVITE\r\nContent-Length: 0\r\n\r\n"
                );
                let m = Message::parse_datagram(Bytes::from(text), &ParseLimits::datagram())
                    .expect("parses");
                for secret in [0, 0x005e_ed0f_ed9e, u64::MAX] {
                    let (branch_ref, loop_ref, tag_ref) = reference(secret, &m);
                    let from_tag = m.from().ok().and_then(|f| f.tag());
                    let tt = m.to().ok().and_then(|t| t.tag());
                    let lh = loop_hash(secret, &m, from_tag, tt);
                    assert_eq!(lh, loop_ref);
                    let via = m.top_via().ok();
                    assert_eq!(
                        &branch(secret, &m, via.as_ref(), lh)[..],
                        branch_ref.as_bytes()
                    );
                    assert_eq!(to_tag(secret, &m), tag_ref);
                }
            }
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "192.0.2.10:5060",
            "10.0.0.255:1",
            "0.0.0.0:65535",
            "[2001:db8::1]:5060",
        ] {
            let a: SocketAddr = a.parse().expect("address");
            let mut out = Vec::new();
            put_host_port(&mut out, a);
            assert_eq!(out, a.to_string().into_bytes());
            let mut out = Vec::new();
            put_ip(&mut out, a.ip());
            assert_eq!(out, a.ip().to_string().into_bytes());
        }
        let mut hex = [0u8; 16];
        put_hex(&mut hex, 0x0123_4567_89ab_cdef);
        assert_eq!(&hex, b"0123456789abcdef");
    }
}
