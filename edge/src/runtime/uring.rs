//! A per-core io_uring UDP driver: one ring per pinned thread, a multishot
//! `RECVMSG` per socket receiving into a provided buffer ring, sends (with
//! their destination, as sendto) queued into a fixed array of slots and
//! submitted together with the next wait, and an eventfd [`Waker`] so other
//! threads can interrupt a wait. Nothing is allocated and nothing is locked
//! per datagram.
//!
//! ```no_run
//! use std::time::Duration;
//! use edge::runtime::uring::{RingConfig, UdpRing};
//!
//! let socket = std::net::UdpSocket::bind("127.0.0.1:5060")?;
//! let next_hop = "127.0.0.1:5070".parse().unwrap();
//! let mut ring = UdpRing::new(vec![socket], RingConfig::default())?;
//! loop {
//!     ring.run_once(Duration::from_millis(10), |d, out| {
//!         // The payload is only borrowed: copy it out or send it before returning.
//!         if out.send(d.socket, next_hop, d.payload).is_err() {
//!             // Full: the caller counts a drop (UDP peers retransmit).
//!         }
//!     })?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The ring is `!Send` on purpose: build it on the thread that runs it (which
//! is also what `IORING_SETUP_SINGLE_ISSUER` requires). Only [`Waker`] crosses
//! threads.
//!
//! [`UdpRing::new`] fails with the kernel's error when io_uring, the provided
//! buffer ring (5.19) or multishot `RECVMSG` (6.0) is unavailable; the
//! recvmmsg/sendmmsg + epoll driver in [`super::mmsg`] has the same shape,
//! and [`super::datagram_io::UdpDriver`] picks one of the two at start.
//!
//! All of the ring's `unsafe` lives in this file; each block says why it holds. The kernel
//! reads and writes memory this struct owns (receive buffers, the buffer ring,
//! send slots, the eventfd read target) while operations are in flight, so
//! that memory is allocated once, never moved, never referenced by Rust while
//! the kernel owns it, and freed only after every operation has completed
//! (see `Drop`); if they cannot be confirmed complete, it is leaked instead.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::squeue::Entry as Sqe;
use io_uring::{cqueue, opcode, types, IoUring, SubmissionQueue, Submitter};

/// Bytes of each receive buffer taken by the kernel's `io_uring_recvmsg_out`
/// header and the source address before the payload starts.
pub const RECV_OVERHEAD: usize = RECVMSG_OUT_BYTES + NAME_BYTES;

/// `struct io_uring_recvmsg_out`: four u32 (namelen, controllen, payloadlen, flags).
const RECVMSG_OUT_BYTES: usize = 16;
/// Room for the source address: a `sockaddr_in6` holds either family.
const NAME_BYTES: usize = std::mem::size_of::<libc::sockaddr_in6>();
const BUFFER_GROUP: u16 = 0;
const PAGE: usize = 4096;
/// How long `Drop` waits for in-flight operations before leaking their memory.
const QUIESCE_LIMIT: Duration = Duration::from_millis(500);

// user_data: the operation kind in the top byte, an index in the low 32 bits.
const TAG_SHIFT: u32 = 56;
const TAG_RECV: u64 = 1;
const TAG_SEND: u64 = 2;
const TAG_WAKE: u64 = 3;
const TAG_CANCEL: u64 = 4;

fn user_data(tag: u64, index: usize) -> u64 {
    (tag << TAG_SHIFT) | index as u64
}

/// Sizes of one ring. Every one is a bound: nothing grows at run time.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    /// Sends beyond this in one batch take an extra `io_uring_enter`.
    pub entries: u32,
    /// Provided receive buffers, a power of two, at most 32768. When all are
    /// in use the multishot receive ends with `ENOBUFS` and is re-armed once
    /// the callback has returned buffers; datagrams wait in the socket buffer.
    pub buffers: u16,
    /// Bytes per receive buffer, including [`RECV_OVERHEAD`]; longer
    /// datagrams are counted as truncated and dropped.
    pub buffer_size: u32,
    /// Sends in flight at most; when all are taken, `send` says `Full`.
    /// At least `buffers`, so that answering a full burst of receives fits.
    pub send_slots: u16,
    /// Bytes per send slot for [`Outbox::send`] (which copies);
    /// [`Outbox::send_bytes`] has no limit.
    pub send_buffer_size: u32,
    /// Completions handled per [`UdpRing::run_once`], so one call is bounded.
    pub max_completions: usize,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1+):
    /// completion work runs only inside this thread's `io_uring_enter`.
    /// Falls back to `COOP_TASKRUN` when the kernel refuses it.
    pub defer_taskrun: bool,
}

impl RingConfig {
    /// Checks these sizes for a driver over `sockets` sockets. Both drivers
    /// (this ring and [`super::mmsg::UdpMmsg`]) accept exactly the configs
    /// that pass, so falling back never meets a config error.
    pub fn check(&self, sockets: usize) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if sockets == 0 || sockets >= u32::MAX as usize {
            return Err(invalid("a driver needs at least one socket"));
        }
        if !self.buffers.is_power_of_two() || self.buffers > 32768 {
            return Err(invalid("buffers must be a power of two up to 32768"));
        }
        if (self.buffer_size as usize) <= RECV_OVERHEAD {
            return Err(invalid("buffer_size must exceed RECV_OVERHEAD"));
        }
        if self.send_slots == 0 || self.entries == 0 || self.max_completions == 0 {
            return Err(invalid(
                "entries, send_slots and max_completions must be positive",
            ));
        }
        Ok(())
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            entries: 256,
            buffers: 512,
            buffer_size: 4096,
            send_slots: 1024,
            send_buffer_size: 2048,
            max_completions: 1024,
            defer_taskrun: true,
        }
    }
}

/// One received datagram, borrowed from a provided buffer until the callback
/// returns.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// Index of the receiving socket in the `Vec` given to [`UdpRing::new`].
    pub socket: usize,
    /// The sender.
    pub src: SocketAddr,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why a send was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Every send slot is in flight: count a drop, or return and let
    /// `run_once` reap completions.
    #[error("all send slots are in flight")]
    Full,
    /// Longer than `send_buffer_size`: use [`Outbox::send_bytes`].
    #[error("payload longer than a send slot")]
    TooLarge,
    /// No socket with that index.
    #[error("no such socket")]
    NoSocket,
    /// The submission queue was full and submitting it failed.
    #[error("submitting to the ring failed: {0}")]
    Ring(io::Error),
}

/// What the shell counts; read with [`UdpRing::counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Datagrams handed to the callback.
    pub received: u64,
    /// Sends completed successfully.
    pub sent: u64,
    /// Sends completed with an error.
    pub send_errors: u64,
    /// Receive completions with an error other than `ENOBUFS`.
    pub recv_errors: u64,
    /// Datagrams longer than a receive buffer, dropped.
    pub recv_truncated: u64,
    /// Times the multishot receive ran out of provided buffers.
    pub recv_nobufs: u64,
    /// Times a multishot receive was armed again after it ended.
    pub recv_rearms: u64,
    /// Wake-ups from a [`Waker`] seen by the ring.
    pub wakes: u64,
    /// `io_uring_enter` calls made.
    pub enters: u64,
}

/// What one [`UdpRing::run_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Datagrams handed to the callback.
    pub datagrams: usize,
    /// Completions handled (receives, sends, wakes).
    pub completions: usize,
    /// A [`Waker`] fired since the last call.
    pub woken: bool,
}

/// Wakes a [`UdpRing`] blocked in `run_once` from any thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    eventfd: Arc<File>,
}

impl Waker {
    /// A new eventfd (blocking: the ring's read of it must wait, and the
    /// fallback driver reads it only when epoll says it is readable).
    pub(crate) fn new_eventfd() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Self {
            eventfd: Arc::new(file),
        })
    }

    /// The eventfd the driver waits on.
    pub(crate) fn eventfd(&self) -> &File {
        &self.eventfd
    }

    /// Makes the ring's current or next `run_once` return promptly.
    pub fn wake(&self) -> io::Result<()> {
        (&*self.eventfd).write_all(&1u64.to_ne_bytes())
    }
}

/// The per-core UDP driver. See the module documentation.
pub struct UdpRing {
    ring: IoUring,
    st: State,
}

/// Everything but the ring, so completions can be handled while the ring's
/// queues are borrowed.
struct State {
    sockets: Vec<RingSocket>,
    recv: ProvidedBuffers,
    sends: SendSlots,
    wake_file: Arc<File>,
    wake_buf: RawBuf,
    wake_armed: bool,
    /// The sockets are registered with the ring (as fixed files, by their
    /// index), which spares the kernel a file lookup per operation.
    fixed_files: bool,
    /// Sockets whose receive is not in flight, so that arming costs what
    /// ended, not a scan of every socket (a relay holds thousands).
    unarmed: Vec<u32>,
    /// Sends queued since the queue was last submitted: their completions
    /// are not what `run_once` waits for.
    unsubmitted_sends: usize,
    counters: RingCounters,
    max_completions: usize,
}

struct RingSocket {
    socket: UdpSocket,
    /// The template of the multishot receive: only `msg_namelen` and
    /// `msg_controllen` matter. Boxed so its address stays put.
    msghdr: Box<libc::msghdr>,
    /// A receive is in flight.
    armed: bool,
    /// A receive was armed once (later arms are counted as re-arms).
    started: bool,
}

impl UdpRing {
    /// Sets up a ring over `sockets` (bound already; std or
    /// `socket2::Socket::into()`), registers the provided buffers and arms
    /// a multishot receive on each socket.
    pub fn new(sockets: Vec<UdpSocket>, config: RingConfig) -> io::Result<Self> {
        config.check(sockets.len())?;
        // Every operation in flight can have one completion queued, so a CQ
        // this large never overflows: receives hold a buffer each, sends a slot.
        let cq =
            (u32::from(config.buffers) + u32::from(config.send_slots) + sockets.len() as u32 + 16)
                .next_power_of_two();
        let ring = build_ring(config.entries, cq, config.defer_taskrun)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+)",
            ));
        }
        let recv = ProvidedBuffers::new(config.buffers, config.buffer_size)?;
        // SAFETY: `recv.ring` is a page-aligned allocation of `buffers`
        // entries owned by `st`, which outlives the registration: `Drop`
        // unregisters it (after quiescing) before the memory is freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                recv.ring.ptr.as_ptr() as u64,
                config.buffers,
                BUFFER_GROUP,
                0,
            )?;
        }
        let raw_fds: Vec<i32> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
        // Without registration (an old kernel, a low file limit) every
        // operation names its descriptor instead: slower, still correct.
        let fixed_files = ring.submitter().register_files(&raw_fds).is_ok();
        let wake_file = Waker::new_eventfd()?.eventfd;
        // At most u32::MAX sockets (checked above).
        let socket_count = sockets.len() as u32;
        let sockets = sockets
            .into_iter()
            .map(|socket| {
                // SAFETY: msghdr is plain old data; all-zero is a valid value.
                let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
                msghdr.msg_namelen = NAME_BYTES as libc::socklen_t;
                RingSocket {
                    socket,
                    msghdr,
                    armed: false,
                    started: false,
                }
            })
            .collect();
        let mut this = Self {
            ring,
            st: State {
                sockets,
                recv,
                sends: SendSlots::new(config.send_slots, config.send_buffer_size)?,
                wake_file,
                wake_buf: RawBuf::new(8, 8)?,
                wake_armed: false,
                fixed_files,
                unarmed: (0..socket_count).rev().collect(),
                unsubmitted_sends: 0,
                counters: RingCounters::default(),
                max_completions: config.max_completions,
            },
        };
        {
            let (submitter, mut sq, _) = this.ring.split();
            this.st.arm(&mut sq, &submitter)?;
            sq.sync();
            submitter.submit()?;
        }
        Ok(this)
    }

    /// A handle other threads use to interrupt `run_once`.
    pub fn waker(&self) -> Waker {
        Waker {
            eventfd: self.st.wake_file.clone(),
        }
    }

    /// The sockets, in the order given to `new`.
    pub fn sockets(&self) -> impl Iterator<Item = &UdpSocket> {
        self.st.sockets.iter().map(|s| &s.socket)
    }

    /// Whether the kernel accepted `RingConfig::defer_taskrun` (single
    /// issuer and deferred task work are only ever set together here).
    pub fn defer_taskrun(&self) -> bool {
        self.ring.params().is_setup_single_issuer()
    }

    /// Whether the sockets are registered with the ring (fixed files).
    pub fn fixed_files(&self) -> bool {
        self.st.fixed_files
    }

    /// What happened so far.
    pub fn counters(&self) -> RingCounters {
        self.st.counters
    }

    /// Send slots not in flight.
    pub fn free_send_slots(&self) -> usize {
        self.st.sends.free.len()
    }

    /// Queues a send from outside a receive callback (timers, handoffs); it
    /// is submitted by the next `run_once` or `flush`.
    pub fn send(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let (submitter, mut sq, _) = self.ring.split();
        let mut out = self.st.outbox(&mut sq, &submitter);
        out.send(socket, dst, payload)
    }

    /// Like [`UdpRing::send`] without a copy: the ring holds `payload` until
    /// the send completes.
    pub fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let (submitter, mut sq, _) = self.ring.split();
        let mut out = self.st.outbox(&mut sq, &submitter);
        out.send_bytes(socket, dst, payload)
    }

    /// Submits queued sends now, without waiting.
    pub fn flush(&mut self) -> io::Result<()> {
        let (submitter, mut sq, _) = self.ring.split();
        sq.sync();
        if sq.is_empty() {
            return Ok(());
        }
        self.st.unsubmitted_sends = 0;
        self.st.counters.enters += 1;
        submitter.submit().map(drop)
    }

    /// Submits queued sends (and re-arms), waits until at least one
    /// completion is ready besides those of the sends just submitted (which
    /// usually complete at once) or `timeout` passes (a zero timeout does
    /// not wait), then handles up to `max_completions` completions, calling
    /// `on_datagram` for each datagram. The callback may queue sends through
    /// the [`Outbox`]; they go out with the next `run_once` or `flush`.
    pub fn run_once<F>(&mut self, timeout: Duration, mut on_datagram: F) -> io::Result<Progress>
    where
        F: FnMut(Datagram<'_>, &mut Outbox<'_, '_>),
    {
        let (submitter, mut sq, mut cq) = self.ring.split();
        self.st.arm(&mut sq, &submitter)?;
        sq.sync();
        cq.sync();
        self.st.counters.enters += 1;
        let sends = std::mem::take(&mut self.st.unsubmitted_sends);
        let entered = if !cq.is_empty() || timeout.is_zero() {
            submitter.submit()
        } else {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            submitter.submit_with_args(sends + 1, &args)
        };
        match entered {
            Ok(_) => {}
            Err(e) if benign(&e) => {}
            Err(e) => return Err(e),
        }
        let mut progress = Progress::default();
        while progress.completions < self.st.max_completions {
            cq.sync();
            let Some(cqe) = cq.next() else { break };
            progress.completions += 1;
            self.st
                .complete(&cqe, &mut sq, &submitter, &mut progress, &mut on_datagram);
        }
        cq.sync();
        Ok(progress)
    }

    /// Cancels what is in flight and waits (bounded) for every operation to
    /// end. True when nothing is in flight any more.
    fn quiesce(&mut self) -> bool {
        let (submitter, mut sq, mut cq) = self.ring.split();
        let mut cancels: Vec<u64> = (0..self.st.sockets.len())
            .filter(|&i| self.st.sockets[i].armed)
            .map(|i| user_data(TAG_RECV, i))
            .collect();
        if self.st.wake_armed {
            cancels.push(user_data(TAG_WAKE, 0));
        }
        for target in cancels {
            let sqe = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(TAG_CANCEL, 0));
            // SAFETY: a cancel refers to no memory.
            if unsafe { push(&mut sq, &submitter, &sqe) }.is_err() {
                return false;
            }
        }
        // `complete` marks each operation ended; only `arm` (not called
        // here) starts new ones.
        let deadline = Instant::now() + QUIESCE_LIMIT;
        let mut discard = |_: Datagram<'_>, _: &mut Outbox<'_, '_>| {};
        let mut progress = Progress::default();
        loop {
            let st = &self.st;
            let in_flight = st.sockets.iter().any(|s| s.armed)
                || st.wake_armed
                || st.sends.free.len() < st.sends.slots.len();
            if !in_flight {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sq.sync();
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            match submitter.submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if benign(&e) => {}
                Err(_) => return false,
            }
            cq.sync();
            for cqe in &mut cq {
                self.st
                    .complete(&cqe, &mut sq, &submitter, &mut progress, &mut discard);
            }
        }
    }
}

impl Drop for UdpRing {
    fn drop(&mut self) {
        if self.quiesce() {
            let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
        } else {
            // The kernel may still write into this memory: never free it.
            self.st.recv.ring.leak();
            self.st.recv.data.leak();
            self.st.sends.data.leak();
            self.st.wake_buf.leak();
            std::mem::forget(std::mem::take(&mut self.st.sends.slots));
            for s in &mut self.st.sockets {
                std::mem::forget(std::mem::replace(
                    &mut s.msghdr,
                    // SAFETY: msghdr is plain old data; all-zero is a valid value.
                    Box::new(unsafe { std::mem::zeroed() }),
                ));
            }
        }
    }
}

/// The memory and state behind [`UdpRing::send`]: what a receive callback
/// uses to queue replies and forwards.
pub struct Outbox<'a, 'r> {
    sq: &'a mut SubmissionQueue<'r>,
    submitter: &'a Submitter<'r>,
    sockets: &'a [RingSocket],
    fixed_files: bool,
    sends: &'a mut SendSlots,
    unsubmitted: &'a mut usize,
}

/// How a send names its socket: by registered index or by descriptor.
#[derive(Clone, Copy)]
enum FileRef {
    Fixed(types::Fixed),
    Fd(types::Fd),
}

impl Outbox<'_, '_> {
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
        let fd = self.fd(socket)?;
        let slot = self.sends.free.pop().ok_or(SendError::Full)?;
        let data = self.sends.data_ptr(slot);
        // SAFETY: the slot is free, so the kernel is not reading its data
        // region; the region is `buffer_size` bytes inside `sends.data` and
        // `payload` fits (checked above); the two cannot overlap because the
        // caller's slice is borrowed, not the ring's.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), data, payload.len()) };
        self.queue(slot, fd, dst, data, payload.len(), None)
    }

    /// Queues `payload` without copying; the ring keeps it until the send
    /// completes.
    pub fn send_bytes(
        &mut self,
        socket: usize,
        dst: SocketAddr,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let fd = self.fd(socket)?;
        let slot = self.sends.free.pop().ok_or(SendError::Full)?;
        let (ptr, len) = (payload.as_ptr().cast_mut(), payload.len());
        self.queue(slot, fd, dst, ptr, len, Some(payload))
    }

    /// Send slots not in flight.
    pub fn free_slots(&self) -> usize {
        self.sends.free.len()
    }

    fn fd(&self, socket: usize) -> Result<FileRef, SendError> {
        let s = self.sockets.get(socket).ok_or(SendError::NoSocket)?;
        match u32::try_from(socket) {
            Ok(index) if self.fixed_files => Ok(FileRef::Fixed(types::Fixed(index))),
            _ => Ok(FileRef::Fd(types::Fd(s.socket.as_raw_fd()))),
        }
    }

    fn queue(
        &mut self,
        index: u16,
        fd: FileRef,
        dst: SocketAddr,
        data: *mut u8,
        len: usize,
        held: Option<Bytes>,
    ) -> Result<(), SendError> {
        let Ok(len) = u32::try_from(len) else {
            self.sends.free.push(index);
            return Err(SendError::TooLarge);
        };
        let slot = &mut self.sends.slots[usize::from(index)];
        let namelen = write_sockaddr(&mut slot.addr, dst);
        slot.held = held;
        // A send with a destination (sendto, kernel 6.0+) rather than a
        // sendmsg: the kernel copies no msghdr and iovec per datagram.
        let addr = std::ptr::addr_of!(slot.addr).cast::<libc::sockaddr>();
        let sqe = match fd {
            FileRef::Fixed(fixed) => opcode::Send::new(fixed, data, len)
                .dest_addr(addr)
                .dest_addr_len(namelen)
                .build(),
            FileRef::Fd(fd) => opcode::Send::new(fd, data, len)
                .dest_addr(addr)
                .dest_addr_len(namelen)
                .build(),
        }
        .user_data(user_data(TAG_SEND, usize::from(index)));
        // SAFETY: the slot's address lives in `sends.slots` (never
        // resized), the payload in `sends.data` or in `held`; none is touched
        // again until the completion returns the slot to `free`, and the ring
        // quiesces before any of it is freed.
        match unsafe { push(self.sq, self.submitter, &sqe) } {
            Ok(submitted) => {
                *self.unsubmitted = if submitted { 1 } else { *self.unsubmitted + 1 };
                Ok(())
            }
            Err(e) => {
                slot.held = None;
                self.sends.free.push(index);
                Err(SendError::Ring(e))
            }
        }
    }
}

impl State {
    fn outbox<'a, 'r>(
        &'a mut self,
        sq: &'a mut SubmissionQueue<'r>,
        submitter: &'a Submitter<'r>,
    ) -> Outbox<'a, 'r> {
        Outbox {
            sq,
            submitter,
            sockets: &self.sockets,
            fixed_files: self.fixed_files,
            sends: &mut self.sends,
            unsubmitted: &mut self.unsubmitted_sends,
        }
    }

    /// Arms the multishot receive of every socket whose receive ended, and
    /// the eventfd read.
    fn arm(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) -> io::Result<()> {
        while let Some(&next) = self.unarmed.last() {
            let i = next as usize;
            let Some(s) = self.sockets.get_mut(i) else {
                self.unarmed.pop();
                continue;
            };
            if s.armed {
                self.unarmed.pop();
                continue;
            }
            let sqe = if self.fixed_files {
                opcode::RecvMsgMulti::new(types::Fixed(next), &*s.msghdr, BUFFER_GROUP).build()
            } else {
                let fd = types::Fd(s.socket.as_raw_fd());
                opcode::RecvMsgMulti::new(fd, &*s.msghdr, BUFFER_GROUP).build()
            }
            .user_data(user_data(TAG_RECV, i));
            // SAFETY: the msghdr is boxed in `self.sockets` and the buffers
            // belong to the registered group; both outlive the receive, which
            // `Drop` cancels and waits for before freeing either.
            if unsafe { push(sq, submitter, &sqe)? } {
                self.unsubmitted_sends = 0;
            }
            if s.started {
                self.counters.recv_rearms += 1;
            }
            s.started = true;
            s.armed = true;
            // Popped only once pushed: a failed push leaves it for next time.
            self.unarmed.pop();
        }
        if !self.wake_armed {
            let sqe = opcode::Read::new(
                types::Fd(self.wake_file.as_raw_fd()),
                self.wake_buf.ptr.as_ptr(),
                8,
            )
            .build()
            .user_data(user_data(TAG_WAKE, 0));
            // SAFETY: `wake_buf` is 8 bytes owned by `self`, never read by
            // Rust, and freed only after the read has ended.
            if unsafe { push(sq, submitter, &sqe)? } {
                self.unsubmitted_sends = 0;
            }
            self.wake_armed = true;
        }
        Ok(())
    }

    fn complete<'r, F>(
        &mut self,
        cqe: &cqueue::Entry,
        sq: &mut SubmissionQueue<'r>,
        submitter: &Submitter<'r>,
        progress: &mut Progress,
        on_datagram: &mut F,
    ) where
        F: FnMut(Datagram<'_>, &mut Outbox<'_, '_>),
    {
        let index = (cqe.user_data() & 0xffff_ffff) as usize;
        let (res, flags) = (cqe.result(), cqe.flags());
        match cqe.user_data() >> TAG_SHIFT {
            TAG_RECV => {
                if !cqueue::more(flags) {
                    if let Some(s) = self.sockets.get_mut(index) {
                        if s.armed {
                            s.armed = false;
                            self.unarmed.push(index as u32);
                        }
                    }
                }
                let Some(bid) = cqueue::buffer_select(flags) else {
                    match -res {
                        libc::ENOBUFS => self.counters.recv_nobufs += 1,
                        0 | libc::ECANCELED => {}
                        _ => self.counters.recv_errors += 1,
                    }
                    return;
                };
                if bid >= self.recv.count {
                    self.counters.recv_errors += 1;
                    return;
                }
                if res >= 0 && index < self.sockets.len() {
                    // SAFETY: the completion selected `bid`, so the kernel
                    // has handed it back; it is recycled only below, after
                    // the slice (and the callback's borrow of it) is gone.
                    let buf = unsafe { self.recv.buffer(bid, res as usize) };
                    match types::RecvMsgOut::parse(buf, &self.sockets[index].msghdr) {
                        Ok(out) if out.is_payload_truncated() => self.counters.recv_truncated += 1,
                        Ok(out) => match parse_sockaddr(out.name_data()) {
                            Some(src) => {
                                self.counters.received += 1;
                                progress.datagrams += 1;
                                let mut outbox = Outbox {
                                    sq,
                                    submitter,
                                    sockets: &self.sockets,
                                    fixed_files: self.fixed_files,
                                    sends: &mut self.sends,
                                    unsubmitted: &mut self.unsubmitted_sends,
                                };
                                let datagram = Datagram {
                                    socket: index,
                                    src,
                                    payload: out.payload_data(),
                                };
                                on_datagram(datagram, &mut outbox);
                            }
                            None => self.counters.recv_errors += 1,
                        },
                        Err(()) => self.counters.recv_errors += 1,
                    }
                } else {
                    self.counters.recv_errors += 1;
                }
                self.recv.recycle(bid);
            }
            TAG_SEND => {
                if let Ok(slot) = u16::try_from(index) {
                    if usize::from(slot) < self.sends.slots.len() {
                        self.sends.slots[index].held = None;
                        self.sends.free.push(slot);
                    }
                }
                if res < 0 {
                    self.counters.send_errors += 1;
                } else {
                    self.counters.sent += 1;
                }
            }
            TAG_WAKE => {
                self.wake_armed = false;
                if res >= 0 {
                    self.counters.wakes += 1;
                    progress.woken = true;
                }
            }
            _ => {}
        }
    }
}

/// One entry of the provided buffer ring, as the kernel lays it out
/// (`struct io_uring_buf`); entry 0's `resv` is the ring's tail.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// The receive buffers and the ring through which they are lent to the kernel.
struct ProvidedBuffers {
    ring: RawBuf,
    data: RawBuf,
    count: u16,
    size: u32,
    tail: u16,
}

impl ProvidedBuffers {
    fn new(count: u16, size: u32) -> io::Result<Self> {
        let entries = usize::from(count) * std::mem::size_of::<BufEntry>();
        let mut this = Self {
            ring: RawBuf::new(entries, PAGE)?,
            data: RawBuf::new(usize::from(count) * size as usize, PAGE)?,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            this.add(bid);
        }
        this.publish();
        Ok(this)
    }

    fn entries(&self) -> *mut BufEntry {
        self.ring.ptr.as_ptr().cast()
    }

    /// Writes buffer `bid` into the ring beyond the tail (not yet visible).
    fn add(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self.data.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `slot < count`, so the entry is inside the ring allocation;
        // it lies beyond the published tail, so the kernel does not read it
        // yet; the writes go through field pointers and leave `resv` (entry
        // 0's is the tail the kernel reads) alone.
        unsafe {
            let e = self.entries().add(slot);
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(self.size);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every added buffer visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is entry 0's `resv`, a 2-aligned u16 inside the
        // ring allocation; the kernel reads it concurrently, so Rust only
        // touches it atomically. Release orders the entry writes before it.
        let tail = unsafe { &*std::ptr::addr_of!((*self.entries()).resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn recycle(&mut self, bid: u16) {
        if bid < self.count {
            self.add(bid);
            self.publish();
        }
    }

    /// # Safety
    ///
    /// The kernel must have handed `bid` back (a completion selected it) and
    /// it must not be recycled while the slice lives.
    unsafe fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size as usize;
        std::slice::from_raw_parts(
            self.data.ptr.as_ptr().add(start),
            len.min(self.size as usize),
        )
    }
}

/// Room for either address family, for `msg_name`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union SockAddrBuf {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

struct SendSlot {
    addr: SockAddrBuf,
    held: Option<Bytes>,
}

/// A fixed array of prepared sends and the payload space of copied ones.
struct SendSlots {
    /// Never resized after `new`: the kernel holds pointers into it.
    slots: Vec<SendSlot>,
    data: RawBuf,
    free: Vec<u16>,
    buffer_size: usize,
}

impl SendSlots {
    fn new(count: u16, buffer_size: u32) -> io::Result<Self> {
        let slots = (0..count)
            .map(|_| SendSlot {
                // SAFETY: the sockaddr union is plain old data; all-zero is
                // a valid value.
                addr: unsafe { std::mem::zeroed() },
                held: None,
            })
            .collect();
        Ok(Self {
            slots,
            data: RawBuf::new(usize::from(count) * buffer_size as usize, 64)?,
            free: (0..count).rev().collect(),
            buffer_size: buffer_size as usize,
        })
    }

    fn data_ptr(&self, slot: u16) -> *mut u8 {
        self.data
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(slot) * self.buffer_size)
    }
}

/// Heap memory the kernel may access, freed on drop unless leaked.
struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    leaked: bool,
}

impl RawBuf {
    fn new(size: usize, align: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(size.max(1), align)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Self {
            ptr,
            layout,
            leaked: false,
        })
    }

    fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: allocated by `new` with this layout, freed only here.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

/// Queues `sqe`, submitting the queue first when it is full; true when it did.
///
/// # Safety
///
/// Whatever memory `sqe` refers to must stay valid until its completion.
unsafe fn push(
    sq: &mut SubmissionQueue<'_>,
    submitter: &Submitter<'_>,
    sqe: &Sqe,
) -> io::Result<bool> {
    if sq.push(sqe).is_ok() {
        return Ok(false);
    }
    sq.sync();
    match submitter.submit() {
        Ok(_) => {}
        Err(e) if benign(&e) => {}
        Err(e) => return Err(e),
    }
    sq.sync();
    sq.push(sqe)
        .map(|()| true)
        .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "submission queue full"))
}

/// Errors of `io_uring_enter` that only mean "nothing more now".
fn benign(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

fn build_ring(entries: u32, cq: u32, defer_taskrun: bool) -> io::Result<IoUring> {
    if defer_taskrun {
        let ring = IoUring::builder()
            .setup_cqsize(cq)
            .setup_submit_all()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(entries);
        if let Ok(ring) = ring {
            return Ok(ring);
        }
    }
    let ring = IoUring::builder()
        .setup_cqsize(cq)
        .setup_submit_all()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(entries);
    match ring {
        Ok(ring) => Ok(ring),
        Err(_) => IoUring::builder().setup_cqsize(cq).build(entries),
    }
}

pub(super) fn write_sockaddr(buf: &mut SockAddrBuf, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            buf.v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            buf.v6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a `sockaddr_in` or `sockaddr_in6` from the bytes the kernel wrote.
pub(super) fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(name.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(addr: &str) -> UdpSocket {
        UdpSocket::bind(addr).expect("bind")
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

    /// Runs `ring` until `done` or a few seconds pass; returns what arrived.
    fn collect(ring: &mut UdpRing, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < deadline {
            ring.run_once(Duration::from_millis(50), |d, _| {
                got.push((d.src, d.payload.to_vec()))
            })
            .expect("run_once");
        }
        got
    }

    fn exchange(addr: &str) {
        let (a, b) = (bind(addr), bind(addr));
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut ra = UdpRing::new(vec![a], small()).unwrap();
        let mut rb = UdpRing::new(vec![b], small()).unwrap();
        // Kernels with this ring's features (6.0+) register files.
        assert!(ra.fixed_files() && rb.fixed_files());
        for i in 0..10u8 {
            ra.send(0, b_addr, &[i; 100]).unwrap();
        }
        ra.flush().unwrap();
        // B echoes each datagram back from inside the callback.
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < 10 && Instant::now() < deadline {
            rb.run_once(Duration::from_millis(50), |d, out| {
                assert_eq!(d.src, a_addr);
                assert_eq!(d.socket, 0);
                out.send(d.socket, d.src, d.payload).unwrap();
                seen += 1;
            })
            .unwrap();
        }
        assert_eq!(seen, 10);
        rb.flush().unwrap();
        let echoed = collect(&mut ra, 10);
        assert_eq!(echoed.len(), 10);
        for (i, (src, payload)) in echoed.iter().enumerate() {
            assert_eq!(*src, b_addr);
            assert_eq!(payload, &vec![i as u8; 100]);
        }
        // Send completions come back and free every slot.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (ra.counters().sent < 10 || rb.counters().sent < 10) && Instant::now() < deadline {
            ra.run_once(Duration::from_millis(10), |_, _| {}).unwrap();
            rb.run_once(Duration::from_millis(10), |_, _| {}).unwrap();
        }
        assert_eq!(ra.counters().sent, 10);
        assert_eq!(rb.counters().sent, 10);
        assert_eq!(ra.free_send_slots(), 32);
    }

    #[test]
    fn two_rings_exchange_datagrams_v4() {
        exchange("127.0.0.1:0");
    }

    #[test]
    fn two_rings_exchange_datagrams_v6() {
        if UdpSocket::bind("[::1]:0").is_ok() {
            exchange("[::1]:0");
        }
    }

    #[test]
    fn multishot_rearms_after_buffer_exhaustion() {
        for defer_taskrun in [true, false] {
            rearm_after_exhaustion(defer_taskrun);
        }
    }

    fn rearm_after_exhaustion(defer_taskrun: bool) {
        let sock = bind("127.0.0.1:0");
        let dst = sock.local_addr().unwrap();
        let config = RingConfig {
            buffers: 8,
            defer_taskrun,
            ..small()
        };
        let mut ring = UdpRing::new(vec![sock], config).unwrap();
        assert_eq!(ring.defer_taskrun(), defer_taskrun);
        let sender = bind("127.0.0.1:0");
        for i in 0..100u32 {
            sender.send_to(&i.to_be_bytes(), dst).unwrap();
        }
        let got = collect(&mut ring, 100);
        assert_eq!(got.len(), 100);
        let order: Vec<u32> = got
            .iter()
            .map(|(_, p)| u32::from_be_bytes(p[..4].try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
        let c = ring.counters();
        assert!(c.recv_nobufs >= 1, "{c:?}");
        assert!(c.recv_rearms >= 1, "{c:?}");
        assert_eq!(c.recv_errors, 0);
    }

    #[test]
    fn send_batch_larger_than_one_submission() {
        let sock = bind("127.0.0.1:0");
        let sink = bind("127.0.0.1:0");
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let config = RingConfig {
            entries: 8,
            send_slots: 64,
            ..small()
        };
        let mut ring = UdpRing::new(vec![sock], config).unwrap();
        let dst = sink.local_addr().unwrap();
        for i in 0..50u16 {
            if i % 2 == 0 {
                ring.send(0, dst, &i.to_be_bytes()).unwrap();
            } else {
                ring.send_bytes(0, dst, Bytes::copy_from_slice(&i.to_be_bytes()))
                    .unwrap();
            }
        }
        // The rest of the slots, then one too many.
        for _ in 50..64 {
            ring.send(0, dst, b"x").unwrap();
        }
        assert!(matches!(ring.send(0, dst, b"x"), Err(SendError::Full)));
        assert!(matches!(ring.send(1, dst, b"x"), Err(SendError::NoSocket)));
        ring.run_once(Duration::ZERO, |_, _| {}).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..50u16 {
            let (n, _) = sink.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ring.counters().sent < 64 && Instant::now() < deadline {
            ring.run_once(Duration::from_millis(10), |_, _| {}).unwrap();
        }
        assert_eq!(ring.counters().sent, 64);
        assert_eq!(ring.free_send_slots(), 64);
    }

    #[test]
    fn oversized_payloads_are_refused_or_counted() {
        let sock = bind("127.0.0.1:0");
        let dst = sock.local_addr().unwrap();
        let config = RingConfig {
            buffer_size: 256,
            send_buffer_size: 64,
            ..small()
        };
        let mut ring = UdpRing::new(vec![sock], config).unwrap();
        assert!(matches!(
            ring.send(0, dst, &[0; 65]),
            Err(SendError::TooLarge)
        ));
        let sender = bind("127.0.0.1:0");
        sender.send_to(&[1; 1000], dst).unwrap();
        sender.send_to(&[2; 10], dst).unwrap();
        let got = collect(&mut ring, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, vec![2; 10]);
        assert_eq!(ring.counters().recv_truncated, 1);
    }

    #[test]
    fn waker_wakes_a_blocked_run_once() {
        let mut ring = UdpRing::new(vec![bind("127.0.0.1:0")], small()).unwrap();
        let waker = ring.waker();
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            waker.wake().unwrap();
        });
        let mut progress = Progress::default();
        while !progress.woken && start.elapsed() < Duration::from_secs(10) {
            progress = ring.run_once(Duration::from_secs(10), |_, _| {}).unwrap();
        }
        t.join().unwrap();
        assert!(progress.woken);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(ring.counters().wakes, 1);
        // The read is re-armed: a second wake works too.
        ring.waker().wake().unwrap();
        let p = ring.run_once(Duration::from_secs(5), |_, _| {}).unwrap();
        assert!(p.woken);
    }

    #[test]
    fn sockaddrs_parse() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&5060u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some("10.0.0.1:5060".parse().unwrap()));
        assert_eq!(parse_sockaddr(&v4[..6]), None);
        assert_eq!(parse_sockaddr(&[]), None);
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&5061u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_sockaddr(&v6), Some("[::1]:5061".parse().unwrap()));
    }
}
