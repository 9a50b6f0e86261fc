//! Proxy core cost per call: one whole call through `ProxyCore` with a fake
//! clock and no sockets, as SIPp's `uac_basic_rr` / `uas_basic_rr` make it:
//! INVITE (900-byte carrier INVITE with SDP) from the UAC, 100 Trying from
//! the proxy, 180 and 200 (with SDP) from the UAS, ACK and BYE along the route
//! set, 200 to the BYE. 6 datagrams in and 7 out per call.
//!
//! Every call has its own Call-ID, tags and branches, and the fake clock moves
//! by `STEP` per call (1,000 calls/s), firing timers as they fall due, so the
//! transaction table holds what it holds under a steady load.
//!
//! Under callgrind, run the bench binary with `PROXY_BENCH_CALLS=N` (and
//! optionally `PROXY_BENCH_WARMUP=W`, `PROXY_BENCH_STEP_MS=S`): it runs W
//! calls, then N calls inside `measured_calls` (use
//! `--toggle-collect='*measured_calls*'`), and exits without criterion.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, Criterion, Throughput};
use edge::proxy::{NextHop, ProxyConfig, ProxyCore};

const PROXY: &str = "192.0.2.10:5060";
const UAC: &str = "198.51.100.17:5060";
const UAS: &str = "203.0.113.5:5060";

/// Datagrams handled per call, in and out.
const DATAGRAMS_PER_CALL: u64 = 13;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

const SDP: &str = concat!(
    "v=0\r\n",
    "o=ExampleSBC 1732960000 1732960000 IN IP4 198.51.100.17\r\n",
    "s=ExampleSBC\r\n",
    "c=IN IP4 198.51.100.17\r\n",
    "t=0 0\r\n",
    "m=audio 31000 RTP/AVP 8 0 101\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

/// The proxy under test, its fake clock and the call counter.
struct Driver {
    core: ProxyCore<NextHop>,
    now: Instant,
    step: Duration,
    call: u64,
    proxy: SocketAddr,
    uac: SocketAddr,
    uas: SocketAddr,
    /// Datagrams the proxy sent during the current call.
    out: Vec<Bytes>,
}

impl Driver {
    fn new(step: Duration) -> Driver {
        let uas = addr(UAS);
        Driver {
            core: ProxyCore::new(ProxyConfig::default(), NextHop(uas)),
            now: Instant::now(),
            step,
            call: 0,
            proxy: addr(PROXY),
            uac: addr(UAC),
            uas,
            out: Vec::with_capacity(8),
        }
    }

    fn send(&mut self, from: SocketAddr, datagram: Bytes) {
        self.core
            .handle_datagram(self.now, from, self.proxy, datagram);
        while let Some(t) = self.core.poll_transmit() {
            self.out.push(t.payload);
        }
    }

    fn tick(&mut self) {
        self.now += self.step;
        while self.core.poll_timeout().is_some_and(|at| at <= self.now) {
            self.core.handle_timeout(self.now);
            while let Some(t) = self.core.poll_transmit() {
                drop(t);
            }
        }
    }

    /// One whole call; returns the datagrams the proxy sent.
    fn call(&mut self) -> usize {
        self.call += 1;
        self.out.clear();
        let n = self.call;
        let call_id = format!("{n:08x}-d2a4-4b6e-9e7c-0a5d8f1e2c33@198.51.100.17");
        let from_tag = format!("8a7f{n:x}");
        let to_tag = format!("as5f{n:x}");
        let invite = format!(
            concat!(
                "INVITE sip:+4930123456789@192.0.2.10:5060;user=phone SIP/2.0\r\n",
                "Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-{n}-1;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: \"Alice Example\" <sip:+4940987654321@trunk.example.org;user=phone>;tag={ft}\r\n",
                "To: <sip:+4930123456789@edge.example.net;user=phone>\r\n",
                "Call-ID: {cid}\r\n",
                "CSeq: 1 INVITE\r\n",
                "Contact: <sip:+4940987654321@198.51.100.17:5060;transport=udp>\r\n",
                "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n",
                "Supported: replaces, timer, 100rel\r\n",
                "User-Agent: ExampleSBC/4.2.1\r\n",
                "Content-Type: application/sdp\r\n",
                "Content-Length: {len}\r\n",
                "\r\n",
                "{sdp}",
            ),
            n = n,
            ft = from_tag,
            cid = call_id,
            len = SDP.len(),
            sdp = SDP,
        );
        let (uac, uas) = (self.uac, self.uas);
        self.send(uac, Bytes::from(invite));
        // 100 Trying to the UAC, the INVITE to the UAS.
        let fwd = self.out.pop().expect("INVITE forwarded");
        let ringing = uas_response(&fwd, "180 Ringing", Some(&to_tag), "");
        self.send(uas, ringing);
        let ok = uas_response(&fwd, "200 OK", Some(&to_tag), SDP);
        self.send(uas, ok);
        let in_dialog = |method: &str, cseq: u32, branch: &str| {
            format!(
                concat!(
                    "{m} sip:uas@203.0.113.5:5060;transport=udp SIP/2.0\r\n",
                    "Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-{n}-{b};rport\r\n",
                    "Route: <sip:192.0.2.10:5060;lr>\r\n",
                    "Max-Forwards: 70\r\n",
                    "From: \"Alice Example\" <sip:+4940987654321@trunk.example.org;user=phone>;tag={ft}\r\n",
                    "To: <sip:+4930123456789@edge.example.net;user=phone>;tag={tt}\r\n",
                    "Call-ID: {cid}\r\n",
                    "CSeq: {c} {m}\r\n",
                    "Contact: <sip:+4940987654321@198.51.100.17:5060;transport=udp>\r\n",
                    "Content-Length: 0\r\n",
                    "\r\n",
                ),
                m = method,
                n = n,
                b = branch,
                ft = from_tag,
                tt = to_tag,
                cid = call_id,
                c = cseq,
            )
        };
        let ack = in_dialog("ACK", 1, "2");
        self.send(uac, Bytes::from(ack));
        let bye = in_dialog("BYE", 2, "3");
        self.send(uac, Bytes::from(bye));
        let fwd_bye = self.out.pop().expect("BYE forwarded");
        let bye_ok = uas_response(&fwd_bye, "200 OK", None, "");
        self.send(uas, bye_ok);
        let sent = self.out.len() + 2;
        self.tick();
        sent
    }
}

/// A UAS response to `request` as SIPp's `[last_Via:]` etc. write it: every
/// Via, From, To (with `to_tag`), Call-ID, CSeq and Record-Route copied.
fn uas_response(request: &[u8], status: &str, to_tag: Option<&str>, sdp: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(request.len() + 64);
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(status.as_bytes());
    out.put_slice(b"\r\n");
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    for line in request[..head_end].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let copy = [
            &b"Via:"[..],
            b"From:",
            b"Call-ID:",
            b"CSeq:",
            b"Record-Route:",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        if copy {
            out.put_slice(line);
            out.put_slice(b"\r\n");
        } else if line.starts_with(b"To:") {
            out.put_slice(line);
            if let Some(tag) = to_tag {
                out.put_slice(b";tag=");
                out.put_slice(tag.as_bytes());
            }
            out.put_slice(b"\r\n");
        }
    }
    out.put_slice(b"Contact: <sip:uas@203.0.113.5:5060;transport=udp>\r\n");
    if !sdp.is_empty() {
        out.put_slice(b"Content-Type: application/sdp\r\n");
    }
    out.put_slice(format!("Content-Length: {}\r\n\r\n", sdp.len()).as_bytes());
    out.put_slice(sdp.as_bytes());
    out.freeze()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[inline(never)]
fn warmup_calls(d: &mut Driver, n: u64) -> usize {
    (0..n).map(|_| d.call()).sum()
}

#[inline(never)]
fn measured_calls(d: &mut Driver, n: u64) -> usize {
    // Not the same code as `warmup_calls`, so the linker cannot fold the two.
    (0..n).map(|_| black_box(d.call())).sum()
}

fn proxy_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("proxy");
    group.throughput(Throughput::Elements(1));
    let mut d = Driver::new(Duration::from_millis(1));
    assert_eq!(d.call() as u64, DATAGRAMS_PER_CALL - 6, "7 datagrams out");
    group.bench_function("call", |b| b.iter(|| black_box(d.call())));
    group.finish();
}

criterion_group!(benches, proxy_call);

fn main() {
    if let Some(calls) = env_u64("PROXY_BENCH_CALLS") {
        let warmup = env_u64("PROXY_BENCH_WARMUP").unwrap_or(0);
        let step = env_u64("PROXY_BENCH_STEP_MS").unwrap_or(1);
        let mut d = Driver::new(Duration::from_millis(step));
        let sent_warm = warmup_calls(&mut d, warmup);
        let sent = measured_calls(&mut d, calls);
        println!(
            "proxy bench: {warmup} warm-up calls ({sent_warm} sent), {calls} measured calls \
             ({sent} sent), {} live transactions, stats {:?}",
            d.core.transaction_count(),
            d.core.stats()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
