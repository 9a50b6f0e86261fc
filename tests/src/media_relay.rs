//! The workspace's `media` binary (the RTP relay, an rtpengine-ng
//! compatible media proxy) as a test peer, and a small ng client to drive
//! and inspect it ([`NgClient`]), or to record what another client says
//! to it ([`NgTap`]).
//!
//! ```no_run
//! use edge_e2e::media_relay::Media;
//! let relay = Media::new().ports(20).spawn().unwrap();
//! // point Kamailio's rtpengine module at relay.ng_addr() ...
//! assert!(relay.list().unwrap().is_empty());
//! ```
//!
//! Like the other launchers ([`crate::kamailio`], [`crate::edge`]): the
//! process is wrapped in coreutils `timeout` (so it stops by itself even if
//! the test process dies), runs in its own process group with its log
//! (stdout and stderr) in a scratch directory, and is stopped when the
//! handle is dropped. `spawn` returns once the relay answers an ng `ping`
//! with `pong`.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use media::ng::bencode::parse;
use media::ng::{Bytes, Dict, Limits, Value};

use crate::media_binary;
use crate::ports::{free_udp_port, free_udp_range, loopback, LOOPBACK};
use crate::process::{read_tail, OwnedProcess, StartError, TempDir, STOP_GRACE};

/// How long one ng request waits for its reply.
pub const NG_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Builder for one `media` relay on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Media {
    ports: u16,
    cores: usize,
    timeout: Duration,
    delete_delay: Duration,
    log_filter: String,
    ready_timeout: Duration,
    max_lifetime: Duration,
}

impl Default for Media {
    fn default() -> Self {
        Self::new()
    }
}

impl Media {
    /// A relay with 20 ports, a 60 s media timeout, no delete delay, logging
    /// at `info`.
    pub fn new() -> Self {
        Self {
            ports: 20,
            cores: 1,
            timeout: Duration::from_secs(60),
            delete_delay: Duration::ZERO,
            log_filter: "info".into(),
            ready_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(300),
        }
    }

    /// How many consecutive relay ports (`--port-min`..=`--port-max`), found
    /// free on 127.0.0.1 (default 20; at least 2, one RTP/RTCP pair).
    pub fn ports(mut self, n: u16) -> Self {
        self.ports = n.max(2);
        self
    }

    /// `--cores`: shards, each owning the calls that hash to it and its
    /// share of the ports (default 1).
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = n.max(1);
        self
    }

    /// `--timeout`: a call without media for this long is deleted (whole
    /// seconds, at least 1; default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `--delete-delay`: how long a released port pair waits before reuse
    /// (whole seconds; default 0).
    pub fn delete_delay(mut self, delay: Duration) -> Self {
        self.delete_delay = delay;
        self
    }

    /// `RUST_LOG` of the relay (default `info`).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    /// How long the relay gets to answer its first ng ping (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// After this long the relay is terminated whatever happens (default
    /// 300 s): the bound for a test process that dies without dropping
    /// the handle.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Finds a free ng port and port range, starts the relay and waits until
    /// it answers an ng ping.
    pub fn spawn(self) -> Result<MediaProcess, StartError> {
        let binary = media_binary();
        let dir = TempDir::new("media").map_err(|e| StartError::io("scratch dir", e))?;
        let ng = loopback(free_udp_port());
        let port_min = free_udp_range(self.ports);
        let port_max = port_min + (self.ports - 1);
        let log = dir.join("media.log");
        let log_file = File::create(&log).map_err(|e| StartError::io("creating the log", e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| StartError::io("creating the log", e))?;
        let args: Vec<String> = vec![
            "--kill-after=5s".into(),
            format!("{}s", self.max_lifetime.as_secs().max(1)),
            binary.display().to_string(),
            "--interface".into(),
            LOOPBACK.to_string(),
            "--listen-ng".into(),
            ng.to_string(),
            "--port-min".into(),
            port_min.to_string(),
            "--port-max".into(),
            port_max.to_string(),
            "--timeout".into(),
            self.timeout.as_secs().max(1).to_string(),
            "--delete-delay".into(),
            self.delete_delay.as_secs().to_string(),
            "--cores".into(),
            self.cores.to_string(),
        ];
        let command_line = format!("RUST_LOG={} timeout {}", self.log_filter, args.join(" "));
        let mut command = Command::new("timeout");
        command
            .args(&args)
            .env("RUST_LOG", &self.log_filter)
            .current_dir(dir.path())
            .stdout(log_file)
            .stderr(log_err);
        let process = OwnedProcess::spawn("media", &mut command)
            .map_err(|e| StartError::io("spawning media", e))?;
        let mut relay = MediaProcess {
            process,
            ng,
            ports: port_min..=port_max,
            log,
            command_line,
            dir,
        };
        relay.wait_ready(self.ready_timeout)?;
        Ok(relay)
    }
}

/// A running relay. Dropping it stops it.
#[derive(Debug)]
pub struct MediaProcess {
    process: OwnedProcess,
    ng: SocketAddr,
    ports: RangeInclusive<u16>,
    log: std::path::PathBuf,
    command_line: String,
    dir: TempDir,
}

impl MediaProcess {
    /// Where the ng control protocol listens (UDP, 127.0.0.1).
    pub fn ng_addr(&self) -> SocketAddr {
        self.ng
    }

    /// The relay ports (`--port-min..=--port-max`).
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.ports.clone()
    }

    /// The scratch directory (the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The relay's log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        read_tail(&self.log, 64 * 1024)
    }

    /// The command line, for diagnostics.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Whether the relay still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Sends one ng request and returns the reply's dictionary.
    pub fn request(&self, command: Dict) -> io::Result<Dict> {
        NgClient::new(self.ng)?.request(command, NG_REPLY_TIMEOUT)
    }

    /// `list`: the call-ids the relay holds.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let reply = self.request(command("list"))?;
        let calls = reply
            .get(b"calls")
            .and_then(Value::as_list)
            .ok_or_else(|| bad_reply("list", &reply))?;
        Ok(calls
            .iter()
            .filter_map(Value::as_bytes)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .collect())
    }

    /// `statistics`: the reply's `statistics` dictionary
    /// (`currentstatistics`, `totalstatistics`).
    pub fn statistics(&self) -> io::Result<Dict> {
        let reply = self.request(command("statistics"))?;
        reply
            .get(b"statistics")
            .and_then(Value::as_dict)
            .cloned()
            .ok_or_else(|| bad_reply("statistics", &reply))
    }

    /// Stops the relay (SIGTERM, SIGKILL after a grace period) and returns
    /// the exit status of the wrapper.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.process.stop(STOP_GRACE)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        let client = NgClient::new(self.ng).map_err(|e| StartError::io("ng socket", e))?;
        loop {
            if let Some(status) = self.process.try_status() {
                return Err(StartError::Exited {
                    peer: "media",
                    status,
                    diagnostics: self.diagnostics(),
                });
            }
            let last = match client.request(command("ping"), Duration::from_millis(100)) {
                Ok(reply) if text(&reply, "result") == Some("pong") => return Ok(()),
                Ok(reply) => format!("{reply:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(StartError::io(
                    "waiting for media",
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no pong to ng ping (last: {last})\n{}", self.diagnostics()),
                    ),
                ));
            }
            // refused (not bound yet) comes back at once: don't spin
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "command: {}\n--- media log:\n{}",
            self.command_line,
            read_tail(&self.log, 8000).trim_end()
        )
    }
}

/// An ng client: one UDP socket on 127.0.0.1, requests `COOKIE SP DICT`
/// with a cookie unique in this process.
#[derive(Debug)]
pub struct NgClient {
    socket: UdpSocket,
}

impl NgClient {
    /// A client of the ng endpoint at `to`.
    pub fn new(to: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(loopback(0))?;
        socket.connect(to)?;
        Ok(Self { socket })
    }

    /// Sends `command` and waits up to `timeout` for the reply with its
    /// cookie; returns the reply's dictionary.
    pub fn request(&self, command: Dict, timeout: Duration) -> io::Result<Dict> {
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let cookie = format!(
            "e2e{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut datagram = format!("{cookie} ").into_bytes();
        command.write_to(&mut datagram);
        self.socket.send(&datagram)?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no ng reply to {cookie}"),
                ));
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = self.socket.recv(&mut buf)?;
            // a late reply to an earlier request: not ours
            if let Some(body) = buf[..n]
                .strip_prefix(cookie.as_bytes())
                .and_then(|rest| rest.strip_prefix(b" "))
            {
                return decode_dict(body);
            }
        }
    }
}

/// A request dictionary with just `command`.
pub fn command(name: &'static str) -> Dict {
    let mut d = Dict::new();
    d.push("command", name);
    d
}

/// The text value of `key`, if it is a UTF-8 string.
pub fn text<'a>(dict: &'a Dict, key: &str) -> Option<&'a str> {
    dict.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
}

/// The integer at `path` in nested dictionaries, e.g.
/// `["totalstatistics", "managedsessions"]`.
pub fn int_at(dict: &Dict, path: &[&str]) -> Option<i64> {
    let (last, parents) = path.split_last()?;
    let mut d = dict;
    for key in parents {
        d = d.get(key.as_bytes())?.as_dict()?;
    }
    d.get(last.as_bytes())?.as_int()
}

fn decode_dict(body: &[u8]) -> io::Result<Dict> {
    match parse(&Bytes::copy_from_slice(body), &Limits::default()) {
        Ok(Value::Dict(d)) => Ok(d),
        Ok(other) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ng reply is a {}", other.kind()),
        )),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

fn bad_reply(what: &str, reply: &Dict) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected {what} reply: {reply:?}"),
    )
}

/// One ng request seen by an [`NgTap`], with the reply that came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NgExchange {
    /// The request datagram, as the client sent it.
    pub request: Vec<u8>,
    /// The reply datagram, if one came (a retransmitted request shares its
    /// cookie with the first, and the reply goes to the latest).
    pub reply: Option<Vec<u8>>,
}

impl NgExchange {
    /// The request's dictionary (after the cookie), if it decodes.
    pub fn request_dict(&self) -> Option<Dict> {
        after_cookie(&self.request).and_then(|b| decode_dict(b).ok())
    }

    /// The reply's dictionary (after the cookie), if there is one and it
    /// decodes.
    pub fn reply_dict(&self) -> Option<Dict> {
        self.reply
            .as_deref()
            .and_then(after_cookie)
            .and_then(|b| decode_dict(b).ok())
    }

    /// The request's cookie (a retransmission has its original's).
    pub fn cookie(&self) -> &[u8] {
        cookie_of(&self.request)
    }

    /// The request's `command`.
    pub fn command(&self) -> Option<String> {
        self.request_dict()
            .and_then(|d| text(&d, "command").map(str::to_owned))
    }
}

impl fmt::Display for NgExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "> {}", self.request.escape_ascii())?;
        match &self.reply {
            Some(reply) => write!(f, "< {}", reply.escape_ascii()),
            None => write!(f, "< (no reply)"),
        }
    }
}

/// A recording UDP relay in front of an ng endpoint: a client (Kamailio)
/// is pointed at [`NgTap::addr`], every datagram is passed on unchanged
/// both ways, and every request is kept with its reply, so a test can
/// check what a real client sent and what it got back. Replies are routed
/// back by cookie. Stops (two threads) when dropped.
#[derive(Debug)]
pub struct NgTap {
    addr: SocketAddr,
    exchanges: Arc<Mutex<Vec<NgExchange>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// How often the tap's threads look at their stop flag.
const TAP_POLL: Duration = Duration::from_millis(20);

/// Most exchanges a tap keeps; later ones are passed on, not recorded.
pub const TAP_MAX_EXCHANGES: usize = 10_000;

impl NgTap {
    /// A tap on a free port of 127.0.0.1 in front of the ng endpoint `to`.
    pub fn new(to: SocketAddr) -> io::Result<Self> {
        let front = UdpSocket::bind(loopback(0))?;
        let back = UdpSocket::bind(loopback(0))?;
        back.connect(to)?;
        front.set_read_timeout(Some(TAP_POLL))?;
        back.set_read_timeout(Some(TAP_POLL))?;
        let addr = front.local_addr()?;
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let clients = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = {
            let (front, back) = (front.try_clone()?, back.try_clone()?);
            let (exchanges, clients, stop) = (exchanges.clone(), clients.clone(), stop.clone());
            thread::Builder::new()
                .name("ng-tap-requests".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, from)) = front.recv_from(&mut buf) else {
                            continue;
                        };
                        let datagram = buf[..n].to_vec();
                        let mut routes = lock(&clients);
                        // bounded: cookies of long-answered requests go
                        if routes.len() >= TAP_MAX_EXCHANGES {
                            routes.clear();
                        }
                        routes.insert(cookie_of(&datagram).to_vec(), from);
                        drop(routes);
                        let mut log = lock(&exchanges);
                        if log.len() < TAP_MAX_EXCHANGES {
                            log.push(NgExchange {
                                request: datagram.clone(),
                                reply: None,
                            });
                        }
                        drop(log);
                        let _ = back.send(&datagram);
                    }
                })?
        };
        let replies = {
            let (exchanges, clients, stop) = (exchanges.clone(), clients, stop.clone());
            thread::Builder::new()
                .name("ng-tap-replies".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(n) = back.recv(&mut buf) else {
                            continue;
                        };
                        let datagram = buf[..n].to_vec();
                        let cookie = cookie_of(&datagram);
                        if let Some(exchange) = lock(&exchanges)
                            .iter_mut()
                            .rev()
                            .find(|e| cookie_of(&e.request) == cookie)
                        {
                            exchange.reply = Some(datagram.clone());
                        }
                        let client = lock(&clients).get(cookie).copied();
                        if let Some(client) = client {
                            let _ = front.send_to(&datagram, client);
                        }
                    }
                })?
        };
        Ok(Self {
            addr,
            exchanges,
            stop,
            threads: vec![requests, replies],
        })
    }

    /// Where the client sends its requests.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order, with its reply.
    pub fn exchanges(&self) -> Vec<NgExchange> {
        lock(&self.exchanges).clone()
    }
}

impl Drop for NgTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A mutex's data, also after a panic elsewhere (the tap only appends).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cookie: the bytes before the first space (the whole datagram if
/// there is none).
fn cookie_of(datagram: &[u8]) -> &[u8] {
    datagram.split(|&b| b == b' ').next().unwrap_or(datagram)
}

/// The bytes after the cookie and its space.
fn after_cookie(datagram: &[u8]) -> Option<&[u8]> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    Some(&datagram[space + 1..])
}
