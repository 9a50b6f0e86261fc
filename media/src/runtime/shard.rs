//! One shard's loop: a ring over its relay ports, the sessions it owns,
//! the commands the control thread queues for them, and the timers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use edge::runtime::datagram_io::{Backend, DatagramSink, UdpDriver};
use edge::runtime::uring::{Datagram, RingConfig, SendError, Waker};

use super::dispatch::ShardRequest;
use super::{RelayError, MAX_WAIT};
use crate::metrics::{Metrics, ShardReport, REPORT_INTERVAL};
use crate::session::{MediaVerdict, Sessions};

/// Commands answered per loop turn at most, so a burst of control traffic
/// cannot hold the relay off its sockets for long.
const MAX_REQUESTS_PER_TURN: usize = 256;
/// No socket for this port (in [`Shard`]'s port table).
const NO_SOCKET: u32 = u32::MAX;

/// What one shard has done, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Commands (and list/statistics questions) answered for the control
    /// thread.
    pub requests_answered: u64,
    /// Media datagrams relayed.
    pub media_relayed: u64,
    /// Bytes of the media datagrams relayed.
    pub bytes_relayed: u64,
    /// Media datagrams on a port no call routes (unknown port, other side
    /// not known yet, RTCP port of an rtcp-mux stream).
    pub media_unrouted: u64,
    /// Media datagrams dropped because every send slot was in flight.
    pub media_dropped_full: u64,
    /// Media datagrams dropped by `strict source`: from another source
    /// than the one the stream latched onto.
    pub media_dropped_source: u64,
    /// Media datagrams that looked like RTP but whose header was invalid.
    pub rtp_invalid: u64,
    /// Sends refused for another reason (no socket, ring failure).
    pub send_failed: u64,
}

impl ShardCounters {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ShardCounters) {
        // Destructured so that a new counter cannot be left out of the sum.
        let ShardCounters {
            requests_answered,
            media_relayed,
            bytes_relayed,
            media_unrouted,
            media_dropped_full,
            media_dropped_source,
            rtp_invalid,
            send_failed,
        } = *other;
        self.requests_answered += requests_answered;
        self.media_relayed += media_relayed;
        self.bytes_relayed += bytes_relayed;
        self.media_unrouted += media_unrouted;
        self.media_dropped_full += media_dropped_full;
        self.media_dropped_source += media_dropped_source;
        self.rtp_invalid += rtp_invalid;
        self.send_failed += send_failed;
    }
}

/// One shard: its sessions, the queue of commands for them and the map
/// between relay ports and ring sockets.
pub struct Shard {
    index: usize,
    sessions: Sessions,
    requests: Receiver<ShardRequest>,
    /// Socket `i` of the ring is bound to `ports[i]`.
    ports: Vec<u16>,
    /// The ring socket of port `port_min + i`, or [`NO_SOCKET`].
    socket_of_port: Vec<u32>,
    port_min: u16,
    /// The next time a core has timer work, as last asked.
    next_timer: Option<Instant>,
    /// A command ran since `next_timer` was computed.
    timers_dirty: bool,
    counters: ShardCounters,
    /// Where reports go, if anywhere, and when the next is due.
    metrics: Option<Metrics>,
    next_report: Instant,
}

impl Shard {
    /// Shard `index` over `sessions`, answering `requests`, whose relay
    /// sockets are bound to `ports` (inside the sessions' range), in ring
    /// order.
    pub fn new(
        index: usize,
        sessions: Sessions,
        requests: Receiver<ShardRequest>,
        ports: &[u16],
    ) -> Result<Self, RelayError> {
        let port_min = sessions.config().port_min;
        let span = usize::from(sessions.config().port_max - port_min) + 1;
        let mut socket_of_port = vec![NO_SOCKET; span];
        for (i, &port) in ports.iter().enumerate() {
            let slot = port
                .checked_sub(port_min)
                .and_then(|offset| socket_of_port.get_mut(usize::from(offset)))
                .ok_or_else(|| RelayError::Config(format!("port {port} is outside the range")))?;
            *slot = u32::try_from(i).map_err(|_| RelayError::Config("too many ports".into()))?;
        }
        Ok(Shard {
            index,
            sessions,
            requests,
            ports: ports.to_vec(),
            socket_of_port,
            port_min,
            next_timer: None,
            timers_dirty: true,
            counters: ShardCounters::default(),
            metrics: None,
            next_report: Instant::now(),
        })
    }

    /// Publishes a report to `metrics` about once a second.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The shard's numbers now.
    pub fn report(&self) -> ShardReport {
        ShardReport {
            shard: self.index,
            relay: self.counters,
            sessions: self.sessions.summary(),
            media: self.sessions.media_summary(),
        }
    }

    /// What the shard has done so far.
    pub fn counters(&self) -> ShardCounters {
        self.counters
    }

    /// The sessions, for inspection.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Builds the driver (`backend`: the io_uring ring, or recvmmsg and
    /// sendmmsg) over `sockets` (one per port given to [`Shard::new`], in
    /// that order) on this thread, gives its waker to `ready`, and runs
    /// until `stop` is set or the driver fails.
    pub fn run(
        &mut self,
        sockets: Vec<UdpSocket>,
        config: RingConfig,
        backend: Backend,
        ready: impl FnOnce(Result<Waker, String>),
        stop: &AtomicBool,
    ) -> Result<ShardCounters, RelayError> {
        if sockets.len() != self.ports.len() {
            let e = "one socket per relay port".to_string();
            ready(Err(e.clone()));
            return Err(RelayError::Config(e));
        }
        let mut ring = match UdpDriver::new(sockets, config, backend) {
            Ok(ring) => ring,
            Err(e) => {
                ready(Err(e.to_string()));
                return Err(RelayError::Ring(e));
            }
        };
        ready(Ok(ring.waker()));
        let shard = self.index;
        tracing::info!(
            shard,
            defer_taskrun = ring.defer_taskrun(),
            fixed_files = ring.fixed_files(),
            ports = self.ports.len(),
            "shard ring ready"
        );
        while !stop.load(Ordering::Relaxed) {
            let wait = self.run_timers(Instant::now());
            // One clock read per batch: every datagram of it was waiting
            // when the wait returned, so reading the clock for each would
            // only add the time spent relaying the ones before it.
            let mut batch_at = None;
            ring.run_once(wait, |d, out| {
                let now = *batch_at.get_or_insert_with(Instant::now);
                self.on_datagram(now, d, out);
            })
            .map_err(|e| {
                tracing::error!(shard, error = %e, "io_uring wait failed");
                RelayError::Ring(e)
            })?;
            if !self.requests.is_empty() {
                self.answer_requests(Instant::now());
            }
        }
        let ring_counters = ring.counters();
        tracing::info!(shard, counters = ?self.counters, ring = ?ring_counters, "shard stopped");
        Ok(self.counters)
    }

    /// Answers the commands the control thread queued, a bounded number
    /// per turn (the rest wait for the next turn, which comes at once
    /// because their wake-up is still pending in the ring).
    pub fn answer_requests(&mut self, now: Instant) {
        for request in self.requests.try_iter().take(MAX_REQUESTS_PER_TURN) {
            request.answer(now, &mut self.sessions);
            self.counters.requests_answered += 1;
            self.timers_dirty = true;
        }
    }

    /// Runs the timers due at `now`; returns how long the ring may wait.
    fn run_timers(&mut self, now: Instant) -> std::time::Duration {
        if let Some(metrics) = self.metrics.as_ref().filter(|_| self.next_report <= now) {
            metrics.publish(self.report());
            self.next_report = now + REPORT_INTERVAL;
        }
        if self.next_timer.is_some_and(|at| at <= now) {
            self.sessions.handle_timeout(now);
            self.timers_dirty = true;
        }
        if self.timers_dirty {
            // Media only pushes call deadlines later, so the cached time
            // can only be early (a wasted wake-up), never late.
            self.next_timer = self.sessions.poll_timeout();
            self.timers_dirty = false;
        }
        let report_wait = self.next_report.saturating_duration_since(now);
        self.next_timer
            .map_or(MAX_WAIT, |at| at.saturating_duration_since(now))
            .min(MAX_WAIT)
            .min(report_wait)
    }

    /// Handles one datagram from the ring, received by `now`.
    pub fn on_datagram(&mut self, now: Instant, d: Datagram<'_>, out: &mut dyn DatagramSink) {
        if let Some(&port) = self.ports.get(d.socket) {
            self.on_media(now, port, d.src, d.payload, out);
        }
    }

    fn on_media(
        &mut self,
        now: Instant,
        port: u16,
        src: SocketAddr,
        payload: &[u8],
        out: &mut dyn DatagramSink,
    ) {
        let (route, stats) = match self.sessions.on_media(now, port, src) {
            MediaVerdict::Relay(route, stats) => (route, stats),
            MediaVerdict::Unrouted => {
                self.counters.media_unrouted += 1;
                return;
            }
            MediaVerdict::WrongSource => {
                self.counters.media_dropped_source += 1;
                return;
            }
        };
        // The header is read in place: no copy, no allocation.
        if stats.on_datagram(now, payload, route.rtcp).is_err() {
            self.counters.rtp_invalid += 1;
        }
        let Some(socket) = self.socket_of(route.from_port) else {
            self.counters.send_failed += 1;
            return;
        };
        let sent = match out.send(socket, route.to, payload) {
            // Longer than a send slot: rare, so the copy into `Bytes` is
            // acceptable here.
            Err(SendError::TooLarge) => {
                out.send_bytes(socket, route.to, Bytes::copy_from_slice(payload))
            }
            other => other,
        };
        match sent {
            Ok(()) => {
                self.counters.media_relayed += 1;
                self.counters.bytes_relayed += payload.len() as u64;
            }
            Err(SendError::Full) => self.counters.media_dropped_full += 1,
            Err(e) => {
                self.counters.send_failed += 1;
                tracing::warn!(port, to = %route.to, error = %e, "media send failed");
            }
        }
    }

    fn socket_of(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.port_min)?;
        let socket = *self.socket_of_port.get(usize::from(offset))?;
        (socket != NO_SOCKET).then_some(socket as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionConfig;

    fn shard(ports: &[u16]) -> Result<Shard, RelayError> {
        let config = SessionConfig {
            port_min: 30_000,
            port_max: 30_009,
            ..SessionConfig::default()
        };
        let sessions = Sessions::new(Instant::now(), config, 0, 1)?;
        let (_, requests) = crossbeam_channel::bounded(1);
        Shard::new(0, sessions, requests, ports)
    }

    #[test]
    fn ports_map_to_ring_sockets() -> Result<(), RelayError> {
        let s = shard(&[30_000, 30_001, 30_004])?;
        assert_eq!(s.socket_of(30_000), Some(0));
        assert_eq!(s.socket_of(30_001), Some(1));
        assert_eq!(s.socket_of(30_004), Some(2));
        assert_eq!(s.socket_of(30_002), None);
        assert_eq!(s.socket_of(29_999), None);
        assert_eq!(s.socket_of(30_010), None);
        Ok(())
    }

    #[test]
    fn ports_outside_the_range_are_refused() {
        assert!(shard(&[30_010]).is_err());
        assert!(shard(&[29_000]).is_err());
    }
}
