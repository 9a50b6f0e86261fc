//! The listen sockets: one per shard per listen address, all bound to the same
//! address with SO_REUSEPORT so that the kernel spreads flows over the shards.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::RuntimeError;
use crate::config::{Config, ListenAddr};

/// The sockets of one shard, with the address each is bound to.
pub(super) type ShardSockets = Vec<(SocketAddr, Socket)>;

/// Binds every listen address once per shard. A port of 0 is resolved by the
/// first bind and reused, so every shard shares one port.
pub(super) fn bind_all(config: &Config, shards: usize) -> Result<Vec<ShardSockets>, RuntimeError> {
    let mut per_shard: Vec<ShardSockets> = (0..shards).map(|_| Vec::new()).collect();
    for listen in &config.listen {
        let mut addr = listen.addr;
        for sockets in per_shard.iter_mut() {
            let socket = bind_one(addr, config).map_err(|e| bind_error(listen, &e))?;
            addr = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            sockets.push((addr, socket));
        }
        tracing::info!(listen = %format!("udp:{addr}"), shards, "listening");
    }
    Ok(per_shard)
}

fn bind_one(addr: SocketAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_recv_buffer_size(config.recv_buffer_bytes)?;
    socket.set_send_buffer_size(config.send_buffer_bytes)?;
    warn_if_capped(
        "SO_RCVBUF",
        "rmem_max",
        config.recv_buffer_bytes,
        socket.recv_buffer_size(),
    );
    warn_if_capped(
        "SO_SNDBUF",
        "wmem_max",
        config.send_buffer_bytes,
        socket.send_buffer_size(),
    );
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Linux doubles the requested size and caps it at net.core.{r,w}mem_max; a cap
/// means drops under load, so say how to lift it.
fn warn_if_capped(option: &str, sysctl: &str, wanted: usize, got: io::Result<usize>) {
    if let Ok(got) = got {
        if got < wanted {
            tracing::warn!(
                "{option} is {got} bytes, below the configured {wanted}: \
                 run `sysctl -w net.core.{sysctl}={wanted}`"
            );
        }
    }
}

fn bind_error(listen: &ListenAddr, e: &io::Error) -> RuntimeError {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => " (another process holds this port without SO_REUSEPORT)",
        io::ErrorKind::AddrNotAvailable => " (no interface of this host has this address)",
        io::ErrorKind::PermissionDenied => " (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        _ => "",
    };
    RuntimeError::Setup(format!("cannot listen on udp:{}: {e}{hint}", listen.addr))
}
