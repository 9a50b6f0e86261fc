//! `media`: the RTP/RTCP relay of the carrier edge, driven by the rtpengine
//! ng protocol (what Kamailio's `rtpengine` module speaks).
//!
//! The protocol logic is sans-IO: the ng control protocol
//! ([`ng`]: bencode, commands and replies, the reply cache by cookie), SDP
//! parsing and rewriting ([`sdp`]), a zero-copy RTP/RTCP header view
//! ([`rtp`]), per-stream statistics per RFC 3550 with an E-model MOS
//! ([`stats`]), the RTP/RTCP port-pair allocator ([`ports`]) and the
//! sessions: the call table and the ng command handler ([`session`]).
//! The runtime shell ([`runtime`]) does the I/O: one pinned io_uring loop
//! per core that moves datagrams and time in and out of those cores, and
//! the ng control threads (UDP and TCP). [`config`] reads the options and
//! the TOML file; [`metrics`] serves Prometheus metrics.

#![warn(missing_docs)]

pub mod config;
pub mod metrics;
pub mod ng;
pub mod ports;
pub mod rtp;
pub mod runtime;
pub mod sdp;
pub mod session;
pub mod stats;
