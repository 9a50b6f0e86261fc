//! The edge proxy end to end: real SIPp peers on both sides of a real `edge`
//! process, on loopback and free ports.
//!
//! Scenarios (tests/scenarios/): the volume and loss runs use
//! `uac_basic_rr` / `uas_basic_rr`, which follow the route set like a real
//! UA (the UAS copies Record-Route, the UAC sends ACK and BYE to the UAS's
//! Contact with `Route: <edge;lr>`), rather than SIPp's built-in `uac`,
//! whose ACK and BYE go to the proxy's own address without a Route and so
//! only work through a proxy that sends such requests to its one next hop.
//!
//! The tests run one at a time (a lock): they load two shared cores, and a
//! rate test must not compete with another. Every peer stops by itself
//! (SIPp -timeout, edge's lifetime bound) and is killed on drop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use edge_e2e::edge::{Edge, EdgeExit, EdgeProcess};
use edge_e2e::ports::loopback;
use edge_e2e::process::poll_until;
use edge_e2e::sipp::{require_sipp, Scenario, Sipp, SippRun};

/// Shutdown grace of the edges in these tests: live transactions get this
/// long after SIGTERM (and completed ones linger until it ends).
const GRACE: Duration = Duration::from_secs(2);
/// Bound on the exit after SIGTERM: the grace, a tick, and scheduling slack.
const EXIT_BOUND: Duration = Duration::from_secs(6);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time; a panicked test does not block the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

struct Budget {
    started: Instant,
    limit: Duration,
}

fn setup(limit: Duration) -> (MutexGuard<'static, ()>, Budget) {
    require_sipp();
    let guard = serial();
    (
        guard,
        Budget {
            started: Instant::now(),
            limit,
        },
    )
}

impl Budget {
    fn check(&self) {
        let took = self.started.elapsed();
        assert!(
            took < self.limit,
            "test took {took:.1?} (budget {:?})",
            self.limit
        );
    }
}

fn edge_to(next_hop: SocketAddr) -> Edge {
    Edge::proxy_to(next_hop).shutdown_grace(GRACE)
}

/// Stops the edge and checks it exited 0 in time without an ERROR line.
fn stop_clean(edge: EdgeProcess) -> EdgeExit {
    let exit = edge.stop(EXIT_BOUND);
    assert!(exit.success(), "{exit}");
    assert!(
        exit.error_lines().is_empty(),
        "ERROR lines:\n{}\n{exit}",
        exit.error_lines().join("\n")
    );
    exit
}

fn basic_uas(calls: u64, timeout: Duration) -> Sipp {
    Sipp::uas(Scenario::named("uas_basic_rr"))
        .calls(calls)
        .timeout(timeout)
}

fn basic_uac(edge: &EdgeProcess, calls: u64, timeout: Duration) -> Sipp {
    Sipp::uac(Scenario::named("uac_basic_rr"), edge.addr())
        .calls(calls)
        .timeout(timeout)
}

/// The UAC and UAS of a basic call saw every message of every call.
fn assert_basic_calls(uac: &SippRun, uas: &SippRun, calls: u64) {
    uac.assert_calls_succeeded(calls);
    uas.assert_calls_succeeded(calls);
    assert_eq!(uac.sent("ACK"), calls, "{uac}");
    assert_eq!(uac.sent("BYE"), calls, "{uac}");
    assert_eq!(uas.received("INVITE"), calls, "{uas}");
    assert_eq!(uas.received("BYE"), calls, "{uas}");
}

#[test]
fn ten_thousand_calls_at_500_cps() {
    let (_serial, budget) = setup(Duration::from_secs(50));
    let calls = 10_000;
    let timeout = Duration::from_secs(45);
    let uas = basic_uas(calls, timeout).spawn().unwrap();
    let edge = edge_to(uas.local_addr()).spawn().unwrap();
    let uac = basic_uac(&edge, calls, timeout)
        .rate(500.0)
        .limit(500)
        .hold(Duration::from_millis(100))
        .run()
        .unwrap();
    let uas = uas.wait().unwrap();
    assert_basic_calls(&uac, &uas, calls);
    // no loss on loopback: every ACK arrived (a late one again, when the 200
    // was retransmitted), every INVITE got the edge's 100
    assert!(uas.received("ACK") >= calls, "{uas}");
    assert_eq!(uac.received("100"), calls, "{uac}");
    assert_eq!(uac.unexpected() + uas.unexpected(), 0, "{uac}\n{uas}");
    stop_clean(edge);
    // retransmissions mean a message took over 500 ms (T1) somewhere: an
    // overloaded host or proxy; reported, not failed
    eprintln!(
        "10k calls in {:.1?}: retransmissions UAC {} UAS {}",
        uac.elapsed, uac.stats.retransmissions, uas.stats.retransmissions
    );
    budget.check();
}

#[test]
/// Loss on the UAC's side: its lost INVITEs and BYEs are retransmitted through
/// edge, and its lost responses make it retransmit requests that edge's server
/// transactions absorb and answer again. (SIPp's `-lost` on a UAS that drops a
/// call's first INVITE aborts that call when the retransmission arrives, so a
/// UAS with loss fails calls by itself; Timer A is covered by the unit tests.)
fn every_call_completes_with_5_percent_loss() {
    let (_serial, budget) = setup(Duration::from_secs(45));
    let calls = 300;
    let timeout = Duration::from_secs(40);
    let uas = basic_uas(calls, timeout).trace_msg(true).spawn().unwrap();
    let edge = edge_to(uas.local_addr()).spawn().unwrap();
    let uac = basic_uac(&edge, calls, timeout)
        .rate(100.0)
        .lost_percent(5.0)
        .trace_msg(true)
        .run()
        .unwrap();
    let uas = uas.wait().unwrap();
    assert_basic_calls(&uac, &uas, calls);
    // the loss happened, and was repaired by retransmissions
    let lost: u64 = uac
        .messages
        .iter()
        .chain(&uas.messages)
        .map(|m| m.lost)
        .sum();
    assert!(lost > 0, "no message lost\n{uac}\n{uas}");
    assert!(
        uac.stats.retransmissions + uas.stats.retransmissions > 0,
        "{uac}\n{uas}"
    );
    stop_clean(edge);
    budget.check();
}

#[test]
fn cancel_ends_every_call_in_487() {
    let (_serial, budget) = setup(Duration::from_secs(25));
    let calls = 100;
    let timeout = Duration::from_secs(20);
    let uas = Sipp::uas(Scenario::named("uas_ring_no_answer"))
        .calls(calls)
        .timeout(timeout)
        .trace_msg(true)
        .spawn()
        .unwrap();
    let edge = edge_to(uas.local_addr()).spawn().unwrap();
    let uac = Sipp::uac(Scenario::named("uac_cancel"), edge.addr())
        .rate(50.0)
        .calls(calls)
        .timeout(timeout)
        .trace_msg(true)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(calls);
    assert_eq!(uac.sent("CANCEL"), calls, "{uac}");
    assert_eq!(uac.received("180"), calls, "{uac}");
    assert_eq!(uac.received("200"), calls, "200 to each CANCEL\n{uac}");
    assert_eq!(uac.received("487"), calls, "{uac}");
    assert_eq!(uac.unexpected(), 0, "{uac}");

    // the edge relayed each CANCEL and sent its own hop-by-hop ACK for the 487
    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(calls);
    assert_eq!(uas.received("CANCEL"), calls, "{uas}");
    assert_eq!(uas.sent("487"), calls, "{uas}");
    assert_eq!(uas.received("ACK"), calls, "{uas}");
    assert_eq!(uas.unexpected(), 0, "{uas}");
    stop_clean(edge);
    budget.check();
}

#[test]
fn bye_follows_record_route() {
    let (_serial, budget) = setup(Duration::from_secs(25));
    let calls = 100;
    let timeout = Duration::from_secs(20);
    let uas = Sipp::uas(Scenario::named("uas_bye_rr"))
        .calls(calls)
        .timeout(timeout)
        .trace_msg(true)
        .spawn()
        .unwrap();
    let edge = edge_to(uas.local_addr()).spawn().unwrap();
    let uac = Sipp::uac(Scenario::named("uac_bye_rr"), edge.addr())
        .rate(50.0)
        .calls(calls)
        .timeout(timeout)
        .trace_msg(true)
        .run()
        .unwrap();
    uac.assert_calls_succeeded(calls);
    // the BYE targets the UAS's Contact and routes via the edge's Record-Route
    let log = uac.message_log();
    let route = format!("Route: <sip:{};lr>", edge.addr());
    let byes: Vec<&str> = log
        .split("UDP message sent")
        .filter(|m| m.contains("\nBYE sip:uas-rr@"))
        .collect();
    assert_eq!(byes.len() as u64, calls, "BYEs to the UAS's Contact\n{uac}");
    for bye in &byes {
        assert!(bye.contains(&route), "BYE without {route}:\n{bye}");
    }

    // the UAS checked Record-Route on the INVITE, and ACK and BYE with its
    // Contact as Request-URI and no Route left (the edge consumed its own)
    let uas = uas.wait().unwrap();
    uas.assert_calls_succeeded(calls);
    assert_eq!(uas.received("ACK"), calls, "{uas}");
    assert_eq!(uas.received("BYE"), calls, "{uas}");
    stop_clean(edge);
    budget.check();
}

#[test]
fn two_shards_hand_off_and_complete_every_call() {
    let (_serial, budget) = setup(Duration::from_secs(30));
    let calls = 1_000;
    let timeout = Duration::from_secs(25);
    let uas = basic_uas(calls, timeout).spawn().unwrap();
    let edge = edge_to(uas.local_addr()).cores(2).spawn().unwrap();
    // one socket (source port) per call: SO_REUSEPORT spreads the calls'
    // flows over both shards' sockets
    let uac = basic_uac(&edge, calls, timeout)
        .rate(200.0)
        .arg("-t")
        .arg("un")
        .arg("-max_socket")
        .arg(max_sockets().to_string())
        .run()
        .unwrap();
    let uas = uas.wait().unwrap();
    assert_basic_calls(&uac, &uas, calls);

    let exit = stop_clean(edge);
    let counters = exit.shard_counters();
    assert_eq!(counters.len(), 2, "one exit line per shard\n{exit}");
    let out: u64 = counters.iter().map(|c| c.handoffs_out).sum();
    let into: u64 = counters.iter().map(|c| c.handoffs_in).sum();
    let drops: u64 = counters.iter().map(|c| c.handoff_drops).sum();
    assert!(
        counters.iter().any(|c| c.handoffs_in > 0),
        "no handoff: {counters:?}"
    );
    assert_eq!(out, into, "handed off != taken in: {counters:?}");
    assert_eq!(drops, 0, "{counters:?}");
    assert!(
        counters
            .iter()
            .all(|c| c.send_drops == 0 && c.ring_errors == 0),
        "{counters:?}"
    );
    eprintln!("two shards: {counters:?}");
    budget.check();
}

/// SIPp's `-max_socket` for `-t un`: it refuses to start unless the value is
/// below the open-files limit (its default, 50000, usually is not).
fn max_sockets() -> u64 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l["Max open files".len()..].split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(1024);
    soft.saturating_sub(64).clamp(256, 4096)
}

/// Sends an INVITE from a fresh socket and returns the status lines received
/// until the first final response (or until `timeout` passes without one).
fn raw_invite(edge: SocketAddr, timeout: Duration) -> io::Result<Vec<String>> {
    let socket = UdpSocket::bind(loopback(0))?;
    socket.connect(edge)?;
    let local = socket.local_addr()?;
    let call_id = format!("raw-{}-{}@127.0.0.1", std::process::id(), local.port());
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:late@{edge} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-raw-{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@{local}>;tag=raw{port}\r\n\
         To: <sip:late@{edge}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:raw@{local}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        port = local.port(),
    );
    socket.send(invite.as_bytes())?;
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status = text.lines().next().unwrap_or_default().to_owned();
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        lines.push(text);
        if code >= 200 {
            break;
        }
    }
    Ok(lines)
}

/// SIGTERM while INVITE transactions are live (the UAS rings 2 s before it
/// answers): a new INVITE gets 503, the ringing calls are answered, ACKed and
/// hung up through the draining edge, and the edge exits 0 within its grace
/// period. (The edge is transaction-stateful: an established call with no
/// transaction in flight does not hold the shutdown back.)
#[test]
fn sigterm_rejects_new_invites_and_lets_live_transactions_finish() {
    let (_serial, budget) = setup(Duration::from_secs(25));
    let calls = 20;
    let timeout = Duration::from_secs(20);
    let ringing = Duration::from_secs(2);
    let grace = Duration::from_secs(4);
    let uas = basic_uas(calls, timeout)
        .hold(ringing)
        .trace_msg(true)
        .spawn()
        .unwrap();
    let mut edge = Edge::proxy_to(uas.local_addr())
        .shutdown_grace(grace)
        .spawn()
        .unwrap();
    // 20 calls at 100 cps: all INVITEs are out after ~0.2 s, and every call
    // rings until ~2 s after its INVITE
    let uac = basic_uac(&edge, calls, timeout)
        .rate(100.0)
        .trace_msg(true)
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(800));

    edge.terminate().unwrap();
    let sigterm = Instant::now();
    // the shard notices the signal at its next tick and says so
    let stopping = poll_until(
        Instant::now() + Duration::from_secs(2),
        Duration::from_millis(5),
        || edge.log().contains("stopping: new calls get 503"),
    );
    assert!(stopping, "no 'stopping' line\n{}", edge.diagnostics());
    assert!(
        edge.is_running(),
        "edge exited with 20 INVITE transactions live\n{}",
        edge.diagnostics()
    );

    // a new call is refused with 503 and a Retry-After
    let answers = raw_invite(edge.addr(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("INVITE after SIGTERM: {e}\n{}", edge.diagnostics()));
    let last = answers.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("SIP/2.0 503"),
        "answers to an INVITE after SIGTERM: {answers:#?}"
    );
    assert!(last.contains("\r\nRetry-After: "), "{last}");

    // the ringing calls end normally: 200, ACK and BYE pass the draining edge
    let uac = uac.wait().unwrap();
    let drained = sigterm.elapsed();

    // ... and the edge exits 0 within its grace period (plus a tick); waited
    // for before the UAS, which lingers 4 s after its last call
    let exit = edge.stop(grace + Duration::from_secs(4));
    let uas = uas.wait().unwrap();
    assert_basic_calls(&uac, &uas, calls);
    assert!(exit.success(), "{exit}");
    assert!(
        exit.after_sigterm < grace + Duration::from_secs(1),
        "exit {:.2?} after SIGTERM, grace {grace:?}\n{exit}",
        exit.after_sigterm
    );
    assert!(exit.error_lines().is_empty(), "{exit}");
    eprintln!(
        "calls done {drained:.2?} after SIGTERM, edge exited {:.2?} after SIGTERM",
        exit.after_sigterm
    );
    budget.check();
}
