//! Free UDP ports on 127.0.0.1 for the peers a test starts.
//!
//! The kernel picks a port (bind to port 0), the socket is closed, and the
//! port goes to the peer. Within this process no port is handed out twice,
//! so tests running in parallel threads get distinct ports; between closing
//! the probe socket and the peer's bind another process could take the port,
//! which on a loopback-only test machine is a risk we accept.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Mutex;

/// The address every peer of the tests binds.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// One free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    free_udp_ports(1)[0]
}

/// `n` distinct free UDP ports on 127.0.0.1, none handed out before by this
/// process. All probe sockets stay open until the last port is found, so the
/// kernel cannot give the same port twice.
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(50).max(100) {
        if ports.len() == n {
            break;
        }
        let socket = UdpSocket::bind(SocketAddrV4::new(LOOPBACK, 0))
            .expect("binding a UDP socket on 127.0.0.1 works");
        let port = socket
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(socket);
    }
    assert_eq!(ports.len(), n, "could not find {n} free UDP ports");
    drop(held);
    ports
}

/// The first port of `n` consecutive free UDP ports on 127.0.0.1, none
/// handed out before by this process: a relay's port range. The first port
/// is even, so the range splits into RTP/RTCP pairs (RFC 3550 section 11).
/// Candidate ranges start at a kernel-chosen port (so parallel test
/// processes spread out) and every port is probed by binding it; the probes
/// are closed before returning.
pub fn free_udp_range(n: u16) -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..100 {
        let kernel = UdpSocket::bind(SocketAddrV4::new(LOOPBACK, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("binding a UDP socket on 127.0.0.1 works");
        let Some((seed, end)) = kernel
            .checked_add(kernel % 2)
            .and_then(|seed| Some((seed, seed.checked_add(n)?)))
        else {
            continue;
        };
        if (seed..end).any(|p| handed_out.contains(&p)) {
            continue;
        }
        let held: Result<Vec<UdpSocket>, _> = (seed..end)
            .map(|p| UdpSocket::bind(SocketAddrV4::new(LOOPBACK, p)))
            .collect();
        if held.is_ok() {
            handed_out.extend(seed..end);
            return seed;
        }
    }
    panic!("could not find {n} consecutive free UDP ports");
}

/// One free TCP port on 127.0.0.1 (for an HTTP server of a peer), not
/// handed out before by this process.
pub fn free_tcp_port() -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut held = Vec::new();
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))
            .expect("binding a TCP socket on 127.0.0.1 works");
        let port = listener
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if handed_out.insert(port) {
            return port;
        }
        held.push(listener);
    }
    panic!("could not find a free TCP port");
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(LOOPBACK, port))
}

/// Whether some socket is bound to UDP `port` on 127.0.0.1 or on the
/// wildcard address, per /proc/net/udp. Reading the kernel's table (rather
/// than trying to bind the port) cannot race with the owner's own bind.
pub fn udp_port_bound(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|local| wanted.iter().any(|w| w == local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_udp_ports(8);
        let distinct: BTreeSet<_> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 8);
        for &p in &ports {
            assert!(p > 0);
            let s = UdpSocket::bind(loopback(p)).unwrap();
            assert!(udp_port_bound(p));
            drop(s);
        }
        let more = free_udp_ports(8);
        assert!(more.iter().all(|p| !distinct.contains(p)));
    }

    #[test]
    fn a_range_is_consecutive_free_and_not_handed_out_again() {
        let first = free_udp_range(16);
        assert_eq!(first % 2, 0, "{first} starts no RTP/RTCP pair");
        let held: Vec<UdpSocket> = (first..first + 16)
            .map(|p| UdpSocket::bind(loopback(p)).unwrap())
            .collect();
        assert_eq!(held.len(), 16);
        let singles = free_udp_ports(8);
        assert!(singles.iter().all(|p| !(first..first + 16).contains(p)));
    }
}
