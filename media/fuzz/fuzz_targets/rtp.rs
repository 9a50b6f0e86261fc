//! Peer bytes into the RTP and RTCP views, and every RTP packet that parses
//! into one `StreamStats`: nothing may panic, and the invariants the
//! statistics promise must hold for any input.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::rtp::{classify, PacketKind, RtcpType, RtcpView, RtpView};
use media::stats::StreamStats;

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    check_rtcp(data);
    check_rtp_stream(data);
});

/// The whole input as one compound RTCP datagram.
fn check_rtcp(data: &[u8]) {
    let Ok(view) = RtcpView::parse(data) else {
        return;
    };
    let mut total_bytes = 0;
    for packet in view.packets() {
        total_bytes += packet.len_bytes();
        let _ = (packet.sender_ssrc(), packet.sender_info(), packet.body());
        let blocks = packet.report_blocks().count();
        match packet.kind() {
            RtcpType::SenderReport | RtcpType::ReceiverReport => {
                assert_eq!(blocks, usize::from(packet.count()));
            }
            _ => assert_eq!(blocks, 0),
        }
    }
    assert_eq!(total_bytes, data.len());
}

/// The input as a stream of datagrams, each prefixed by its length in one
/// byte, and then the whole input as one datagram: every one that parses as
/// RTP goes into one `StreamStats`, at an arrival time taken from its bytes.
fn check_rtp_stream(data: &[u8]) {
    let mut stats = StreamStats::new();
    let mut arrival = Instant::now();
    let mut rest = data;
    // Each round consumes at least the length byte, so this ends.
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, after) = tail.split_at(usize::from(len).min(tail.len()));
        rest = after;
        feed(&mut stats, &mut arrival, datagram);
    }
    feed(&mut stats, &mut arrival, data);
    let _ = stats.close_interval();
}

/// One datagram into the stats, checking the views and the invariants.
fn feed(stats: &mut StreamStats, arrival: &mut Instant, datagram: &[u8]) {
    let Ok(rtp) = RtpView::parse(datagram) else {
        let _ = RtpView::parse_header(datagram).map(|v| v.payload().len());
        stats.on_error();
        return;
    };
    assert!(rtp.header_len_bytes() + rtp.padding_len_bytes() <= datagram.len());
    assert_eq!(rtp.csrcs().len(), usize::from(rtp.csrc_count()));
    let _ = (rtp.extension(), rtp.payload());
    if classify(datagram) == PacketKind::Rtcp {
        return; // the mux would hand it to RTCP
    }
    *arrival += Duration::from_micros(u64::from(rtp.ssrc() % 100_000));
    let clock_rate_hz = [8_000, 16_000, 48_000, 90_000, 0][usize::from(rtp.payload_type() % 5)];
    stats.on_packet(*arrival, &rtp, clock_rate_hz);
    let snap = stats.snapshot();
    assert!(i64::from(snap.lost) <= snap.expected as i64);
    assert!(stats.received() <= snap.packets);
    assert!(snap.mos_x10.is_none_or(|m| (10..=45).contains(&m)));
}
