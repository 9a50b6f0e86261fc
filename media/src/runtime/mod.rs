//! The runtime shell of the relay: sockets, the io_uring ring, the clock and
//! signals around the sans-IO cores ([`crate::ng::Control`] and
//! [`crate::session::Sessions`]).
//!
//! One shard for now: one thread owns its `Sessions`, its `Control` and one
//! [`UdpRing`](edge::runtime::uring::UdpRing) (the edge's ring, reused) over
//! the ng socket and a socket for every relay port of its range.
//!
//! Why every port is bound at start: the ring takes its sockets when it is
//! built and cannot add one later, so a socket bound when a call allocates
//! its pair could not join the ring. Binding the range up front costs one
//! descriptor per port (10,002 for the default 30000-40000, so raise
//! `ulimit -n`), and a port that cannot be bound stops the start with its
//! number. Binding lazily needs a ring that registers sockets at run time;
//! that is the next step.
//!
//! What the loop does per datagram, with nothing allocated and nothing
//! locked on the media path: a relay port's datagram is routed by
//! [`Sessions::route`](crate::session::Sessions::route), its RTP header read
//! in place ([`RtpView`](crate::rtp::RtpView)) into the stream's statistics,
//! and it is copied into one of the ring's send slots to the other side. An
//! ng datagram is copied into `Bytes` (the control path), answered by
//! `Control::handle`, and the reply is sent without another copy.

mod shard;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge::runtime::uring::RingConfig;

use crate::ng;
use crate::ports::PortConfigError;
use crate::session::{SessionConfig, Sessions};

pub use shard::{Shard, ShardCounters};

/// The longest the loop waits in its ring: it bounds how late a stop
/// request is seen.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Everything the relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where the ng control socket listens (UDP).
    pub listen_ng: SocketAddr,
    /// The session layer's settings: the address relay sockets bind and
    /// SDPs advertise, the port range, the timeouts.
    pub sessions: SessionConfig,
    /// Shards (threads, each with its ring). Only 1 is supported so far.
    pub shards: usize,
    /// The size of each shard's ring.
    pub ring: RingConfig,
}

/// Why the relay did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The port range is invalid.
    #[error("invalid port range: {0}")]
    Ports(#[from] PortConfigError),
    /// Binding a socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// The io_uring ring could not be set up or failed.
    #[error("io_uring: {0}")]
    Ring(io::Error),
    /// The shard thread could not start or panicked.
    #[error("shard thread: {0}")]
    Thread(String),
}

impl RelayConfig {
    /// Checks what the session layer does not: the shard count and the
    /// advertised address.
    pub fn validate(&self) -> Result<(), RelayError> {
        if self.shards != 1 {
            return Err(RelayError::Config(format!(
                "--cores {}: only 1 core is supported so far",
                self.shards
            )));
        }
        if self.sessions.advertised_address.is_unspecified() {
            return Err(RelayError::Config(
                "--interface must be a concrete address: it is advertised in SDP".into(),
            ));
        }
        if self.sessions.timeout.is_zero() {
            return Err(RelayError::Config("--timeout must be positive".into()));
        }
        Ok(())
    }
}

/// The sockets of one shard, bound: the ng socket first, then the relay
/// ports in `ports` order.
#[derive(Debug)]
pub struct BoundSockets {
    /// The ng socket, then one socket per relay port.
    pub sockets: Vec<UdpSocket>,
    /// The relay ports, in socket order (socket `i + 1` is `ports[i]`).
    pub ports: Vec<u16>,
}

/// Builds the shard's `Sessions` at `now` and binds its sockets.
pub fn prepare(config: &RelayConfig, now: Instant) -> Result<(Sessions, BoundSockets), RelayError> {
    config.validate()?;
    let mut session_config = config.sessions.clone();
    session_config.unix_time_at_start_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sessions = Sessions::new(now, session_config, 0, config.shards)?;
    let ip = config.sessions.advertised_address;
    let ng_socket = bind(config.listen_ng)?;
    let mut ports = Vec::new();
    for port in config.sessions.port_min..=config.sessions.port_max {
        if sessions.pool().owns(port & !1) {
            ports.push(port);
        }
    }
    let mut sockets = Vec::with_capacity(ports.len() + 1);
    sockets.push(ng_socket);
    for &port in &ports {
        sockets.push(bind(SocketAddr::new(ip, port))?);
    }
    Ok((sessions, BoundSockets { sockets, ports }))
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, RelayError> {
    UdpSocket::bind(addr).map_err(|source| RelayError::Bind { addr, source })
}

/// Runs the relay on this thread's behalf until `stop` is set: binds,
/// starts the shard thread (which builds its ring) and waits for it.
pub fn run(config: RelayConfig, stop: Arc<AtomicBool>) -> Result<ShardCounters, RelayError> {
    let (sessions, bound) = prepare(&config, Instant::now())?;
    let ip: IpAddr = config.sessions.advertised_address;
    tracing::info!(
        ng = %config.listen_ng,
        interface = %ip,
        port_min = config.sessions.port_min,
        port_max = config.sessions.port_max,
        relay_sockets = bound.ports.len(),
        "media relay starting"
    );
    let ring_config = config.ring;
    let control = ng::Control::new(&ng::Config::default());
    let handle = std::thread::Builder::new()
        .name("media-shard-0".into())
        .spawn(move || {
            let mut shard = Shard::new(sessions, control, &bound.ports)?;
            shard.run(bound.sockets, ring_config, &stop)
        })
        .map_err(|e| RelayError::Thread(e.to_string()))?;
    handle
        .join()
        .map_err(|_| RelayError::Thread("the shard thread panicked".into()))?
}
