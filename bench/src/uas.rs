//! The answering side (sans-IO): 180 then 200 with SDP to each INVITE
//! (delays and a share of failures configurable), the 200 retransmitted until
//! the ACK (RFC 3261 13.3.1.4), 200 to BYE and OPTIONS.
//!
//! Each call is one entry of an [`edge::transaction::TransactionTable`]
//! filed under its Call-ID, with one timer on the table's wheel. The INVITE
//! runs in the edge's [`InviteServer`] machine until its final response (it
//! answers retransmitted INVITEs, and retransmits a non-2xx final until the
//! ACK, Timers G/H/I); the 2xx is retransmitted by the core itself, as the
//! machine ends on it. The BYE runs in a [`NonInviteServer`] (Timer J).
//! A call that ended stays in the table (lingering) only while a machine
//! still has work; when the table is full, the oldest lingering call makes
//! room for a new one.
//!
//! Responses go back to the source of the request (symmetric response
//! routing, as with `rport`), from the socket it arrived on. OPTIONS,
//! CANCEL and the error responses (481, 482, 501, 503 when the table is
//! full) are answered statelessly: a retransmitted request gets the same
//! answer again. Methods other than INVITE, ACK, BYE, CANCEL and OPTIONS,
//! and INVITEs inside a dialog (re-INVITEs), get 501 Not Implemented.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::Transmit;
use edge::sip::{HeaderKind, Message, Method, ParseError, ParseLimits};
use edge::transaction::{
    response_to, InviteServer, NonInviteServer, TimerConfig, TransactionTable, TxnId,
};

use crate::machines::{due_calls, run_due, table_capacity, timers, Outbox, MAX_DELAY};
use crate::message;

/// Most Record-Route headers copied into a response.
const MAX_RECORD_ROUTES: usize = 16;
/// RFC 3261 T4: how long a confirmed non-2xx absorbs ACKs (Timer I).
const T4: Duration = Duration::from_secs(5);
/// The longest a confirmed call waits for its BYE; then it is dropped and
/// counted as expired, so a caller that vanished cannot fill the table.
const MAX_DIALOG: Duration = Duration::from_secs(3_600);
/// The window of `fail_above_cps`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Settings of a [`Uas`].
#[derive(Clone, Debug)]
pub struct UasConfig {
    /// INVITE to 180 (zero: at once, with the 100 left out).
    pub ring_delay: Duration,
    /// 180 to 200.
    pub answer_delay: Duration,
    /// Share of calls (0 to 1) answered `fail_code` instead of 200, chosen by
    /// a hash of the Call-ID (the same calls on every run).
    pub fail_share: f64,
    /// The failure code (default 503).
    pub fail_code: u16,
    /// New INVITEs beyond this many in the last second are answered
    /// `fail_code` (a UAS that breaks above a known rate). The window slides
    /// and counts the calls taken, so at most this many are taken in any
    /// second and the rest fail.
    pub fail_above_cps: Option<u32>,
    /// Share of received datagrams dropped on purpose (loss injection).
    pub loss: f64,
    /// Seed of the loss draws.
    pub seed: u64,
    /// RFC 3261 T1.
    pub t1: Duration,
    /// RFC 3261 T2.
    pub t2: Duration,
    /// Most live calls; new INVITEs beyond it get 503.
    pub max_calls: usize,
}

/// What a [`Uas`] counted since the last [`Uas::take_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UasStats {
    /// New INVITEs (retransmissions excluded).
    pub invites: u64,
    /// Calls answered 200.
    pub answered: u64,
    /// Calls answered with the failure code (share, rate or table full).
    pub rejected: u64,
    /// ACKs that confirmed a 200 (repeated ACKs are absorbed, not counted).
    pub acks: u64,
    /// BYEs answered.
    pub byes: u64,
    /// OPTIONS answered.
    pub options: u64,
    /// Responses retransmitted (200 until ACK, answers to retransmitted requests).
    pub retransmissions: u64,
    /// Datagrams dropped by the configured loss.
    pub dropped: u64,
    /// Datagrams that matched nothing or did not parse, and requests
    /// answered 481, 482 or 501.
    pub unexpected: u64,
    /// INVITEs ended by a CANCEL (answered 487).
    pub cancelled: u64,
    /// Answered calls dropped without a BYE: no ACK within 64*T1 of the 200,
    /// or no BYE within an hour of the ACK.
    pub expired: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
}

impl UasStats {
    /// Adds `other`.
    pub fn add(&mut self, other: &UasStats) {
        let counters = [
            (&mut self.invites, other.invites),
            (&mut self.answered, other.answered),
            (&mut self.rejected, other.rejected),
            (&mut self.acks, other.acks),
            (&mut self.byes, other.byes),
            (&mut self.options, other.options),
            (&mut self.retransmissions, other.retransmissions),
            (&mut self.dropped, other.dropped),
            (&mut self.unexpected, other.unexpected),
            (&mut self.cancelled, other.cancelled),
            (&mut self.expired, other.expired),
            (&mut self.transmits_dropped, other.transmits_dropped),
        ];
        for (mine, theirs) in counters {
            *mine += theirs;
        }
    }
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE received; the 180 goes at `step_at`.
    Trying,
    /// 180 sent; the 200 goes at `step_at`.
    Ringing,
    /// 200 sent, retransmitted until the ACK.
    Answered,
    /// ACKed; waiting for the BYE until `step_at`.
    Confirmed,
    /// Over (BYE answered, rejected, cancelled or expired); the entry stays
    /// while a machine still has work.
    Ended,
}

/// The 2xx and its retransmission schedule (RFC 3261 13.3.1.4).
#[derive(Debug)]
struct Resend {
    response: Bytes,
    interval: Duration,
    next_at: Instant,
    give_up_at: Instant,
}

/// The BYE's server transaction and where its answer goes.
#[derive(Debug)]
struct ByeTxn {
    machine: NonInviteServer,
    local: SocketAddr,
    peer: SocketAddr,
}

/// One call.
#[derive(Debug)]
struct Call {
    /// The socket the INVITE arrived on, and where it came from.
    local: SocketAddr,
    peer: SocketAddr,
    phase: Phase,
    /// The INVITE's branch: its retransmissions and its CANCEL carry it.
    branch: Bytes,
    /// The local tag.
    tag: Bytes,
    /// The INVITE transaction until its final response ends it.
    invite: Option<InviteServer>,
    /// The 180 and the 200, written on arrival and sent at their time.
    ringing: Option<Bytes>,
    ok: Option<Bytes>,
    /// When the next step (180, 200, giving up on the BYE) is due.
    step_at: Option<Instant>,
    resend: Option<Resend>,
    bye: Option<ByeTxn>,
}

impl Call {
    /// The earliest timer of the call.
    fn deadline(&self) -> Option<Instant> {
        let invite = self.invite.as_ref().and_then(InviteServer::poll_timeout);
        let bye = self.bye.as_ref().and_then(|b| b.machine.poll_timeout());
        let resend = self.resend.as_ref().map(|r| r.next_at.min(r.give_up_at));
        [invite, bye, resend, self.step_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A request being handled, with what every handler reads of it.
struct Received<'m> {
    msg: &'m Message,
    src: SocketAddr,
    local: SocketAddr,
    /// The top Via's branch (empty without one).
    branch: &'m [u8],
}

/// The splitmix64 finalizer: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x` as a number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Does the call with this Call-ID belong to the failing share? FNV-1a of
/// the Call-ID, mixed: the same calls on every run.
fn in_failing_share(call_id: &[u8], share: f64) -> bool {
    let fnv = call_id.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    share > 0.0 && unit(mix(fnv)) < share
}

/// The calls of one thread.
pub struct Uas {
    config: UasConfig,
    /// `config.fail_code`, or 503 when it is not a final failure code.
    fail_code: u16,
    timers: TimerConfig,
    limits: ParseLimits,
    /// Live and lingering calls, at most twice `max_calls`.
    calls: TransactionTable<Call>,
    /// Ended calls still in the table, oldest first (some may be gone).
    lingering: VecDeque<TxnId>,
    live: usize,
    /// When the calls accepted within the last second arrived, oldest first
    /// (kept only with `fail_above_cps`; at most that many).
    accepted_at: VecDeque<Instant>,
    next_number: u64,
    /// State of the loss draws (splitmix64).
    rng: u64,
    /// The To tag of responses outside any call.
    stateless_tag: Bytes,
    out: Outbox,
    fired: Vec<TxnId>,
    stats: UasStats,
}

impl Uas {
    /// No calls yet. T1 is taken within 1 ms to 60 s, T2 within T1 to a
    /// day, the delays at most a day, and a `fail_code` outside 300 to 699
    /// as 503.
    pub fn new(mut config: UasConfig) -> Self {
        config.ring_delay = config.ring_delay.min(MAX_DELAY);
        config.answer_delay = config.answer_delay.min(MAX_DELAY);
        let timers = timers(config.t1, config.t2, T4, TimerConfig::rfc3261().timer_c);
        let fail_code = match config.fail_code {
            code @ 300..=699 => code,
            _ => 503,
        };
        Uas {
            fail_code,
            timers,
            limits: ParseLimits::datagram(),
            calls: TransactionTable::new(table_capacity(config.max_calls)),
            lingering: VecDeque::new(),
            live: 0,
            accepted_at: VecDeque::new(),
            next_number: 0,
            rng: config.seed,
            stateless_tag: Bytes::from(format!("{:016x}", mix(!config.seed))),
            out: Outbox::default(),
            fired: Vec::new(),
            stats: UasStats::default(),
            config,
        }
    }

    /// A datagram from `src` on the socket bound at `local`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        datagram: Bytes,
    ) {
        self.calls.start(now);
        if self.lose() {
            self.stats.dropped += 1;
            return;
        }
        let msg = match Message::parse_datagram(datagram, &self.limits) {
            Ok(m) => m,
            Err(ParseError::Empty) => return, // a CRLF keep-alive
            Err(_) => {
                self.stats.unexpected += 1;
                return;
            }
        };
        let (Some(method), Ok(to), Ok(via)) = (msg.method(), msg.to(), msg.top_via()) else {
            self.stats.unexpected += 1; // a response, or no To or Via to answer by
            return;
        };
        let rx = Received {
            msg: &msg,
            src,
            local,
            branch: via.branch().unwrap_or_default(),
        };
        let in_dialog = to.tag().is_some();
        self.on_request(now, &rx, method, in_dialog);
    }

    /// Draws whether the next received datagram is lost.
    fn lose(&mut self) -> bool {
        if self.config.loss <= 0.0 {
            return false;
        }
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        unit(mix(self.rng)) < self.config.loss
    }

    fn on_request(&mut self, now: Instant, rx: &Received<'_>, method: Method, in_dialog: bool) {
        let found = self.calls.find(&message::call_key_of(rx.msg));
        match method {
            Method::Invite if !in_dialog => self.on_invite(now, rx, found),
            Method::Ack => self.on_ack(now, found),
            Method::Bye => self.on_bye(now, rx, found),
            Method::Cancel => self.on_cancel(now, rx, found),
            Method::Options => {
                self.stats.options += 1;
                let extra: [(&str, &[u8]); 2] =
                    [("Allow", message::ALLOW), ("Accept", b"application/sdp")];
                self.reply(rx, 200, None, &extra);
            }
            _ => {
                self.stats.unexpected += 1;
                self.reply(rx, 501, None, &[("Allow", message::ALLOW)]);
            }
        }
    }

    /// A stateless response to `rx`, with the call's `tag` or the UAS's own.
    fn reply(&mut self, rx: &Received<'_>, code: u16, tag: Option<&[u8]>, extra: &[(&str, &[u8])]) {
        let tag = tag.unwrap_or(&self.stateless_tag);
        let response = response_to(rx.msg, code, message::reason(code), Some(tag), extra);
        self.push(rx.local, rx.src, response);
    }

    /// An INVITE outside a dialog: a retransmission, a new call, or another
    /// INVITE with a live call's Call-ID (merged, RFC 3261 8.2.2.2: 482).
    fn on_invite(&mut self, now: Instant, rx: &Received<'_>, found: Option<TxnId>) {
        if let Some(id) = found {
            let Some(call) = self.calls.get(id) else {
                return;
            };
            if call.branch == rx.branch {
                self.on_invite_again(now, id);
                return;
            }
            if call.phase != Phase::Ended {
                self.stats.unexpected += 1;
                self.reply(rx, 482, None, &[]);
                return;
            }
            // An ended call's Call-ID again (a retry): the new INVITE wins.
            self.calls.remove(id);
        }
        self.on_new_invite(now, rx);
    }

    /// A retransmitted INVITE gets the last response again: from the
    /// machine until the final, then the 2xx while it is unacknowledged.
    fn on_invite_again(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if let Some(invite) = call.invite.as_mut() {
            invite.handle_request(now, false, &timers);
            self.flush(id, true);
            return;
        }
        let Some(ok) = call.resend.as_ref().map(|r| r.response.clone()) else {
            return; // ACKed or over: absorbed
        };
        let (local, peer) = (call.local, call.peer);
        self.stats.retransmissions += 1;
        self.push(local, peer, ok);
    }

    fn on_new_invite(&mut self, now: Instant, rx: &Received<'_>) {
        self.stats.invites += 1;
        let number = self.next_number;
        self.next_number += 1;
        let refusal = self.admit(now, rx.msg);
        if !self.make_room() {
            // Only with max_calls 0: no room even for a rejection's state.
            self.stats.rejected += 1;
            self.reply(rx, 503, None, &[]);
            return;
        }
        let call = match refusal {
            Some(code) => self.rejected_call(now, rx, number, code),
            None => self.accepted_call(now, rx, number),
        };
        let key = message::call_key(Bytes::copy_from_slice(rx.msg.call_id()));
        let Ok(id) = self.calls.insert(key, call) else {
            return; // not found above, and make_room made room
        };
        self.flush(id, false);
        match refusal {
            Some(_) => {
                self.stats.rejected += 1;
                self.linger(id);
            }
            None => {
                self.live += 1;
                self.advance(now, id);
            }
        }
        self.settle(id);
    }

    /// The failure code a new INVITE gets, or `None` to take the call:
    /// table full (503), then the failing share, then the rate limit.
    fn admit(&mut self, now: Instant, msg: &Message) -> Option<u16> {
        if self.live >= self.config.max_calls {
            return Some(503);
        }
        if in_failing_share(msg.call_id(), self.config.fail_share) {
            return Some(self.fail_code);
        }
        let limit = self.config.fail_above_cps?;
        while self
            .accepted_at
            .front()
            .is_some_and(|&at| at + RATE_WINDOW <= now)
        {
            self.accepted_at.pop_front();
        }
        if self.accepted_at.len() >= limit as usize {
            return Some(self.fail_code);
        }
        self.accepted_at.push_back(now);
        None
    }

    /// A call to answer: 100 now when the 180 waits, the 180 and the 200
    /// (with Contact, the Record-Route copied and the SDP answer) written now
    /// and sent at their time.
    fn accepted_call(&self, now: Instant, rx: &Received<'_>, number: u64) -> Call {
        let tag = self.tag(number);
        let contact = format!("<sip:bench-uas@{}>", rx.local);
        let mut extra: Vec<(&str, &[u8])> = rx
            .msg
            .headers_of(HeaderKind::RecordRoute)
            .take(MAX_RECORD_ROUTES)
            .map(|h| ("Record-Route", h.value))
            .collect();
        extra.push(("Contact", contact.as_bytes()));
        let ringing = response_to(rx.msg, 180, "Ringing", Some(&tag), &extra);
        let sdp = message::sdp(
            "bench-uas",
            number,
            rx.local.ip(),
            message::rtp_port(number),
        );
        let ok = response_to(rx.msg, 200, "OK", Some(&tag), &extra);
        let ok = message::with_body(ok, b"application/sdp", &sdp);
        let mut invite = InviteServer::new(rx.msg.bytes().clone(), &self.timers);
        if !self.config.ring_delay.is_zero() {
            let trying = response_to(rx.msg, 100, "Trying", None, &[]);
            invite.respond(now, 100, trying, &self.timers);
        }
        Call {
            local: rx.local,
            peer: rx.src,
            phase: Phase::Trying,
            branch: Bytes::copy_from_slice(rx.branch),
            tag,
            invite: Some(invite),
            ringing: Some(ringing),
            ok: Some(ok),
            step_at: Some(now + self.config.ring_delay),
            resend: None,
            bye: None,
        }
    }

    /// A call answered `code` at once, through the machine (Timers G, H, I).
    fn rejected_call(&self, now: Instant, rx: &Received<'_>, number: u64, code: u16) -> Call {
        let tag = self.tag(number);
        let response = response_to(rx.msg, code, message::reason(code), Some(&tag), &[]);
        let mut invite = InviteServer::new(rx.msg.bytes().clone(), &self.timers);
        invite.respond(now, code, response, &self.timers);
        Call {
            local: rx.local,
            peer: rx.src,
            phase: Phase::Ended,
            branch: Bytes::copy_from_slice(rx.branch),
            tag,
            invite: Some(invite),
            ringing: None,
            ok: None,
            step_at: None,
            resend: None,
            bye: None,
        }
    }

    /// The To tag of call `number`.
    fn tag(&self, number: u64) -> Bytes {
        Bytes::from(format!("{:016x}", mix(self.config.seed ^ mix(number))))
    }

    /// Takes the steps of call `id` that are due: the 180, the 200, giving
    /// up on the BYE.
    fn advance(&mut self, now: Instant, id: TxnId) {
        // Ringing and answering may both be due (zero delays).
        for _ in 0..2 {
            let Some(call) = self.calls.get(id) else {
                return;
            };
            let Some(at) = call.step_at.filter(|&at| at <= now) else {
                return;
            };
            match call.phase {
                Phase::Trying => self.ring(now, id, at),
                Phase::Ringing => self.answer(now, id),
                Phase::Confirmed => {
                    self.stats.expired += 1;
                    self.end(id);
                }
                Phase::Answered | Phase::Ended => return,
            }
        }
    }

    /// Sends the 180 that was due at `at`; the 200 follows `answer_delay` later.
    fn ring(&mut self, now: Instant, id: TxnId, at: Instant) {
        let (timers, answer_delay) = (self.timers, self.config.answer_delay);
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (Some(invite), Some(ringing)) = (call.invite.as_mut(), call.ringing.take()) else {
            return;
        };
        invite.respond(now, 180, ringing, &timers);
        call.phase = Phase::Ringing;
        call.step_at = Some(at + answer_delay);
        self.flush(id, false);
    }

    /// Sends the 200; from here the core retransmits it until the ACK.
    fn answer(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (Some(invite), Some(ok)) = (call.invite.as_mut(), call.ok.take()) else {
            return;
        };
        invite.respond(now, 200, ok.clone(), &timers);
        let sent = invite.poll_transmit();
        // The 2xx ended the INVITE transaction (RFC 3261 17.2.1).
        call.invite = None;
        call.phase = Phase::Answered;
        call.step_at = None;
        call.resend = Some(Resend {
            response: ok,
            interval: timers.t1,
            next_at: now + timers.t1,
            give_up_at: now + timers.timeout(),
        });
        let (local, peer) = (call.local, call.peer);
        self.stats.answered += 1;
        if let Some(payload) = sent {
            self.push(local, peer, payload);
        }
    }

    /// An ACK: for a 200 it confirms the call; for a non-2xx the machine
    /// takes it (Timer I); a repeated one is absorbed.
    fn on_ack(&mut self, now: Instant, found: Option<TxnId>) {
        let timers = self.timers;
        let Some((id, call)) = found.and_then(|id| self.calls.get_mut(id).map(|c| (id, c))) else {
            self.stats.unexpected += 1;
            return;
        };
        if call.phase == Phase::Answered {
            call.resend = None;
            call.phase = Phase::Confirmed;
            call.step_at = Some(now + MAX_DIALOG);
            self.stats.acks += 1;
        } else if let Some(invite) = call.invite.as_mut() {
            invite.handle_request(now, true, &timers);
        }
        self.settle(id);
    }

    /// A BYE: 200 on its own transaction, which answers a retransmission
    /// with the same 200; the call ends.
    fn on_bye(&mut self, now: Instant, rx: &Received<'_>, found: Option<TxnId>) {
        let timers = self.timers;
        let call = found.and_then(|id| self.calls.get_mut(id).map(|call| (id, call)));
        let Some((id, call)) = call else {
            self.stats.unexpected += 1;
            self.reply(rx, 481, None, &[]);
            return;
        };
        if let Some(bye) = call.bye.as_mut() {
            bye.machine.handle_request();
            self.flush(id, true);
            return;
        }
        if !matches!(call.phase, Phase::Answered | Phase::Confirmed) {
            self.stats.unexpected += 1;
            self.reply(rx, 481, None, &[]);
            return;
        }
        let mut machine = NonInviteServer::new(rx.msg.bytes().clone());
        let ok = response_to(rx.msg, 200, "OK", None, &[]);
        machine.respond(now, 200, ok, &timers);
        call.bye = Some(ByeTxn {
            machine,
            local: rx.local,
            peer: rx.src,
        });
        self.stats.byes += 1;
        self.flush(id, false);
        self.end(id);
        self.settle(id);
    }

    /// A CANCEL of a call's INVITE: 200 to it (RFC 3261 9.2), and 487 to the
    /// INVITE if no final response went yet.
    fn on_cancel(&mut self, now: Instant, rx: &Received<'_>, found: Option<TxnId>) {
        let matched = found.filter(|&id| self.calls.get(id).is_some_and(|c| c.branch == rx.branch));
        let Some((id, call)) = matched.and_then(|id| self.calls.get(id).map(|c| (id, c))) else {
            self.stats.unexpected += 1;
            self.reply(rx, 481, None, &[]);
            return;
        };
        let (tag, ringing) = (
            call.tag.clone(),
            matches!(call.phase, Phase::Trying | Phase::Ringing),
        );
        self.reply(rx, 200, Some(&tag), &[]);
        if ringing {
            self.terminate_invite(now, id);
        }
    }

    /// Answers the INVITE of call `id` 487 and ends the call.
    fn terminate_invite(&mut self, now: Instant, id: TxnId) {
        let (timers, limits) = (self.timers, self.limits);
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(invite) = call.invite.as_mut() else {
            return;
        };
        let Ok(request) = Message::parse_datagram(invite.request().clone(), &limits) else {
            return; // it parsed when it arrived
        };
        let response = response_to(&request, 487, "Request Terminated", Some(&call.tag), &[]);
        invite.respond(now, 487, response, &timers);
        self.stats.cancelled += 1;
        self.flush(id, false);
        self.end(id);
        self.settle(id);
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        due_calls(&mut self.calls, now, &mut fired);
        for &id in &fired {
            self.fire(now, id);
        }
        self.fired = fired;
    }

    /// Runs the due timers of call `id`: its machines', the 2xx
    /// retransmission and its steps.
    fn fire(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        if let Some(call) = self.calls.get_mut(id) {
            if let Some(invite) = call.invite.as_mut() {
                run_due(invite, now, &timers); // Timer H just ends it
            }
            if let Some(bye) = call.bye.as_mut() {
                run_due(&mut bye.machine, now, &timers);
            }
        }
        self.flush(id, true);
        self.fire_resend(now, id);
        self.advance(now, id);
        self.settle(id);
    }

    /// Retransmits the 2xx, the interval doubling up to T2; gives up after
    /// 64*T1 without an ACK (RFC 3261 13.3.1.4).
    fn fire_resend(&mut self, now: Instant, id: TxnId) {
        let t2 = self.timers.t2;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (local, peer) = (call.local, call.peer);
        let Some(resend) = call.resend.as_mut() else {
            return;
        };
        if resend.give_up_at <= now {
            call.resend = None;
            self.stats.expired += 1;
            self.end(id);
            return;
        }
        if resend.next_at > now {
            return;
        }
        resend.interval = (resend.interval * 2).min(t2);
        resend.next_at += resend.interval;
        let payload = resend.response.clone();
        self.stats.retransmissions += 1;
        self.push(local, peer, payload);
    }

    /// Queues what the machines of call `id` want sent; `resent` counts
    /// them as retransmissions.
    fn flush(&mut self, id: TxnId, resent: bool) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (local, peer) = (call.local, call.peer);
        let invite = call.invite.as_mut().and_then(InviteServer::poll_transmit);
        let bye = call.bye.as_mut().and_then(|b| {
            let payload = b.machine.poll_transmit()?;
            Some((b.local, b.peer, payload))
        });
        let sends = [invite.map(|payload| (local, peer, payload)), bye];
        for (local, peer, payload) in sends.into_iter().flatten() {
            self.stats.retransmissions += u64::from(resent);
            self.push(local, peer, payload);
        }
    }

    /// The call is over (counted already): it lingers while a machine has work.
    fn end(&mut self, id: TxnId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.phase == Phase::Ended {
            return;
        }
        call.phase = Phase::Ended;
        call.ringing = None;
        call.ok = None;
        call.step_at = None;
        call.resend = None;
        self.live -= 1;
        self.linger(id);
    }

    /// Queues ended call `id` to be freed first when room is needed.
    fn linger(&mut self, id: TxnId) {
        self.lingering.push_back(id);
        // Calls that ended by their own timer leave stale ids behind.
        if self.lingering.len() > 2 * self.calls.capacity() {
            let calls = &self.calls;
            self.lingering.retain(|&id| calls.get(id).is_some());
        }
    }

    /// Frees lingering calls, oldest first, until a new call fits.
    fn make_room(&mut self) -> bool {
        while !self.calls.has_room(1) {
            let Some(id) = self.lingering.pop_front() else {
                return false;
            };
            // Only ended calls are queued; a stale id finds nothing.
            self.calls.remove(id);
        }
        true
    }

    /// Drops finished machines, then removes call `id` if nothing is left
    /// to do, else arms its timer.
    fn settle(&mut self, id: TxnId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call
            .invite
            .as_ref()
            .is_some_and(InviteServer::is_terminated)
        {
            call.invite = None;
        }
        if call.bye.as_ref().is_some_and(|b| b.machine.is_terminated()) {
            call.bye = None;
        }
        let deadline = call.deadline();
        debug_assert!(deadline.is_some() || call.phase == Phase::Ended);
        if deadline.is_none() {
            self.end(id);
            self.calls.remove(id);
            return;
        }
        self.calls.arm(id, deadline);
    }

    /// Queues a datagram, or drops and counts it.
    fn push(&mut self, local: SocketAddr, dst: SocketAddr, payload: Bytes) {
        self.out.push(local, dst, payload);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.next_deadline()
    }

    /// Calls not ended yet.
    pub fn live_calls(&self) -> usize {
        self.live
    }

    /// The counters since the last call, reset.
    pub fn take_stats(&mut self) -> UasStats {
        self.stats.transmits_dropped += self.out.take_dropped();
        std::mem::take(&mut self.stats)
    }

    /// Calls in the table, lingering ones included.
    #[cfg(test)]
    pub(crate) fn table_len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uac::testkit::{uac_addr, uac_config, uas_addr, uas_config, BackToBack};
    use proptest::prelude::*;

    /// A request from the UAC's address; `to_tag` puts it inside a dialog.
    fn request(method: &str, call_id: &str, branch: &str, to_tag: Option<&str>) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let cseq = match method {
            "BYE" => 2,
            _ => 1,
        };
        format!(
            "{method} sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
Record-Route: <sip:10.0.0.1;lr>\r\nRecord-Route: <sip:10.0.0.2;lr;ftag=x>\r\n\
Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1:5070>;tag=f1\r\n\
To: <sip:service@127.0.0.1:5080>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:bench@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn invite(call_id: &str) -> String {
        request("INVITE", call_id, &format!("z9hG4bK{call_id}"), None)
    }

    /// Feeds `text` to `uas` and returns what it sends at once.
    fn send(uas: &mut Uas, now: Instant, text: &str) -> Vec<Message> {
        let datagram = Bytes::copy_from_slice(text.as_bytes());
        uas.handle_datagram(now, uac_addr(), uas_addr(), datagram);
        sent(uas)
    }

    fn sent(uas: &mut Uas) -> Vec<Message> {
        std::iter::from_fn(|| uas.poll_transmit())
            .map(|t| {
                assert_eq!((t.local, t.dst), (uas_addr(), uac_addr()));
                Message::parse_datagram(t.payload, &ParseLimits::datagram()).unwrap()
            })
            .collect()
    }

    fn codes(messages: &[Message]) -> Vec<u16> {
        messages.iter().filter_map(Message::status_code).collect()
    }

    /// Runs `uas`'s timers up to `until`; returns each response sent, with
    /// its time since `since`.
    fn run(uas: &mut Uas, since: Instant, until: Instant) -> Vec<(Duration, u16)> {
        let mut out = Vec::new();
        while let Some(at) = uas.poll_timeout().filter(|&at| at <= until) {
            uas.handle_timeout(at);
            for m in sent(uas) {
                out.push((at - since, m.status_code().unwrap_or(0)));
            }
        }
        out
    }

    fn immediate() -> UasConfig {
        UasConfig {
            ring_delay: Duration::ZERO,
            answer_delay: Duration::ZERO,
            ..uas_config()
        }
    }

    #[test]
    fn answers_100_180_then_200_with_sdp_contact_and_record_route() {
        let mut uas = Uas::new(uas_config());
        let t0 = Instant::now();
        assert_eq!(codes(&send(&mut uas, t0, &invite("c1"))), [100]);
        uas.handle_timeout(t0 + Duration::from_millis(20));
        let ringing = sent(&mut uas);
        assert_eq!(codes(&ringing), [180]);
        uas.handle_timeout(t0 + Duration::from_millis(50));
        let ok = sent(&mut uas);
        assert_eq!(codes(&ok), [200]);
        let (ringing, ok) = (&ringing[0], &ok[0]);
        ok.validate().unwrap();
        let tag = ok.to().unwrap().tag().unwrap();
        assert_eq!(ringing.to().unwrap().tag(), Some(tag));
        let routes: Vec<_> = ok
            .record_routes()
            .map(|r| r.unwrap().uri().as_bytes())
            .collect();
        assert_eq!(
            routes,
            [&b"sip:10.0.0.1;lr"[..], &b"sip:10.0.0.2;lr;ftag=x"[..]]
        );
        let Some(Ok(edge::sip::Contact::Address(contact))) = ok.contacts().next() else {
            panic!("no Contact");
        };
        assert_eq!(contact.uri().as_bytes(), b"sip:bench-uas@127.0.0.1:5080");
        assert!(ok.content_type().unwrap().unwrap().is("application", "sdp"));
        let sdp = std::str::from_utf8(ok.body()).unwrap();
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n") && sdp.contains("PCMA/8000"));
        assert_eq!(uas.live_calls(), 1);
        assert_eq!(uas.stats.answered, 1);
    }

    #[test]
    fn zero_ring_delay_leaves_out_the_100() {
        let mut uas = Uas::new(immediate());
        assert_eq!(
            codes(&send(&mut uas, Instant::now(), &invite("c1"))),
            [180, 200]
        );
    }

    #[test]
    fn the_200_is_resent_doubling_to_t2_until_64_t1() {
        let mut uas = Uas::new(immediate());
        let t0 = Instant::now();
        send(&mut uas, t0, &invite("c1"));
        let resent = run(&mut uas, t0, t0 + Duration::from_secs(60));
        let at_ms: Vec<_> = resent.iter().map(|(at, _)| at.as_millis()).collect();
        assert_eq!(
            at_ms,
            [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert!(resent.iter().all(|&(_, code)| code == 200));
        let s = uas.take_stats();
        assert_eq!((s.retransmissions, s.expired, s.acks), (10, 1, 0));
        assert_eq!((uas.live_calls(), uas.table_len()), (0, 0));
    }

    #[test]
    fn the_ack_stops_the_200_and_the_bye_ends_the_call() {
        let mut uas = Uas::new(immediate());
        let t0 = Instant::now();
        let answer = send(&mut uas, t0, &invite("c1"));
        let tag = std::str::from_utf8(to_tag(&answer[1]).unwrap())
            .unwrap()
            .to_owned();
        assert_eq!(run(&mut uas, t0, t0 + Duration::from_millis(600)).len(), 1);
        let ack = request("ACK", "c1", "z9hG4bKa", Some(&tag));
        assert!(send(&mut uas, t0 + Duration::from_millis(600), &ack).is_empty());
        assert!(send(&mut uas, t0 + Duration::from_millis(700), &ack).is_empty());
        assert!(run(&mut uas, t0, t0 + Duration::from_secs(10)).is_empty());
        let bye = request("BYE", "c1", "z9hG4bKb", Some(&tag));
        let first = send(&mut uas, t0 + Duration::from_secs(10), &bye);
        let again = send(&mut uas, t0 + Duration::from_secs(11), &bye);
        assert_eq!(codes(&first), [200]);
        assert_eq!(first[0].as_bytes(), again[0].as_bytes(), "the same 200");
        let s = uas.take_stats();
        assert_eq!((s.acks, s.byes, s.retransmissions), (1, 1, 2));
        assert_eq!(uas.live_calls(), 0);
        // Timer J (64*T1) keeps the BYE's transaction, then all is freed.
        run(&mut uas, t0, t0 + Duration::from_secs(43));
        assert_eq!(uas.table_len(), 0);
        let late = send(&mut uas, t0 + Duration::from_secs(44), &bye);
        assert_eq!(codes(&late), [481]);
    }

    /// The To tag of a message.
    fn to_tag(m: &Message) -> Option<&[u8]> {
        m.to().ok().and_then(|to| to.tag())
    }

    #[test]
    fn a_retransmitted_invite_gets_the_last_response() {
        let config = UasConfig {
            ring_delay: Duration::from_secs(1),
            answer_delay: Duration::from_secs(1),
            ..uas_config()
        };
        let mut uas = Uas::new(config);
        let t0 = Instant::now();
        let text = invite("c1");
        assert_eq!(codes(&send(&mut uas, t0, &text)), [100]);
        assert_eq!(codes(&send(&mut uas, t0, &text)), [100]);
        run(&mut uas, t0, t0 + Duration::from_secs(1));
        assert_eq!(
            codes(&send(&mut uas, t0 + Duration::from_secs(1), &text)),
            [180]
        );
        run(&mut uas, t0, t0 + Duration::from_secs(2));
        assert_eq!(
            codes(&send(&mut uas, t0 + Duration::from_secs(2), &text)),
            [200]
        );
        let s = uas.take_stats();
        assert_eq!((s.invites, s.retransmissions), (1, 3));
    }

    #[test]
    fn options_in_and_out_of_dialog_get_200() {
        let mut uas = Uas::new(uas_config());
        let now = Instant::now();
        let out = send(&mut uas, now, &request("OPTIONS", "o1", "z9hG4bKo1", None));
        let inside = send(
            &mut uas,
            now,
            &request("OPTIONS", "o2", "z9hG4bKo2", Some("x")),
        );
        assert_eq!(codes(&out), [200]);
        assert_eq!(codes(&inside), [200]);
        assert!(to_tag(&out[0]).is_some(), "a tag on the 200");
        assert_eq!(to_tag(&inside[0]), Some(&b"x"[..]));
        assert_eq!(uas.take_stats().options, 2);
        assert_eq!(uas.table_len(), 0, "stateless");
    }

    #[test]
    fn cancel_of_a_ringing_invite_gets_200_and_487() {
        let config = UasConfig {
            answer_delay: Duration::from_secs(10),
            ..immediate()
        };
        let mut uas = Uas::new(config);
        let t0 = Instant::now();
        let ringing = send(&mut uas, t0, &invite("c1"));
        let cancel = request("CANCEL", "c1", "z9hG4bKc1", None);
        let answers = send(&mut uas, t0, &cancel);
        assert_eq!(codes(&answers), [200, 487]);
        assert_eq!(answers[0].cseq().method, Method::Cancel);
        assert_eq!(answers[1].cseq().method, Method::Invite);
        assert_eq!(to_tag(&answers[1]), to_tag(&ringing[0]));
        // The 487 is resent (Timer G) until its ACK, which the machine takes.
        assert_eq!(
            run(&mut uas, t0, t0 + Duration::from_millis(500)),
            [(Duration::from_millis(500), 487)]
        );
        let ack = request("ACK", "c1", "z9hG4bKc1", Some("t"));
        assert!(send(&mut uas, t0 + Duration::from_millis(600), &ack).is_empty());
        assert!(run(&mut uas, t0, t0 + Duration::from_secs(20)).is_empty());
        let s = uas.take_stats();
        assert_eq!((s.cancelled, s.answered, s.acks), (1, 0, 0));
        assert_eq!((uas.live_calls(), uas.table_len()), (0, 0));
        let stray = send(&mut uas, t0, &request("CANCEL", "c9", "z9hG4bKc9", None));
        assert_eq!(codes(&stray), [481]);
    }

    #[test]
    fn a_failure_is_resent_until_its_ack() {
        let config = UasConfig {
            fail_share: 1.0,
            fail_code: 486,
            ..uas_config()
        };
        let mut uas = Uas::new(config);
        let t0 = Instant::now();
        let busy = send(&mut uas, t0, &invite("c1"));
        assert_eq!(codes(&busy), [486]);
        assert_eq!(busy[0].reason_phrase(), Some(&b"Busy Here"[..]));
        let resent = run(&mut uas, t0, t0 + Duration::from_millis(1_600));
        assert_eq!(resent.len(), 2, "Timer G at 0.5 and 1.5 s");
        let ack = request("ACK", "c1", "z9hG4bKc1", Some("t"));
        send(&mut uas, t0 + Duration::from_millis(1_600), &ack);
        assert!(run(&mut uas, t0, t0 + Duration::from_secs(40)).is_empty());
        let s = uas.take_stats();
        assert_eq!((s.invites, s.rejected, s.retransmissions), (1, 1, 2));
        assert_eq!(uas.table_len(), 0, "freed after Timer I");
    }

    #[test]
    fn a_full_table_answers_503() {
        let config = UasConfig {
            max_calls: 1,
            ring_delay: Duration::from_secs(5),
            ..uas_config()
        };
        let mut uas = Uas::new(config);
        let now = Instant::now();
        assert_eq!(codes(&send(&mut uas, now, &invite("c1"))), [100]);
        assert_eq!(codes(&send(&mut uas, now, &invite("c2"))), [503]);
        assert_eq!(codes(&send(&mut uas, now, &invite("c3"))), [503]);
        let s = uas.take_stats();
        assert_eq!((s.invites, s.rejected, uas.live_calls()), (3, 2, 1));
        assert!(
            uas.table_len() <= 2,
            "one live, one lingering: {}",
            uas.table_len()
        );
        let mut none = Uas::new(UasConfig {
            max_calls: 0,
            ..uas_config()
        });
        assert_eq!(codes(&send(&mut none, now, &invite("c4"))), [503]);
    }

    #[test]
    fn the_failing_share_is_the_same_calls_on_every_run() {
        let fails = |seed| {
            let config = UasConfig {
                fail_share: 0.5,
                seed,
                ..immediate()
            };
            let mut uas = Uas::new(config);
            let now = Instant::now();
            (0..1_000)
                .filter(|n| codes(&send(&mut uas, now, &invite(&format!("x-{n}")))) == [503])
                .collect::<Vec<_>>()
        };
        let a = fails(1);
        assert!((400..=600).contains(&a.len()), "{}", a.len());
        assert_eq!(a, fails(2), "by the Call-ID, not the seed");
    }

    #[test]
    fn loss_drops_its_share_the_same_way_for_a_seed() {
        let dropped = |seed| {
            let mut uas = Uas::new(UasConfig {
                loss: 0.2,
                seed,
                ..uas_config()
            });
            for _ in 0..1_000 {
                send(&mut uas, Instant::now(), "garbage");
            }
            let s = uas.take_stats();
            assert_eq!(s.dropped + s.unexpected, 1_000);
            s.dropped
        };
        let d = dropped(7);
        assert!((150..=250).contains(&d), "{d}");
        assert_eq!(d, dropped(7));
        assert_ne!(d, dropped(8));
    }

    #[test]
    fn stray_and_unknown_requests_are_unexpected() {
        let mut uas = Uas::new(uas_config());
        let now = Instant::now();
        let response =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:b@h>;tag=2\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(send(&mut uas, now, "hello").is_empty());
        assert!(send(&mut uas, now, response).is_empty());
        assert!(send(
            &mut uas,
            now,
            &request("ACK", "nope", "z9hG4bKa", Some("t"))
        )
        .is_empty());
        let info = send(&mut uas, now, &request("INFO", "i1", "z9hG4bKi", None));
        assert_eq!(codes(&info), [501]);
        assert_eq!(uas.take_stats().unexpected, 4);
    }

    #[test]
    fn half_the_calls_fail_back_to_back() {
        let uas = UasConfig {
            fail_share: 0.5,
            ..uas_config()
        };
        let mut b = BackToBack::new(uac_config(), Some(uas));
        let n = 200;
        b.place_calls(n, Duration::from_millis(10));
        b.run_for(Duration::from_secs(60));
        let s = b.uac.take_stats();
        let u = b.uas.as_mut().unwrap().take_stats();
        assert!((70..=130).contains(&s.failed_code), "{}", s.failed_code);
        assert_eq!(s.failed_code + s.completed, n as u64);
        assert_eq!(
            (s.failed, s.failed_timeout, s.unexpected),
            (s.failed_code, 0, 0)
        );
        assert_eq!(s.final_codes[4], s.failed_code, "503 is class 5");
        assert_eq!(u.rejected, s.failed_code);
        assert_eq!(s.retransmissions, 0, "nothing lost, nothing resent");
        assert_eq!(u.retransmissions, 0, "every failure ACKed: no Timer G");
        assert_eq!(
            (b.uac.calls_len(), b.uas.as_ref().unwrap().table_len()),
            (0, 0)
        );
    }

    #[test]
    fn above_the_rate_limit_new_calls_fail() {
        let uas = UasConfig {
            fail_above_cps: Some(50),
            ..immediate()
        };
        let mut b = BackToBack::new(uac_config(), Some(uas));
        let start = b.now;
        let mut accepted = Vec::new();
        for second in 1..=4 {
            // 100 calls a second: twice the limit.
            b.place_calls(100, Duration::from_millis(10));
            b.run_until(start + Duration::from_secs(second));
            accepted.push(b.uas.as_mut().unwrap().take_stats().answered);
        }
        assert!(
            accepted.iter().all(|&a| (45..=50).contains(&a)),
            "{accepted:?}"
        );
        b.run_for(Duration::from_secs(60));
        let s = b.uac.take_stats();
        assert!(s.failed_code >= 180, "{s:?}");
        assert_eq!(s.failed_code + s.completed, 400);
    }

    /// Requests of one call to the UAS, to mutate.
    fn requests() -> Vec<String> {
        vec![
            invite("p1"),
            request("ACK", "p1", "z9hG4bKa", Some("t")),
            request("BYE", "p1", "z9hG4bKb", Some("t")),
            request("CANCEL", "p1", "z9hG4bKp1", None),
            request("OPTIONS", "p2", "z9hG4bKo", None),
        ]
    }

    /// Arbitrary bytes, or a valid request with a few bytes overwritten.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        let mutated = (
            0..5usize,
            0usize..500,
            prop::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(which, at, junk)| {
                let mut bytes = requests()[which].clone().into_bytes();
                for (i, b) in junk.into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = b;
                    }
                }
                bytes
            });
        prop_oneof![prop::collection::vec(any::<u8>(), 0..600), mutated]
    }

    proptest! {
        #[test]
        fn any_datagram_leaves_the_uas_standing(
            datagrams in prop::collection::vec((datagram(), 0u64..3_000), 1..12),
            loss in prop_oneof![Just(0.0), Just(0.3)],
        ) {
            let mut uas = Uas::new(UasConfig { loss, ..uas_config() });
            let mut now = Instant::now();
            for (bytes, wait_ms) in datagrams {
                uas.handle_datagram(now, uac_addr(), uas_addr(), Bytes::from(bytes));
                now += Duration::from_millis(wait_ms);
                uas.handle_timeout(now);
                while uas.poll_transmit().is_some() {}
            }
            run(&mut uas, now, now + Duration::from_secs(4_000));
            prop_assert_eq!(uas.live_calls(), 0);
            prop_assert_eq!(uas.table_len(), 0);
        }
    }
}
