//! One shard: a pinned glommio executor that owns sockets, a proxy core and
//! the calls whose Call-ID hashes to it. Datagrams for calls owned elsewhere go
//! to their owner over the channel mesh, one way and batched.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::UdpSocket;
use glommio::{spawn_local, Task};

use super::socket::ShardSockets;
use super::StaticRoute;
use crate::proxy::{ProxyConfig, ProxyCore, Transmit};
use crate::sip::{owner_shard, peek_call_id};

/// A datagram received by one shard for a call another shard owns.
pub(super) struct Handoff {
    bytes: Bytes,
    src: SocketAddr,
    local: SocketAddr,
}

/// What one mesh message carries: the handoffs of one receive burst.
pub(super) type Batch = Vec<Handoff>;

/// Handoffs to one peer are sent when this many are waiting, or sooner when
/// the receive loop runs dry.
const HANDOFF_BATCH: usize = 32;
/// Batches a peer's channel holds; beyond it handoffs are dropped and counted
/// (UDP peers retransmit), never buffered without bound.
pub(super) const HANDOFF_QUEUE_BATCHES: usize = 1024;
/// How often the shard fires due timers and checks for shutdown.
const TICK: Duration = Duration::from_millis(10);
/// Largest datagram read.
const RECV_BUFFER_BYTES: usize = 65_535;
/// Rounds of timer firing per tick; the rest waits for the next tick.
const MAX_TIMER_ROUNDS: usize = 16;
/// Transmits taken from the core at a time before sending.
const SEND_BATCH: usize = 64;

/// Everything a shard is started with.
pub(super) struct ShardSetup {
    pub index: usize,
    pub sockets: ShardSockets,
    pub proxy: ProxyConfig,
    pub router: StaticRoute,
    pub stop: Arc<AtomicBool>,
    pub grace: Duration,
    pub mesh: MeshBuilder<Batch, Full>,
}

/// Counters of the shell itself (the core counts protocol events).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ShellCounters {
    pub handoffs_out: u64,
    pub handoffs_in: u64,
    pub handoff_drops: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
}

struct Shard {
    index: usize,
    shards: usize,
    core: RefCell<ProxyCore<StaticRoute>>,
    sockets: Vec<(SocketAddr, UdpSocket)>,
    outbox: RefCell<Vec<Batch>>,
    senders: Senders<Batch>,
    flush: LocalSender<()>,
    counters: Cell<ShellCounters>,
}

/// Runs a shard until shutdown completes; returns its counters.
pub(super) async fn run(setup: ShardSetup) -> ShellCounters {
    let (senders, mut receivers) = match setup.mesh.join().await {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(shard = setup.index, error = %e, "could not join the shard mesh");
            return ShellCounters::default();
        }
    };
    let shards = senders.nr_consumers();
    let (flush, flush_rx) = local_channel::new_bounded(1);
    let shard = Rc::new(Shard {
        index: setup.index,
        shards,
        core: RefCell::new(ProxyCore::new(setup.proxy, setup.router)),
        sockets: setup
            .sockets
            .into_iter()
            .map(|(addr, s)| (addr, UdpSocket::from(s)))
            .collect(),
        outbox: RefCell::new((0..shards).map(|_| Vec::new()).collect()),
        senders,
        flush,
        counters: Cell::new(ShellCounters::default()),
    });
    let mut tasks: Vec<Task<()>> = Vec::new();
    for i in 0..shard.sockets.len() {
        tasks.push(spawn_local(receive_loop(shard.clone(), i)));
    }
    for (_, stream) in receivers.streams() {
        let shard = shard.clone();
        tasks.push(spawn_local(async move {
            while let Some(batch) = stream.recv().await {
                shard.accept_handoffs(batch).await;
            }
        }));
    }
    let flusher = shard.clone();
    tasks.push(spawn_local(async move {
        while flush_rx.recv().await.is_some() {
            flusher.flush_all();
        }
    }));
    tick_until_drained(&shard, &setup.stop, setup.grace).await;
    drop(tasks);
    shard.counters.get()
}

/// Fires timers every tick; on a stop signal stops taking new calls and ends
/// once the core is idle or the grace period is over.
async fn tick_until_drained(shard: &Rc<Shard>, stop: &AtomicBool, grace: Duration) {
    let mut deadline: Option<Instant> = None;
    loop {
        glommio::timer::sleep(TICK).await;
        // Bounds how long a handoff waits when the receive loop never runs dry.
        shard.flush_all();
        let now = Instant::now();
        fire_due_timers(shard, now).await;
        if deadline.is_none() && stop.load(Ordering::Relaxed) {
            shard.core.borrow_mut().begin_shutdown();
            tracing::info!(shard = shard.index, "stopping: new calls get 503");
            deadline = Some(now + grace);
        }
        if let Some(deadline) = deadline {
            // Transactions that only absorb retransmissions need not hold us.
            let live = shard.core.borrow().unfinished_transaction_count();
            if live == 0 || now >= deadline {
                tracing::info!(shard = shard.index, live, "stopped");
                return;
            }
        }
    }
}

/// Fires what is due, sending as it goes: the core fires only as many timers as
/// its transmit queue has room for, so it may need several rounds.
async fn fire_due_timers(shard: &Rc<Shard>, now: Instant) {
    for _ in 0..MAX_TIMER_ROUNDS {
        shard.core.borrow_mut().handle_timeout(now);
        shard.send_pending().await;
        let due = shard.core.borrow().poll_timeout().is_some_and(|t| t <= now);
        if !due {
            return;
        }
    }
}

async fn receive_loop(shard: Rc<Shard>, socket: usize) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let (local, sock) = &shard.sockets[socket];
        match sock.recv_from(&mut buf).await {
            Ok((n, src)) => shard.route_datagram(&buf[..n], src, *local).await,
            Err(e) => {
                shard.count(|c| c.recv_errors += 1);
                tracing::debug!(shard = shard.index, error = %e, "receive failed");
            }
        }
    }
}

impl Shard {
    /// Handles a datagram here when this shard owns its call, else queues it
    /// for the owner. Without a Call-ID it stays here: the core rejects it.
    async fn route_datagram(&self, datagram: &[u8], src: SocketAddr, local: SocketAddr) {
        let owner = peek_call_id(datagram).map_or(self.index, |id| owner_shard(id, self.shards));
        let bytes = Bytes::copy_from_slice(datagram);
        if owner == self.index {
            self.core
                .borrow_mut()
                .handle_datagram(Instant::now(), src, local, bytes);
            self.send_pending().await;
            return;
        }
        let full = {
            let mut outbox = self.outbox.borrow_mut();
            outbox[owner].push(Handoff { bytes, src, local });
            outbox[owner].len() >= HANDOFF_BATCH
        };
        if full {
            self.flush_to(owner);
        } else {
            // The flusher runs once this receive loop waits: the end of a burst.
            let _ = self.flush.try_send(());
        }
    }

    fn flush_all(&self) {
        for peer in 0..self.shards {
            self.flush_to(peer);
        }
    }

    fn flush_to(&self, peer: usize) {
        let batch = std::mem::take(&mut self.outbox.borrow_mut()[peer]);
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        match self.senders.try_send_to(peer, batch) {
            Ok(()) => self.count(|c| c.handoffs_out += n),
            Err(_) => {
                self.count(|c| c.handoff_drops += n);
                tracing::debug!(shard = self.index, peer, n, "handoff queue full: dropped");
            }
        }
    }

    async fn accept_handoffs(&self, batch: Batch) {
        let n = batch.len() as u64;
        {
            let mut core = self.core.borrow_mut();
            let now = Instant::now();
            for h in batch {
                core.handle_datagram(now, h.src, h.local, h.bytes);
            }
        }
        self.count(|c| c.handoffs_in += n);
        self.send_pending().await;
    }

    /// Sends everything the core has queued, from the socket of each
    /// transmit's local address.
    async fn send_pending(&self) {
        loop {
            let batch: Vec<Transmit> = {
                let mut core = self.core.borrow_mut();
                std::iter::from_fn(|| core.poll_transmit())
                    .take(SEND_BATCH)
                    .collect()
            };
            if batch.is_empty() {
                return;
            }
            for t in batch {
                self.send(t).await;
            }
        }
    }

    async fn send(&self, t: Transmit) {
        let socket = self
            .sockets
            .iter()
            .find(|(addr, _)| *addr == t.local)
            .or_else(|| self.sockets.first());
        let Some((_, socket)) = socket else { return };
        if let Err(e) = socket.send_to(&t.payload, t.dst).await {
            self.count(|c| c.send_errors += 1);
            tracing::debug!(shard = self.index, dst = %t.dst, error = %e, "send failed");
        }
    }

    fn count(&self, f: impl FnOnce(&mut ShellCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }
}
