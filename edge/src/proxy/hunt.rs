//! Failover and probes for a [`Router`]: the attempt timer of a hunted
//! request, a new branch to the next destination, the end of the hunt, and
//! the OPTIONS probes a router asks for. The proxy only follows the router's
//! [`HuntStep`]s; it does not know how destinations are chosen.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::route;
use super::{HuntStep, Machine, Probe, ProxyCore, ProxyTxn, Router};
use crate::sip::{owner_shard, Editor, Message};
use crate::transaction::{ClientKey, InviteClient, NonInviteClient, TxnId, TxnKey, MAGIC_COOKIE};

/// Most probes sent in one [`ProxyCore::handle_timeout`].
const MAX_PROBES_PER_CALL: usize = 1024;
/// Most Call-IDs tried to find one owned by this shard (1/N hit each).
const MAX_CALL_ID_TRIES: u64 = 4096;

impl<R: Router> ProxyCore<R> {
    /// The hunt attempt timer of server transaction `id`, if due.
    pub(super) fn fire_hunt(&mut self, now: Instant, id: TxnId) {
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        let Some(hunt) = t.hunt.as_mut() else {
            return;
        };
        if self.router.attempt_deadline(hunt).is_none_or(|at| at > now) {
            return;
        }
        let step = self.router.on_attempt_timeout(now, hunt);
        self.apply_step(now, id, step, None);
    }

    /// Acts on a router's `step` for server transaction `server`; `response`
    /// is the response that caused it (none for a timeout). Re-arms the
    /// server's timer.
    pub(super) fn apply_step(
        &mut self,
        now: Instant,
        server: TxnId,
        step: HuntStep,
        response: Option<(&Message, u16)>,
    ) {
        match step {
            HuntStep::Forward => {
                if let Some((msg, code)) = response {
                    if code >= 200 {
                        self.end_hunt(server);
                    }
                    self.forward_upstream(now, server, msg, code);
                }
            }
            HuntStep::Retry(dst) => {
                if !self.retry(now, server, dst) {
                    self.end_hunt(server);
                    self.respond_local(now, server, (500, "Server Internal Error"));
                }
            }
            HuntStep::Exhausted(code) => {
                self.end_hunt(server);
                match response {
                    Some((msg, code)) => self.forward_upstream(now, server, msg, code),
                    None => self.respond_local(now, server, (code, reason(code))),
                }
            }
            HuntStep::Ignore => {}
        }
        self.settle(server);
    }

    /// Gives server transaction `server`'s hunt back to the router.
    pub(super) fn end_hunt(&mut self, server: TxnId) {
        if let Some(hunt) = self.table.get_mut(server).and_then(|t| t.hunt.take()) {
            self.router.end_hunt(hunt);
        }
    }

    /// Starts a new branch of `server`'s request to `dst`: the current branch
    /// is let go (cancelled once it has a provisional), the request goes out
    /// again with a new Via branch. `false` if it cannot be sent.
    fn retry(&mut self, now: Instant, server: TxnId, dst: SocketAddr) -> bool {
        let Some(t) = self.table.get_mut(server) else {
            return false;
        };
        t.attempts = t.attempts.wrapping_add(1);
        let (attempt, old) = (t.attempts, t.link.take());
        let Some(old) = old else {
            return false;
        };
        let Some(o) = self.table.get_mut(old) else {
            return false;
        };
        o.link = None;
        let local = o.local;
        let (request, invite, cancel_now) = match &mut o.machine {
            Machine::InviteClient(c) => {
                let live = !c.is_terminated() && !c.is_cancelled();
                let unfinished = matches!(
                    c.state(),
                    crate::transaction::InviteClientState::Calling
                        | crate::transaction::InviteClientState::Proceeding
                );
                let now_ok = live && unfinished && c.has_provisional();
                if live && unfinished && !c.has_provisional() {
                    o.cancel_pending = true;
                }
                (c.request().clone(), true, now_ok)
            }
            Machine::NonInviteClient(c) => (c.request().clone(), false, false),
            _ => return false,
        };
        if cancel_now {
            self.send_cancel(now, old);
        }
        let Some(fwd) = rebranch(&request, local, self.config.branch_secret, attempt) else {
            return false;
        };
        let Ok(msg) = Message::parse_datagram(fwd.clone(), &self.limits) else {
            return false;
        };
        let Ok(key) = ClientKey::from_request(&msg) else {
            return false;
        };
        let machine = if invite {
            Machine::InviteClient(InviteClient::new(now, fwd, &self.timers))
        } else {
            Machine::NonInviteClient(NonInviteClient::new(now, fwd, &self.timers))
        };
        let Ok(cid) = self
            .table
            .insert(TxnKey::Client(key), new_txn(machine, local, dst))
        else {
            return false;
        };
        self.link(server, cid);
        self.settle(cid);
        self.stats.failovers += 1;
        self.stats.requests_forwarded += 1;
        true
    }

    /// Sends the probes the router asks for.
    pub(super) fn send_probes(&mut self, now: Instant) {
        for _ in 0..MAX_PROBES_PER_CALL {
            let Some(probe) = self.router.poll_probe(now) else {
                return;
            };
            let token = probe.token;
            if !self.send_probe(now, probe) {
                self.router.on_probe_result(now, token, None);
            }
        }
    }

    /// An OPTIONS to `probe.dst` through a non-INVITE client transaction
    /// whose Call-ID this shard owns.
    fn send_probe(&mut self, now: Instant, probe: Probe) -> bool {
        let Some(local) = self
            .locals
            .iter()
            .find(|l| l.is_ipv4() == probe.dst.is_ipv4())
            .copied()
        else {
            return false;
        };
        if !self.table.has_room(1) {
            return false;
        }
        self.probe_seq += 1;
        let seq = self.probe_seq;
        let (shard, shards) = self.shard;
        let secret = self.config.branch_secret;
        let call_id = (0..MAX_CALL_ID_TRIES)
            .map(|i| {
                let id = route::hex16(route::keyed_u64(secret, seq << 12 | i));
                format!("{}@probe.edge", String::from_utf8_lossy(&id))
            })
            .find(|c| owner_shard(c.as_bytes(), shards) == shard);
        let Some(call_id) = call_id else {
            return false;
        };
        let mut branch = Vec::with_capacity(32);
        branch.extend_from_slice(MAGIC_COOKIE);
        branch.extend_from_slice(&route::hex16(route::keyed_u64(secret ^ 0x70, seq)));
        branch.extend_from_slice(b".p");
        let from = probe
            .from
            .clone()
            .unwrap_or_else(|| format!("sip:edge@{}", route::host_port(local)));
        let mut out = BytesMut::with_capacity(512);
        let mut line = |parts: &[&[u8]]| {
            parts.iter().for_each(|p| out.put_slice(p));
            out.put_slice(b"\r\n");
        };
        line(&[b"OPTIONS ", probe.uri.as_bytes(), b" SIP/2.0"]);
        line(&[b"Via: ", &route::our_via(local, &branch)]);
        line(&[b"Max-Forwards: 70"]);
        let tag = route::hex16(route::keyed_u64(secret ^ 0x74, seq));
        line(&[b"From: <", from.as_bytes(), b">;tag=", &tag[8..]]);
        line(&[b"To: <", probe.uri.as_bytes(), b">"]);
        line(&[b"Call-ID: ", call_id.as_bytes()]);
        line(&[b"CSeq: 1 OPTIONS"]);
        line(&[b"Content-Length: 0"]);
        out.put_slice(b"\r\n");
        let bytes = out.freeze();
        let key = ClientKey::new(Bytes::from(branch), Bytes::from_static(b"OPTIONS"));
        let machine = Machine::NonInviteClient(NonInviteClient::new(now, bytes, &self.timers));
        let mut t = new_txn(machine, local, probe.dst);
        t.probe = Some(probe.token);
        let Ok(id) = self.table.insert(TxnKey::Client(key), t) else {
            return false;
        };
        self.stats.probes_sent += 1;
        self.settle(id);
        true
    }
}

/// The request `request` we sent, with our top Via given a new branch for
/// attempt `attempt` (the loop-detection suffix kept).
fn rebranch(request: &Bytes, local: SocketAddr, secret: u64, attempt: u8) -> Option<Bytes> {
    let msg = Message::parse_datagram(request.clone(), &Default::default()).ok()?;
    let via = msg.top_via().ok()?;
    let old = via.branch()?;
    let branch = route::retry_branch(secret, old, attempt);
    let mut e = Editor::new(&msg);
    e.remove_top_via().ok()?;
    e.prepend_via(&route::our_via(local, &branch)).ok()?;
    e.finish().ok()
}

/// The reason phrase of a status this proxy writes after a hunt.
fn reason(code: u16) -> &'static str {
    match code {
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        _ => "Failed",
    }
}

pub(super) fn new_txn<H>(machine: Machine, local: SocketAddr, peer: SocketAddr) -> ProxyTxn<H> {
    ProxyTxn {
        machine,
        local,
        peer,
        link: None,
        cancel_pending: false,
        hunt: None,
        attempts: 0,
        probe: None,
        setup: None,
    }
}
