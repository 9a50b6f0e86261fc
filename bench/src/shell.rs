//! The I/O shell shared by the UAC and UAS threads: one io_uring ring (the
//! edge's [`UdpRing`]) over a thread's sockets, moving datagrams and time in
//! and out of a sans-IO core.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::Transmit;
use edge::runtime::uring::{RingConfig, SendError, UdpRing};
use socket2::{Domain, Protocol, Socket, Type};

use crate::uac::Uac;
use crate::uas::Uas;

/// What the shell needs of a sans-IO core.
pub trait Core {
    /// A datagram from `src` on the socket bound at `local`.
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, data: Bytes);
    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When `handle_timeout` must run next.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Core for Uac {
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, data: Bytes) {
        Uac::handle_datagram(self, now, src, local, data);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Uac::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Uac::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Uac::poll_timeout(self)
    }
}

impl Core for Uas {
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, data: Bytes) {
        Uas::handle_datagram(self, now, src, local, data);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Uas::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Uas::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Uas::poll_timeout(self)
    }
}

/// The longest a thread waits in its ring: it bounds how late a control
/// message or a stop is seen.
pub const MAX_WAIT: Duration = Duration::from_millis(10);
/// Transmits waiting for a free send slot; beyond it they are dropped and
/// counted (the peer retransmits).
const MAX_PENDING: usize = 65_536;

/// The ring of one load thread: bursts of a few thousand datagrams a round.
fn ring_config() -> RingConfig {
    RingConfig {
        entries: 1024,
        buffers: 1024,
        buffer_size: 4096,
        send_slots: 4096,
        send_buffer_size: 2048,
        max_completions: 2048,
        defer_taskrun: true,
    }
}

/// A UDP socket bound at `addr`, with SO_REUSEPORT when `shared` (one per
/// thread on the same port) and large buffers.
pub fn bind_udp(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps them at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A core on its ring.
pub struct Worker<C> {
    /// The protocol core.
    pub core: C,
    ring: UdpRing,
    locals: Vec<SocketAddr>,
    pending: VecDeque<Transmit>,
    /// Transmits dropped for want of a send slot and queue room, or refused.
    pub send_drops: u64,
}

impl<C: Core> Worker<C> {
    /// `core` over `sockets` (bound already).
    pub fn new(core: C, sockets: Vec<UdpSocket>) -> io::Result<Self> {
        let locals = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let ring = UdpRing::new(sockets, ring_config())?;
        Ok(Worker {
            core,
            ring,
            locals,
            pending: VecDeque::new(),
            send_drops: 0,
        })
    }

    /// The addresses of the sockets, in the order given.
    pub fn locals(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// One round: sends what the core queued, waits for datagrams until
    /// `until` (or the core's next timer, at most [`MAX_WAIT`]), hands them
    /// to the core and runs due timers.
    pub fn turn(&mut self, until: Option<Instant>) -> io::Result<()> {
        self.queue_transmits();
        self.send_pending();
        let now = Instant::now();
        let wake = [until, self.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let wait = match wake {
            _ if !self.pending.is_empty() => Duration::ZERO,
            Some(at) => at.saturating_duration_since(now).min(MAX_WAIT),
            None => MAX_WAIT,
        };
        let (core, locals) = (&mut self.core, &self.locals);
        self.ring.run_once(wait, |d, _| {
            if let Some(&local) = locals.get(d.socket) {
                let data = Bytes::copy_from_slice(d.payload);
                core.handle_datagram(Instant::now(), d.src, local, data);
            }
        })?;
        let now = Instant::now();
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
        }
        self.queue_transmits();
        self.send_pending();
        Ok(())
    }

    fn queue_transmits(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if self.pending.len() >= MAX_PENDING {
                self.send_drops += 1;
                continue;
            }
            self.pending.push_back(t);
        }
    }

    fn send_pending(&mut self) {
        while let Some(t) = self.pending.pop_front() {
            let socket = self.locals.iter().position(|a| *a == t.local).unwrap_or(0);
            match self.ring.send_bytes(socket, t.dst, t.payload.clone()) {
                Ok(()) => {}
                Err(SendError::Full) => {
                    self.pending.push_front(t);
                    return;
                }
                Err(_) => self.send_drops += 1,
            }
        }
    }
}

/// Pins the calling thread to the `index`-th core of the machine (cores
/// taken in order, wrapping); a failure is only logged.
pub fn pin(index: usize) {
    let Some(cores) = core_affinity::get_core_ids().filter(|c| !c.is_empty()) else {
        return;
    };
    let core = cores[index % cores.len()];
    if !core_affinity::set_for_current(core) {
        tracing::debug!(core = core.id, "could not pin");
    }
}
