//! End to end: the `media` binary's runtime options — several cores, ng
//! over TCP, metrics over HTTP and the TOML config file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use media::ng::bencode::{value_len, Limits};
use media::ng::{Bytes, Dict, Value};
use media::runtime::dispatch::shard_of;

/// `n` call-ids owned by shard `shard` of `shards`.
fn call_ids_on(shard: usize, shards: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("call-{i}@pbx.test"))
        .filter(|id| shard_of(id.as_bytes(), shards) == shard)
        .take(n)
        .collect()
}

/// Offer from `a` and answer from `b` on call `id`: (the relay port B
/// sends to, the relay port A sends to).
fn establish_call(
    ng: &Ng,
    id: &str,
    a: &UdpSocket,
    b: &UdpSocket,
) -> Result<(u16, u16), Box<dyn std::error::Error>> {
    let offer = command_for(
        "offer",
        id,
        "tag-a",
        None,
        Some(sdp(a.local_addr()?.port())),
    );
    let cookie = format!("o-{id}");
    let d = reply_dict(&cookie, &ng.exchange(&request(&cookie, offer))?)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    let port_b = relay_port(&text(&d, "sdp"))?;
    let answer = command_for(
        "answer",
        id,
        "tag-a",
        Some("tag-b"),
        Some(sdp(b.local_addr()?.port())),
    );
    let cookie = format!("a-{id}");
    let d = reply_dict(&cookie, &ng.exchange(&request(&cookie, answer))?)?;
    assert_eq!(text(&d, "result"), "ok", "{d:?}");
    Ok((port_b, relay_port(&text(&d, "sdp"))?))
}

fn current_statistics(ng: &Ng, cookie: &str) -> Result<Dict, Box<dyn std::error::Error>> {
    let mut ask = Dict::new();
    ask.push("command", "statistics");
    let d = reply_dict(cookie, &ng.exchange(&request(cookie, ask))?)?;
    d.get(b"statistics")
        .and_then(Value::as_dict)
        .and_then(|s| s.get(b"currentstatistics"))
        .and_then(Value::as_dict)
        .cloned()
        .ok_or_else(|| format!("no currentstatistics in {d:?}").into())
}

/// The value of `name{shard="N"}` in a metrics text, by shard.
fn metric_by_shard(text: &str, name: &str) -> Vec<(usize, f64)> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix("{shard=\""))
        .filter_map(|rest| {
            let (shard, value) = rest.split_once("\"} ")?;
            Some((shard.parse().ok()?, value.parse().ok()?))
        })
        .collect()
}

#[test]
fn two_cores_own_their_calls_and_relay_each() -> TestResult {
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()?).parse()?;
    let relay = start_relay_with(
        60,
        &[
            "--cores".into(),
            "2".into(),
            "--listen-http".into(),
            http.to_string(),
        ],
    )?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;

    // Two calls on each shard: 2 x 2 pairs of the shard's 5.
    let ids: Vec<String> = [call_ids_on(0, 2, 2), call_ids_on(1, 2, 2)].concat();
    for id in &ids {
        let (a, b) = (bound()?, bound()?);
        let (port_b, port_a) = establish_call(&ng, id, &a, &b)?;
        relay_packets(&a, port_a, &b, port_b)?;
        relay_packets(&b, port_b, &a, port_a)?;
    }
    let current = current_statistics(&ng, "s1")?;
    assert_eq!(
        current.get(b"sessionsown").and_then(Value::as_int),
        Some(4),
        "{current:?}"
    );

    let mut list = Dict::new();
    list.push("command", "list");
    let d = reply_dict("l1", &ng.exchange(&request("l1", list))?)?;
    let listed: Vec<String> = d
        .get(b"calls")
        .and_then(Value::as_list)
        .map(|calls| {
            calls
                .iter()
                .filter_map(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
        .unwrap_or_default();
    for id in &ids {
        assert!(listed.contains(id), "{id} not listed in {listed:?}");
    }

    // Each shard reports its own two calls and the 20 packets relayed for
    // them, within a few report intervals.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get(http, "/metrics")?;
        let calls = metric_by_shard(&text, "media_calls");
        let relayed = metric_by_shard(&text, "media_packets_relayed_total");
        if calls == [(0, 2.0), (1, 2.0)] && relayed == [(0, 20.0), (1, 20.0)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed 2 calls and 20 packets per shard: {calls:?} {relayed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    for id in &ids {
        let cookie = format!("d-{id}");
        let delete = command_for("delete", id, "tag-a", None, None);
        let d = reply_dict(&cookie, &ng.exchange(&request(&cookie, delete))?)?;
        assert_eq!(text(&d, "result"), "ok", "{d:?}");
        assert!(d.get(b"warning").is_none(), "{id} was not found: {d:?}");
    }
    let current = current_statistics(&ng, "s2")?;
    assert_eq!(
        current.get(b"sessionsown").and_then(Value::as_int),
        Some(0),
        "{current:?}"
    );
    Ok(())
}

/// Reads one reply frame (cookie, space, bencode dictionary) off `stream`.
fn read_frame(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Result<(String, Dict), Box<dyn std::error::Error>> {
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(space) = pending.iter().position(|&b| b == b' ') {
            let body = Bytes::copy_from_slice(&pending[space + 1..]);
            if let Some(len) = value_len(&body, &Limits::default())? {
                let cookie = String::from_utf8_lossy(&pending[..space]).into_owned();
                let frame: Vec<u8> = pending.drain(..space + 1 + len).collect();
                return Ok((cookie.clone(), reply_dict(&cookie, &frame)?));
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("connection closed".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn ng_over_tcp_is_framed_by_the_dictionary() -> TestResult {
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()?).parse()?;
    let relay = start_relay_with(60, &["--listen-tcp-ng".into(), tcp.to_string()])?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    let mut stream = TcpStream::connect_timeout(&tcp, READ_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;

    // Two messages in one write, then one split across two writes.
    let a = bound()?;
    let offer = request(
        "t2",
        command("offer", Some(sdp(a.local_addr()?.port())), false),
    );
    let mut first = request("t1", ping());
    first.extend_from_slice(&offer);
    stream.write_all(&first)?;
    let query = request("t3", command("query", None, false));
    let (head, tail) = query.split_at(query.len() / 2);
    stream.write_all(head)?;
    stream.flush()?;
    let mut pending = Vec::new();
    let (cookie, d) = read_frame(&mut stream, &mut pending)?;
    assert_eq!(
        (cookie.as_str(), text(&d, "result").as_str()),
        ("t1", "pong")
    );
    let (cookie, d) = read_frame(&mut stream, &mut pending)?;
    assert_eq!(
        (cookie.as_str(), text(&d, "result").as_str()),
        ("t2", "ok"),
        "{d:?}"
    );
    let offered_sdp = text(&d, "sdp");
    stream.write_all(tail)?;
    let (cookie, d) = read_frame(&mut stream, &mut pending)?;
    assert_eq!(
        (cookie.as_str(), text(&d, "result").as_str()),
        ("t3", "ok"),
        "{d:?}"
    );

    // One reply cache for both transports: the offer retransmitted over
    // UDP gets the reply TCP got, and allocates nothing more.
    let again = reply_dict("t2", &ng.exchange(&offer)?)?;
    assert_eq!(text(&again, "sdp"), offered_sdp);
    let current = current_statistics(&ng, "s1")?;
    assert_eq!(
        current.get(b"ports in use").and_then(Value::as_int),
        Some(1),
        "{current:?}"
    );

    // A stream that cannot be framed is closed; the relay keeps serving.
    let mut bad = TcpStream::connect_timeout(&tcp, READ_TIMEOUT)?;
    bad.set_read_timeout(Some(READ_TIMEOUT))?;
    bad.write_all(b"x1 not-bencode")?;
    let mut rest = Vec::new();
    assert_eq!(bad.read_to_end(&mut rest)?, 0, "{rest:?}");
    stream.write_all(&request("t4", ping()))?;
    let (cookie, d) = read_frame(&mut stream, &mut pending)?;
    assert_eq!(
        (cookie.as_str(), text(&d, "result").as_str()),
        ("t4", "pong")
    );
    Ok(())
}

/// A file in the temp dir, unique to this process and `name`.
fn temp_file(name: &str, contents: &str) -> Result<std::path::PathBuf, std::io::Error> {
    let path = std::env::temp_dir().join(format!("media-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents)?;
    Ok(path)
}

#[test]
fn the_config_file_sets_what_the_command_line_does_not() -> TestResult {
    let ng_port = free_port()?;
    let base = free_range()?;
    let file = temp_file(
        "media.toml",
        &format!(
            "interface = \"127.0.0.1\"\nlisten-ng = \"127.0.0.1:{ng_port}\"\n\
             port-min = {}\nport-max = {}\ntimeout = 60\n",
            base + 2,
            base + RANGE - 1
        ),
    )?;
    // The command line's --port-min wins over the file's.
    let child = Command::new(env!("CARGO_BIN_EXE_media"))
        .arg("--config")
        .arg(&file)
        .args(["--port-min", &base.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()?;
    let relay = Relay {
        child,
        ng: format!("127.0.0.1:{ng_port}").parse()?,
    };
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    let current = current_statistics(&ng, "s1")?;
    let pairs = i64::from(RANGE / 2);
    assert_eq!(
        current.get(b"ports free").and_then(Value::as_int),
        Some(pairs),
        "{current:?}"
    );
    drop(relay);
    std::fs::remove_file(&file)?;
    Ok(())
}

#[test]
fn a_bad_config_file_is_refused_with_its_line() -> TestResult {
    let file = temp_file("bad.toml", "interface = \"127.0.0.1\"\nport-mni = 30000\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_media"))
        .arg("--config")
        .arg(&file)
        .stdin(Stdio::null())
        .output()?;
    std::fs::remove_file(&file)?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("port-mni") && stderr.contains("line 2"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_recvmmsg_driver_relays_like_the_ring() -> TestResult {
    let relay = start_relay_with(
        60,
        &["--io".into(), "mmsg".into(), "--cores".into(), "2".into()],
    )?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    for id in [call_ids_on(0, 2, 1), call_ids_on(1, 2, 1)].concat() {
        let (a, b) = (bound()?, bound()?);
        let (port_b, port_a) = establish_call(&ng, &id, &a, &b)?;
        relay_packets(&a, port_a, &b, port_b)?;
        relay_packets(&b, port_b, &a, port_a)?;
    }
    Ok(())
}
