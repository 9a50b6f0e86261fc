//! The fallback UDP driver for hosts without a usable io_uring: epoll over
//! the sockets (level-triggered, so sockets left readable by the per-turn
//! bounds come back on the next wait, in turn), `recvmmsg` into a
//! preallocated batch of buffers, and sends copied into fixed slots and
//! written with `sendmmsg` at the end of each turn. It has the shape of
//! [`UdpRing`](super::uring::UdpRing) (same config, datagrams, errors,
//! counters and [`Waker`]) so a loop can run over either through
//! [`UdpDriver`](super::datagram_io::UdpDriver). Nothing is allocated per
//! datagram.
//!
//! Every system call here is synchronous: the kernel touches the buffers
//! only during the call that names them, so plain `Vec`s suffice; the
//! pointers in the message headers are rewritten before each call.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::Bytes;

use super::uring::{
    parse_sockaddr, write_sockaddr, Datagram, Progress, RingConfig, RingCounters, SendError,
    SockAddrBuf, Waker, RECV_OVERHEAD,
};

/// Datagrams asked of one `recvmmsg`.
const RECV_BATCH: usize = 32;
/// `recvmmsg` calls per readable socket per turn, so one busy socket cannot
/// starve the others.
const RECV_BATCHES_PER_SOCKET: usize = 4;
/// Readiness events taken from one `epoll_wait`; the rest stay ready.
const MAX_EVENTS: usize = 256;
/// Messages per `sendmmsg` call (the kernel's `UIO_MAXIOV`).
const SEND_BATCH: usize = 1024;
/// The epoll token of the waker's eventfd (socket indexes are below it).
const WAKE_TOKEN: u64 = u64::MAX;

/// The recvmmsg/sendmmsg + epoll UDP driver. See the module documentation.
/// Like the ring it is `!Send`: build it on the thread that runs it.
pub struct UdpMmsg {
    epoll: OwnedFd,
    sockets: Vec<UdpSocket>,
    waker: Waker,
    events: Vec<libc::epoll_event>,
    recv: RecvBatch,
    sends: SendQueue,
    counters: RingCounters,
    max_datagrams: usize,
}

impl UdpMmsg {
    /// Makes `sockets` (bound already) non-blocking and registers them and a
    /// new [`Waker`] with a new epoll instance. Of `config`, `buffers` (at
    /// most 32 are used per `recvmmsg`), `buffer_size` (less
    /// [`RECV_OVERHEAD`], as for the ring: the longest datagram received),
    /// `send_slots`, `send_buffer_size` and `max_completions` (datagrams
    /// received per `run_once`) apply.
    pub fn new(sockets: Vec<UdpSocket>, config: RingConfig) -> io::Result<Self> {
        // Socket indexes stay below WAKE_TOKEN: `check` keeps them in u32.
        config.check(sockets.len())?;
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let waker = Waker::new_eventfd()?;
        epoll_add(&epoll, waker.eventfd().as_raw_fd(), WAKE_TOKEN)?;
        for (i, s) in sockets.iter().enumerate() {
            s.set_nonblocking(true)?;
            epoll_add(&epoll, s.as_raw_fd(), i as u64)?;
        }
        let batch = usize::from(config.buffers).min(RECV_BATCH);
        Ok(Self {
            epoll,
            events: vec![
                libc::epoll_event { events: 0, u64: 0 };
                MAX_EVENTS.min(sockets.len() + 1)
            ],
            sockets,
            waker,
            recv: RecvBatch::new(batch, config.buffer_size as usize - RECV_OVERHEAD),
            sends: SendQueue::new(
                usize::from(config.send_slots),
                config.send_buffer_size as usize,
            ),
            counters: RingCounters::default(),
            max_datagrams: config.max_completions,
        })
    }

    /// A handle other threads use to interrupt `run_once`.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The sockets, in the order given to `new`.
    pub fn sockets(&self) -> impl Iterator<Item = &UdpSocket> {
        self.sockets.iter()
    }

    /// What happened so far. `enters` counts system calls made (epoll
    /// waits, `recvmmsg`, `sendmmsg`, eventfd reads); `recv_nobufs` and
    /// `recv_rearms` stay zero.
    pub fn counters(&self) -> RingCounters {
        self.counters
    }

    /// Send slots not queued.
    pub fn free_send_slots(&self) -> usize {
        self.sends.free()
    }

    /// Queues a send from outside a receive callback; it is written by the
    /// next `run_once` or `flush`.
    pub fn send(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.outbox().send(socket, dst, payload)
    }

    /// Like [`UdpMmsg::send`] without a copy.
    pub fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        self.outbox().send_bytes(socket, dst, payload)
    }

    /// Writes every queued send now and frees its slot. Datagrams the kernel
    /// refuses (a full socket buffer, an ICMP error) are counted in
    /// `send_errors` and dropped, as UDP may.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sends
            .flush(&self.sockets, &mut self.counters, &mut Progress::default());
        Ok(())
    }

    /// Writes queued sends, waits until a socket or the waker is readable or
    /// `timeout` passes (zero does not wait; waits are in whole
    /// milliseconds, rounded up), then receives up to `max_completions`
    /// datagrams (at most 128 per socket), calling `on_datagram` for each,
    /// and writes the sends it queued before returning. `completions` in
    /// the result counts datagrams received, sends written and wakes.
    pub fn run_once<F>(&mut self, timeout: Duration, mut on_datagram: F) -> io::Result<Progress>
    where
        F: FnMut(Datagram<'_>, &mut MmsgOutbox<'_>),
    {
        let mut progress = Progress::default();
        self.sends
            .flush(&self.sockets, &mut self.counters, &mut progress);
        let ready = self.wait(timeout)?;
        for e in 0..ready {
            let token = self.events[e].u64;
            if token == WAKE_TOKEN {
                self.read_waker(&mut progress)?;
            } else if progress.datagrams < self.max_datagrams {
                self.drain(token as usize, &mut progress, &mut on_datagram);
            }
        }
        self.sends
            .flush(&self.sockets, &mut self.counters, &mut progress);
        Ok(progress)
    }

    fn outbox(&mut self) -> MmsgOutbox<'_> {
        MmsgOutbox {
            sockets: &self.sockets,
            sends: &mut self.sends,
        }
    }

    /// `epoll_wait`; how many events it filled in.
    fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let timeout_ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        self.counters.enters += 1;
        // SAFETY: `events` is a live buffer of `events.len()` entries, which
        // is what the kernel is told it may fill.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok((n as usize).min(self.events.len()))
    }

    fn read_waker(&mut self, progress: &mut Progress) -> io::Result<()> {
        let mut value = [0u8; 8];
        self.counters.enters += 1;
        // epoll said it is readable and only this thread reads it, so the
        // (blocking) read returns at once with the count, resetting it.
        match io::Read::read(&mut self.waker.eventfd(), &mut value) {
            Ok(_) => {
                self.counters.wakes += 1;
                progress.woken = true;
                progress.completions += 1;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Receives from socket `index` until it has nothing more, or its
    /// per-turn share or the turn's bound is used up.
    fn drain<F>(&mut self, index: usize, progress: &mut Progress, on_datagram: &mut F)
    where
        F: FnMut(Datagram<'_>, &mut MmsgOutbox<'_>),
    {
        let Some(socket) = self.sockets.get(index) else {
            return;
        };
        let fd = socket.as_raw_fd();
        for _ in 0..RECV_BATCHES_PER_SOCKET {
            let room = self.max_datagrams.saturating_sub(progress.datagrams);
            if room == 0 {
                return;
            }
            // Replies to a whole batch always find a slot.
            if self.sends.free() < self.recv.count {
                self.sends
                    .flush(&self.sockets, &mut self.counters, progress);
            }
            self.counters.enters += 1;
            let received = match self.recv.receive(fd, room) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
                Err(_) => {
                    // An ICMP error reported on the socket: it is consumed.
                    self.counters.recv_errors += 1;
                    continue;
                }
            };
            for i in 0..received {
                match self.recv.datagram(i) {
                    Ok((src, payload)) => {
                        self.counters.received += 1;
                        progress.datagrams += 1;
                        progress.completions += 1;
                        let mut out = MmsgOutbox {
                            sockets: &self.sockets,
                            sends: &mut self.sends,
                        };
                        on_datagram(
                            Datagram {
                                socket: index,
                                src,
                                payload,
                            },
                            &mut out,
                        );
                    }
                    Err(Bad::Truncated) => self.counters.recv_truncated += 1,
                    Err(Bad::Address) => self.counters.recv_errors += 1,
                }
            }
            if received < self.recv.count.min(room) {
                return;
            }
        }
    }
}

fn epoll_add(epoll: &OwnedFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `event` is a live epoll_event the kernel only reads; both fds
    // are open (owned by the caller).
    let r = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why a received datagram is not handed to the callback.
enum Bad {
    Truncated,
    Address,
}

/// The buffers, addresses and headers of one `recvmmsg`.
struct RecvBatch {
    /// Datagrams per call.
    count: usize,
    /// Bytes per datagram buffer.
    size: usize,
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    names: Vec<SockAddrBuf>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new(count: usize, size: usize) -> Self {
        Self {
            count,
            size,
            data: vec![0; count * size],
            iovs: (0..count).map(|_| zeroed_iovec()).collect(),
            // SAFETY: the sockaddr union is plain old data; all-zero is valid.
            names: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            hdrs: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// One `recvmmsg` of at most `limit` datagrams; how many arrived.
    fn receive(&mut self, fd: RawFd, limit: usize) -> io::Result<usize> {
        let n = self.count.min(limit);
        let data = self.data.as_mut_ptr();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: data.wrapping_add(i * self.size).cast(),
                iov_len: self.size,
            };
            let hdr = &mut self.hdrs[i];
            hdr.msg_hdr.msg_name = std::ptr::addr_of_mut!(self.names[i]).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<SockAddrBuf>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: the first `n` headers point at `n` live iovecs, each at its
        // own `size`-byte region of `data`, and at `n` address buffers of
        // the length given; nothing else borrows them during the call, which
        // does not keep the pointers.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((r as usize).min(n))
    }

    /// Datagram `i` of the last `receive`.
    fn datagram(&self, i: usize) -> Result<(SocketAddr, &[u8]), Bad> {
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(Bad::Truncated);
        }
        let namelen = (hdr.msg_hdr.msg_namelen as usize).min(std::mem::size_of::<SockAddrBuf>());
        // SAFETY: `names[i]` is a plain-old-data union of at least `namelen`
        // bytes, fully initialised (zeroed at creation, then written by the
        // kernel); viewing it as bytes is valid.
        let name = unsafe {
            std::slice::from_raw_parts(std::ptr::addr_of!(self.names[i]).cast::<u8>(), namelen)
        };
        let src = parse_sockaddr(name).ok_or(Bad::Address)?;
        let len = (hdr.msg_len as usize).min(self.size);
        let start = i * self.size;
        Ok((src, &self.data[start..start + len]))
    }
}

fn zeroed_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// A queued send: where its payload is and where it goes.
struct QueuedSend {
    socket: usize,
    len: usize,
    held: Option<Bytes>,
}

/// Sends queued since the last flush, in order; entry `i` copies its payload
/// into the `i`-th `buffer_size` region of `data`.
struct SendQueue {
    capacity: usize,
    buffer_size: usize,
    data: Vec<u8>,
    queued: Vec<QueuedSend>,
    addrs: Vec<SockAddrBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendQueue {
    fn new(capacity: usize, buffer_size: usize) -> Self {
        Self {
            capacity,
            buffer_size,
            data: vec![0; capacity * buffer_size],
            queued: Vec::with_capacity(capacity),
            // SAFETY: the sockaddr union is plain old data; all-zero is valid.
            addrs: (0..capacity)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect(),
            iovs: (0..capacity).map(|_| zeroed_iovec()).collect(),
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            hdrs: (0..capacity)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect(),
        }
    }

    fn free(&self) -> usize {
        self.capacity - self.queued.len()
    }

    /// Queues a send of `len` bytes: copied from `copy` into the entry's
    /// region, or held in `held`.
    fn push(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        copy: &[u8],
        held: Option<Bytes>,
    ) -> Result<(), SendError> {
        let i = self.queued.len();
        if i == self.capacity {
            return Err(SendError::Full);
        }
        let namelen = write_sockaddr(&mut self.addrs[i], dst);
        self.hdrs[i].msg_hdr.msg_namelen = namelen;
        let len = match &held {
            Some(b) => b.len(),
            None => {
                let start = i * self.buffer_size;
                self.data[start..start + copy.len()].copy_from_slice(copy);
                copy.len()
            }
        };
        self.queued.push(QueuedSend { socket, len, held });
        Ok(())
    }

    /// Writes every queued send, consecutive sends of one socket together,
    /// and empties the queue (dropping held payloads).
    fn flush(
        &mut self,
        sockets: &[UdpSocket],
        counters: &mut RingCounters,
        progress: &mut Progress,
    ) {
        let n = self.queued.len();
        let data = self.data.as_mut_ptr();
        for i in 0..n {
            let q = &self.queued[i];
            let base = match &q.held {
                // sendmsg only reads the payload; the pointer is never written through.
                Some(b) => b.as_ptr().cast_mut(),
                None => data.wrapping_add(i * self.buffer_size),
            };
            self.iovs[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: q.len,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = std::ptr::addr_of_mut!(self.addrs[i]).cast();
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
        }
        let mut start = 0;
        while start < n {
            let socket = self.queued[start].socket;
            let mut end = start + 1;
            while end < n && end - start < SEND_BATCH && self.queued[end].socket == socket {
                end += 1;
            }
            match sockets.get(socket) {
                Some(s) => self.send_run(s.as_raw_fd(), start, end, counters, progress),
                None => counters.send_errors += (end - start) as u64,
            }
            start = end;
        }
        self.queued.clear();
    }

    /// `sendmmsg` of prepared headers `start..end` on `fd`, retrying after
    /// partial writes; a message the kernel refuses is counted and skipped.
    fn send_run(
        &mut self,
        fd: RawFd,
        mut start: usize,
        end: usize,
        counters: &mut RingCounters,
        progress: &mut Progress,
    ) {
        // Each call sends or skips at least one message, or is an EINTR
        // retry; the bound keeps a signal storm from spinning here.
        let mut calls_left = 2 * (end - start) + 2;
        while start < end && calls_left > 0 {
            calls_left -= 1;
            counters.enters += 1;
            // SAFETY: headers `start..end` point at their own iovec and
            // address in this queue and at payloads in `data` or in a held
            // `Bytes`, all alive and unborrowed during the call, which only
            // reads them (and writes `msg_len`).
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(start),
                    (end - start) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let sent = (r as usize).min(end - start);
                counters.sent += sent as u64;
                progress.completions += sent;
                start += sent;
                continue;
            }
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            counters.send_errors += 1;
            start += 1;
        }
        counters.send_errors += (end - start) as u64;
    }
}

/// What a receive callback of [`UdpMmsg`] uses to queue replies and
/// forwards; they are written at the end of the turn.
pub struct MmsgOutbox<'a> {
    sockets: &'a [UdpSocket],
    sends: &'a mut SendQueue,
}

impl MmsgOutbox<'_> {
    /// Copies `payload` into a free send slot and queues it to `dst` from
    /// socket `socket`.
    pub fn send(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > self.sends.buffer_size {
            return Err(SendError::TooLarge);
        }
        if socket >= self.sockets.len() {
            return Err(SendError::NoSocket);
        }
        self.sends.push(socket, dst, payload, None)
    }

    /// Queues `payload` without copying; it is held until written.
    pub fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        if socket >= self.sockets.len() {
            return Err(SendError::NoSocket);
        }
        self.sends.push(socket, dst, &[], Some(payload))
    }

    /// Send slots not queued.
    pub fn free_slots(&self) -> usize {
        self.sends.free()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn bind() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    fn addr(s: &UdpSocket) -> SocketAddr {
        s.local_addr().expect("local_addr")
    }

    fn small() -> RingConfig {
        RingConfig {
            buffers: 16,
            buffer_size: 2048,
            send_slots: 32,
            ..RingConfig::default()
        }
    }

    /// Runs `driver` until `want` datagrams arrived or a few seconds pass;
    /// returns (socket, src, payload) of each.
    fn collect(driver: &mut UdpMmsg, want: usize) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(50), |d, _| {
                    got.push((d.socket, d.src, d.payload.to_vec()))
                })
                .expect("run_once");
        }
        got
    }

    #[test]
    fn receives_with_socket_index_and_source_and_replies_from_that_socket() {
        let (a, b) = (bind(), bind());
        let (a_addr, b_addr) = (addr(&a), addr(&b));
        let mut driver = UdpMmsg::new(vec![a, b], small()).expect("driver");
        let peer = bind();
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        peer.send_to(b"to b", b_addr).expect("send");
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(50), |d, out| {
                    seen.push((d.socket, d.src, d.payload.to_vec()));
                    out.send(d.socket, d.src, b"from b").expect("queued");
                })
                .expect("run_once");
        }
        assert_eq!(seen, vec![(1, addr(&peer), b"to b".to_vec())]);
        // Written at the end of the turn, no flush needed.
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).expect("reply");
        assert_eq!((&buf[..n], from), (&b"from b"[..], b_addr));
        peer.send_to(b"to a", a_addr).expect("send");
        let got = collect(&mut driver, 1);
        assert_eq!(got, vec![(0, addr(&peer), b"to a".to_vec())]);
        let c = driver.counters();
        assert_eq!(
            (c.received, c.sent, c.send_errors, c.recv_errors),
            (2, 1, 0, 0)
        );
        assert_eq!(driver.free_send_slots(), 32);
    }

    #[test]
    fn a_burst_to_several_sockets_all_arrives_and_is_echoed() {
        const SOCKETS: usize = 4;
        const PER_SOCKET: usize = 50;
        let sockets: Vec<UdpSocket> = (0..SOCKETS).map(|_| bind()).collect();
        let addrs: Vec<SocketAddr> = sockets.iter().map(addr).collect();
        // Small turns, so the burst spans several and the per-turn bound is hit.
        let config = RingConfig {
            max_completions: 64,
            send_slots: 256,
            ..small()
        };
        let mut driver = UdpMmsg::new(sockets, config).expect("driver");
        let peer = bind();
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        for i in 0..PER_SOCKET as u16 {
            for (s, a) in addrs.iter().enumerate() {
                peer.send_to(&[s as u8, (i >> 8) as u8, i as u8], *a)
                    .expect("send");
            }
        }
        let mut got = vec![Vec::new(); SOCKETS];
        let mut turns = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < SOCKETS * PER_SOCKET
            && Instant::now() < deadline
        {
            let p = driver
                .run_once(Duration::from_millis(50), |d, out| {
                    assert_eq!(usize::from(d.payload[0]), d.socket);
                    got[d.socket].push(u16::from_be_bytes([d.payload[1], d.payload[2]]));
                    out.send(d.socket, d.src, d.payload).expect("queued");
                })
                .expect("run_once");
            assert!(p.datagrams <= 64);
            turns += 1;
        }
        assert!(turns >= 4, "{turns}");
        for per_socket in &got {
            assert_eq!(per_socket, &(0..PER_SOCKET as u16).collect::<Vec<_>>());
        }
        let mut echoed = [0usize; SOCKETS];
        let mut buf = [0u8; 16];
        for _ in 0..SOCKETS * PER_SOCKET {
            let (n, from) = peer.recv_from(&mut buf).expect("echo");
            assert_eq!(n, 3);
            let s = usize::from(buf[0]);
            assert_eq!(from, addrs[s]);
            echoed[s] += 1;
        }
        assert_eq!(echoed, [PER_SOCKET; SOCKETS]);
        let c = driver.counters();
        let total = (SOCKETS * PER_SOCKET) as u64;
        assert_eq!((c.received, c.sent, c.send_errors), (total, total, 0));
        assert_eq!((c.recv_errors, c.recv_truncated), (0, 0));
    }

    #[test]
    fn full_until_flushed_then_all_go_out_in_order() {
        let sink = bind();
        sink.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let dst = addr(&sink);
        let mut driver = UdpMmsg::new(vec![bind(), bind()], small()).expect("driver");
        // Alternating runs of sockets, copies and held payloads.
        for i in 0..32u16 {
            let socket = usize::from(i / 8 % 2);
            if i % 3 == 0 {
                driver
                    .send_bytes(socket, dst, Bytes::copy_from_slice(&i.to_be_bytes()))
                    .expect("queued");
            } else {
                driver.send(socket, dst, &i.to_be_bytes()).expect("queued");
            }
        }
        assert_eq!(driver.free_send_slots(), 0);
        assert!(matches!(driver.send(0, dst, b"x"), Err(SendError::Full)));
        assert!(matches!(
            driver.send_bytes(0, dst, Bytes::from_static(b"x")),
            Err(SendError::Full)
        ));
        assert!(matches!(
            driver.send(2, dst, b"x"),
            Err(SendError::NoSocket)
        ));
        driver.flush().expect("flush");
        assert_eq!(driver.free_send_slots(), 32);
        let mut buf = [0u8; 16];
        for i in 0..32u16 {
            let (n, _) = sink.recv_from(&mut buf).expect("recv");
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        assert_eq!(driver.counters().sent, 32);
    }

    #[test]
    fn oversized_payloads_are_refused_or_counted() {
        let sock = bind();
        let dst = addr(&sock);
        let config = RingConfig {
            buffer_size: (RECV_OVERHEAD + 100) as u32,
            send_buffer_size: 64,
            ..small()
        };
        let mut driver = UdpMmsg::new(vec![sock], config).expect("driver");
        assert!(matches!(
            driver.send(0, dst, &[0; 65]),
            Err(SendError::TooLarge)
        ));
        // send_bytes has no slot limit.
        driver
            .send_bytes(0, dst, Bytes::from(vec![7; 100]))
            .expect("queued");
        driver.flush().expect("flush");
        let sender = bind();
        sender.send_to(&[1; 101], dst).expect("send");
        sender.send_to(&[2; 10], dst).expect("send");
        let got = collect(&mut driver, 2);
        let payloads: Vec<Vec<u8>> = got.into_iter().map(|(_, _, p)| p).collect();
        assert_eq!(payloads, vec![vec![7; 100], vec![2; 10]]);
        assert_eq!(driver.counters().recv_truncated, 1);
    }

    #[test]
    fn waker_wakes_a_blocked_run_once() {
        let mut driver = UdpMmsg::new(vec![bind()], small()).expect("driver");
        let waker = driver.waker();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // Wake once the main thread is (about to be) blocked.
            let _ = rx.recv();
            std::thread::sleep(Duration::from_millis(50));
            waker.wake().expect("wake");
        });
        let start = Instant::now();
        tx.send(()).expect("signal");
        let p = driver
            .run_once(Duration::from_secs(10), |_, _| {})
            .expect("run_once");
        t.join().expect("join");
        assert!(p.woken);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(driver.counters().wakes, 1);
        // The count was consumed: the next zero wait sees no wake.
        let p = driver
            .run_once(Duration::ZERO, |_, _| {})
            .expect("run_once");
        assert!(!p.woken);
        driver.waker().wake().expect("wake");
        let p = driver
            .run_once(Duration::from_secs(5), |_, _| {})
            .expect("run_once");
        assert!(p.woken);
    }

    #[test]
    fn zero_timeout_does_not_block() {
        let mut driver = UdpMmsg::new(vec![bind()], small()).expect("driver");
        let start = Instant::now();
        for _ in 0..10 {
            let p = driver
                .run_once(Duration::ZERO, |_, _| {})
                .expect("run_once");
            assert_eq!(p, Progress::default());
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn thousands_of_sockets() {
        // As many as a relay shard has, or what the fd limit allows.
        let sockets: Vec<UdpSocket> = (0..5_000)
            .map_while(|_| UdpSocket::bind("127.0.0.1:0").ok())
            .collect();
        const SOCKETS_AT_LEAST: usize = 500;
        assert!(sockets.len() >= SOCKETS_AT_LEAST, "{}", sockets.len());
        let count = sockets.len();
        let addrs: Vec<SocketAddr> = sockets.iter().map(addr).collect();
        let mut driver = UdpMmsg::new(sockets, small()).expect("driver");
        let peer = bind();
        for (i, a) in addrs.iter().enumerate().step_by(97) {
            peer.send_to(&(i as u32).to_be_bytes(), *a).expect("send");
        }
        let want = count.div_ceil(97);
        let got = collect(&mut driver, want);
        let mut sockets: Vec<usize> = got.iter().map(|(s, _, _)| *s).collect();
        sockets.sort_unstable();
        assert_eq!(sockets, (0..count).step_by(97).collect::<Vec<_>>());
        for (s, _, p) in &got {
            assert_eq!(p, &(*s as u32).to_be_bytes());
        }
    }

    #[test]
    fn ipv6_sources_and_destinations() {
        let Ok(sock) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        let dst = addr(&sock);
        let peer = UdpSocket::bind("[::1]:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut driver = UdpMmsg::new(vec![sock], small()).expect("driver");
        peer.send_to(b"v6", dst).expect("send");
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() && Instant::now() < deadline {
            driver
                .run_once(Duration::from_millis(50), |d, out| {
                    seen.push(d.src);
                    out.send(d.socket, d.src, d.payload).expect("queued");
                })
                .expect("run_once");
        }
        assert_eq!(seen, vec![addr(&peer)]);
        let mut buf = [0u8; 8];
        let (n, from) = peer.recv_from(&mut buf).expect("echo");
        assert_eq!((&buf[..n], from), (&b"v6"[..], dst));
    }

    #[test]
    fn config_is_checked() {
        assert!(UdpMmsg::new(Vec::new(), small()).is_err());
        let tiny = RingConfig {
            buffer_size: RECV_OVERHEAD as u32,
            ..small()
        };
        assert!(UdpMmsg::new(vec![bind()], tiny).is_err());
    }
}
