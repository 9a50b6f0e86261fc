//! One shard: a pinned thread that owns an io_uring ring over its sockets, a
//! proxy core and the calls whose Call-ID hashes to it. Datagrams for calls
//! owned elsewhere go to their owner over a per-pair channel, one way and
//! batched per ring round, with one eventfd wake-up per batch.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::router::ShardRouter;
use super::socket::ShardSockets;
use super::uring::{Datagram, RingConfig, SendError, UdpRing, Waker};
use crate::dispatcher::{DestKey, DestLoad, DestState, DestinationSets, RouterStats, StateChange};
use crate::proxy::{ProxyConfig, ProxyCore, ProxyStats, SetupLatency, Transmit};
use crate::sip::{owner_shard, peek_call_id};

/// A datagram received by one shard for a call another shard owns.
pub(super) struct Handoff {
    bytes: Bytes,
    src: SocketAddr,
    local: SocketAddr,
}

/// The handoffs of one ring round.
pub(super) type Batch = Vec<Handoff>;

/// What one channel message carries, between shards or from the main thread.
pub(super) enum LinkMsg {
    /// Datagrams of calls the receiver owns.
    Handoff(Batch),
    /// A destination's state changed on the sending shard (it probes it, or
    /// saw it fail).
    State(StateChange),
    /// A new destination snapshot (SIGHUP), from the main thread.
    Reload(Arc<DestinationSets>),
    /// The operator sets these destinations' state (RPC), from the main
    /// thread to one shard, which sends the change to the others.
    SetState(Vec<DestKey>, DestState),
    /// Probing on or off (RPC `dispatcher.ping_active`), from the main
    /// thread to every shard.
    Probing(bool),
}

/// What a shard publishes about its dispatcher, about once a second: the
/// main thread (and the control plane after it) reads these instead of
/// shard memory.
#[derive(Clone, Debug)]
pub struct ShardReport {
    /// The shard.
    pub shard: usize,
    /// Per destination state and calls counted by this shard.
    pub loads: Vec<DestLoad>,
    /// Answered calls the shard remembers.
    pub dialogs: usize,
    /// Router counters.
    pub stats: RouterStats,
    /// The proxy core's counters.
    pub proxy: ProxyStats,
    /// The shell's counters.
    pub shell: ShellCounters,
    /// Transactions in the table.
    pub transactions: usize,
    /// Transactions still waiting for a final response.
    pub unfinished: usize,
    /// Call setup latency since start.
    pub latency: SetupLatency,
}

/// On shutdown, with nothing unfinished, a shard still waits until no
/// datagram came for this long (the ACK and BYE after a last 200).
const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// How often a shard publishes its [`ShardReport`].
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// State changes waiting for room in a peer's channel; beyond it the oldest
/// are dropped (the next probe result sends the state again).
const MAX_PENDING_EVENTS: usize = 1024;

/// Batches a pair's channel holds; beyond it handoffs are dropped and counted
/// (UDP peers retransmit), never buffered without bound.
pub(super) const HANDOFF_QUEUE_BATCHES: usize = 1024;
/// The longest a shard waits in the ring: it bounds how late a stop signal is
/// seen. Timers wake it sooner.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// Transmits waiting for a free send slot; beyond it they are dropped and
/// counted.
const MAX_PENDING_TRANSMITS: usize = 65_536;
/// Rounds of timer firing per loop; the core fires only as many timers as its
/// transmit queue has room for.
const MAX_TIMER_ROUNDS: usize = 16;

/// The ring of one shard: 256 receive buffers of 16 KiB. A longer datagram is
/// counted as truncated and dropped (SIP over UDP should stay under the path
/// MTU, RFC 3261 18.1.1).
pub(super) fn ring_config() -> RingConfig {
    RingConfig {
        entries: 512,
        buffers: 256,
        buffer_size: 16 * 1024,
        send_slots: 1024,
        send_buffer_size: 2048,
        max_completions: 512,
        defer_taskrun: true,
    }
}

/// The channels of every shard pair and each shard's waker, exchanged once at
/// start (the only lock, never touched per message).
pub(super) struct Mesh {
    shards: usize,
    wakers: Mutex<Vec<Option<Waker>>>,
    ready: Barrier,
}

impl Mesh {
    /// Every shard's waker published so far (for the main thread).
    pub(super) fn wakers(&self) -> Vec<Waker> {
        let all = self.wakers.lock().map(|w| w.clone()).unwrap_or_default();
        all.into_iter().flatten().collect()
    }

    pub(super) fn new(shards: usize) -> Self {
        Mesh {
            shards,
            wakers: Mutex::new((0..shards).map(|_| None).collect()),
            ready: Barrier::new(shards),
        }
    }

    /// Publishes `waker` for shard `index`, waits for every shard, and
    /// returns all wakers by shard index.
    fn exchange(&self, index: usize, waker: Waker) -> Vec<Waker> {
        if let Ok(mut all) = self.wakers.lock() {
            all[index] = Some(waker);
        }
        self.ready.wait();
        let all = self.wakers.lock().map(|w| w.clone()).unwrap_or_default();
        all.into_iter().flatten().collect()
    }
}

/// One-way channels: `senders[p]` goes to shard `p`, `receivers` come from
/// every other shard.
pub(super) struct Links {
    pub senders: Vec<Option<Sender<LinkMsg>>>,
    pub receivers: Vec<Receiver<LinkMsg>>,
}

/// A channel for every ordered pair of distinct shards, and one from the
/// main thread to each shard (the returned senders, by shard).
pub(super) fn links(shards: usize) -> (Vec<Links>, Vec<Sender<LinkMsg>>) {
    let mut all: Vec<Links> = (0..shards)
        .map(|_| Links {
            senders: (0..shards).map(|_| None).collect(),
            receivers: Vec::new(),
        })
        .collect();
    for from in 0..shards {
        for to in (0..shards).filter(|&to| to != from) {
            let (tx, rx) = crossbeam_channel::bounded(HANDOFF_QUEUE_BATCHES);
            all[from].senders[to] = Some(tx);
            all[to].receivers.push(rx);
        }
    }
    let control = all
        .iter_mut()
        .map(|l| {
            let (tx, rx) = crossbeam_channel::bounded(64);
            l.receivers.push(rx);
            tx
        })
        .collect();
    (all, control)
}

/// Everything a shard is started with.
pub(super) struct ShardSetup {
    pub index: usize,
    pub core: usize,
    pub sockets: ShardSockets,
    pub proxy: ProxyConfig,
    pub router: ShardRouter,
    pub reports: Sender<ShardReport>,
    pub stop: Arc<AtomicBool>,
    pub grace: Duration,
    pub links: Links,
    pub mesh: Arc<Mesh>,
}

/// Counters of the shell itself (the core counts protocol events).
#[derive(Clone, Copy, Debug, Default)]
pub struct ShellCounters {
    /// Datagrams handed to their owner shard.
    pub handoffs_out: u64,
    /// Datagrams received from other shards.
    pub handoffs_in: u64,
    /// Handoffs dropped on a full channel.
    pub handoff_drops: u64,
    /// Transmits dropped: no send slot and the pending queue full, or refused.
    pub send_drops: u64,
    /// Ring errors (receive or send).
    pub ring_errors: u64,
    /// Destination state changes sent to other shards.
    pub state_changes_out: u64,
    /// Destination state changes received from other shards.
    pub state_changes_in: u64,
    /// State changes dropped on full channels.
    pub state_change_drops: u64,
    /// Destination snapshots swapped in.
    pub reloads: u64,
}

struct Shard {
    index: usize,
    shards: usize,
    core: ProxyCore<ShardRouter>,
    reports: Sender<ShardReport>,
    next_report: Instant,
    /// When the last datagram arrived (received here or handed over).
    last_datagram: Instant,
    /// State changes per peer waiting for channel room.
    events_out: Vec<VecDeque<StateChange>>,
    locals: Vec<SocketAddr>,
    outbox: Vec<Batch>,
    links: Links,
    wakers: Vec<Waker>,
    pending: VecDeque<Transmit>,
    counters: ShellCounters,
}

/// Runs a shard on the calling thread until shutdown completes.
pub(super) fn run(setup: ShardSetup) -> Result<ShellCounters, String> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: setup.core }) {
        tracing::warn!(
            shard = setup.index,
            core = setup.core,
            "could not pin to core"
        );
    }
    let locals: Vec<SocketAddr> = setup.sockets.iter().map(|(a, _)| *a).collect();
    let sockets = setup.sockets.into_iter().map(|(_, s)| s.into()).collect();
    let ring = UdpRing::new(sockets, ring_config());
    // Every shard must reach the exchange, even one whose ring failed, or the
    // others would wait forever.
    let waker = match &ring {
        Ok(r) => Some(r.waker()),
        Err(_) => None,
    };
    let wakers = match waker {
        Some(w) => setup.mesh.exchange(setup.index, w),
        None => {
            setup.mesh.ready.wait();
            Vec::new()
        }
    };
    let mut ring = ring.map_err(|e| format!("cannot set up the io_uring ring: {e}"))?;
    if wakers.len() != setup.mesh.shards {
        setup.stop.store(true, Ordering::Relaxed);
        return Err("another shard failed to start".into());
    }
    let mut core = ProxyCore::new(setup.proxy, setup.router);
    core.set_local_addrs(&locals);
    core.set_shard(setup.index, setup.mesh.shards);
    let mut shard = Shard {
        index: setup.index,
        shards: setup.mesh.shards,
        core,
        reports: setup.reports,
        next_report: Instant::now(),
        last_datagram: Instant::now(),
        events_out: (0..setup.mesh.shards).map(|_| VecDeque::new()).collect(),
        locals,
        outbox: (0..setup.mesh.shards).map(|_| Vec::new()).collect(),
        links: setup.links,
        wakers,
        pending: VecDeque::new(),
        counters: ShellCounters::default(),
    };
    shard.run_until_drained(&mut ring, &setup.stop, setup.grace);
    let ring_counters = ring.counters();
    tracing::debug!(shard = shard.index, ?ring_counters, "ring counters");
    Ok(shard.counters)
}

impl Shard {
    /// The shard loop: wait in the ring for datagrams, a wake-up or the next
    /// timer; then hand off, take handoffs, fire timers and send. On a stop
    /// signal, stop taking new calls and end once nothing is unfinished or
    /// the grace period is over.
    fn run_until_drained(&mut self, ring: &mut UdpRing, stop: &AtomicBool, grace: Duration) {
        let mut deadline: Option<Instant> = None;
        loop {
            let wait = self.wait_time(Instant::now());
            let round = ring.run_once(wait, |d, _| self.on_datagram(d));
            if let Err(e) = round {
                self.counters.ring_errors += 1;
                tracing::warn!(shard = self.index, error = %e, "ring wait failed");
            }
            self.flush_handoffs();
            self.take_handoffs();
            let now = Instant::now();
            self.fire_due_timers(now);
            self.send_events();
            self.publish(now);
            self.send_pending(ring);
            if deadline.is_none() && stop.load(Ordering::Relaxed) {
                self.core.begin_shutdown();
                tracing::info!(shard = self.index, "stopping: new calls get 503");
                deadline = Some(now + grace);
            }
            if let Some(deadline) = deadline {
                // Transactions that only absorb retransmissions need not hold us.
                let live = self.core.unfinished_transaction_count();
                // Nothing unfinished and the peers quiet for a moment: the
                // ACK and BYE that follow a call's last 200 still pass.
                let quiet = now.saturating_duration_since(self.last_datagram) >= SHUTDOWN_QUIET;
                if (live == 0 && quiet) || now >= deadline {
                    tracing::info!(shard = self.index, live, "stopped");
                    return;
                }
            }
        }
    }

    /// How long the ring may wait: until the core's next timer, at most
    /// `MAX_WAIT`, and not at all while transmits wait for send slots.
    fn wait_time(&self, now: Instant) -> Duration {
        if !self.pending.is_empty() {
            return Duration::ZERO;
        }
        match self.core.poll_timeout() {
            Some(at) => at.saturating_duration_since(now).min(MAX_WAIT),
            None => MAX_WAIT,
        }
    }

    /// Handles a datagram here when this shard owns its call, else queues it
    /// for the owner. Without a Call-ID it stays here: the core rejects it.
    fn on_datagram(&mut self, d: Datagram<'_>) {
        let now = Instant::now();
        self.last_datagram = now;
        // With one shard every call is ours: no need to look for the Call-ID.
        let owner = match self.shards {
            1 => self.index,
            n => peek_call_id(d.payload).map_or(self.index, |id| owner_shard(id, n)),
        };
        let Some(&local) = self.locals.get(d.socket) else {
            return;
        };
        let bytes = Bytes::copy_from_slice(d.payload);
        if owner == self.index {
            self.core.handle_datagram(now, d.src, local, bytes);
            self.take_transmits();
        } else {
            self.outbox[owner].push(Handoff {
                bytes,
                src: d.src,
                local,
            });
        }
    }

    /// Sends each peer its batch of this round and wakes it once.
    fn flush_handoffs(&mut self) {
        for peer in 0..self.shards {
            if self.outbox[peer].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.outbox[peer]);
            let n = batch.len() as u64;
            let Some(tx) = &self.links.senders[peer] else {
                continue;
            };
            match tx.try_send(LinkMsg::Handoff(batch)) {
                Ok(()) => {
                    self.counters.handoffs_out += n;
                    if self.wakers[peer].wake().is_err() {
                        self.counters.ring_errors += 1;
                    }
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.counters.handoff_drops += n;
                    tracing::debug!(shard = self.index, peer, n, "handoff channel full: dropped");
                }
            }
        }
    }

    /// Handles every batch other shards have handed over, their state
    /// changes and the main thread's reloads.
    fn take_handoffs(&mut self) {
        for i in 0..self.links.receivers.len() {
            while let Ok(msg) = self.links.receivers[i].try_recv() {
                let now = Instant::now();
                match msg {
                    LinkMsg::Handoff(batch) => {
                        self.last_datagram = now;
                        self.counters.handoffs_in += batch.len() as u64;
                        for h in batch {
                            self.core.handle_datagram(now, h.src, h.local, h.bytes);
                            self.take_transmits();
                        }
                    }
                    LinkMsg::State(change) => {
                        self.counters.state_changes_in += 1;
                        if let Some(d) = self.core.router_mut().dispatch_mut() {
                            d.apply_state_change(&change);
                        }
                    }
                    LinkMsg::SetState(keys, state) => {
                        if let Some(d) = self.core.router_mut().dispatch_mut() {
                            let d = d.dispatcher_mut();
                            for key in &keys {
                                if let Some(id) = d.find(key) {
                                    d.set_state(id, state);
                                }
                            }
                        }
                    }
                    LinkMsg::Probing(on) => {
                        if let Some(d) = self.core.router_mut().dispatch_mut() {
                            d.dispatcher_mut().set_probing(now, on);
                        }
                    }
                    LinkMsg::Reload(sets) => {
                        if let Some(d) = self.core.router_mut().dispatch_mut() {
                            d.reload(now, sets);
                            self.counters.reloads += 1;
                            tracing::info!(shard = self.index, "dispatcher sets reloaded");
                        }
                    }
                }
            }
        }
    }

    /// Sends this shard's destination state changes to every other shard.
    fn send_events(&mut self) {
        let Some(d) = self.core.router_mut().dispatch_mut() else {
            return;
        };
        while let Some(change) = d.poll_event() {
            tracing::info!(
                shard = self.index,
                set = change.key.set,
                uri = %change.key.uri,
                state = %change.state().letter(),
                "destination state changed"
            );
            for (peer, queue) in self.events_out.iter_mut().enumerate() {
                if peer == self.index {
                    continue;
                }
                if queue.len() >= MAX_PENDING_EVENTS {
                    queue.pop_front();
                    self.counters.state_change_drops += 1;
                }
                queue.push_back(change.clone());
            }
        }
        for peer in 0..self.shards {
            let Some(tx) = &self.links.senders[peer] else {
                continue;
            };
            let mut sent = false;
            while let Some(change) = self.events_out[peer].pop_front() {
                match tx.try_send(LinkMsg::State(change)) {
                    Ok(()) => {
                        sent = true;
                        self.counters.state_changes_out += 1;
                    }
                    Err(TrySendError::Full(LinkMsg::State(c))) => {
                        self.events_out[peer].push_front(c);
                        break;
                    }
                    Err(_) => {
                        self.counters.state_change_drops += 1;
                        break;
                    }
                }
            }
            if sent && self.wakers[peer].wake().is_err() {
                self.counters.ring_errors += 1;
            }
        }
    }

    /// Publishes the shard's counters and the dispatcher's loads for the
    /// main thread, once a second.
    fn publish(&mut self, now: Instant) {
        if now < self.next_report {
            return;
        }
        self.next_report = now + REPORT_INTERVAL;
        let d = self.core.router().dispatch();
        let report = ShardReport {
            shard: self.index,
            loads: d
                .map(|d| d.dispatcher().load_snapshot())
                .unwrap_or_default(),
            dialogs: d.map_or(0, |d| d.dialog_count()),
            stats: d.map(|d| d.stats()).unwrap_or_default(),
            proxy: self.core.stats(),
            shell: self.counters,
            transactions: self.core.transaction_count(),
            unfinished: self.core.unfinished_transaction_count(),
            latency: self.core.setup_latency().clone(),
        };
        // The main thread keeps only the latest; a full channel drops one.
        let _ = self.reports.try_send(report);
    }

    fn fire_due_timers(&mut self, now: Instant) {
        for _ in 0..MAX_TIMER_ROUNDS {
            if self.core.poll_timeout().is_none_or(|t| t > now) {
                return;
            }
            self.core.handle_timeout(now);
            self.take_transmits();
        }
    }

    /// Moves the core's transmits to the shell's queue, so the core's own
    /// bounded queue never fills while the ring is busy.
    fn take_transmits(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if self.pending.len() >= MAX_PENDING_TRANSMITS {
                self.counters.send_drops += 1;
                continue;
            }
            self.pending.push_back(t);
        }
    }

    /// Queues pending transmits in the ring until its send slots run out;
    /// the rest go after the next round frees slots.
    fn send_pending(&mut self, ring: &mut UdpRing) {
        self.take_transmits();
        while let Some(t) = self.pending.pop_front() {
            let socket = self.locals.iter().position(|a| *a == t.local).unwrap_or(0);
            match ring.send_bytes(socket, t.dst, t.payload.clone()) {
                Ok(()) => {}
                Err(SendError::Full) => {
                    self.pending.push_front(t);
                    return;
                }
                Err(e) => {
                    self.counters.send_drops += 1;
                    tracing::debug!(shard = self.index, dst = %t.dst, error = ?e, "send refused");
                }
            }
        }
    }
}
