//! The runtime shell: one pinned thread per data-plane core, each driving its
//! own io_uring ring over its own SO_REUSEPORT sockets, moving datagrams and
//! time in and out of the sans-IO proxy core it owns. Nothing here decides
//! anything about SIP.
//!
//! The shards first ran on glommio; a null forwarder measured it at about
//! 15.7 µs of CPU per forwarded datagram against 10.9 µs for this ring at
//! 50k datagrams/s (`examples/udp_forward_cost.rs`, docs/benchmarks.md).

mod preflight;
mod shard;
pub use shard::ShellCounters;
mod socket;
pub mod uring;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::proxy::Router;
use crate::sip::Message;

/// Why the runtime could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Something the operator must fix; the message names the fix.
    #[error("{0}")]
    Setup(String),
    /// A shard thread failed.
    #[error("shard {shard} failed: {reason}")]
    Shard {
        /// The shard's index.
        shard: usize,
        /// What went wrong.
        reason: String,
    },
}

/// The router of this stage: every initial request to the configured next hop,
/// or 503 when there is none. The dispatcher replaces it.
#[derive(Clone, Copy, Debug)]
pub struct StaticRoute(pub Option<SocketAddr>);

impl Router for StaticRoute {
    fn route(&mut self, _now: Instant, _request: &Message) -> Option<SocketAddr> {
        self.0
    }
}

/// Runs the proxy until SIGTERM or SIGINT, then lets live transactions finish
/// (at most `shutdown_grace_ms`) and returns.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    let cores = preflight::cores(&config.cores)?;
    preflight::io_uring_available()?;
    preflight::memlock(cores.len())?;
    let router = StaticRoute(config.next_hop_addr());
    let sockets = socket::bind_all(&config, cores.len())?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| RuntimeError::Setup(format!("cannot install signal handler: {e}")))?;
    }
    let mut proxy = config.proxy.clone();
    proxy.branch_secret = random_u64();
    let shards = cores.len();
    let mesh = Arc::new(shard::Mesh::new(shards));
    tracing::info!(shards, ?cores, next_hop = ?router.0, "starting");
    let mut handles = Vec::with_capacity(shards);
    let links = shard::links(shards);
    for (index, ((core, sockets), links)) in cores.iter().zip(sockets).zip(links).enumerate() {
        let setup = shard::ShardSetup {
            index,
            core: *core,
            sockets,
            proxy: proxy.clone(),
            router,
            stop: stop.clone(),
            grace: Duration::from_millis(config.shutdown_grace_ms),
            links,
            mesh: mesh.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || shard::run(setup))
            .map_err(|e| RuntimeError::Setup(format!("cannot start shard on core {core}: {e}")))?;
        handles.push(handle);
    }
    join(handles)
}

/// A per-process secret from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn join(
    handles: Vec<std::thread::JoinHandle<Result<ShellCounters, String>>>,
) -> Result<(), RuntimeError> {
    let mut result = Ok(());
    for (shard, handle) in handles.into_iter().enumerate() {
        let reason = match handle.join() {
            Ok(Ok(counters)) => {
                tracing::info!(shard, ?counters, "shard exited");
                continue;
            }
            Ok(Err(reason)) => reason,
            Err(_) => "the shard thread panicked".to_string(),
        };
        tracing::error!(shard, %reason, "shard failed");
        result = Err(RuntimeError::Shard { shard, reason });
    }
    result
}
