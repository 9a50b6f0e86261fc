//! `bench`: a SIP load generator that finds the CPS limit of a SIP proxy.
//!
//! The protocol logic is sans-IO, with time as an argument, like the edge's:
//! [`uac`] places calls on an open-loop schedule and measures them, [`uas`]
//! answers them. The shell ([`shell`]) runs them on a pinned thread per core,
//! each with its own io_uring ring (the edge's [`edge::runtime::uring`]);
//! [`ramp`] steps the offered rate up until calls fail or get slow.
//!
//! [`rtp`] (with its shell [`rtp_shell`]) is the RTP stream generator of
//! `bench rtp`: calls set up over the rtpengine ng protocol, paced RTP
//! streams through the relay, loss and latency counted per stream.

#![warn(missing_docs)]

pub mod drive;
pub mod load;
mod machines;
pub mod message;
pub mod ramp;
pub mod report;
pub mod rtp;
pub mod rtp_shell;
pub mod run;
pub mod serve;
pub mod shell;
pub mod uac;
pub mod uas;
