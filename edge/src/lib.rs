//! `edge`: the carrier SIP edge.
//!
//! The crate is split the way the architecture is: protocol logic in modules that do
//! no I/O and read no clock (`sip`, and later `transaction`, `proxy`, `dispatcher`,
//! `registrar`), and a thin runtime shell that moves bytes and time in and out.

pub mod config;
pub mod dispatcher;
pub mod metrics;
pub mod proxy;
pub mod rpc;
pub mod runtime;
pub mod sip;
pub mod transaction;

/// The README's examples run as doc tests, so the front page stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
