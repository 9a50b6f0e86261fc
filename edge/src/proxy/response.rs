//! Responses (16.7) and the timeouts of branches (16.8): a response matched
//! to a client transaction goes up through its server transaction; one that
//! matches nothing is forwarded statelessly by its second Via.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::route;
use super::{Machine, ProxyCore, Router};
use crate::sip::{Editor, Message, Method};
use crate::transaction::{response_to, ClientKey, TxnId, TxnKey, Verdict};

impl<R: Router> ProxyCore<R> {
    pub(super) fn on_response(&mut self, now: Instant, local: SocketAddr, msg: &Message) {
        let Ok(parts) = msg.validated() else {
            self.stats.parse_errors += 1;
            return;
        };
        let Some(via) = parts.top_via else {
            return;
        };
        let key = ClientKey::from_response_via(msg, &via);
        match self.table.find(&TxnKey::Client(key)) {
            Some(id) => self.on_branch_response(now, id, msg),
            None => self.forward_stray(local, msg),
        }
    }

    /// A response matched client transaction `id` (17.1.3).
    fn on_branch_response(&mut self, now: Instant, id: TxnId, msg: &Message) {
        let code = msg.status_code().unwrap_or(0);
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        let (verdict, invite) = match &mut t.machine {
            Machine::InviteClient(c) => (c.handle_response(now, msg, &self.timers), true),
            Machine::NonInviteClient(c) => (c.handle_response(now, code, &self.timers), false),
            _ => return,
        };
        let (link, local, probe) = (t.link, t.local, t.probe);
        let cancel_now = t.cancel_pending && code < 200;
        self.settle(id);
        if verdict == Verdict::Absorb {
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        if cancel_now {
            self.send_cancel(now, id);
        }
        if let Some(token) = probe {
            if code >= 200 {
                self.router.on_probe_result(now, token, Some(code));
            }
            return;
        }
        if !invite && code >= 200 && msg.cseq().method == Method::Bye {
            self.router.dialog_ended(now, msg.call_id());
        }
        if let Some(server) = link.filter(|_| invite) {
            self.time_setup(now, server, code);
        }
        let step = match link.and_then(|s| self.table.get_mut(s)) {
            Some(server) => match server.hunt.as_mut() {
                Some(hunt) => Some(self.router.on_response(now, hunt, msg)),
                None => None,
            },
            None => None,
        };
        if code == 100 {
            // The router may have stopped its attempt timer: re-arm.
            if let Some(server) = link.filter(|_| step.is_some()) {
                self.settle(server);
            }
            return;
        }
        match (link, step) {
            (Some(server), Some(step)) => self.apply_step(now, server, step, Some((msg, code))),
            (Some(server), None) => self.forward_upstream(now, server, msg, code),
            // The server side is gone: only a 2xx to an INVITE still goes up.
            (None, _) if invite && (200..300).contains(&code) => self.forward_stray(local, msg),
            (None, _) => {}
        }
    }

    /// Records the setup latency of the INVITE of server transaction
    /// `server` on a response from downstream: the first one, and a 2xx.
    fn time_setup(&mut self, now: Instant, server: TxnId, code: u16) {
        let Some(t) = self.table.get_mut(server) else {
            return;
        };
        let Some(clock) = t.setup.as_mut() else {
            return;
        };
        let elapsed = now.saturating_duration_since(clock.since);
        if !clock.first_seen {
            clock.first_seen = true;
            self.latency.first_response.record(elapsed);
        }
        if (200..300).contains(&code) {
            t.setup = None;
            self.latency.answer.record(elapsed);
        }
    }

    /// Forwards `msg` (our Via removed) through server transaction `server`.
    /// A 2xx goes up even after a final was sent (16.7 step 5).
    pub(super) fn forward_upstream(
        &mut self,
        now: Instant,
        server: TxnId,
        msg: &Message,
        code: u16,
    ) {
        let Some(bytes) = strip_top_via(msg) else {
            self.stats.responses_dropped += 1;
            return;
        };
        let Some(t) = self.table.get_mut(server) else {
            return;
        };
        let sent = match &mut t.machine {
            Machine::InviteServer(s) => s.respond(now, code, bytes.clone(), &self.timers),
            Machine::NonInviteServer(s) => s.respond(now, code, bytes.clone(), &self.timers),
            _ => false,
        };
        let (local, peer) = (t.local, t.peer);
        let method = msg.cseq().method;
        if sent {
            self.stats.responses_forwarded += 1;
            self.stats.response_out(method, code);
            self.settle(server);
        } else if (200..300).contains(&code) {
            self.stats.responses_forwarded += 1;
            self.stats.response_out(method, code);
            self.push(local, peer, bytes);
        }
    }

    /// A response no client transaction matches (a 2xx retransmission, or a
    /// response to a request forwarded before a restart): our Via removed,
    /// sent by the next Via (received/rport honoured).
    pub(super) fn forward_stray(&mut self, local: SocketAddr, msg: &Message) {
        let mut vias = msg.vias();
        let ours = vias
            .next()
            .and_then(Result::ok)
            .is_some_and(|v| route::via_is_us(&self.config, local, &v));
        let dst = vias
            .next()
            .and_then(Result::ok)
            .and_then(|v| route::via_response_addr(&v));
        match (ours, dst, strip_top_via(msg)) {
            (true, Some(dst), Some(bytes)) => {
                self.stats.stray_responses += 1;
                self.stats.responses_forwarded += 1;
                let code = msg.status_code().unwrap_or(0);
                self.stats.response_out(msg.cseq().method, code);
                self.push(local, dst, bytes);
            }
            _ => self.stats.responses_dropped += 1,
        }
    }

    /// Timer B, F or H fired (or the guard after a CANCEL): a branch that gets
    /// no final answer makes the server side answer 408 (487 if cancelled).
    pub(super) fn on_txn_timeout(&mut self, now: Instant, id: TxnId) {
        let Some(t) = self.table.get(id) else {
            return;
        };
        if let Some(token) = t.probe {
            self.router.on_probe_result(now, token, None);
            return;
        }
        let status = match &t.machine {
            Machine::InviteClient(c) if c.is_cancelled() => (487, "Request Terminated"),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => (408, "Request Timeout"),
            _ => return,
        };
        self.stats.timeouts += 1;
        if let Some(server) = t.link {
            self.respond_local(now, server, status);
        }
    }

    /// Timer C (16.8): CANCEL the branch if it sent a provisional, else act as
    /// if it answered 408.
    pub(super) fn on_timer_c(&mut self, now: Instant, id: TxnId, provisional: bool) {
        if provisional {
            self.send_cancel(now, id);
            return;
        }
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        if let Machine::InviteClient(c) = &mut t.machine {
            c.terminate();
        }
        self.stats.timeouts += 1;
        if let Some(server) = t.link {
            self.respond_local(now, server, (408, "Request Timeout"));
        }
    }

    /// Server transaction `server` answers its request with `status`, unless it
    /// already sent a final response.
    pub(super) fn respond_local(&mut self, now: Instant, server: TxnId, status: (u16, &str)) {
        let Some(t) = self.table.get_mut(server) else {
            return;
        };
        let request = match &t.machine {
            Machine::InviteServer(s) => s.request().clone(),
            Machine::NonInviteServer(s) => s.request().clone(),
            _ => return,
        };
        let Ok(msg) = Message::parse_datagram(request, &self.limits) else {
            return;
        };
        let tag = route::to_tag(self.config.branch_secret, &msg);
        let bytes = response_to(&msg, status.0, status.1, Some(tag.as_bytes()), &[]);
        let sent = match &mut t.machine {
            Machine::InviteServer(s) => s.respond(now, status.0, bytes, &self.timers),
            Machine::NonInviteServer(s) => s.respond(now, status.0, bytes, &self.timers),
            _ => false,
        };
        if sent {
            self.stats.responses_generated += 1;
            self.stats.response_out(msg.cseq().method, status.0);
            if status.0 >= 200 {
                self.end_hunt(server);
            }
            self.settle(server);
        }
    }
}

/// The response without its top Via (ours), written by the editor; `None`
/// when no Via would remain: such a response was meant for us (16.7 step 3).
fn strip_top_via(msg: &Message) -> Option<Bytes> {
    if msg.via_values().take(2).count() < 2 {
        return None;
    }
    let mut e = Editor::new(msg);
    e.remove_top_via().ok()?;
    e.finish().ok()
}
