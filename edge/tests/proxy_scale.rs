//! 100K live INVITE transactions in one `ProxyCore`: `handle_timeout` does
//! work in proportion to the timers that fire, not to the live transactions
//! (measured by the wheel's visit counter, not by time), and the table bound
//! holds.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::{NextHop, ProxyConfig, ProxyCore};

/// 100K in release builds; a debug build (the default `cargo test`) runs the
/// codec about 30 times slower, so it checks the same bounds with 20K.
const CALLS: usize = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};

fn invite(i: usize) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:+1555{i:07}@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKs{i}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a{i}\r\n\
To: <sip:+1555{i:07}@example.com>\r\n\
Call-ID: scale-{i}\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    ))
}

#[test]
fn handle_timeout_work_is_bounded_with_100k_transactions() {
    let src: SocketAddr = "198.51.100.1:5060".parse().unwrap();
    let local: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let uas: SocketAddr = "203.0.113.5:5060".parse().unwrap();
    let config = ProxyConfig {
        max_transactions: 2 * CALLS,
        ..ProxyConfig::default()
    };
    let mut core = ProxyCore::new(config, NextHop(uas));
    let t0 = Instant::now();
    // Arrivals spread over the first 100 ms.
    let spacing_ns = 100_000_000 / CALLS as u64;
    for i in 0..CALLS {
        let now = t0 + Duration::from_nanos(i as u64 * spacing_ns);
        core.handle_datagram(now, src, local, invite(i));
        while core.poll_transmit().is_some() {}
    }
    assert_eq!(core.transaction_count(), 2 * CALLS);

    // Between arrival and Timer A (500 ms) nothing is due: no entry is visited.
    let visits = core.timer_visits();
    for tick_ms in (110..500).step_by(10) {
        core.handle_timeout(t0 + Duration::from_millis(tick_ms));
        assert!(core.poll_transmit().is_none());
    }
    assert_eq!(core.timer_visits(), visits, "idle ticks visit nothing");

    // Timer A fires for every client transaction over 500-600 ms: the work of
    // each tick is about the retransmissions it sends, not the live total.
    let mut sent = 0u64;
    for tick_ms in (500..=610).step_by(10) {
        let before = core.timer_visits();
        core.handle_timeout(t0 + Duration::from_millis(tick_ms));
        let mut tick_sent = 0;
        while core.poll_transmit().is_some() {
            tick_sent += 1;
        }
        sent += tick_sent;
        let visited = core.timer_visits() - before;
        assert!(
            visited <= 2 * tick_sent + 64,
            "{visited} visits for {tick_sent} sends"
        );
    }
    assert_eq!(sent, CALLS as u64, "one Timer A retransmission each");
    assert_eq!(core.stats().transmits_dropped, 0);
}
