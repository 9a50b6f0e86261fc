//! Client transactions over UDP: INVITE (RFC 3261 17.1.1, with the proxy's
//! Timer C of 16.6 step 11 and 16.8) and non-INVITE (17.1.2).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{build, due, earliest, TimerConfig, TransactionEvent, Verdict};
use crate::sip::Message;

/// States of an INVITE client transaction (RFC 3261 figure 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteClientState {
    /// Request sent, no response yet; Timer A retransmits, Timer B gives up.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final non-2xx arrived and was ACKed; Timer D absorbs retransmissions.
    Completed,
    /// Done: remove the transaction.
    Terminated,
}

/// An INVITE client transaction, RFC 3261 section 17.1.1, on an unreliable
/// transport, with the proxy's Timer C.
#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    request: Bytes,
    ack: Option<Bytes>,
    outbox: Option<Bytes>,
    timer_a: Option<Instant>,
    interval_a: Duration,
    timer_b: Option<Instant>,
    timer_c: Option<Instant>,
    timer_d: Option<Instant>,
    provisional: bool,
    cancelled: bool,
}

impl InviteClient {
    /// Starts the transaction: queues `request` and arms Timers A, B and C.
    pub fn new(now: Instant, request: Bytes, timers: &TimerConfig) -> Self {
        InviteClient {
            state: InviteClientState::Calling,
            outbox: Some(request.clone()),
            request,
            ack: None,
            timer_a: Some(now + timers.t1),
            interval_a: timers.t1,
            timer_b: Some(now + timers.timeout()),
            timer_c: Some(now + timers.timer_c),
            timer_d: None,
            provisional: false,
            cancelled: false,
        }
    }

    /// The state.
    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// The request as sent.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// Has a provisional response arrived (so a CANCEL may be sent, RFC 3261 9.1)?
    pub fn has_provisional(&self) -> bool {
        self.provisional
    }

    /// Was [`InviteClient::cancel_sent`] called?
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Is the transaction over?
    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// A response with status `code` matched this transaction (17.1.3).
    pub fn handle_response(
        &mut self,
        now: Instant,
        response: &Message,
        timers: &TimerConfig,
    ) -> Verdict {
        let code = response.status_code().unwrap_or(0);
        debug_assert!((100..700).contains(&code));
        match (self.state, code) {
            (InviteClientState::Calling | InviteClientState::Proceeding, 100..=199) => {
                self.on_provisional(now, code, timers)
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, 200..=299) => {
                self.state = InviteClientState::Terminated;
                Verdict::Deliver
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, _) => {
                self.complete(now, response, timers);
                Verdict::Deliver
            }
            (InviteClientState::Completed, 300..) => {
                self.outbox = self.ack.clone();
                Verdict::Absorb
            }
            _ => Verdict::Absorb,
        }
    }

    fn on_provisional(&mut self, now: Instant, code: u16, timers: &TimerConfig) -> Verdict {
        self.state = InviteClientState::Proceeding;
        self.provisional = true;
        self.timer_a = None;
        if !self.cancelled {
            self.timer_b = None;
        }
        if code > 100 && self.timer_c.is_some() {
            self.timer_c = Some(now + timers.timer_c);
        }
        Verdict::Deliver
    }

    /// A final non-2xx: ACK it (17.1.1.3) and wait Timer D for retransmissions.
    fn complete(&mut self, now: Instant, response: &Message, timers: &TimerConfig) {
        self.state = InviteClientState::Completed;
        self.ack = Message::parse_datagram(self.request.clone(), &Default::default())
            .ok()
            .and_then(|request| build::ack_for(&request, response));
        self.outbox = self.ack.clone();
        self.timer_a = None;
        self.timer_b = None;
        self.timer_c = None;
        self.timer_d = Some(now + timers.timer_d());
    }

    /// The proxy sent a CANCEL for this transaction: if no final response
    /// comes within 64*T1, give up (RFC 3261 9.1).
    pub fn cancel_sent(&mut self, now: Instant, timers: &TimerConfig) {
        self.cancelled = true;
        self.timer_c = None;
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            self.timer_b = Some(now + timers.timeout());
        }
    }

    /// Ends the transaction now (the proxy acted as if a 408 arrived).
    pub fn terminate(&mut self) {
        self.state = InviteClientState::Terminated;
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        timers: &TimerConfig,
    ) -> Option<TransactionEvent> {
        let _ = timers;
        if due(self.timer_b, now) {
            self.state = InviteClientState::Terminated;
            return Some(TransactionEvent::Timeout);
        }
        if due(self.timer_d, now) {
            self.state = InviteClientState::Terminated;
            return None;
        }
        if due(self.timer_c, now) {
            self.timer_c = None;
            return Some(TransactionEvent::TimerC {
                provisional: self.provisional,
            });
        }
        if let Some(a) = self.timer_a.filter(|&a| a <= now) {
            self.interval_a *= 2;
            self.timer_a = Some(a + self.interval_a);
            self.outbox = Some(self.request.clone());
        }
        None
    }

    /// The datagram to send (to the transaction's destination), if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.take()
    }

    /// The next deadline, if a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_terminated() {
            return None;
        }
        earliest([self.timer_a, self.timer_b, self.timer_c, self.timer_d])
    }
}

/// States of a non-INVITE client transaction (RFC 3261 figure 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Request sent; Timer E retransmits, Timer F gives up.
    Trying,
    /// A provisional arrived; Timer E now retransmits every T2.
    Proceeding,
    /// A final arrived; Timer K absorbs retransmissions.
    Completed,
    /// Done: remove the transaction.
    Terminated,
}

/// A non-INVITE client transaction, RFC 3261 section 17.1.2, over UDP.
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    request: Bytes,
    outbox: Option<Bytes>,
    timer_e: Option<Instant>,
    interval_e: Duration,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl NonInviteClient {
    /// Starts the transaction: queues `request` and arms Timers E and F.
    pub fn new(now: Instant, request: Bytes, timers: &TimerConfig) -> Self {
        NonInviteClient {
            state: NonInviteClientState::Trying,
            outbox: Some(request.clone()),
            request,
            timer_e: Some(now + timers.t1),
            interval_e: timers.t1,
            timer_f: Some(now + timers.timeout()),
            timer_k: None,
        }
    }

    /// The state.
    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    /// The request as sent.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// Is the transaction over?
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    /// A response with status `code` matched this transaction.
    pub fn handle_response(&mut self, now: Instant, code: u16, timers: &TimerConfig) -> Verdict {
        match (self.state, code) {
            (NonInviteClientState::Trying | NonInviteClientState::Proceeding, 100..=199) => {
                self.state = NonInviteClientState::Proceeding;
                Verdict::Deliver
            }
            (NonInviteClientState::Trying | NonInviteClientState::Proceeding, _) => {
                self.state = NonInviteClientState::Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.timer_k = Some(now + timers.t4);
                Verdict::Deliver
            }
            _ => Verdict::Absorb,
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        timers: &TimerConfig,
    ) -> Option<TransactionEvent> {
        if due(self.timer_f, now) {
            self.state = NonInviteClientState::Terminated;
            return Some(TransactionEvent::Timeout);
        }
        if due(self.timer_k, now) {
            self.state = NonInviteClientState::Terminated;
            return None;
        }
        if let Some(e) = self.timer_e.filter(|&e| e <= now) {
            self.interval_e = match self.state {
                NonInviteClientState::Trying => (self.interval_e * 2).min(timers.t2),
                _ => timers.t2,
            };
            self.timer_e = Some(e + self.interval_e);
            self.outbox = Some(self.request.clone());
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
        earliest([self.timer_e, self.timer_f, self.timer_k])
    }
}
