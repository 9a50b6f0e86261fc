//! The harness of the relay's end-to-end tests: the `media` binary on
//! loopback with free ports, an ng client, SDP and RTP builders.
#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use media::ng::bencode::{parse, Limits};
use media::ng::{Bytes, Dict, Value};
use media::sdp::{Sdp, SdpLimits};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
pub const RANGE: u16 = 20;

/// The relay process; killed when dropped, so a failing test leaves none.
pub struct Relay {
    /// The process.
    pub child: Child,
    /// Its ng address (UDP).
    pub ng: SocketAddr,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback (the race with other tests is accepted).
pub fn free_port() -> Result<u16, std::io::Error> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ranges already handed to a relay of this process, so that tests running
/// in parallel do not pick the same free range before either binds it.
pub static RANGES_TAKEN: AtomicU16 = AtomicU16::new(0);

/// The first base of `RANGE` ports, all free, from a per-process start.
pub fn free_range() -> Result<u16, String> {
    let start = 30_000 + (std::process::id() % 500) as u16 * RANGE;
    let first = RANGES_TAKEN.fetch_add(1, Ordering::Relaxed);
    for attempt in first..first + 200 {
        let base = 30_000 + (start - 30_000 + attempt * RANGE) % 20_000;
        let held: Result<Vec<UdpSocket>, _> = (base..base + RANGE)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if held.is_ok() {
            return Ok(base);
        }
    }
    Err("no free port range".into())
}

pub fn start_relay() -> Result<Relay, Box<dyn std::error::Error>> {
    start_relay_with_timeout(60)
}

/// A relay that deletes calls after `timeout_s` seconds without media.
pub fn start_relay_with_timeout(timeout_s: u64) -> Result<Relay, Box<dyn std::error::Error>> {
    start_relay_with(timeout_s, &[])
}

/// A relay on a free range of [`RANGE`] ports and a free ng port, with
/// `extra` options after the usual ones.
pub fn start_relay_with(
    timeout_s: u64,
    extra: &[String],
) -> Result<Relay, Box<dyn std::error::Error>> {
    let base = free_range()?;
    let ng: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(env!("CARGO_BIN_EXE_media"))
        .args(["--interface", "127.0.0.1", "--listen-ng"])
        .arg(ng.to_string())
        .arg("--port-min")
        .arg(base.to_string())
        .arg("--port-max")
        .arg((base + RANGE - 1).to_string())
        .arg("--timeout")
        .arg(timeout_s.to_string())
        .args(["--delete-delay", "0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Relay { child, ng })
}

/// A free TCP port on loopback (the race with other tests is accepted).
pub fn free_tcp_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The body of `GET path` from `addr` (HTTP/1.0, read to the end).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("no end of the HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {head}").into());
    }
    Ok(body.to_string())
}

/// A command of call `call_id` from side `from_tag` (with `to_tag`, and
/// an SDP, if given).
pub fn command_for(
    name: &'static str,
    call_id: &str,
    from_tag: &str,
    to_tag: Option<&str>,
    sdp_body: Option<String>,
) -> Dict {
    let mut d = Dict::new();
    if let Some(body) = sdp_body {
        d.push("sdp", body);
    }
    d.push("call-id", call_id.to_string());
    d.push("from-tag", from_tag.to_string());
    if let Some(tag) = to_tag {
        d.push("to-tag", tag.to_string());
    }
    d.push("command", name);
    d
}

/// An ng client socket.
pub struct Ng {
    /// The client socket.
    pub socket: UdpSocket,
    /// The relay's ng address.
    pub to: SocketAddr,
}

impl Ng {
    pub fn new(to: SocketAddr) -> Result<Self, std::io::Error> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Ng { socket, to })
    }

    /// Sends `datagram` and returns the reply's bytes.
    pub fn exchange(&self, datagram: &[u8]) -> Result<Vec<u8>, std::io::Error> {
        self.socket.send_to(datagram, self.to)?;
        let mut buf = vec![0u8; 65_536];
        let (n, _) = self.socket.recv_from(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Pings until the relay answers (it may still be starting).
    pub fn wait_ready(&self) -> TestResult {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let cookie = format!("ready{n}");
            if let Ok(reply) = self.exchange(&request(&cookie, ping())) {
                if reply.starts_with(cookie.as_bytes()) {
                    self.socket.set_read_timeout(Some(READ_TIMEOUT))?;
                    return Ok(());
                }
            }
        }
        Err("the relay did not answer ping".into())
    }
}

pub fn request(cookie: &str, dict: Dict) -> Vec<u8> {
    let mut out = format!("{cookie} ").into_bytes();
    dict.write_to(&mut out);
    out
}

pub fn ping() -> Dict {
    let mut d = Dict::new();
    d.push("command", "ping");
    d
}

/// The reply's dictionary, after checking its cookie.
pub fn reply_dict(cookie: &str, reply: &[u8]) -> Result<Dict, Box<dyn std::error::Error>> {
    let prefix = format!("{cookie} ");
    let body = reply
        .strip_prefix(prefix.as_bytes())
        .ok_or("reply cookie does not match")?;
    match parse(&Bytes::copy_from_slice(body), &Limits::default())? {
        Value::Dict(d) => Ok(d),
        other => Err(format!("reply is a {}", other.kind()).into()),
    }
}

pub fn text(d: &Dict, key: &str) -> String {
    d.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

pub fn command(name: &'static str, sdp_body: Option<String>, to_tag: bool) -> Dict {
    let to_tag = to_tag.then_some("a6c85cf");
    command_for(name, "a84b4c76e66710@pc33", "1928301774", to_tag, sdp_body)
}

/// The relay port a rewritten SDP advertises, after checking its address.
pub fn relay_port(sdp_body: &str) -> Result<u16, Box<dyn std::error::Error>> {
    let sdp = Sdp::parse(sdp_body.to_string(), &SdpLimits::default())?;
    let audio = sdp.media().next().ok_or("no m= line")?;
    let endpoint = audio.remote_endpoint().ok_or("no address for m=audio")?;
    if endpoint.ip != Some(IpAddr::from([127, 0, 0, 1])) {
        return Err(format!("not 127.0.0.1: {sdp_body:?}").into());
    }
    Ok(endpoint.rtp_port)
}

pub fn rtp(seq: u16, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// `from` sends packets to relay port `to_port`; `peer` must receive them
/// unchanged, from relay port `from_port`.
pub fn relay_packets(
    from: &UdpSocket,
    to_port: u16,
    peer: &UdpSocket,
    from_port: u16,
) -> TestResult {
    let mut buf = [0u8; 2048];
    for seq in 0..5u16 {
        let packet = rtp(seq, seq as u8 + 1);
        from.send_to(&packet, ("127.0.0.1", to_port))?;
        let (n, src) = peer.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], &packet[..], "packet {seq}");
        assert_eq!(src.port(), from_port, "packet {seq} source");
    }
    Ok(())
}

/// Offer from A (SDP endpoint `a_port`, `flags` added) and answer from B:
/// (the relay port B sends to, the relay port A sends to).
pub fn establish(
    ng: &Ng,
    a_port: u16,
    b_port: u16,
    flags: &[&'static str],
) -> Result<(u16, u16), Box<dyn std::error::Error>> {
    let mut offer = command("offer", Some(sdp(a_port)), false);
    if !flags.is_empty() {
        offer.push(
            "flags",
            flags.iter().map(|&f| Value::from(f)).collect::<Vec<_>>(),
        );
    }
    let d = reply_dict("o1", &ng.exchange(&request("o1", offer))?)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    let port_b = relay_port(&text(&d, "sdp"))?;
    let answer = command("answer", Some(sdp(b_port)), true);
    let d = reply_dict("a1", &ng.exchange(&request("a1", answer))?)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    Ok((port_b, relay_port(&text(&d, "sdp"))?))
}

pub fn bound() -> Result<UdpSocket, std::io::Error> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(socket)
}

/// `from` sends one packet to relay port `to_port`; `to` receives it.
pub fn one_packet(from: &UdpSocket, to_port: u16, to: &UdpSocket, seq: u16) -> TestResult {
    let packet = rtp(seq, 0x42);
    from.send_to(&packet, ("127.0.0.1", to_port))?;
    let mut buf = [0u8; 2048];
    let (n, _) = to.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], &packet[..], "packet {seq}");
    Ok(())
}

/// The first stream of side `tag` in a `query` reply.
pub fn queried_stream(
    ng: &Ng,
    cookie: &str,
    tag: &str,
) -> Result<Dict, Box<dyn std::error::Error>> {
    let d = reply_dict(
        cookie,
        &ng.exchange(&request(cookie, command("query", None, false)))?,
    )?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    d.get(b"tags")
        .and_then(Value::as_dict)
        .and_then(|t| t.get(tag.as_bytes()))
        .and_then(Value::as_dict)
        .and_then(|side| side.get(b"medias"))
        .and_then(Value::as_list)
        .and_then(|m| m.first())
        .and_then(Value::as_dict)
        .and_then(|m| m.get(b"streams"))
        .and_then(Value::as_list)
        .and_then(|l| l.first())
        .and_then(Value::as_dict)
        .cloned()
        .ok_or_else(|| format!("no stream of {tag} in {d:?}").into())
}

pub fn endpoint_port(stream: &Dict, key: &str) -> Option<i64> {
    stream
        .get(key.as_bytes())
        .and_then(Value::as_dict)
        .and_then(|e| e.get(b"port"))
        .and_then(Value::as_int)
}
