//! The runtime shell: one pinned thread per data-plane core, each driving its
//! own io_uring ring over its own SO_REUSEPORT sockets, moving datagrams and
//! time in and out of the sans-IO proxy core it owns. Nothing here decides
//! anything about SIP.
//!
//! The shards first ran on glommio; a null forwarder measured it at about
//! 15.7 µs of CPU per forwarded datagram against 10.9 µs for this ring at
//! 50k datagrams/s (`examples/udp_forward_cost.rs`, docs/benchmarks.md).

pub mod datagram_io;
pub mod mmsg;
mod preflight;
mod router;
mod shard;
pub use router::ShardRouter;
pub use shard::{ShardReport, ShellCounters};
mod socket;
pub mod uring;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::{Config, DestinationSource};
use crate::dispatcher::{DestKey, DestState, DestinationSets, DispatchRouter};
use crate::proxy::{RouteChoice, Router};
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
    type Hunt = ();

    fn start(&mut self, _now: Instant, _request: &Message) -> Option<RouteChoice<()>> {
        self.0.map(RouteChoice::to)
    }
}

/// Runs the proxy until SIGTERM or SIGINT, then lets live transactions finish
/// (at most `shutdown_grace_ms`) and returns. SIGHUP re-reads the dispatcher
/// list (a bad file is logged and the running sets stay).
pub fn run(config: Config) -> Result<(), RuntimeError> {
    let cores = preflight::cores(&config.cores)?;
    preflight::io_uring_available()?;
    preflight::memlock(cores.len())?;
    let sets = load_sets(&config).map_err(RuntimeError::Setup)?;
    let sockets = socket::bind_all(&config, cores.len())?;
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = crate::metrics::Metrics::default();
    let (rpc_server, rpc_calls) = match config.rpc.listen {
        Some(addr) => {
            let (server, calls) = crate::rpc::server::RpcServer::start(
                addr,
                config.rpc.token.clone(),
                stop.clone(),
                metrics.clone(),
            )
            .map_err(RuntimeError::Setup)?;
            tracing::info!(addr = %server.addr(), token = config.rpc.token.is_some(), "rpc: JSON-RPC over HTTP listening");
            (Some(server), calls)
        }
        None => (None, crossbeam_channel::never()),
    };
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| RuntimeError::Setup(format!("cannot install signal handler: {e}")))?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(|e| RuntimeError::Setup(format!("cannot install signal handler: {e}")))?;
    let mut proxy = config.proxy.clone();
    proxy.branch_secret = random_u64();
    let shards = cores.len();
    let mesh = Arc::new(shard::Mesh::new(shards));
    match &sets {
        Some(s) => tracing::info!(
            shards,
            ?cores,
            destinations = s.destination_count(),
            sets = s.sets().len(),
            "starting with the dispatcher"
        ),
        None => tracing::info!(shards, ?cores, next_hop = ?config.next_hop_addr(), "starting"),
    }
    let mut handles = Vec::with_capacity(shards);
    let (links, control) = shard::links(shards);
    let (report_tx, reports) = crossbeam_channel::bounded(4 * shards.max(1));
    let now = Instant::now();
    for (index, ((core, sockets), links)) in cores.iter().zip(sockets).zip(links).enumerate() {
        let router = match &sets {
            Some(sets) => {
                let mut d = DispatchRouter::new(
                    now,
                    sets.clone(),
                    config.dispatcher.dispatcher.clone(),
                    config.dispatcher.router.clone(),
                );
                d.dispatcher_mut().set_probe_share(index, shards);
                d.seed(random_u64() ^ index as u64);
                ShardRouter::Dispatch(Box::new(d))
            }
            None => ShardRouter::Static(config.next_hop_addr()),
        };
        let setup = shard::ShardSetup {
            index,
            core: *core,
            sockets,
            proxy: proxy.clone(),
            router,
            reports: report_tx.clone(),
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
    drop(report_tx);
    let mut main = MainThread {
        config: &config,
        control: &control,
        mesh: &mesh,
        view: DispatcherView::default(),
        sets: sets.clone(),
        started: std::time::SystemTime::now(),
        last_reload: None,
        probing: true,
    };
    while !handles.iter().all(|h| h.is_finished()) {
        if reload.swap(false, Ordering::Relaxed) {
            let _ = crate::rpc::Backend::reload(&mut main, "SIGHUP");
        }
        crossbeam_channel::select! {
            recv(reports) -> r => if let Ok(report) = r {
                metrics.publish(Instant::now(), report.clone());
                main.view.update(report);
            },
            recv(rpc_calls) -> c => if let Ok(call) = c {
                let result = crate::rpc::dispatch(&mut main, &call.request, call.remote);
                let _ = call.reply.try_send(result);
            },
            default(Duration::from_millis(100)) => {}
        }
    }
    while let Ok(report) = reports.try_recv() {
        main.view.update(report);
    }
    let view = main.view;
    drop(rpc_calls);
    if let Some(server) = rpc_server {
        stop.store(true, Ordering::Relaxed);
        server.join();
    }
    if sets.is_some() {
        for t in view.totals() {
            tracing::info!(
                set = t.key.set,
                uri = %t.key.uri,
                state = %t.state.letter(),
                active = t.active,
                pending = t.pending,
                "destination at exit"
            );
        }
    }
    join(handles)
}

/// Reads and resolves the configured destination sets (main thread only).
fn load_sets(config: &Config) -> Result<Option<Arc<DestinationSets>>, String> {
    let Some(loaded) = config.dispatcher.load_sets()? else {
        return Ok(None);
    };
    for w in &loaded.warnings {
        tracing::warn!("dispatcher: {w}");
    }
    Ok(Some(Arc::new(loaded.sets)))
}

/// The main thread's state: what the control plane reads and the reload
/// path (SIGHUP and `dispatcher.reload`).
struct MainThread<'a> {
    config: &'a Config,
    control: &'a [Sender<shard::LinkMsg>],
    mesh: &'a shard::Mesh,
    view: DispatcherView,
    /// The sets the shards were last sent.
    sets: Option<Arc<DestinationSets>>,
    started: std::time::SystemTime,
    /// When the last reload was accepted (for `reload_min_interval_ms`).
    last_reload: Option<Instant>,
    /// Probing on (`dispatcher.ping_active`).
    probing: bool,
}

impl MainThread<'_> {
    /// Sends a message made by `msg` to every shard and wakes it; returns
    /// how many shards it reached.
    fn broadcast(&self, what: &str, msg: impl Fn() -> shard::LinkMsg) -> usize {
        let wakers = self.mesh.wakers();
        let mut reached = 0;
        for (i, tx) in self.control.iter().enumerate() {
            match tx.try_send(msg()) {
                Ok(()) => reached += 1,
                Err(_) => tracing::warn!(shard = i, "{what} not delivered: control channel full"),
            }
            if let Some(w) = wakers.get(i) {
                let _ = w.wake();
            }
        }
        reached
    }

    /// Makes `sets` the running sets of every shard.
    fn install(&mut self, sets: Arc<DestinationSets>) {
        self.broadcast("destination sets", || shard::LinkMsg::Reload(sets.clone()));
        self.sets = Some(sets);
    }
}

fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl crate::rpc::Backend for MainThread<'_> {
    fn clock(&self) -> (u64, u64) {
        (
            unix_seconds(self.started),
            unix_seconds(std::time::SystemTime::now()),
        )
    }

    fn sets(&self) -> Option<&DestinationSets> {
        self.sets.as_deref()
    }

    fn totals(&self) -> Vec<DestinationTotal> {
        self.view.totals()
    }

    fn probe_all(&self) -> bool {
        self.config.dispatcher.dispatcher.health.probe_all
    }

    /// A new snapshot of the list file to every shard, or an error logged
    /// (and returned) and the running sets kept.
    fn reload(&mut self, who: &str) -> Result<(), String> {
        if !matches!(self.config.dispatcher.source, DestinationSource::List(_)) {
            tracing::info!(who, "no dispatcher list to reload");
            return Err("No dispatcher list to reload".into());
        }
        let min = Duration::from_millis(self.config.dispatcher.reload_min_interval_ms);
        if let Some(ago) = self
            .last_reload
            .map(|t| t.elapsed())
            .filter(|ago| *ago < min)
        {
            tracing::warn!(
                who,
                ago_ms = ago.as_millis() as u64,
                "dispatcher reload refused: too soon"
            );
            return Err(format!(
                "Ongoing reload: the last one was {} ms ago, reload_min_interval_ms is {}",
                ago.as_millis(),
                min.as_millis()
            ));
        }
        let sets = match load_sets(self.config) {
            Ok(Some(sets)) => sets,
            Ok(None) => return Err("No dispatcher list to reload".into()),
            Err(e) => {
                tracing::error!(who, "dispatcher reload failed, the running sets stay: {e}");
                return Err(e);
            }
        };
        tracing::info!(
            who,
            destinations = sets.destination_count(),
            "dispatcher list reloaded"
        );
        self.last_reload = Some(Instant::now());
        self.install(sets);
        Ok(())
    }

    fn replace_sets(&mut self, sets: DestinationSets, who: &str) -> Result<(), String> {
        let mut warnings = Vec::new();
        let sets = crate::config::resolve_names(&sets, &mut warnings);
        for w in &warnings {
            tracing::warn!(who, "dispatcher: {w}");
        }
        tracing::info!(
            who,
            destinations = sets.destination_count(),
            "destination sets changed by the operator (until the next reload)"
        );
        self.install(Arc::new(sets));
        Ok(())
    }

    fn ping_active(&mut self, on: Option<bool>, who: &str) -> Result<bool, String> {
        let old = self.probing;
        if let Some(on) = on {
            tracing::info!(who, probing = on, "destination probing set by the operator");
            self.broadcast("probing change", || shard::LinkMsg::Probing(on));
            self.probing = on;
        }
        Ok(old)
    }

    fn reports(&self) -> Vec<ShardReport> {
        self.view.reports().cloned().collect()
    }

    /// To shard 0, which applies the state and sends the change to the
    /// others (the shards' own path for state changes).
    fn set_state(&mut self, keys: Vec<DestKey>, state: DestState, who: &str) -> Result<(), String> {
        for k in &keys {
            tracing::info!(who, set = k.set, uri = %k.uri, state = %state.letter(), "destination state set by the operator");
        }
        let Some(tx) = self.control.first() else {
            return Err("No shard is running".into());
        };
        tx.try_send(shard::LinkMsg::SetState(keys, state))
            .map_err(|_| {
                tracing::warn!(who, "state change not delivered: control channel full");
                "The shards are busy, the state was not changed: try again".to_string()
            })?;
        if let Some(w) = self.mesh.wakers().first() {
            let _ = w.wake();
        }
        Ok(())
    }
}

/// Per destination totals over every shard, from the shards' latest reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationTotal {
    /// The destination.
    pub key: DestKey,
    /// Its state (as the shards see it; they agree once changes arrived).
    pub state: DestState,
    /// Calls being set up on it, all shards.
    pub pending: u64,
    /// Answered calls on it, all shards.
    pub active: u64,
    /// Failed probes and failovers counted against it, all shards.
    pub failures: u64,
    /// The round trip of its last answered probe (one shard probes it).
    pub probe_rtt: Option<Duration>,
}

/// The main thread's view of the dispatcher: each shard's latest
/// [`ShardReport`]. The control plane reads this, never shard memory.
#[derive(Clone, Debug, Default)]
pub struct DispatcherView {
    reports: Vec<Option<ShardReport>>,
}

impl DispatcherView {
    /// Keeps `report` as its shard's latest.
    pub fn update(&mut self, report: ShardReport) {
        let i = report.shard;
        if self.reports.len() <= i {
            self.reports.resize(i + 1, None);
        }
        self.reports[i] = Some(report);
    }

    /// Each shard's latest report, by shard.
    pub fn reports(&self) -> impl Iterator<Item = &ShardReport> {
        self.reports.iter().flatten()
    }

    /// Totals per destination, in the order the first shard lists them.
    pub fn totals(&self) -> Vec<DestinationTotal> {
        let mut out: Vec<DestinationTotal> = Vec::new();
        for row in self.reports.iter().flatten().flat_map(|r| &r.loads) {
            match out.iter_mut().find(|t| t.key == row.key) {
                Some(t) => {
                    t.pending += u64::from(row.load.pending);
                    t.active += u64::from(row.load.active);
                    t.failures += row.failures;
                    t.probe_rtt = t.probe_rtt.max(row.probe_rtt);
                }
                None => out.push(DestinationTotal {
                    key: row.key.clone(),
                    state: row.state,
                    pending: u64::from(row.load.pending),
                    active: u64::from(row.load.active),
                    failures: row.failures,
                    probe_rtt: row.probe_rtt,
                }),
            }
        }
        out
    }
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
