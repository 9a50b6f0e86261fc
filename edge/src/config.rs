//! `edge.toml`: the whole configuration of an `edge` process, with a default
//! for every field so that no file at all gives a working proxy on
//! 127.0.0.1:5060 UDP.

use std::net::SocketAddr;

use crate::proxy::ProxyConfig;

/// A transport and address to listen on, written `udp:127.0.0.1:5060` or
/// `udp:[::1]:5060`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// Only UDP for now.
    pub transport: Transport,
    /// The address bound on every shard (SO_REUSEPORT).
    pub addr: SocketAddr,
}

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RFC 3261 over UDP.
    Udp,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Log filter (`tracing` directives); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Listen addresses; every shard binds each one.
    pub listen: Vec<ListenAddr>,
    /// Cores to run a shard on (one pinned thread each); empty means all.
    pub cores: Vec<usize>,
    /// SO_RCVBUF for each socket, bytes.
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF for each socket, bytes.
    pub send_buffer_bytes: usize,
    /// Where initial requests go, as `sip:host:port` (resolved at start).
    pub next_hop: Option<String>,
    /// How long SIGTERM waits for live transactions, ms.
    pub shutdown_grace_ms: u64,
    /// Proxy and transaction settings, per shard.
    pub proxy: ProxyConfig,
}
