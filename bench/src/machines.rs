//! What both cores need of the edge's transaction machines: timer settings
//! clamped to sane ranges, the call table's size, and one way to run a
//! machine's due timers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::Transmit;
use edge::transaction::{
    InviteClient, InviteServer, NonInviteClient, NonInviteServer, TimerConfig, TransactionEvent,
    TransactionTable, TxnId,
};

/// Most datagrams a core queues for the shell; more are dropped and counted.
const MAX_QUEUED_TRANSMITS: usize = 65_536;
/// Most calls whose timers one `handle_timeout` runs; the rest stay due and
/// the core's `poll_timeout` says so.
const MAX_FIRED_PER_TIMEOUT: usize = 4_096;

/// The datagrams a core queued for the shell: bounded, the overflow dropped
/// and counted.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
    dropped: u64,
}

impl Outbox {
    /// Queues `payload` from the socket at `local` to `dst`.
    pub(crate) fn push(&mut self, local: SocketAddr, dst: SocketAddr, payload: Bytes) {
        if self.queue.len() >= MAX_QUEUED_TRANSMITS {
            self.dropped += 1;
            return;
        }
        self.queue.push_back(Transmit {
            local,
            dst,
            payload,
        });
    }

    /// The oldest queued datagram.
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Datagrams dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// Fills `fired` (cleared first) with the calls of `table` whose timer is
/// due at `now`, at most [`MAX_FIRED_PER_TIMEOUT`] of them.
pub(crate) fn due_calls<V>(table: &mut TransactionTable<V>, now: Instant, fired: &mut Vec<TxnId>) {
    table.start(now);
    fired.clear();
    table.expire(now, fired, MAX_FIRED_PER_TIMEOUT);
}

/// Most rounds of one machine's timers that are due together.
const MAX_ROUNDS_PER_FIRING: usize = 8;
/// The T1 range the cores run with: a zero T1 would retransmit in a loop,
/// and 64*T1 must stay far from overflowing an `Instant`.
pub(crate) const T1_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(60));
/// The longest T2, and the longest configured delay (hold, ring, answer,
/// late bound) the cores take: longer ones are cut to it.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// The transaction timers for configured `t1` and `t2` (clamped to
/// [`T1_RANGE`] and from T1 to [`MAX_DELAY`]), with `t4` and `timer_c`.
pub(crate) fn timers(t1: Duration, t2: Duration, t4: Duration, timer_c: Duration) -> TimerConfig {
    let t1 = t1.clamp(T1_RANGE.0, T1_RANGE.1);
    TimerConfig {
        t1,
        t2: t2.clamp(t1, MAX_DELAY),
        t4,
        timer_c,
    }
}
/// Most entries a call table of either core holds (live and lingering):
/// the timer wheel indexes its entries with 32 bits.
pub(crate) const MAX_TABLE_CALLS: usize = 1 << 30;

/// The capacity of a call table for `max_calls` live calls: as many again
/// for ended calls that linger.
pub(crate) fn table_capacity(max_calls: usize) -> usize {
    max_calls.saturating_mul(2).min(MAX_TABLE_CALLS)
}

/// A transaction machine's timers, as the cores run them.
pub(crate) trait Timed {
    /// The machine's next deadline.
    fn deadline(&self) -> Option<Instant>;
    /// Fires the machine's timers due at `now`.
    fn fire(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent>;
}

impl Timed for InviteClient {
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent> {
        self.handle_timeout(now, timers)
    }
}

impl Timed for NonInviteClient {
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent> {
        self.handle_timeout(now, timers)
    }
}

impl Timed for InviteServer {
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant, timers: &TimerConfig) -> Option<TransactionEvent> {
        self.handle_timeout(now, timers)
    }
}

impl Timed for NonInviteServer {
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant, _timers: &TimerConfig) -> Option<TransactionEvent> {
        self.handle_timeout(now)
    }
}

/// Runs the timers of `machine` due at `now` (a few rounds, for timers due
/// together) and returns the first event one reports.
pub(crate) fn run_due<M: Timed>(
    machine: &mut M,
    now: Instant,
    timers: &TimerConfig,
) -> Option<TransactionEvent> {
    for _ in 0..MAX_ROUNDS_PER_FIRING {
        if machine.deadline().is_none_or(|at| at > now) {
            return None;
        }
        if let Some(event) = machine.fire(now, timers) {
            return Some(event);
        }
    }
    None
}
