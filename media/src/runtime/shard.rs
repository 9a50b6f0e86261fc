//! One shard's loop: a ring over the ng socket and the relay ports, the
//! sessions and the ng endpoint it drives, and the timers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use edge::runtime::uring::{Datagram, Outbox, RingConfig, SendError, UdpRing};

use super::{RelayError, MAX_WAIT};
use crate::ng::Control;
use crate::rtp::{classify, PacketKind, RtpView};
use crate::session::Sessions;

/// Index of the ng socket in the ring; relay sockets follow it.
const NG_SOCKET: usize = 0;
/// No socket for this port (in [`Shard`]'s port table).
const NO_SOCKET: u32 = u32::MAX;

/// What one shard has done, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// ng datagrams received.
    pub ng_received: u64,
    /// ng replies that could not be queued.
    pub ng_reply_failed: u64,
    /// Media datagrams relayed.
    pub media_relayed: u64,
    /// Media datagrams on a port no call routes (unknown port, other side
    /// not known yet, RTCP port of an rtcp-mux stream).
    pub media_unrouted: u64,
    /// Media datagrams dropped because every send slot was in flight.
    pub media_dropped_full: u64,
    /// Media datagrams that looked like RTP but whose header was invalid.
    pub rtp_invalid: u64,
    /// Sends refused for another reason (no socket, ring failure).
    pub send_failed: u64,
}

/// One shard: its sessions, its ng endpoint and the map between relay
/// ports and ring sockets.
pub struct Shard {
    sessions: Sessions,
    control: Control,
    /// Socket `i + 1` of the ring is bound to `ports[i]`.
    ports: Vec<u16>,
    /// The ring socket of port `port_min + i`, or [`NO_SOCKET`].
    socket_of_port: Vec<u32>,
    port_min: u16,
    /// The next time a core has timer work, as last asked.
    next_timer: Option<Instant>,
    /// A command ran since `next_timer` was computed.
    timers_dirty: bool,
    counters: ShardCounters,
}

impl Shard {
    /// A shard over `sessions` and `control` whose relay sockets are bound
    /// to `ports` (ascending, inside the sessions' range), in ring order
    /// after the ng socket.
    pub fn new(sessions: Sessions, control: Control, ports: &[u16]) -> Result<Self, RelayError> {
        let port_min = sessions.config().port_min;
        let span = usize::from(sessions.config().port_max - port_min) + 1;
        let mut socket_of_port = vec![NO_SOCKET; span];
        for (i, &port) in ports.iter().enumerate() {
            let slot = port
                .checked_sub(port_min)
                .and_then(|offset| socket_of_port.get_mut(usize::from(offset)))
                .ok_or_else(|| RelayError::Config(format!("port {port} is outside the range")))?;
            *slot =
                u32::try_from(i + 1).map_err(|_| RelayError::Config("too many ports".into()))?;
        }
        Ok(Shard {
            sessions,
            control,
            ports: ports.to_vec(),
            socket_of_port,
            port_min,
            next_timer: None,
            timers_dirty: true,
            counters: ShardCounters::default(),
        })
    }

    /// What the shard has done so far.
    pub fn counters(&self) -> ShardCounters {
        self.counters
    }

    /// The sessions, for inspection.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Builds the ring over `sockets` (the ng socket, then the relay ports
    /// given to [`Shard::new`]) on this thread and runs until `stop` is set
    /// or the ring fails.
    pub fn run(
        &mut self,
        sockets: Vec<UdpSocket>,
        config: RingConfig,
        stop: &AtomicBool,
    ) -> Result<ShardCounters, RelayError> {
        if sockets.len() != self.ports.len() + 1 {
            return Err(RelayError::Config(
                "one socket per relay port plus the ng socket".into(),
            ));
        }
        let mut ring = UdpRing::new(sockets, config).map_err(RelayError::Ring)?;
        tracing::info!(defer_taskrun = ring.defer_taskrun(), "shard 0 ring ready");
        while !stop.load(Ordering::Relaxed) {
            let wait = self.run_timers(Instant::now());
            ring.run_once(wait, |d, out| self.on_datagram(d, out))
                .map_err(|e| {
                    tracing::error!(error = %e, "io_uring wait failed");
                    RelayError::Ring(e)
                })?;
        }
        let ring_counters = ring.counters();
        tracing::info!(shard = ?self.counters, ring = ?ring_counters, "shard 0 stopped");
        Ok(self.counters)
    }

    /// Runs the timers due at `now`; returns how long the ring may wait.
    fn run_timers(&mut self, now: Instant) -> std::time::Duration {
        if self.next_timer.is_some_and(|at| at <= now) {
            self.sessions.handle_timeout(now);
            self.control.handle_timeout(now);
            self.timers_dirty = true;
        }
        if self.timers_dirty {
            // Media only pushes call deadlines later, so the cached time
            // can only be early (a wasted wake-up), never late.
            self.next_timer = match (self.sessions.poll_timeout(), self.control.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.timers_dirty = false;
        }
        self.next_timer
            .map_or(MAX_WAIT, |at| at.saturating_duration_since(now))
            .min(MAX_WAIT)
    }

    /// Handles one datagram from the ring.
    pub fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_, '_>) {
        let now = Instant::now();
        if d.socket == NG_SOCKET {
            self.on_control(now, d.src, d.payload, out);
        } else if let Some(&port) = self.ports.get(d.socket - 1) {
            self.on_media(now, port, d.payload, out);
        }
    }

    fn on_control(
        &mut self,
        now: Instant,
        src: SocketAddr,
        payload: &[u8],
        out: &mut Outbox<'_, '_>,
    ) {
        self.counters.ng_received += 1;
        let datagram = Bytes::copy_from_slice(payload);
        let sessions = &mut self.sessions;
        let reply = self
            .control
            .handle(now, &datagram, |incoming| sessions.handle(now, incoming));
        self.timers_dirty = true;
        if let Some(reply) = reply {
            if let Err(e) = out.send_bytes(NG_SOCKET, src, reply) {
                self.counters.ng_reply_failed += 1;
                tracing::warn!(%src, error = %e, "ng reply not sent");
            }
        }
    }

    fn on_media(&mut self, now: Instant, port: u16, payload: &[u8], out: &mut Outbox<'_, '_>) {
        let Some((route, stats)) = self.sessions.on_media(now, port) else {
            self.counters.media_unrouted += 1;
            return;
        };
        if classify(payload) == PacketKind::Rtp && !route.rtcp {
            // The header is read in place: no copy, no allocation.
            match RtpView::parse(payload) {
                Ok(view) => {
                    stats.on_packet(now, &view, clock_rate_hz(view.payload_type()));
                }
                Err(_) => {
                    stats.on_error();
                    self.counters.rtp_invalid += 1;
                }
            }
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
            Ok(()) => self.counters.media_relayed += 1,
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

/// The RTP clock rate of a static payload type (RFC 3551 table 4 and 5);
/// dynamic types are assumed 8 kHz until the SDP's rtpmap is kept per stream.
pub fn clock_rate_hz(payload_type: u8) -> u32 {
    match payload_type {
        6 => 16_000,
        10 | 11 => 44_100,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31..=34 => 90_000,
        _ => 8_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::Config;
    use crate::session::SessionConfig;

    fn shard(ports: &[u16]) -> Result<Shard, RelayError> {
        let config = SessionConfig {
            port_min: 30_000,
            port_max: 30_009,
            ..SessionConfig::default()
        };
        let sessions = Sessions::new(Instant::now(), config, 0, 1)?;
        Shard::new(sessions, Control::new(&Config::default()), ports)
    }

    #[test]
    fn ports_map_to_ring_sockets() -> Result<(), RelayError> {
        let s = shard(&[30_000, 30_001, 30_004])?;
        assert_eq!(s.socket_of(30_000), Some(1));
        assert_eq!(s.socket_of(30_001), Some(2));
        assert_eq!(s.socket_of(30_004), Some(3));
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

    #[test]
    fn clock_rates_of_static_types() {
        assert_eq!(clock_rate_hz(0), 8_000);
        assert_eq!(clock_rate_hz(8), 8_000);
        assert_eq!(clock_rate_hz(9), 8_000);
        assert_eq!(clock_rate_hz(6), 16_000);
        assert_eq!(clock_rate_hz(26), 90_000);
        assert_eq!(clock_rate_hz(101), 8_000);
    }
}
