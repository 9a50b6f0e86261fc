//! End to end: the `media` binary on loopback, driven over ng like
//! Kamailio does, relaying RTP between two local sockets.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use media::ng::bencode::{parse, Limits};
use media::ng::{Bytes, Dict, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const READ_TIMEOUT: Duration = Duration::from_secs(2);
const RANGE: u16 = 20;

/// The relay process; killed when dropped, so a failing test leaves none.
struct Relay {
    child: Child,
    ng: SocketAddr,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback (the race with other tests is accepted).
fn free_port() -> Result<u16, std::io::Error> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ranges already handed to a relay of this process, so that tests running
/// in parallel do not pick the same free range before either binds it.
static RANGES_TAKEN: AtomicU16 = AtomicU16::new(0);

/// The first base of `RANGE` ports, all free, from a per-process start.
fn free_range() -> Result<u16, String> {
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

fn start_relay() -> Result<Relay, Box<dyn std::error::Error>> {
    let base = free_range()?;
    let ng: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(env!("CARGO_BIN_EXE_media"))
        .args(["--interface", "127.0.0.1", "--listen-ng"])
        .arg(ng.to_string())
        .arg("--port-min")
        .arg(base.to_string())
        .arg("--port-max")
        .arg((base + RANGE - 1).to_string())
        .args(["--timeout", "60", "--delete-delay", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Relay { child, ng })
}

/// An ng client socket.
struct Ng {
    socket: UdpSocket,
    to: SocketAddr,
}

impl Ng {
    fn new(to: SocketAddr) -> Result<Self, std::io::Error> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Ng { socket, to })
    }

    /// Sends `datagram` and returns the reply's bytes.
    fn exchange(&self, datagram: &[u8]) -> Result<Vec<u8>, std::io::Error> {
        self.socket.send_to(datagram, self.to)?;
        let mut buf = vec![0u8; 65_536];
        let (n, _) = self.socket.recv_from(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Pings until the relay answers (it may still be starting).
    fn wait_ready(&self) -> TestResult {
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

fn request(cookie: &str, dict: Dict) -> Vec<u8> {
    let mut out = format!("{cookie} ").into_bytes();
    dict.write_to(&mut out);
    out
}

fn ping() -> Dict {
    let mut d = Dict::new();
    d.push("command", "ping");
    d
}

/// The reply's dictionary, after checking its cookie.
fn reply_dict(cookie: &str, reply: &[u8]) -> Result<Dict, Box<dyn std::error::Error>> {
    let prefix = format!("{cookie} ");
    let body = reply
        .strip_prefix(prefix.as_bytes())
        .ok_or("reply cookie does not match")?;
    match parse(&Bytes::copy_from_slice(body), &Limits::default())? {
        Value::Dict(d) => Ok(d),
        other => Err(format!("reply is a {}", other.kind()).into()),
    }
}

fn text(d: &Dict, key: &str) -> String {
    d.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

fn command(name: &'static str, sdp_body: Option<String>, to_tag: bool) -> Dict {
    let mut d = Dict::new();
    if let Some(body) = sdp_body {
        d.push("sdp", body);
    }
    d.push("call-id", "a84b4c76e66710@pc33");
    d.push("from-tag", "1928301774");
    if to_tag {
        d.push("to-tag", "a6c85cf");
    }
    d.push("command", name);
    d
}

/// The relay port a rewritten SDP advertises, after checking its address.
fn relay_port(sdp_body: &str) -> Result<u16, Box<dyn std::error::Error>> {
    if !sdp_body.contains("c=IN IP4 127.0.0.1\r\n") {
        return Err(format!("no c=127.0.0.1 in {sdp_body:?}").into());
    }
    let m = sdp_body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .ok_or("no m=audio line")?;
    Ok(m.split(' ').next().ok_or("no port")?.parse()?)
}

fn rtp(seq: u16, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// `from` sends packets to relay port `to_port`; `peer` must receive them
/// unchanged, from relay port `from_port`.
fn relay_packets(from: &UdpSocket, to_port: u16, peer: &UdpSocket, from_port: u16) -> TestResult {
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

#[test]
fn relays_rtp_between_offer_and_answer_sides() -> TestResult {
    let relay = start_relay()?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;

    let pong = reply_dict("p1", &ng.exchange(&request("p1", ping()))?)?;
    assert_eq!(text(&pong, "result"), "pong");

    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    a.set_read_timeout(Some(READ_TIMEOUT))?;
    b.set_read_timeout(Some(READ_TIMEOUT))?;

    let offer = request(
        "o1",
        command("offer", Some(sdp(a.local_addr()?.port())), false),
    );
    let offer_reply = ng.exchange(&offer)?;
    let d = reply_dict("o1", &offer_reply)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    let port_b = relay_port(&text(&d, "sdp"))?;

    // Kamailio's retransmission: the cached reply, byte for byte.
    assert_eq!(ng.exchange(&offer)?, offer_reply);

    let answer = request(
        "a1",
        command("answer", Some(sdp(b.local_addr()?.port())), true),
    );
    let d = reply_dict("a1", &ng.exchange(&answer)?)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    let port_a = relay_port(&text(&d, "sdp"))?;
    assert_ne!(port_a, port_b);

    // The answer's SDP goes to A, so A sends to port_a and B hears it from
    // port_b; the other way round for B.
    relay_packets(&a, port_a, &b, port_b)?;
    relay_packets(&b, port_b, &a, port_a)?;

    let d = reply_dict(
        "d1",
        &ng.exchange(&request("d1", command("delete", None, true)))?,
    )?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    // Every relayed packet was counted, its header read by the relay.
    let rtp_totals = d
        .get(b"totals")
        .and_then(Value::as_dict)
        .and_then(|t| t.get(b"RTP"))
        .and_then(Value::as_dict)
        .ok_or("no totals.RTP in the delete reply")?;
    let count = |key: &str| rtp_totals.get(key.as_bytes()).and_then(Value::as_int);
    assert_eq!(count("packets"), Some(10), "{rtp_totals:?}");
    assert_eq!(count("bytes"), Some(10 * 172), "{rtp_totals:?}");
    assert_eq!(count("errors"), Some(0), "{rtp_totals:?}");

    // After the delete nothing is relayed: B's read times out.
    a.send_to(&rtp(99, 0xee), ("127.0.0.1", port_a))?;
    b.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = [0u8; 2048];
    assert!(b.recv_from(&mut buf).is_err(), "relayed after delete");
    Ok(())
}

#[test]
fn sigterm_stops_the_relay_cleanly() -> TestResult {
    let mut relay = start_relay()?;
    Ng::new(relay.ng)?.wait_ready()?;
    let status = Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = relay.child.try_wait()? {
            assert!(status.success(), "{status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the relay did not stop on SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn invalid_options_exit_non_zero() -> TestResult {
    for args in [
        &[
            "--interface",
            "127.0.0.1",
            "--port-min",
            "40000",
            "--port-max",
            "30000",
        ][..],
        &["--interface", "127.0.0.1", "--cores", "0"][..],
        &["--interface", "0.0.0.0"][..],
        &["--listen-ng", "127.0.0.1:2223"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_media"))
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no error message");
    }
    Ok(())
}
