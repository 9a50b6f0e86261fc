//! One face for the two UDP drivers: [`DatagramSink`], what a receive
//! callback queues sends through, and [`UdpDriver`], either driver behind
//! one `run_once`, chosen at start ([`UdpDriver::auto`] takes io_uring when
//! [`probe_io_uring`] says it works, else recvmmsg/sendmmsg).
//!
//! ```no_run
//! use std::time::Duration;
//! use edge::runtime::datagram_io::{DatagramSink, UdpDriver};
//! use edge::runtime::uring::RingConfig;
//!
//! let socket = std::net::UdpSocket::bind("127.0.0.1:5060")?;
//! let next_hop = "127.0.0.1:5070".parse().unwrap();
//! let mut driver = UdpDriver::auto(vec![socket], RingConfig::default())?;
//! loop {
//!     driver.run_once(Duration::from_millis(10), |d, out| {
//!         let _ = out.send(d.socket, next_hop, d.payload);
//!     })?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::mmsg::{MmsgOutbox, UdpMmsg};
use super::uring::{
    Datagram, Outbox, Progress, RingConfig, RingCounters, SendError, UdpRing, Waker,
};

/// Where a receive callback queues datagrams, whichever driver runs it.
pub trait DatagramSink {
    /// Copies `payload` into a free send slot and queues it to `dst` from
    /// socket `socket` (an index into the driver's sockets).
    fn send(&mut self, socket: usize, dst: SocketAddr, payload: &[u8]) -> Result<(), SendError>;
    /// Queues `payload` without copying; the driver holds it until sent.
    fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError>;
    /// Send slots free now.
    fn free_slots(&self) -> usize;
}

impl DatagramSink for Outbox<'_, '_> {
    fn send(&mut self, socket: usize, dst: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        Outbox::send(self, socket, dst, payload)
    }

    fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        Outbox::send_bytes(self, socket, dst, payload)
    }

    fn free_slots(&self) -> usize {
        Outbox::free_slots(self)
    }
}

impl DatagramSink for MmsgOutbox<'_> {
    fn send(&mut self, socket: usize, dst: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        MmsgOutbox::send(self, socket, dst, payload)
    }

    fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        MmsgOutbox::send_bytes(self, socket, dst, payload)
    }

    fn free_slots(&self) -> usize {
        MmsgOutbox::free_slots(self)
    }
}

/// Which driver a [`UdpDriver`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// [`UdpRing`]: multishot receives and batched sends on an io_uring.
    IoUring,
    /// [`UdpMmsg`]: epoll, recvmmsg and sendmmsg.
    Mmsg,
}

/// Either UDP driver. An enum with a `&mut dyn DatagramSink` callback rather
/// than a trait with generic associated sink types: one loop body serves
/// both, and a virtual call per queued send costs nothing next to a syscall.
pub enum UdpDriver {
    /// The io_uring driver.
    Ring(Box<UdpRing>),
    /// The recvmmsg/sendmmsg fallback.
    Mmsg(Box<UdpMmsg>),
}

impl UdpDriver {
    /// The driver `backend` over `sockets`.
    pub fn new(sockets: Vec<UdpSocket>, config: RingConfig, backend: Backend) -> io::Result<Self> {
        Ok(match backend {
            Backend::IoUring => Self::Ring(Box::new(UdpRing::new(sockets, config)?)),
            Backend::Mmsg => Self::Mmsg(Box::new(UdpMmsg::new(sockets, config)?)),
        })
    }

    /// io_uring when [`probe_io_uring`] passes with `config`, else the
    /// fallback (the probe's error is logged).
    pub fn auto(sockets: Vec<UdpSocket>, config: RingConfig) -> io::Result<Self> {
        let backend = match probe_io_uring(config) {
            Ok(()) => Backend::IoUring,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unusable here: using recvmmsg/sendmmsg");
                Backend::Mmsg
            }
        };
        Self::new(sockets, config, backend)
    }

    /// Which driver this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Ring(_) => Backend::IoUring,
            Self::Mmsg(_) => Backend::Mmsg,
        }
    }

    /// A handle other threads use to interrupt `run_once`.
    pub fn waker(&self) -> Waker {
        match self {
            Self::Ring(r) => r.waker(),
            Self::Mmsg(m) => m.waker(),
        }
    }

    /// What happened so far (see each driver for what applies).
    pub fn counters(&self) -> RingCounters {
        match self {
            Self::Ring(r) => r.counters(),
            Self::Mmsg(m) => m.counters(),
        }
    }

    /// Whether the ring runs with deferred task work (never for the fallback).
    pub fn defer_taskrun(&self) -> bool {
        match self {
            Self::Ring(r) => r.defer_taskrun(),
            Self::Mmsg(_) => false,
        }
    }

    /// Whether the sockets are registered with the kernel (io_uring's fixed
    /// files); false for recvmmsg/sendmmsg.
    pub fn fixed_files(&self) -> bool {
        match self {
            Self::Ring(r) => r.fixed_files(),
            Self::Mmsg(_) => false,
        }
    }

    /// Sends queued sends now.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Ring(r) => r.flush(),
            Self::Mmsg(m) => m.flush(),
        }
    }

    /// One turn of the driver: see [`UdpRing::run_once`] and
    /// [`UdpMmsg::run_once`].
    pub fn run_once<F>(&mut self, timeout: Duration, mut on_datagram: F) -> io::Result<Progress>
    where
        F: FnMut(Datagram<'_>, &mut dyn DatagramSink),
    {
        match self {
            Self::Ring(r) => r.run_once(timeout, |d, out| on_datagram(d, out)),
            Self::Mmsg(m) => m.run_once(timeout, |d, out| on_datagram(d, out)),
        }
    }
}

/// Sends from outside a receive callback (timers, handoffs).
impl DatagramSink for UdpDriver {
    fn send(&mut self, socket: usize, dst: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        match self {
            Self::Ring(r) => r.send(socket, dst, payload),
            Self::Mmsg(m) => m.send(socket, dst, payload),
        }
    }

    fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        match self {
            Self::Ring(r) => r.send_bytes(socket, dst, payload),
            Self::Mmsg(m) => m.send_bytes(socket, dst, payload),
        }
    }

    fn free_slots(&self) -> usize {
        match self {
            Self::Ring(r) => r.free_send_slots(),
            Self::Mmsg(m) => m.free_send_slots(),
        }
    }
}

/// How long [`probe_io_uring`] waits for its datagram.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Builds a [`UdpRing`] with `config` over a throwaway 127.0.0.1 socket and
/// receives one datagram through it: io_uring, the provided buffer ring and
/// multishot `RECVMSG` all work, which a ring's creation alone does not show.
pub fn probe_io_uring(config: RingConfig) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    let probe = socket.try_clone()?;
    let mut ring = UdpRing::new(vec![socket], config)?;
    probe.send_to(b"probe", addr)?;
    let deadline = Instant::now() + PROBE_WAIT;
    loop {
        ring.run_once(Duration::from_millis(50), |_, _| {})?;
        let c = ring.counters();
        if c.received > 0 {
            return Ok(());
        }
        if c.recv_errors > 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot RECVMSG failed (kernel 6.0+ needed)",
            ));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the io_uring probe received nothing",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    fn small() -> RingConfig {
        RingConfig {
            entries: 16,
            buffers: 16,
            buffer_size: 2048,
            send_slots: 32,
            ..RingConfig::default()
        }
    }

    /// The loop body under test: written once, for any sink.
    fn echo<S: DatagramSink + ?Sized>(d: Datagram<'_>, out: &mut S) -> Result<(), SendError> {
        if d.payload.len() % 2 == 0 {
            out.send(d.socket, d.src, d.payload)
        } else {
            out.send_bytes(d.socket, d.src, Bytes::copy_from_slice(d.payload))
        }
    }

    /// Echoes `count` datagrams from a peer through `backend`; returns the
    /// driver's counters.
    fn echo_through(backend: Backend, count: usize) -> RingCounters {
        let (a, b) = (bind(), bind());
        let b_addr = b.local_addr().expect("addr");
        let peer = bind();
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut driver = UdpDriver::new(vec![a, b], small(), backend).expect("driver");
        assert_eq!(driver.backend(), backend);
        for i in 0..count {
            peer.send_to(&vec![i as u8; 10 + i % 2], b_addr)
                .expect("send");
        }
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < count && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(50), |d, out| {
                    assert_eq!(d.socket, 1);
                    echo(d, out).expect("queued");
                    seen += 1;
                })
                .expect("run_once");
        }
        assert_eq!(seen, count);
        driver.flush().expect("flush");
        let mut buf = [0u8; 64];
        for i in 0..count {
            let (n, from) = peer.recv_from(&mut buf).expect("echo");
            assert_eq!(from, b_addr);
            assert_eq!(&buf[..n], &vec![i as u8; 10 + i % 2][..]);
        }
        // The ring reaps send completions in later turns.
        while driver.counters().sent < count as u64 && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(10), |_, _| {})
                .expect("run_once");
        }
        assert_eq!(driver.free_slots(), 32);
        driver.counters()
    }

    #[test]
    fn one_loop_body_runs_over_both_drivers() {
        let mut backends = vec![Backend::Mmsg];
        match probe_io_uring(small()) {
            Ok(()) => backends.push(Backend::IoUring),
            Err(e) => eprintln!("io_uring unusable here ({e}): only the fallback runs"),
        }
        for backend in backends {
            let c = echo_through(backend, 20);
            assert_eq!(
                (c.received, c.sent, c.send_errors),
                (20, 20, 0),
                "{backend:?}"
            );
        }
    }

    #[test]
    fn sends_from_outside_a_callback_and_wakers_work_on_both() {
        let mut backends = vec![Backend::Mmsg];
        if probe_io_uring(small()).is_ok() {
            backends.push(Backend::IoUring);
        }
        for backend in backends {
            let peer = bind();
            peer.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut driver = UdpDriver::new(vec![bind()], small(), backend).expect("driver");
            let dst = peer.local_addr().expect("addr");
            DatagramSink::send(&mut driver, 0, dst, b"timer").expect("queued");
            assert!(matches!(
                DatagramSink::send(&mut driver, 1, dst, b"x"),
                Err(SendError::NoSocket)
            ));
            driver.waker().wake().expect("wake");
            let p = driver
                .run_once(Duration::from_secs(5), |_, _| {})
                .expect("run_once");
            assert!(p.woken, "{backend:?}");
            let mut buf = [0u8; 16];
            let (n, _) = peer.recv_from(&mut buf).expect("timer send");
            assert_eq!(&buf[..n], b"timer");
        }
    }

    #[test]
    fn auto_picks_a_driver_that_works() {
        let sock = bind();
        let addr = sock.local_addr().expect("addr");
        let mut driver = UdpDriver::auto(vec![sock], small()).expect("driver");
        bind().send_to(b"hi", addr).expect("send");
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got == 0 && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(50), |d, _| {
                    assert_eq!(d.payload, b"hi");
                    got += 1;
                })
                .expect("run_once");
        }
        assert_eq!(got, 1, "{:?}", driver.backend());
    }
}
