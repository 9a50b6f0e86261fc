//! Server transactions over UDP: INVITE (RFC 3261 17.2.1) and non-INVITE
//! (17.2.2). The transaction user hands responses in with `respond`; request
//! retransmissions are absorbed and answered with the last response.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{due, earliest, TimerConfig, TransactionEvent, Verdict};

/// States of an INVITE server transaction (RFC 3261 figure 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteServerState {
    /// Request received; no final response yet.
    Proceeding,
    /// A final non-2xx was sent; Timer G retransmits it until the ACK, Timer H
    /// gives up.
    Completed,
    /// The ACK arrived; Timer I absorbs ACK retransmissions.
    Confirmed,
    /// Done: remove the transaction.
    Terminated,
}

/// An INVITE server transaction, RFC 3261 section 17.2.1, over UDP.
#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    request: Bytes,
    last_response: Option<Bytes>,
    final_code: u16,
    outbox: Option<Bytes>,
    timer_g: Option<Instant>,
    interval_g: Duration,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
}

impl InviteServer {
    /// A transaction for a received INVITE, in Proceeding.
    pub fn new(request: Bytes, timers: &TimerConfig) -> Self {
        InviteServer {
            state: InviteServerState::Proceeding,
            request,
            last_response: None,
            final_code: 0,
            outbox: None,
            timer_g: None,
            interval_g: timers.t1,
            timer_h: None,
            timer_i: None,
        }
    }

    /// The state.
    pub fn state(&self) -> InviteServerState {
        self.state
    }

    /// The request as received.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// The final status sent, 0 while none was.
    pub fn final_code(&self) -> u16 {
        self.final_code
    }

    /// Is the transaction over?
    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// The INVITE was received again (`ack == false`) or its ACK arrived.
    pub fn handle_request(&mut self, now: Instant, ack: bool, timers: &TimerConfig) -> Verdict {
        match (self.state, ack) {
            (InviteServerState::Proceeding | InviteServerState::Completed, false) => {
                self.outbox = self.last_response.clone();
            }
            (InviteServerState::Completed, true) => {
                self.state = InviteServerState::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                self.timer_i = Some(now + timers.t4);
            }
            _ => {}
        }
        Verdict::Absorb
    }

    /// Sends a response with status `code`. Returns `false` (and sends
    /// nothing) when a final response was already sent.
    pub fn respond(
        &mut self,
        now: Instant,
        code: u16,
        response: Bytes,
        timers: &TimerConfig,
    ) -> bool {
        debug_assert!((100..700).contains(&code));
        if self.state != InviteServerState::Proceeding {
            return false;
        }
        self.outbox = Some(response.clone());
        match code {
            100..=199 => {}
            200..=299 => self.state = InviteServerState::Terminated,
            _ => {
                self.state = InviteServerState::Completed;
                self.timer_g = Some(now + timers.t1);
                self.timer_h = Some(now + timers.timeout());
            }
        }
        if code >= 200 {
            self.final_code = code;
        }
        self.last_response = Some(response);
        true
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        timers: &TimerConfig,
    ) -> Option<TransactionEvent> {
        if due(self.timer_h, now) {
            self.state = InviteServerState::Terminated;
            return Some(TransactionEvent::Timeout);
        }
        if due(self.timer_i, now) {
            self.state = InviteServerState::Terminated;
            return None;
        }
        if let Some(g) = self.timer_g.filter(|&g| g <= now) {
            self.interval_g = (self.interval_g * 2).min(timers.t2);
            self.timer_g = Some(g + self.interval_g);
            self.outbox = self.last_response.clone();
        }
        None
    }

    /// The datagram to send (to the response address), if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.take()
    }

    /// The next deadline, if a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_terminated() {
            return None;
        }
        earliest([self.timer_g, self.timer_h, self.timer_i])
    }
}

/// States of a non-INVITE server transaction (RFC 3261 figure 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// Request received, nothing sent.
    Trying,
    /// A provisional was sent.
    Proceeding,
    /// A final was sent; Timer J absorbs retransmissions.
    Completed,
    /// Done: remove the transaction.
    Terminated,
}

/// A non-INVITE server transaction, RFC 3261 section 17.2.2, over UDP.
#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    request: Bytes,
    last_response: Option<Bytes>,
    outbox: Option<Bytes>,
    timer_j: Option<Instant>,
}

impl NonInviteServer {
    /// A transaction for a received request, in Trying.
    pub fn new(request: Bytes) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            request,
            last_response: None,
            outbox: None,
            timer_j: None,
        }
    }

    /// The state.
    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    /// The request as received.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// Has a final response been sent?
    pub fn has_final(&self) -> bool {
        matches!(
            self.state,
            NonInviteServerState::Completed | NonInviteServerState::Terminated
        )
    }

    /// Is the transaction over?
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    /// The request was received again: resend the last response, if any.
    pub fn handle_request(&mut self) -> Verdict {
        if self.state != NonInviteServerState::Trying {
            self.outbox = self.last_response.clone();
        }
        Verdict::Absorb
    }

    /// Sends a response with status `code`; `false` when a final was already sent.
    pub fn respond(
        &mut self,
        now: Instant,
        code: u16,
        response: Bytes,
        timers: &TimerConfig,
    ) -> bool {
        debug_assert!((100..700).contains(&code));
        if self.has_final() {
            return false;
        }
        if code < 200 {
            self.state = NonInviteServerState::Proceeding;
        } else {
            self.state = NonInviteServerState::Completed;
            self.timer_j = Some(now + timers.timeout());
        }
        self.outbox = Some(response.clone());
        self.last_response = Some(response);
        true
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TransactionEvent> {
        if due(self.timer_j, now) {
            self.state = NonInviteServerState::Terminated;
        }
        None
    }

    /// The datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.take()
    }

    /// The next deadline, if a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_terminated() {
            return None;
        }
        earliest([self.timer_j])
    }
}
