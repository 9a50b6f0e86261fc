//! Addresses and routing decisions of RFC 3261 16.4-16.6 and RFC 3581: is a
//! URI or Via ours, where does a request or response go, the Via and
//! Record-Route we add, and the branch with its loop-detection part.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use super::ProxyConfig;
use crate::sip::{HeaderKind, Host, Message, NameAddr, Uri, Via};
use crate::transaction::MAGIC_COOKIE;

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
pub(super) fn plan(request: &Message, config: &ProxyConfig, local: SocketAddr) -> Plan {
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
    let in_dialog = request.to().ok().and_then(|t| t.tag()).is_some();
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
    out.put_slice(src.ip().to_string().as_bytes());
    if rport {
        out.put_slice(b";rport=");
        out.put_slice(src.port().to_string().as_bytes());
    }
    Some(out.freeze())
}

/// `IP:port` with IPv6 in brackets.
pub(super) fn host_port(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The Via value we add: `SIP/2.0/UDP IP:port;branch=...`.
pub(super) fn our_via(local: SocketAddr, branch: &str) -> String {
    format!("SIP/2.0/UDP {};branch={branch}", host_port(local))
}

/// The Record-Route value we add: `<sip:IP:port;lr>`.
pub(super) fn record_route(local: SocketAddr) -> String {
    format!("<sip:{};lr>", host_port(local))
}

fn keyed_hasher(secret: u64) -> DefaultHasher {
    let mut h = DefaultHasher::new();
    secret.hash(&mut h);
    h
}

/// The loop-detection hash of 16.6 step 8: Request-URI, Call-ID, From tag,
/// To tag and CSeq number (not the method, not the top Via: a request that
/// comes back unchanged hashes the same).
fn loop_hash(secret: u64, request: &Message) -> u32 {
    let mut h = keyed_hasher(secret);
    request.request_uri_raw().hash(&mut h);
    request.call_id().hash(&mut h);
    request.from().ok().and_then(|f| f.tag()).hash(&mut h);
    request.to().ok().and_then(|t| t.tag()).hash(&mut h);
    request.cseq().seq.hash(&mut h);
    h.finish() as u32
}

/// The branch of the Via we add: `z9hG4bK`, a hash of the received top Via's
/// branch and sent-by, Call-ID and CSeq number (so a retransmission, its ACK
/// and its CANCEL map to the same branch), then `.` and the loop hash.
pub(super) fn branch(secret: u64, request: &Message) -> String {
    let mut h = keyed_hasher(secret);
    if let Ok(via) = request.top_via() {
        via.branch().hash(&mut h);
        via.host_raw().hash(&mut h);
        via.port().hash(&mut h);
    }
    request.call_id().hash(&mut h);
    request.cseq().seq.hash(&mut h);
    let mut s = String::with_capacity(40);
    s.push_str(std::str::from_utf8(MAGIC_COOKIE).unwrap_or("z9hG4bK"));
    let _ = write!(s, "{:016x}.{:08x}", h.finish(), loop_hash(secret, request));
    s
}

/// RFC 3261 16.3 step 4: a Via of ours whose loop hash equals this request's
/// means the request came back unchanged: a loop, not a spiral.
pub(super) fn is_loop(config: &ProxyConfig, local: SocketAddr, request: &Message) -> bool {
    let mut suffix = [0u8; 9];
    let hash = loop_hash(config.branch_secret, request);
    suffix[0] = b'.';
    let hex = format!("{hash:08x}");
    suffix[1..].copy_from_slice(hex.as_bytes());
    request.vias().filter_map(Result::ok).any(|via| {
        via_is_us(config, local, &via)
            && via
                .branch()
                .is_some_and(|b| b.starts_with(MAGIC_COOKIE) && b.ends_with(&suffix))
    })
}

/// The To tag of responses this proxy generates for `request`: stable across
/// retransmissions.
pub(super) fn to_tag(secret: u64, request: &Message) -> String {
    let mut h = keyed_hasher(secret ^ 0x0074_6f74_6167);
    request.call_id().hash(&mut h);
    request.from().ok().and_then(|f| f.tag()).hash(&mut h);
    request.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    format!("{:016x}", h.finish())
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
