//! SIP transactions over UDP (RFC 3261 section 17), sans-IO.
//!
//! Four state machines ([`InviteClient`], [`NonInviteClient`], [`InviteServer`],
//! [`NonInviteServer`]) keep the bytes of the request and of the last message
//! they sent, and their timers as deadlines. Each takes time as an argument,
//! queues at most one datagram for [`poll_transmit`](InviteClient::poll_transmit)
//! and reports its next deadline with `poll_timeout`.
//!
//! [`TransactionTable`] holds the live transactions of a shard: a bounded slab,
//! the matching index of 17.1.3 and 17.2.3 ([`TxnKey`]) and one
//! [`TimerWheel`] entry a transaction.

#![warn(missing_docs)]

mod build;
mod client;
mod key;
mod server;
mod table;
mod wheel;

use std::time::Duration;

pub(crate) use build::put_u32;
pub(crate) use build::write_via;
pub use build::{ack_for, cancel_for, response_to};
pub use client::{InviteClient, InviteClientState, NonInviteClient, NonInviteClientState};
pub use key::{ClientKey, ServerKey, TxnKey, MAGIC_COOKIE};
pub use server::{InviteServer, InviteServerState, NonInviteServer, NonInviteServerState};
pub use table::{TableError, TransactionTable, TxnId};
pub use wheel::{TimerId, TimerWheel, WheelFull, TICK_MS};

/// The timer values of RFC 3261 17 (table 4) for an unreliable transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the round-trip estimate (500 ms).
    pub t1: Duration,
    /// T2, the longest retransmit interval of non-INVITE requests and INVITE
    /// responses (4 s).
    pub t2: Duration,
    /// T4, how long the network may hold a message (5 s).
    pub t4: Duration,
    /// Timer C, the proxy's INVITE client timeout (more than 3 minutes).
    pub timer_c: Duration,
}

impl TimerConfig {
    /// The defaults of RFC 3261.
    pub const fn rfc3261() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_millis(4_000),
            t4: Duration::from_millis(5_000),
            timer_c: Duration::from_millis(180_000),
        }
    }

    /// Timers B, F, H and J: 64*T1.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on UDP (64*T1 if that is longer).
    pub fn timer_d(&self) -> Duration {
        self.timeout().max(Duration::from_secs(32))
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self::rfc3261()
    }
}

/// What a transaction says about a message it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New to the transaction: pass it to the transaction user (forward it).
    Deliver,
    /// A retransmission (or a message the state does not expect): absorbed;
    /// anything to resend is queued for `poll_transmit`.
    Absorb,
}

/// What a transaction reports from `handle_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionEvent {
    /// Timer B, F or H fired (or the guard after a CANCEL): the transaction
    /// ended without a final response (client) or an ACK (server).
    Timeout,
    /// Timer C fired on an INVITE client transaction; `provisional` says
    /// whether a provisional response was received (RFC 3261 16.8: then CANCEL,
    /// else act as if a 408 arrived).
    TimerC {
        /// A provisional response arrived before the timer fired.
        provisional: bool,
    },
}

/// The earliest of a set of optional deadlines.
fn earliest<const N: usize>(
    deadlines: [Option<std::time::Instant>; N],
) -> Option<std::time::Instant> {
    deadlines.into_iter().flatten().min()
}

/// Is `t` set and not after `now`?
fn due(t: Option<std::time::Instant>, now: std::time::Instant) -> bool {
    t.is_some_and(|t| t <= now)
}
