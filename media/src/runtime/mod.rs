//! The runtime shell of the relay: sockets, io_uring rings, threads, the
//! clock and signals around the sans-IO cores ([`crate::ng::Control`] and
//! [`crate::session::Sessions`]).
//!
//! One shard per core, pinned: each owns the calls whose call-id hashes to
//! it ([`dispatch::shard_of`]), the share of the port range those calls'
//! ports come from, and one [`UdpRing`](edge::runtime::uring::UdpRing)
//! (the edge's ring, reused) over the sockets of that share. Media thus
//! arrives on the shard that owns it and is never handed between threads.
//! The ng control plane runs on threads of its own ([`control`]) and
//! queues each command to its call's shard, waking that shard's ring.
//!
//! Why every port is bound at start: the ring takes its sockets when it is
//! built and cannot add one later, so a socket bound when a call allocates
//! its pair could not join the ring. Binding the range up front costs one
//! descriptor per port (10,002 for the default 30000-40000; the soft
//! `RLIMIT_NOFILE` is raised to the hard limit at start), and a port that
//! cannot be bound stops the start with its number.
//!
//! What a shard does per datagram, with nothing allocated and nothing
//! locked on the media path: a relay port's datagram is routed by
//! [`Sessions::on_media`](crate::session::Sessions::on_media), its RTP
//! header read in place ([`RtpView`](crate::rtp::RtpView)) into the
//! stream's statistics, and it is copied into one of the ring's send slots
//! to the other side.

pub mod control;
pub mod dispatch;
mod shard;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge::runtime::datagram_io::{probe_io_uring, Backend};
use edge::runtime::uring::{RingConfig, Waker};

use crate::ng;
use crate::ports::PortConfigError;
use crate::session::{SessionConfig, Sessions};

use crate::metrics::{Metrics, MetricsServer};
use control::ControlPlane;
use dispatch::{shard_queue, Dispatch, ShardLink, ShardRequest};

pub use shard::{Shard, ShardCounters};

/// The longest the loop waits in its ring: it bounds how late a stop
/// request is seen.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// The most shards (data-plane threads) a relay runs.
pub const MAX_SHARDS: usize = 64;

/// Everything the relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where the ng control socket listens (UDP).
    pub listen_ng: SocketAddr,
    /// Where ng over TCP listens, if anywhere.
    pub listen_tcp_ng: Option<SocketAddr>,
    /// Where metrics are served over HTTP, if anywhere.
    pub listen_http: Option<SocketAddr>,
    /// The session layer's settings: the address relay sockets bind and
    /// SDPs advertise, the port range, the timeouts.
    pub sessions: SessionConfig,
    /// Shards (threads, each with its ring and its share of the ports).
    pub shards: usize,
    /// The size of each shard's ring (or of its recvmmsg/sendmmsg buffers).
    pub ring: RingConfig,
    /// Which UDP driver the shards use; `None` probes io_uring and falls
    /// back to recvmmsg/sendmmsg.
    pub io: Option<Backend>,
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
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(RelayError::Config(format!(
                "--cores {}: between 1 and {MAX_SHARDS}",
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

/// One shard, ready to start: its sessions and its relay sockets.
#[derive(Debug)]
pub struct PreparedShard {
    /// The shard's calls and its share of the port range.
    pub sessions: Sessions,
    /// One socket per relay port, in `ports` order.
    pub sockets: Vec<UdpSocket>,
    /// The relay ports of this shard.
    pub ports: Vec<u16>,
}

/// Builds shard `shard`'s `Sessions` at `now` and binds its relay ports.
pub fn prepare_shard(
    config: &RelayConfig,
    shard: usize,
    now: Instant,
) -> Result<PreparedShard, RelayError> {
    let mut session_config = config.sessions.clone();
    session_config.unix_time_at_start_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sessions = Sessions::new(now, session_config, shard, config.shards)?;
    let ip = config.sessions.advertised_address;
    let ports: Vec<u16> = (config.sessions.port_min..=config.sessions.port_max)
        .filter(|&port| sessions.pool().owns(port & !1))
        .collect();
    if ports.is_empty() {
        return Err(RelayError::Config(format!(
            "shard {shard} has no port pair: widen the range or use fewer cores"
        )));
    }
    let sockets = ports
        .iter()
        .map(|&port| bind(SocketAddr::new(ip, port)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedShard {
        sessions,
        sockets,
        ports,
    })
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, RelayError> {
    UdpSocket::bind(addr).map_err(|source| RelayError::Bind { addr, source })
}

/// Raises the soft limit on open files as far as the hard limit allows: a
/// relay holds a socket per port of its range.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// A started shard thread.
struct ShardThread {
    handle: JoinHandle<Result<ShardCounters, RelayError>>,
}

/// Starts shard `index` on a thread pinned to a core; its ring's waker (or
/// why it has none) is sent on `ready`.
fn spawn_shard(
    index: usize,
    prepared: PreparedShard,
    requests: crossbeam_channel::Receiver<ShardRequest>,
    (ring, backend): (RingConfig, Backend),
    ready: crossbeam_channel::Sender<(usize, Result<Waker, String>)>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<ShardThread, RelayError> {
    let handle = std::thread::Builder::new()
        .name(format!("media-shard-{index}"))
        .spawn(move || {
            pin_to_core(index);
            let PreparedShard {
                sessions,
                sockets,
                ports,
            } = prepared;
            let mut shard = Shard::new(index, sessions, requests, &ports)?.with_metrics(metrics);
            let result = shard.run(
                sockets,
                ring,
                backend,
                |w| drop(ready.send((index, w))),
                &stop,
            );
            // One shard failing stops the relay: its calls are unreachable.
            stop.store(true, Ordering::Relaxed);
            result
        })
        .map_err(|e| RelayError::Thread(e.to_string()))?;
    Ok(ShardThread { handle })
}

fn pin_to_core(index: usize) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(core) = cores.get(index % cores.len().max(1)) {
        if !core_affinity::set_for_current(*core) {
            tracing::warn!(shard = index, core = core.id, "cannot pin the shard");
        }
    }
}

/// Runs the relay until `stop` is set: binds the control sockets and every
/// shard's ports, starts the shards (each builds its ring), then the
/// control threads, and waits for the shards. Gives the shards' counters,
/// summed.
pub fn run(config: RelayConfig, stop: Arc<AtomicBool>) -> Result<ShardCounters, RelayError> {
    config.validate()?;
    raise_open_files_limit();
    let ng_socket = bind(config.listen_ng)?;
    let tcp = config
        .listen_tcp_ng
        .map(|addr| control::bind_tcp(addr).map_err(|source| RelayError::Bind { addr, source }))
        .transpose()?;
    let backend = choose_backend(&config);
    let metrics = Metrics::default();
    let http = config
        .listen_http
        .map(|addr| {
            MetricsServer::start(addr, metrics.clone(), stop.clone())
                .map_err(|source| RelayError::Bind { addr, source })
        })
        .transpose()?;
    let now = Instant::now();
    let prepared = (0..config.shards)
        .map(|shard| prepare_shard(&config, shard, now))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        ng = %config.listen_ng,
        tcp_ng = ?config.listen_tcp_ng,
        http = ?config.listen_http,
        interface = %config.sessions.advertised_address,
        port_min = config.sessions.port_min,
        port_max = config.sessions.port_max,
        shards = config.shards,
        "media relay starting"
    );
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(config.shards);
    let mut queues = Vec::with_capacity(config.shards);
    let mut threads = Vec::with_capacity(config.shards);
    for (index, shard) in prepared.into_iter().enumerate() {
        let (tx, rx) = shard_queue();
        queues.push(tx);
        let ready = ready_tx.clone();
        let started = spawn_shard(
            index,
            shard,
            rx,
            (config.ring, backend),
            ready,
            metrics.clone(),
            stop.clone(),
        );
        match started {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = join_all(threads);
                return Err(e);
            }
        }
    }
    let links = match collect_links(queues, &ready_rx) {
        Ok(links) => links,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = join_all(threads);
            return Err(e);
        }
    };
    let plane = Arc::new(ControlPlane::new(
        &ng::Config::default(),
        Dispatch::new(links),
    ));
    let mut control_threads = Vec::new();
    let udp = control::spawn_udp(ng_socket, plane.clone(), stop.clone());
    let tcp = tcp.map(|listener| control::spawn_tcp(listener, plane.clone(), stop.clone()));
    for started in [Some(udp), tcp].into_iter().flatten() {
        match started {
            Ok(handle) => control_threads.push(handle),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot start an ng control thread");
            }
        }
    }
    let result = join_all(threads);
    stop.store(true, Ordering::Relaxed);
    for handle in control_threads {
        if handle.join().is_err() {
            tracing::error!("an ng control thread panicked");
        }
    }
    if let Some(http) = http {
        http.join();
    }
    tracing::info!(ng = ?plane.counters(), "control plane stopped");
    result
}

/// The UDP driver every shard uses: the configured one, or io_uring if
/// this kernel runs it (a probe ring must receive a datagram), else
/// recvmmsg/sendmmsg. Logged, since the two differ in cost per packet.
fn choose_backend(config: &RelayConfig) -> Backend {
    let backend = config.io.unwrap_or_else(|| match probe_io_uring(config.ring) {
        Ok(()) => Backend::IoUring,
        Err(e) => {
            tracing::warn!(error = %e, "io_uring is not usable here: falling back to recvmmsg/sendmmsg");
            Backend::Mmsg
        }
    });
    tracing::info!(io = ?backend, chosen = config.io.is_some(), "UDP driver");
    backend
}

/// Waits for every shard's waker, in shard order.
fn collect_links(
    queues: Vec<crossbeam_channel::Sender<ShardRequest>>,
    ready: &crossbeam_channel::Receiver<(usize, Result<Waker, String>)>,
) -> Result<Vec<ShardLink>, RelayError> {
    let mut wakers: Vec<Option<Waker>> = queues.iter().map(|_| None).collect();
    for _ in 0..queues.len() {
        let (index, waker) = ready
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| RelayError::Thread("a shard did not start".into()))?;
        let waker = waker.map_err(|e| RelayError::Thread(format!("shard {index}: {e}")))?;
        if let Some(slot) = wakers.get_mut(index) {
            *slot = Some(waker);
        }
    }
    queues
        .into_iter()
        .zip(wakers)
        .map(|(queue, waker)| {
            waker
                .map(|w| ShardLink::new(queue, w))
                .ok_or_else(|| RelayError::Thread("a shard did not start".into()))
        })
        .collect()
}

/// Joins every shard thread; the first error wins, counters are summed.
fn join_all(threads: Vec<ShardThread>) -> Result<ShardCounters, RelayError> {
    let mut total = ShardCounters::default();
    let mut first_error = None;
    for thread in threads {
        match thread.handle.join() {
            Ok(Ok(counters)) => total.add(&counters),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(RelayError::Thread("a shard thread panicked".into()));
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}
