//! The ng control plane's threads: one for UDP, one accepting TCP and one
//! per TCP connection. None of them is a data-plane core; they parse with
//! [`Control`] (the reply cache) and run commands through [`Dispatch`] on
//! the shards that own the calls.
//!
//! ng over TCP is framed as rtpengine frames it: a cookie, a space, and one
//! bencode dictionary; the message ends where the dictionary does
//! ([`value_len`]), and replies are written the same way.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::dispatch::Dispatch;
use super::MAX_WAIT;
use crate::ng::bencode::value_len;
use crate::ng::{self, Control, Limits};

/// The longest cookie accepted on TCP before its space.
const MAX_COOKIE_BYTES: usize = 256;
/// TCP connections served at once; more are closed at accept.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection silent for this long is closed (rtpengine's 60 s).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The ng endpoint shared by the UDP and TCP threads.
pub struct ControlPlane {
    control: Mutex<Control>,
    dispatch: Dispatch,
    limits: Limits,
}

impl ControlPlane {
    /// An endpoint with `config`'s limits running commands through
    /// `dispatch`.
    pub fn new(config: &ng::Config, dispatch: Dispatch) -> Self {
        ControlPlane {
            control: Mutex::new(Control::new(config)),
            dispatch,
            limits: config.limits,
        }
    }

    /// The reply to one message (a datagram, or a TCP frame) received at
    /// `now`, if it gets one. The cache lock is held while the command
    /// runs, so a retransmission on another transport waits for it and is
    /// then answered from the cache.
    pub fn handle(&self, now: Instant, message: &Bytes) -> Option<Bytes> {
        let mut control = self.control.lock().ok()?;
        control.handle_timeout(now);
        control.handle(now, message, |incoming| {
            self.dispatch.run(&incoming.request)
        })
    }

    /// What the endpoint has counted so far.
    pub fn counters(&self) -> ng::Counters {
        self.control
            .lock()
            .map(|c| c.counters())
            .unwrap_or_default()
    }
}

/// Serves ng over UDP on `socket` until `stop` is set.
pub fn spawn_udp(
    socket: UdpSocket,
    plane: Arc<ControlPlane>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    socket.set_read_timeout(Some(MAX_WAIT))?;
    std::thread::Builder::new()
        .name("media-ng-udp".into())
        .spawn(move || serve_udp(&socket, &plane, &stop))
}

fn serve_udp(socket: &UdpSocket, plane: &ControlPlane, stop: &AtomicBool) {
    let mut buf = vec![0_u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ng UDP receive failed");
                continue;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        if let Some(reply) = plane.handle(Instant::now(), &datagram) {
            if let Err(e) = socket.send_to(&reply, src) {
                tracing::warn!(%src, error = %e, "ng reply not sent");
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Accepts ng over TCP on `listener` until `stop` is set, a thread per
/// connection (at most [`MAX_TCP_CONNECTIONS`]).
pub fn spawn_tcp(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("media-ng-tcp".into())
        .spawn(move || accept_tcp(&listener, &plane, &stop))
}

fn accept_tcp(listener: &TcpListener, plane: &Arc<ControlPlane>, stop: &Arc<AtomicBool>) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if is_timeout(&e) => {
                // A non-blocking listener: poll at the loop's stop latency.
                std::thread::sleep(MAX_WAIT);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ng TCP accept failed");
                std::thread::sleep(MAX_WAIT);
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_TCP_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, max = MAX_TCP_CONNECTIONS, "ng TCP connection refused: too many");
            continue;
        }
        tracing::info!(%peer, "ng TCP connection");
        let (plane, stop, done) = (plane.clone(), stop.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("media-ng-conn".into())
            .spawn(move || {
                if let Err(e) = serve_tcp(stream, &plane, &stop) {
                    tracing::info!(%peer, error = %e, "ng TCP connection closed");
                }
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, error = %e, "ng TCP connection thread not started");
        }
    }
}

fn serve_tcp(mut stream: TcpStream, plane: &ControlPlane, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(MAX_WAIT))?;
    let mut pending = BytesMut::with_capacity(4096);
    let mut chunk = [0_u8; 16 * 1024];
    let mut last_read = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let read = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                if last_read.elapsed() >= TCP_IDLE_TIMEOUT {
                    return Err(io::Error::new(ErrorKind::TimedOut, "idle"));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        last_read = Instant::now();
        pending.extend_from_slice(&chunk[..read]);
        while let Some(message) = next_frame(&mut pending, &plane.limits)? {
            if let Some(reply) = plane.handle(Instant::now(), &message) {
                stream.write_all(&reply)?;
            }
        }
    }
    Ok(())
}

/// Takes the first complete message (cookie, space, bencode value) off
/// `pending`, or `None` while it is incomplete. A stream that cannot hold
/// a message any more (no space within the cookie limit, bad bencode, over
/// the size limit) is an error: the connection is closed, since nothing
/// after it could be framed.
pub fn next_frame(pending: &mut BytesMut, limits: &Limits) -> io::Result<Option<Bytes>> {
    let invalid = |what: String| io::Error::new(ErrorKind::InvalidData, what);
    let Some(space) = memchr::memchr(b' ', pending) else {
        if pending.len() > MAX_COOKIE_BYTES {
            return Err(invalid("no cookie".into()));
        }
        return Ok(None);
    };
    if space == 0 || space > MAX_COOKIE_BYTES {
        return Err(invalid("no cookie".into()));
    }
    // Frozen, not copied, so that the parser's zero-copy slices can point
    // into it; a buffer nobody else shares comes back as it was.
    let whole = std::mem::take(pending).freeze();
    let measured = value_len(&whole.slice(space + 1..), limits);
    let (frame, rest) = match measured {
        Ok(Some(len)) => {
            let end = space + 1 + len;
            (Some(whole.slice(..end)), whole.slice(end..))
        }
        Ok(None) => (None, whole),
        Err(e) => return Err(invalid(format!("bad ng message: {e}"))),
    };
    *pending = rest
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    Ok(frame)
}

/// Binds the ng TCP listener, for the operator's message on failure.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_where_the_dictionary_ends() -> io::Result<()> {
        let limits = Limits::default();
        let mut pending = BytesMut::from(&b"c1 d7:command4:pingec2 d7:comm"[..]);
        let first = next_frame(&mut pending, &limits)?;
        assert_eq!(first.as_deref(), Some(&b"c1 d7:command4:pinge"[..]));
        assert_eq!(next_frame(&mut pending, &limits)?, None);
        pending.extend_from_slice(b"and4:pinge");
        let second = next_frame(&mut pending, &limits)?;
        assert_eq!(second.as_deref(), Some(&b"c2 d7:command4:pinge"[..]));
        assert!(pending.is_empty());
        assert_eq!(next_frame(&mut pending, &limits)?, None);
        Ok(())
    }

    #[test]
    fn unframeable_streams_are_errors() {
        let limits = Limits::default();
        for bad in [&b" d7:command4:pinge"[..], b"c1 x", &[b'a'; 300][..]] {
            let mut pending = BytesMut::from(bad);
            assert!(next_frame(&mut pending, &limits).is_err(), "{bad:?}");
        }
    }
}
