//! The calling side (sans-IO): INVITE with SDP, ACK on 200, BYE after the
//! hold time; retransmissions per RFC 3261 Timers A/B and E/F; latency
//! measured from each call's scheduled start (no coordinated omission).
//!
//! Each call is one entry of an [`edge::transaction::TransactionTable`]
//! filed under its Call-ID, with one timer on the table's wheel. The INVITE
//! and the BYE run in the edge's client transaction machines
//! ([`InviteClient`], [`NonInviteClient`]); the core itself sends the ACK of
//! a 2xx (and again for each retransmitted 2xx) and the BYE. A call that has
//! ended stays in the table (lingering) only while a machine still absorbs
//! retransmitted responses (Timer D, Timer K); when the table is full, the
//! oldest lingering call makes room for a new one.
//!
//! Every request goes to `config.target`, whatever the route set says: the
//! target is the proxy under test (or the UAS itself).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::proxy::{LatencyHistogram, Transmit};
use edge::sip::{Contact, HeaderKind, Message, Method, ParseError, ParseLimits};
use edge::transaction::{
    InviteClient, NonInviteClient, TimerConfig, TransactionTable, TxnId, Verdict,
};

use crate::machines::{due_calls, run_due, table_capacity, timers, Outbox, MAX_DELAY};
use crate::message::{self, DialogParts, InviteParts};

/// Most Record-Route values taken into a route set; more are left out.
const MAX_ROUTE_SET: usize = 16;
/// RFC 3261 T4: how long a BYE transaction absorbs retransmitted responses
/// (Timer K).
const T4: Duration = Duration::from_secs(5);
/// How long a call may ring without a final response (the machine's Timer C,
/// RFC 3261 16.6): after it the call fails as a timeout. Timer B stops at the
/// first provisional, so this bounds a UAS that rings forever.
const MAX_RING: Duration = Duration::from_secs(180);
/// Settings of a [`Uac`].
#[derive(Clone, Debug)]
pub struct UacConfig {
    /// Where every request goes (the proxy under test, or a UAS).
    pub target: SocketAddr,
    /// Request-URI of the INVITEs, e.g. `sip:service@127.0.0.1:5060`.
    pub request_uri: String,
    /// Time from the ACK to the BYE.
    pub hold: Duration,
    /// RFC 3261 T1.
    pub t1: Duration,
    /// RFC 3261 T2.
    pub t2: Duration,
    /// Most live calls; `start_call` beyond it refuses (and counts).
    pub max_calls: usize,
    /// Makes Call-IDs, tags and branches unique across threads and runs.
    pub call_id_prefix: String,
    /// A call with no final response this long after it was scheduled counts
    /// as `late`, and its later outcome is not counted; zero: no bound.
    pub late_after: Duration,
}

/// What a [`Uac`] counted since the last [`Uac::take_stats`].
#[derive(Clone, Debug, Default)]
pub struct UacStats {
    /// Calls started (first INVITE sent).
    pub started: u64,
    /// Calls refused because `max_calls` were live.
    pub refused: u64,
    /// Calls whose INVITE got a 2xx (late calls left out).
    pub answered: u64,
    /// Calls that ended with their BYE answered 2xx.
    pub completed: u64,
    /// Calls that ended otherwise (the sum of the three below).
    pub failed: u64,
    /// ... with no final response to the INVITE or the BYE (Timer B/F, or
    /// ringing for 3 minutes).
    pub failed_timeout: u64,
    /// ... with a non-2xx final response to the INVITE.
    pub failed_code: u64,
    /// ... with a non-2xx final response to the BYE.
    pub failed_bye: u64,
    /// Calls with no final response to the INVITE within `late_after` of
    /// their scheduled start (started late included). Every started call
    /// ends up in exactly one of `completed`, `failed` and `late`.
    pub late: u64,
    /// Final responses to INVITEs by class (index 0 is 1xx), each call's
    /// first final once (late calls left out).
    pub final_codes: [u64; 6],
    /// Requests retransmitted (INVITE, BYE) and ACKs resent for 2xx retransmissions.
    pub retransmissions: u64,
    /// Datagrams that matched no call or did not parse (requests included:
    /// the UAC answers none).
    pub unexpected: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// From the scheduled start to the first 180.
    pub invite_to_180: LatencyHistogram,
    /// From the scheduled start to the 2xx.
    pub invite_to_200: LatencyHistogram,
    /// From the first BYE to its 2xx.
    pub bye_to_200: LatencyHistogram,
}

impl UacStats {
    /// Adds `other` (another thread's, or the next interval's).
    pub fn add(&mut self, other: &UacStats) {
        let counters = [
            (&mut self.started, other.started),
            (&mut self.refused, other.refused),
            (&mut self.answered, other.answered),
            (&mut self.completed, other.completed),
            (&mut self.failed, other.failed),
            (&mut self.failed_timeout, other.failed_timeout),
            (&mut self.failed_code, other.failed_code),
            (&mut self.failed_bye, other.failed_bye),
            (&mut self.late, other.late),
            (&mut self.retransmissions, other.retransmissions),
            (&mut self.unexpected, other.unexpected),
            (&mut self.transmits_dropped, other.transmits_dropped),
        ];
        for (mine, theirs) in counters {
            *mine += theirs;
        }
        for (mine, theirs) in self.final_codes.iter_mut().zip(other.final_codes) {
            *mine += theirs;
        }
        self.invite_to_180.add(&other.invite_to_180);
        self.invite_to_200.add(&other.invite_to_200);
        self.bye_to_200.add(&other.bye_to_200);
    }
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, no final response yet.
    Inviting,
    /// The 2xx is ACKed; the BYE goes at `bye_at`.
    Answered,
    /// BYE sent, no final response yet.
    Hanging,
    /// Counted and over; the entry stays while a machine absorbs
    /// retransmitted responses.
    Ended,
}

/// What the 2xx to the INVITE set up (RFC 3261 12.1.2).
#[derive(Debug)]
struct Dialog {
    /// The To value of the 2xx, with the remote tag.
    to: Bytes,
    remote_tag: Bytes,
    /// The Contact URI of the 2xx: the Request-URI of the ACK and the BYE.
    target: Bytes,
    /// The Record-Route values reversed, as `Route:` lines.
    route_lines: Bytes,
    /// The ACK as sent, resent for each retransmitted 2xx (13.2.2.4).
    ack: Bytes,
    bye_branch: Bytes,
}

impl Dialog {
    /// The dialog the 2xx `response` sets up for `call`, with its ACK; the
    /// Request-URI stands in for a missing Contact.
    fn new(call: &Call, response: &Message, request_uri: &str, token: &str) -> Dialog {
        let to = response
            .header(HeaderKind::To)
            .map_or(&b""[..], |h| h.value);
        let remote_tag = response.to().ok().and_then(|t| t.tag()).unwrap_or_default();
        let target = remote_target(response).unwrap_or(request_uri.as_bytes());
        let route_lines = route_set(response);
        let parts = DialogParts {
            target,
            route_lines: &route_lines,
            local: call.local,
            from: &call.from,
            to,
            call_id: &call.call_id,
        };
        let ack = message::in_dialog("ACK", 1, &branch(token, call.number, 'a'), &parts);
        Dialog {
            to: Bytes::copy_from_slice(to),
            remote_tag: Bytes::copy_from_slice(remote_tag),
            target: Bytes::copy_from_slice(target),
            route_lines,
            ack,
            bye_branch: branch(token, call.number, 'b'),
        }
    }
}

/// One call.
#[derive(Debug)]
struct Call {
    number: u64,
    /// When the call should have started: latencies count from here.
    scheduled: Instant,
    local: SocketAddr,
    phase: Phase,
    call_id: Bytes,
    /// The From value, local tag included.
    from: Bytes,
    invite_branch: Bytes,
    /// The INVITE transaction until a 2xx ends it.
    invite: Option<InviteClient>,
    /// A 180 or 183 was timed.
    ringing: bool,
    /// When the call turns late, until a final response to the INVITE.
    late_at: Option<Instant>,
    /// Counted late: its outcome is not counted again.
    late: bool,
    dialog: Option<Box<Dialog>>,
    bye_at: Option<Instant>,
    bye: Option<NonInviteClient>,
    bye_sent_at: Option<Instant>,
}

impl Call {
    /// The earliest timer of the call.
    fn deadline(&self) -> Option<Instant> {
        let invite = self.invite.as_ref().and_then(InviteClient::poll_timeout);
        let bye = self.bye.as_ref().and_then(NonInviteClient::poll_timeout);
        [invite, bye, self.bye_at, self.late_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The BYE of the dialog, if there is one.
    fn bye_request(&self) -> Option<Bytes> {
        let d = self.dialog.as_deref()?;
        let parts = DialogParts {
            target: &d.target,
            route_lines: &d.route_lines,
            local: self.local,
            from: &self.from,
            to: &d.to,
            call_id: &self.call_id,
        };
        Some(message::in_dialog("BYE", 2, &d.bye_branch, &parts))
    }
}

/// The prefix with every byte that may not appear in a token (RFC 3261 25.1)
/// replaced by `-`: it goes into branches and tags as well as Call-IDs.
fn token_of(prefix: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    let cleaned: String = prefix
        .chars()
        .map(|c| if token(c) { c } else { '-' })
        .collect();
    match cleaned.is_empty() {
        true => "bench".to_owned(),
        false => cleaned,
    }
}

fn branch(token: &str, number: u64, kind: char) -> Bytes {
    Bytes::from(format!("z9hG4bK{token}-{number}-{kind}"))
}

/// The route set of a 2xx (RFC 3261 12.1.2): its Record-Route values in
/// reverse order, display names left out.
fn route_set(response: &Message) -> Bytes {
    let mut values: Vec<Vec<u8>> = response
        .record_routes()
        .take(MAX_ROUTE_SET)
        .filter_map(Result::ok)
        .map(|addr| {
            let mut value = Vec::with_capacity(64);
            value.push(b'<');
            value.extend_from_slice(addr.uri().as_bytes());
            value.push(b'>');
            if !addr.params().is_empty() {
                value.push(b';');
                value.extend_from_slice(addr.params().as_bytes());
            }
            value
        })
        .collect();
    values.reverse();
    message::route_lines(values.iter().map(Vec::as_slice))
}

/// The Contact URI of a 2xx: the dialog's remote target.
fn remote_target(response: &Message) -> Option<&[u8]> {
    response.contacts().find_map(|c| match c {
        Ok(Contact::Address(addr)) => Some(addr.uri().as_bytes()),
        _ => None,
    })
}

/// The calls of one thread.
pub struct Uac {
    config: UacConfig,
    timers: TimerConfig,
    limits: ParseLimits,
    /// `call_id_prefix` made safe for branches and tags.
    token: String,
    /// Live and lingering calls, at most twice `max_calls`.
    calls: TransactionTable<Call>,
    /// Ended calls still in the table, oldest first (some may be gone).
    lingering: VecDeque<TxnId>,
    live: usize,
    next_number: u64,
    out: Outbox,
    fired: Vec<TxnId>,
    stats: UacStats,
}

impl Uac {
    /// No calls yet. T1 is taken within 1 ms to 60 s, T2 within T1 to a
    /// day, and the hold time and late bound at most a day.
    pub fn new(mut config: UacConfig) -> Self {
        config.hold = config.hold.min(MAX_DELAY);
        config.late_after = config.late_after.min(MAX_DELAY);
        Uac {
            timers: timers(config.t1, config.t2, T4, MAX_RING),
            limits: ParseLimits::datagram(),
            token: token_of(&config.call_id_prefix),
            calls: TransactionTable::new(table_capacity(config.max_calls)),
            lingering: VecDeque::new(),
            live: 0,
            next_number: 0,
            out: Outbox::default(),
            fired: Vec::new(),
            stats: UacStats::default(),
            config,
        }
    }

    /// Starts a call scheduled at `scheduled` (latencies count from it),
    /// sending its INVITE now from the socket bound at `local`. `false` when
    /// `max_calls` are live (counted as refused).
    pub fn start_call(&mut self, scheduled: Instant, now: Instant, local: SocketAddr) -> bool {
        self.calls.start(now);
        if self.live >= self.config.max_calls || !self.make_room() {
            self.stats.refused += 1;
            return false;
        }
        let number = self.next_number;
        self.next_number += 1;
        let call = self.new_call(number, scheduled, now, local);
        let Ok(id) = self
            .calls
            .insert(message::call_key(call.call_id.clone()), call)
        else {
            // Unreachable: make_room left room and the Call-ID carries a
            // fresh number. Counted as refused all the same.
            self.stats.refused += 1;
            return false;
        };
        self.live += 1;
        self.stats.started += 1;
        self.flush(id, false);
        self.fire_late(now, id);
        self.settle(id);
        true
    }

    fn new_call(&self, number: u64, scheduled: Instant, now: Instant, local: SocketAddr) -> Call {
        let token = &self.token;
        let call_id = Bytes::from(format!("{token}-{number}"));
        let from = Bytes::from(format!("<sip:bench@{local}>;tag={token}-{number}"));
        let invite_branch = branch(token, number, 'i');
        let sdp = message::sdp("bench", number, local.ip(), message::rtp_port(number));
        let request = message::invite(&InviteParts {
            request_uri: &self.config.request_uri,
            local,
            branch: &invite_branch,
            from: &from,
            call_id: &call_id,
            sdp: &sdp,
        });
        let late_after = self.config.late_after;
        Call {
            number,
            scheduled,
            local,
            phase: Phase::Inviting,
            call_id,
            from,
            invite_branch,
            invite: Some(InviteClient::new(now, request, &self.timers)),
            ringing: false,
            late_at: (!late_after.is_zero()).then(|| scheduled + late_after),
            late: false,
            dialog: None,
            bye_at: None,
            bye: None,
            bye_sent_at: None,
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

    /// A datagram from `src` on the socket bound at `local`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        datagram: Bytes,
    ) {
        // Responses find their call by Call-ID and branch, from wherever.
        let _ = (src, local);
        self.calls.start(now);
        let response = match Message::parse_datagram(datagram, &self.limits) {
            Ok(m) => m,
            Err(ParseError::Empty) => return, // a CRLF keep-alive
            Err(_) => {
                self.stats.unexpected += 1;
                return;
            }
        };
        if !self.on_response(now, &response) {
            self.stats.unexpected += 1;
        }
    }

    /// Hands a response to its call; `false` when it matches none.
    fn on_response(&mut self, now: Instant, response: &Message) -> bool {
        let Some(code) = response.status_code() else {
            return false;
        };
        let Some(id) = self.calls.find(&message::call_key_of(response)) else {
            return false;
        };
        let Ok(via) = response.top_via() else {
            return false;
        };
        let branch = via.branch().unwrap_or_default();
        let Some(call) = self.calls.get(id) else {
            return false;
        };
        let bye_branch = call.dialog.as_ref().map(|d| &d.bye_branch[..]);
        match response.cseq().method {
            Method::Invite if call.invite_branch == branch => {
                self.on_invite_response(now, id, code, response)
            }
            Method::Bye if bye_branch == Some(branch) => self.on_bye_response(now, id, code),
            _ => false,
        }
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        id: TxnId,
        code: u16,
        response: &Message,
    ) -> bool {
        match code {
            100..=199 => {
                self.on_provisional(now, id, code, response);
                true
            }
            200..=299 => self.on_success(now, id, response),
            _ => self.on_failure(now, id, code, response),
        }
    }

    /// Times the first 180 or 183; later provisionals are absorbed.
    fn on_provisional(&mut self, now: Instant, id: TxnId, code: u16, response: &Message) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.phase != Phase::Inviting {
            return;
        }
        if let Some(invite) = call.invite.as_mut() {
            invite.handle_response(now, response, &timers);
        }
        if matches!(code, 180 | 183) && !call.ringing {
            call.ringing = true;
            let latency = now.saturating_duration_since(call.scheduled);
            self.stats.invite_to_180.record(latency);
        }
        self.settle(id);
    }

    /// A 2xx: the first sets up the dialog and is ACKed; a retransmission of
    /// it gets the same ACK again (RFC 3261 13.2.2.4).
    fn on_success(&mut self, now: Instant, id: TxnId, response: &Message) -> bool {
        let Some(call) = self.calls.get(id) else {
            return false;
        };
        if let Some(dialog) = call.dialog.as_deref() {
            let tag = response
                .to()
                .ok()
                .and_then(|to| to.tag())
                .unwrap_or_default();
            if dialog.remote_tag != tag {
                return false; // a second dialog (forking): not supported
            }
            let (local, ack) = (call.local, dialog.ack.clone());
            self.stats.retransmissions += 1;
            self.push(local, ack);
            return true;
        }
        if call.phase != Phase::Inviting {
            return false;
        }
        self.answer(now, id, response);
        true
    }

    /// The first 2xx: counts it, ACKs it and schedules the BYE.
    fn answer(&mut self, now: Instant, id: TxnId, response: &Message) {
        let hold = self.config.hold;
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let dialog = Dialog::new(call, response, &self.config.request_uri, &self.token);
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        // The 2xx ends the INVITE transaction (17.1.1.2); the ACK is ours.
        call.invite = None;
        call.late_at = None;
        if !call.late {
            self.stats.answered += 1;
            self.stats.final_codes[1] += 1;
        }
        // A late call's setup time is still a sample of the latency.
        let latency = now.saturating_duration_since(call.scheduled);
        self.stats.invite_to_200.record(latency);
        let (local, ack) = (call.local, dialog.ack.clone());
        call.dialog = Some(Box::new(dialog));
        call.phase = Phase::Answered;
        call.bye_at = Some(now + hold);
        self.push(local, ack);
        if hold.is_zero() {
            self.send_bye(now, id);
        }
        self.settle(id);
    }

    /// A final non-2xx: the machine ACKs it (17.1.1.3) and absorbs its
    /// retransmissions, ACKing each again.
    fn on_failure(&mut self, now: Instant, id: TxnId, code: u16, response: &Message) -> bool {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return false;
        };
        let inviting = call.phase == Phase::Inviting;
        let Some(invite) = call.invite.as_mut() else {
            return false; // after a 2xx
        };
        let first = invite.handle_response(now, response, &timers) == Verdict::Deliver && inviting;
        let counted = first && !call.late;
        call.late_at = call.late_at.filter(|_| !first);
        self.flush(id, !first);
        if counted {
            self.stats.failed_code += 1;
            self.stats.failed += 1;
            self.stats.final_codes[usize::from(code / 100) - 1] += 1;
        }
        if first {
            self.end(id);
        }
        self.settle(id);
        true
    }

    fn on_bye_response(&mut self, now: Instant, id: TxnId, code: u16) -> bool {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return false;
        };
        let (hanging, late) = (call.phase == Phase::Hanging, call.late);
        let since = call.bye_sent_at.unwrap_or(now);
        let Some(bye) = call.bye.as_mut() else {
            return false;
        };
        let verdict = bye.handle_response(now, code, &timers);
        if verdict == Verdict::Deliver && code >= 200 && hanging {
            match (200..300).contains(&code) {
                true => {
                    self.stats.completed += u64::from(!late);
                    let latency = now.saturating_duration_since(since);
                    self.stats.bye_to_200.record(latency);
                }
                false if !late => {
                    self.stats.failed_bye += 1;
                    self.stats.failed += 1;
                }
                false => {}
            }
            self.end(id);
        }
        self.settle(id);
        true
    }

    /// Sends the BYE of an answered call on its own transaction.
    fn send_bye(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.phase != Phase::Answered {
            return;
        }
        let Some(request) = call.bye_request() else {
            return;
        };
        call.bye = Some(NonInviteClient::new(now, request, &timers));
        call.bye_at = None;
        call.bye_sent_at = Some(now);
        call.phase = Phase::Hanging;
        self.flush(id, false);
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

    /// Runs the due timers of call `id`: its machines' and the BYE's.
    fn fire(&mut self, now: Instant, id: TxnId) {
        self.fire_late(now, id);
        self.fire_invite(now, id);
        let bye_due = self
            .calls
            .get(id)
            .is_some_and(|c| c.bye_at.is_some_and(|at| at <= now));
        if bye_due {
            self.send_bye(now, id);
        }
        self.fire_bye(now, id);
        self.settle(id);
    }

    /// Timer A resends (counted), Timer B or C fails the call, Timer D ends
    /// the lingering.
    fn fire_invite(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (inviting, late) = (call.phase == Phase::Inviting, call.late);
        let Some(invite) = call.invite.as_mut() else {
            return;
        };
        let event = run_due(invite, now, &timers);
        let timed_out = event.is_some() && inviting;
        if timed_out {
            invite.terminate(); // Timer C leaves it proceeding
        }
        self.flush(id, true);
        if timed_out {
            self.count_timeout(late);
            self.end(id);
        }
    }

    /// Counts a call with no final response as late once its bound passed.
    fn fire_late(&mut self, now: Instant, id: TxnId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.late_at.is_some_and(|at| at <= now) {
            call.late_at = None;
            call.late = true;
            self.stats.late += 1;
        }
    }

    /// A timeout (Timer B, C or F) ends the call; counted unless it is late.
    fn count_timeout(&mut self, late: bool) {
        if !late {
            self.stats.failed_timeout += 1;
            self.stats.failed += 1;
        }
    }

    /// Timer E resends (counted), Timer F fails the call, Timer K ends the
    /// lingering.
    fn fire_bye(&mut self, now: Instant, id: TxnId) {
        let timers = self.timers;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (hanging, late) = (call.phase == Phase::Hanging, call.late);
        let Some(bye) = call.bye.as_mut() else {
            return;
        };
        let timed_out = run_due(bye, now, &timers).is_some() && hanging;
        self.flush(id, true);
        if timed_out {
            self.count_timeout(late);
            self.end(id);
        }
    }

    /// Queues what the machines of call `id` want sent; `resent` counts
    /// them as retransmissions.
    fn flush(&mut self, id: TxnId, resent: bool) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let local = call.local;
        let sends = [
            call.invite.as_mut().and_then(InviteClient::poll_transmit),
            call.bye.as_mut().and_then(NonInviteClient::poll_transmit),
        ];
        for payload in sends.into_iter().flatten() {
            self.stats.retransmissions += u64::from(resent);
            self.push(local, payload);
        }
    }

    /// The call is over (counted already): it lingers until its machines end.
    fn end(&mut self, id: TxnId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.phase == Phase::Ended {
            return;
        }
        call.phase = Phase::Ended;
        call.bye_at = None;
        self.live -= 1;
        self.lingering.push_back(id);
        // Calls that ended by their own timer leave stale ids behind.
        if self.lingering.len() > 2 * self.calls.capacity() {
            let calls = &self.calls;
            self.lingering.retain(|&id| calls.get(id).is_some());
        }
    }

    /// Removes call `id` if it is over and nothing is left to absorb, else
    /// arms its timer.
    fn settle(&mut self, id: TxnId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let deadline = call.deadline();
        debug_assert!(deadline.is_some() || call.phase == Phase::Ended);
        if deadline.is_none() {
            self.end(id);
            self.calls.remove(id);
            return;
        }
        self.calls.arm(id, deadline);
    }

    /// Queues a datagram to the target, or drops and counts it.
    fn push(&mut self, local: SocketAddr, payload: Bytes) {
        self.out.push(local, self.config.target, payload);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.next_deadline()
    }

    /// Calls started and not ended.
    pub fn live_calls(&self) -> usize {
        self.live
    }

    /// The counters since the last call, reset.
    pub fn take_stats(&mut self) -> UacStats {
        self.stats.transmits_dropped += self.out.take_dropped();
        std::mem::take(&mut self.stats)
    }

    /// Calls in the table, lingering ones included.
    #[cfg(test)]
    pub(crate) fn calls_len(&self) -> usize {
        self.calls.len()
    }
}

/// A UAC and a UAS wired back to back in memory, on a fake clock: the
/// scenario harness of the tests of both cores.
#[cfg(test)]
pub(crate) mod testkit {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use edge::proxy::Transmit;

    use super::{Uac, UacConfig};
    use crate::uas::{Uas, UasConfig};

    /// Where the UAC sends from.
    pub(crate) fn uac_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5070))
    }

    /// Where the UAS listens.
    pub(crate) fn uas_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5080))
    }

    pub(crate) fn uac_config() -> UacConfig {
        UacConfig {
            target: uas_addr(),
            request_uri: format!("sip:service@{}", uas_addr()),
            hold: Duration::from_millis(100),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            max_calls: 10_000,
            call_id_prefix: "test".to_owned(),
            late_after: Duration::ZERO,
        }
    }

    pub(crate) fn uas_config() -> UasConfig {
        UasConfig {
            ring_delay: Duration::from_millis(20),
            answer_delay: Duration::from_millis(30),
            fail_share: 0.0,
            fail_code: 503,
            fail_above_cps: None,
            loss: 0.0,
            seed: 1,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            max_calls: 10_000,
        }
    }

    /// The first datagram in flight if it has arrived by `now`.
    fn due(link: &mut VecDeque<(Instant, Transmit)>, now: Instant) -> Option<Transmit> {
        match link.front() {
            Some((at, _)) if *at <= now => link.pop_front().map(|(_, t)| t),
            _ => None,
        }
    }

    /// Most events one run handles: a bound on a core that never settles.
    const MAX_STEPS: usize = 10_000_000;

    /// The two cores and the datagrams in flight between them.
    pub(crate) struct BackToBack {
        pub uac: Uac,
        /// `None`: the UAC's datagrams vanish.
        pub uas: Option<Uas>,
        pub now: Instant,
        /// One-way delay of the link.
        pub delay: Duration,
        to_uas: VecDeque<(Instant, Transmit)>,
        to_uac: VecDeque<(Instant, Transmit)>,
        steps: usize,
    }

    impl BackToBack {
        pub(crate) fn new(uac: UacConfig, uas: Option<UasConfig>) -> Self {
            BackToBack {
                uac: Uac::new(uac),
                uas: uas.map(Uas::new),
                now: Instant::now(),
                delay: Duration::from_millis(1),
                to_uas: VecDeque::new(),
                to_uac: VecDeque::new(),
                steps: 0,
            }
        }

        /// Starts `count` calls `interval` apart from now, running
        /// everything in between; returns how many the UAC took.
        pub(crate) fn place_calls(&mut self, count: usize, interval: Duration) -> usize {
            let first = self.now;
            let mut taken = 0;
            for i in 0..count {
                let due = first + interval * i as u32;
                self.run_until(due);
                taken += usize::from(self.uac.start_call(due, self.now, uac_addr()));
            }
            taken
        }

        /// Runs for `span` from now.
        pub(crate) fn run_for(&mut self, span: Duration) {
            self.run_until(self.now + span);
        }

        /// Runs every delivery and timer up to `until` in time order, then
        /// sets the clock to `until`.
        pub(crate) fn run_until(&mut self, until: Instant) {
            loop {
                self.drain();
                let Some(at) = self.next_event().filter(|&at| at <= until) else {
                    break;
                };
                self.now = self.now.max(at);
                self.step();
                self.steps += 1;
                assert!(self.steps < MAX_STEPS, "the cores never settle");
            }
            self.now = self.now.max(until);
        }

        fn drain(&mut self) {
            while let Some(t) = self.uac.poll_transmit() {
                if self.uas.is_some() {
                    self.to_uas.push_back((self.now + self.delay, t));
                }
            }
            while let Some(t) = self.uas.as_mut().and_then(Uas::poll_transmit) {
                self.to_uac.push_back((self.now + self.delay, t));
            }
        }

        fn next_event(&self) -> Option<Instant> {
            [
                self.to_uas.front().map(|(at, _)| *at),
                self.to_uac.front().map(|(at, _)| *at),
                self.uac.poll_timeout(),
                self.uas.as_ref().and_then(Uas::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min()
        }

        fn step(&mut self) {
            let now = self.now;
            while let Some(t) = due(&mut self.to_uas, now) {
                if let Some(uas) = self.uas.as_mut() {
                    uas.handle_datagram(now, t.local, t.dst, t.payload);
                }
            }
            while let Some(t) = due(&mut self.to_uac, now) {
                self.uac.handle_datagram(now, t.local, t.dst, t.payload);
            }
            if self.uac.poll_timeout().is_some_and(|at| at <= now) {
                self.uac.handle_timeout(now);
            }
            if let Some(uas) = self.uas.as_mut() {
                if uas.poll_timeout().is_some_and(|at| at <= now) {
                    uas.handle_timeout(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{uac_addr, uac_config, uas_addr, uas_config, BackToBack};
    use super::*;
    use crate::uas::UasConfig;
    use edge::transaction::response_to;
    use proptest::prelude::*;

    #[test]
    fn calls_complete_back_to_back() {
        let mut b = BackToBack::new(uac_config(), Some(uas_config()));
        let n = 100;
        assert_eq!(b.place_calls(n, Duration::from_millis(10)), n);
        b.run_for(Duration::from_secs(60));
        let s = b.uac.take_stats();
        let n = n as u64;
        assert_eq!((s.started, s.answered, s.completed), (n, n, n));
        assert_eq!((s.failed, s.late, s.refused), (0, 0, 0));
        assert_eq!((s.retransmissions, s.unexpected), (0, 0));
        assert_eq!(s.final_codes, [0, n, 0, 0, 0, 0]);
        for h in [&s.invite_to_180, &s.invite_to_200, &s.bye_to_200] {
            assert_eq!(h.count(), n);
        }
        // Ring 20 ms, answer 30 ms, 1 ms each way.
        assert_within(s.invite_to_180.quantile_us(0.5), 22_000, 23_000);
        assert_within(s.invite_to_200.quantile_us(0.5), 52_000, 53_000);
        assert_within(s.bye_to_200.quantile_us(0.5), 2_000, 2_100);
        let u = b.uas.as_mut().unwrap().take_stats();
        assert_eq!((u.invites, u.answered, u.acks, u.byes), (n, n, n, n));
        assert_eq!((u.rejected, u.retransmissions, u.unexpected), (0, 0, 0));
        assert_eq!(
            (b.uac.live_calls(), b.uas.as_ref().unwrap().live_calls()),
            (0, 0)
        );
        assert_eq!(b.uac.calls.len(), 0, "lingering calls are freed");
        assert_eq!(b.uas.as_ref().unwrap().table_len(), 0);
    }

    fn assert_within(value: u64, low: u64, high: u64) {
        assert!(
            (low..=high).contains(&value),
            "{value} not in {low}..={high}"
        );
    }

    #[test]
    fn lossy_uas_still_completes_every_call() {
        let uas = UasConfig {
            loss: 0.2,
            seed: 42,
            ..uas_config()
        };
        let mut b = BackToBack::new(uac_config(), Some(uas));
        let n = 200;
        b.place_calls(n, Duration::from_millis(5));
        b.run_for(Duration::from_secs(90));
        let s = b.uac.take_stats();
        let u = b.uas.as_mut().unwrap().take_stats();
        assert_eq!(s.completed, n as u64, "{s:?}");
        assert_eq!((s.failed, s.unexpected), (0, 0));
        assert!(
            s.retransmissions > 0 && u.retransmissions > 0,
            "{s:?} {u:?}"
        );
        assert!(u.dropped > 0);
        assert_eq!(
            u.invites, n as u64,
            "retransmitted INVITEs are no new calls"
        );
        assert_eq!(b.uac.live_calls(), 0);
    }

    #[test]
    fn unanswered_invite_times_out_at_64_t1() {
        let mut b = BackToBack::new(uac_config(), None);
        let start = b.now;
        b.place_calls(3, Duration::ZERO);
        b.run_until(start + Duration::from_millis(31_990));
        assert_eq!(b.uac.stats.failed_timeout, 0);
        // Timer A: resent at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
        assert_eq!(b.uac.stats.retransmissions, 3 * 6);
        b.run_until(start + Duration::from_millis(32_000));
        let s = b.uac.take_stats();
        assert_eq!((s.failed_timeout, s.failed, s.completed), (3, 3, 0));
        assert_eq!(s.final_codes, [0; 6]);
        assert_eq!(b.uac.live_calls(), 0);
        assert_eq!(b.uac.calls.len(), 0, "nothing to linger for");
        assert_eq!(b.uac.poll_timeout(), None);
    }

    #[test]
    fn max_calls_are_refused_beyond() {
        let config = UacConfig {
            max_calls: 2,
            ..uac_config()
        };
        let mut b = BackToBack::new(config, None);
        assert_eq!(b.place_calls(3, Duration::ZERO), 2);
        assert_eq!((b.uac.stats.started, b.uac.stats.refused), (2, 1));
        assert_eq!(b.uac.live_calls(), 2);
        b.run_for(Duration::from_secs(33));
        assert_eq!(b.uac.live_calls(), 0);
        assert_eq!(b.place_calls(1, Duration::ZERO), 1, "room again");
    }

    #[test]
    fn lingering_calls_make_room_for_new_ones() {
        let config = UacConfig {
            max_calls: 1,
            ..uac_config()
        };
        let mut b = BackToBack::new(config, Some(uas_config()));
        // Each call completes in under 200 ms; its BYE lingers 5 s (Timer K).
        b.place_calls(4, Duration::from_millis(300));
        b.run_for(Duration::from_secs(1));
        let s = b.uac.take_stats();
        assert_eq!((s.completed, s.refused), (4, 0));
        assert!(b.uac.calls.len() <= 2);
    }

    #[test]
    fn garbage_is_counted_unexpected() {
        let mut uac = Uac::new(uac_config());
        let now = Instant::now();
        let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: nobody\r\nCSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let request = "OPTIONS sip:bench@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKo\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        for datagram in [
            &b"hello"[..],
            stray.as_bytes(),
            request.as_bytes(),
            b"\r\n\r\n",
        ] {
            let datagram = Bytes::copy_from_slice(datagram);
            uac.handle_datagram(now, uas_addr(), uac_addr(), datagram);
        }
        assert_eq!(uac.take_stats().unexpected, 3, "the keep-alive is not");
        assert_eq!(uac.poll_transmit(), None);
    }

    #[test]
    fn latency_counts_from_the_schedule() {
        let mut b = BackToBack::new(uac_config(), Some(uas_config()));
        let scheduled = b.now;
        b.run_for(Duration::from_millis(50));
        assert!(b.uac.start_call(scheduled, b.now, uac_addr()));
        b.run_for(Duration::from_secs(10));
        let s = b.uac.take_stats();
        assert_eq!(s.completed, 1);
        // 50 ms late, plus 22 (180) and 52 ms (200), to the histogram's 1 %.
        let (ring, answer) = (
            s.invite_to_180.quantile_us(0.0),
            s.invite_to_200.quantile_us(0.0),
        );
        assert!(ring >= 71_000, "{ring}");
        assert!(answer >= 101_000, "{answer}");
        assert!(
            s.bye_to_200.quantile_us(1.0) < 10_000,
            "the BYE counts from its own send"
        );
    }

    #[test]
    fn calls_not_answered_in_time_are_late_and_nothing_else() {
        let uac = UacConfig {
            late_after: Duration::from_secs(2),
            ..uac_config()
        };
        let uas = UasConfig {
            answer_delay: Duration::from_secs(3),
            ..uas_config()
        };
        let mut b = BackToBack::new(uac, Some(uas));
        b.place_calls(5, Duration::from_millis(100));
        // Started long after it was due: late at once.
        let due = b.now - Duration::from_secs(3);
        assert!(b.uac.start_call(due, b.now, uac_addr()));
        assert_eq!(b.uac.stats.late, 1);
        b.run_for(Duration::from_secs(60));
        let s = b.uac.take_stats();
        assert_eq!(s.late, 6);
        assert_eq!((s.answered, s.completed, s.failed), (0, 0, 0));
        assert_eq!(s.final_codes, [0; 6]);
        assert_eq!(s.invite_to_200.count(), 6, "still a latency sample");
        assert_eq!(
            b.uas.as_mut().unwrap().take_stats().byes,
            6,
            "the calls still end"
        );
        assert_eq!(b.uac.live_calls(), 0);
    }

    #[test]
    fn extreme_settings_are_clamped_not_fatal() {
        let uac = UacConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            hold: Duration::MAX,
            late_after: Duration::MAX,
            max_calls: usize::MAX,
            call_id_prefix: "a b@c".to_owned(),
            ..uac_config()
        };
        let uas = UasConfig {
            t1: Duration::ZERO,
            t2: Duration::MAX,
            ring_delay: Duration::MAX,
            answer_delay: Duration::MAX,
            fail_code: 99,
            max_calls: usize::MAX,
            ..uas_config()
        };
        let mut b = BackToBack::new(uac, Some(uas));
        assert_eq!(b.place_calls(3, Duration::ZERO), 3);
        b.run_for(Duration::from_secs(5));
        assert_eq!(b.uac.live_calls(), 3, "ringing for a day");
        assert_eq!(b.uac.stats.unexpected, 0, "the prefix was made a token");
    }

    /// A UAC with one call started at `now`, and the INVITE it sent.
    fn one_call(now: Instant) -> (Uac, Message) {
        let mut uac = Uac::new(uac_config());
        assert!(uac.start_call(now, now, uac_addr()));
        let sent = uac.poll_transmit().unwrap();
        assert_eq!((sent.local, sent.dst), (uac_addr(), uas_addr()));
        let invite = Message::parse_datagram(sent.payload, &ParseLimits::datagram()).unwrap();
        (uac, invite)
    }

    fn deliver(uac: &mut Uac, now: Instant, response: Bytes) -> Vec<Message> {
        uac.handle_datagram(now, uas_addr(), uac_addr(), response);
        std::iter::from_fn(|| uac.poll_transmit())
            .map(|t| {
                assert_eq!(t.dst, uas_addr(), "always to the target");
                Message::parse_datagram(t.payload, &ParseLimits::datagram()).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_invite_is_complete() {
        let (_, invite) = one_call(Instant::now());
        invite.validate().unwrap();
        assert_eq!(
            invite.request_uri_raw(),
            Some(uac_config().request_uri.as_bytes())
        );
        assert_eq!(invite.call_id(), b"test-0");
        assert!(invite.from().unwrap().tag().is_some());
        assert_eq!(invite.to().unwrap().tag(), None);
        let via = invite.top_via().unwrap();
        assert!(via.branch().unwrap().starts_with(b"z9hG4bK"));
        assert_eq!(
            (via.host_raw(), via.port()),
            (&b"127.0.0.1"[..], Some(5070))
        );
        assert_eq!(
            (invite.cseq().seq, invite.max_forwards()),
            (1, Ok(Some(70)))
        );
        assert!(invite
            .content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp"));
        assert_eq!(invite.content_length(), Some(invite.body().len() as u32));
        let sdp = std::str::from_utf8(invite.body()).unwrap();
        assert!(sdp.contains("c=IN IP4 127.0.0.1") && sdp.contains("telephone-event/8000"));
    }

    #[test]
    fn ack_and_bye_follow_the_dialog_and_its_route_set() {
        let t0 = Instant::now();
        let (mut uac, invite) = one_call(t0);
        let extra: [(&str, &[u8]); 3] = [
            ("Record-Route", b"<sip:10.0.0.2;lr>"),
            ("Record-Route", b"<sip:10.0.0.1;lr;ftag=x>"),
            ("Contact", b"<sip:uas@10.0.0.9:5090>"),
        ];
        let ok = response_to(&invite, 200, "OK", Some(b"u1"), &extra);
        let acks = deliver(&mut uac, t0 + Duration::from_millis(40), ok.clone());
        let [ack] = &acks[..] else {
            panic!("{} sent", acks.len());
        };
        ack.validate().unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.request_uri_raw(), Some(&b"sip:uas@10.0.0.9:5090"[..]));
        let routes: Vec<_> = ack.routes().map(|r| r.unwrap().uri().as_bytes()).collect();
        assert_eq!(
            routes,
            [&b"sip:10.0.0.1;lr;ftag=x"[..], &b"sip:10.0.0.2;lr"[..]],
            "reversed"
        );
        assert_eq!((ack.cseq().seq, ack.cseq().method), (1, Method::Ack));
        assert_eq!(ack.to().unwrap().tag(), Some(&b"u1"[..]));
        let invite_branch = invite.top_via().unwrap().branch().unwrap().to_vec();
        assert_ne!(ack.top_via().unwrap().branch().unwrap(), invite_branch);
        // A retransmitted 200 gets the same ACK again.
        let again = deliver(&mut uac, t0 + Duration::from_millis(540), ok);
        assert_eq!(again[0].as_bytes(), ack.as_bytes());
        // After the hold time, the BYE.
        uac.handle_timeout(t0 + Duration::from_millis(140));
        let bye = uac.poll_transmit().unwrap();
        let bye = Message::parse_datagram(bye.payload, &ParseLimits::datagram()).unwrap();
        assert_eq!((bye.cseq().seq, bye.cseq().method), (2, Method::Bye));
        assert_eq!(bye.request_uri_raw(), ack.request_uri_raw());
        assert_eq!(bye.routes().count(), 2);
        assert_eq!(bye.to().unwrap().tag(), Some(&b"u1"[..]));
        let done = response_to(&bye, 200, "OK", None, &[]);
        deliver(&mut uac, t0 + Duration::from_millis(145), done);
        let s = uac.take_stats();
        assert_eq!((s.answered, s.completed, s.retransmissions), (1, 1, 1));
        assert_eq!(s.bye_to_200.count(), 1);
        assert_eq!(uac.live_calls(), 0);
    }

    #[test]
    fn a_failure_is_acked_by_the_machine() {
        let t0 = Instant::now();
        let (mut uac, invite) = one_call(t0);
        let busy = response_to(&invite, 486, "Busy Here", Some(b"u1"), &[]);
        let acks = deliver(&mut uac, t0, busy.clone());
        let [ack] = &acks[..] else {
            panic!("{} sent", acks.len());
        };
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(
            ack.top_via().unwrap().branch(),
            invite.top_via().unwrap().branch()
        );
        assert_eq!(ack.to().unwrap().tag(), Some(&b"u1"[..]));
        assert_eq!(deliver(&mut uac, t0, busy).len(), 1, "ACKed again");
        let s = uac.take_stats();
        assert_eq!((s.failed_code, s.failed, s.retransmissions), (1, 1, 1));
        assert_eq!(s.final_codes, [0, 0, 0, 1, 0, 0]);
        assert_eq!(uac.live_calls(), 0);
        assert_eq!(uac.calls_len(), 1, "lingers for Timer D");
        uac.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(uac.calls_len(), 0);
    }

    #[test]
    fn stats_add_up() {
        let mut a = UacStats {
            started: 1,
            late: 2,
            final_codes: [0, 1, 0, 0, 1, 0],
            ..UacStats::default()
        };
        a.invite_to_200.record(Duration::from_millis(5));
        let b = a.clone();
        a.add(&b);
        assert_eq!((a.started, a.late), (2, 4));
        assert_eq!(a.final_codes, [0, 2, 0, 0, 2, 0]);
        assert_eq!(a.invite_to_200.count(), 2);
    }

    /// Responses the first call of a `test` UAC may get, to mutate.
    const RESPONSES: [&str; 3] = [
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest-0-i;rport\r\n\
From: <sip:bench@127.0.0.1:5070>;tag=test-0\r\nTo: <sip:s@h>;tag=u\r\nCall-ID: test-0\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest-0-i;rport\r\n\
Record-Route: <sip:10.0.0.1;lr>\r\nFrom: <sip:bench@127.0.0.1:5070>;tag=test-0\r\n\
To: <sip:s@h>;tag=u\r\nCall-ID: test-0\r\nCSeq: 1 INVITE\r\nContact: <sip:u@10.0.0.2>\r\n\
Content-Length: 0\r\n\r\n",
        "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest-0-i;rport\r\n\
From: <sip:bench@127.0.0.1:5070>;tag=test-0\r\nTo: <sip:s@h>;tag=u\r\nCall-ID: test-0\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ];

    /// Arbitrary bytes, or a valid response with a few bytes overwritten.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        let mutated = (
            0..RESPONSES.len(),
            0usize..400,
            prop::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(which, at, junk)| {
                let mut bytes = RESPONSES[which].as_bytes().to_vec();
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
        fn any_datagram_leaves_the_uac_standing(
            datagrams in prop::collection::vec((datagram(), 0u64..3_000), 1..12),
        ) {
            let config = UacConfig { hold: Duration::ZERO, ..uac_config() };
            let mut uac = Uac::new(config);
            let mut now = Instant::now();
            prop_assert!(uac.start_call(now, now, uac_addr()));
            for (bytes, wait_ms) in datagrams {
                uac.handle_datagram(now, uas_addr(), uac_addr(), Bytes::from(bytes));
                now += Duration::from_millis(wait_ms);
                uac.handle_timeout(now);
                while uac.poll_transmit().is_some() {}
            }
            uac.handle_timeout(now + Duration::from_secs(300));
            prop_assert_eq!(uac.live_calls(), 0);
        }
    }
}
