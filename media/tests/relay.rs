//! End to end: the `media` binary on loopback, driven over ng like
//! Kamailio does, relaying RTP between two local sockets.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use media::ng::Value;

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

#[test]
fn latching_to_a_nated_source_port() -> TestResult {
    let relay = start_relay()?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    // A's SDP names `advertised`, but A really sends (and receives) from
    // `a`, as behind a NAT.
    let advertised = bound()?;
    let a = bound()?;
    let b = bound()?;
    let (port_b, port_a) = establish(
        &ng,
        advertised.local_addr()?.port(),
        b.local_addr()?.port(),
        &[],
    )?;

    // Before A's first packet B's media goes where A's SDP says.
    one_packet(&b, port_b, &advertised, 1)?;
    // A's first packet reaches B and tells the relay where A is.
    one_packet(&a, port_a, &b, 2)?;
    // From then on B's media comes back to A's real socket.
    for seq in 3..6 {
        one_packet(&b, port_b, &a, seq)?;
    }
    let stream = queried_stream(&ng, "q1", "1928301774")?;
    assert_eq!(
        endpoint_port(&stream, "endpoint"),
        Some(i64::from(a.local_addr()?.port()))
    );
    assert_eq!(
        endpoint_port(&stream, "advertised endpoint"),
        Some(i64::from(advertised.local_addr()?.port()))
    );
    // Nothing more went to the advertised address: the next thing it
    // hears is a marker sent straight to it.
    a.send_to(b"marker", advertised.local_addr()?)?;
    let mut buf = [0u8; 2048];
    let (n, _) = advertised.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"marker");
    Ok(())
}

#[test]
fn strict_source_drops_media_from_other_sources() -> TestResult {
    let relay = start_relay()?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    let advertised = bound()?;
    let a = bound()?;
    let b = bound()?;
    let intruder = bound()?;
    let (port_b, port_a) = establish(
        &ng,
        advertised.local_addr()?.port(),
        b.local_addr()?.port(),
        &["strict-source"],
    )?;
    one_packet(&a, port_a, &b, 1)?;
    one_packet(&b, port_b, &a, 2)?;
    // The intruder's packet is dropped: the next packet B receives is A's,
    // sent after it.
    intruder.send_to(&rtp(3, 0x66), ("127.0.0.1", port_a))?;
    one_packet(&a, port_a, &b, 4)?;
    // Dropped packets are not counted either: A's stream saw two.
    let stream = queried_stream(&ng, "q1", "1928301774")?;
    let packets = stream
        .get(b"stats")
        .and_then(Value::as_dict)
        .and_then(|s| s.get(b"packets"))
        .and_then(Value::as_int);
    assert_eq!(packets, Some(2), "{stream:?}");
    assert_eq!(
        endpoint_port(&stream, "endpoint"),
        Some(i64::from(a.local_addr()?.port()))
    );
    Ok(())
}

#[test]
fn timeout_deletes_an_idle_call() -> TestResult {
    let relay = start_relay_with_timeout(1)?;
    let ng = Ng::new(relay.ng)?;
    ng.wait_ready()?;
    let a = bound()?;
    let b = bound()?;
    let signalled = Instant::now();
    establish(&ng, a.local_addr()?.port(), b.local_addr()?.port(), &[])?;
    let d = reply_dict(
        "q0",
        &ng.exchange(&request("q0", command("query", None, false)))?,
    )?;
    assert_eq!(
        text(&d, "result"),
        "ok",
        "present right after the answer: {d:?}"
    );
    // No media: the call goes after one second; poll until it has.
    let deadline = signalled + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let cookie = format!("q{n}");
        let d = reply_dict(
            &cookie,
            &ng.exchange(&request(&cookie, command("query", None, false)))?,
        )?;
        if text(&d, "result") == "error" {
            assert_eq!(text(&d, "error-reason"), "Unknown call-id", "{d:?}");
            assert!(
                signalled.elapsed() >= Duration::from_secs(1),
                "deleted early"
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the idle call was not deleted".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
