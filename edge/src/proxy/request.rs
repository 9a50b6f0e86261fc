//! Requests: validation (16.3), transaction matching, CANCEL (16.10), ACK,
//! and forwarding (16.4-16.6) through a new server/client transaction pair.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::route::{self, Plan, RouteEdit, Target};
use super::{Machine, ProxyCore, ProxyTxn, RouteChoice, Router};
use crate::sip::{EditError, Editor, HeaderKind, Message, Method, ParseError, Via};
use crate::transaction::{
    cancel_for, response_to, ClientKey, InviteClient, InviteServer, NonInviteClient,
    NonInviteServer, ServerKey, TxnId, TxnKey,
};

const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, SUBSCRIBE, NOTIFY, \
PUBLISH, INFO, REFER, MESSAGE, UPDATE";

/// A locally generated response: status code and reason phrase.
type Status = (u16, &'static str);

/// A validated request with the values every step reads, parsed once.
#[derive(Clone, Copy)]
pub(super) struct Req<'m> {
    pub msg: &'m Message,
    /// The top Via (always present once validated).
    pub via: Option<Via<'m>>,
    pub from_tag: Option<&'m [u8]>,
    pub to_tag: Option<&'m [u8]>,
    pub max_forwards: Option<u8>,
}

impl Req<'_> {
    /// The response address by the top Via (`src` when there is none).
    fn reply_addr(&self, src: SocketAddr) -> SocketAddr {
        self.via.as_ref().map_or(src, |v| route::reply_addr(v, src))
    }
}

impl<R: Router> ProxyCore<R> {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        msg: &Message,
    ) {
        let parts = match msg.validated() {
            Ok(parts) => parts,
            Err(e) => {
                self.stats.parse_errors += 1;
                self.reject_malformed(src, local, msg, e);
                return;
            }
        };
        let Some(via) = parts.top_via else {
            return;
        };
        let from_tag = parts.from.tag();
        let req = Req {
            msg,
            via: Some(via),
            from_tag,
            to_tag: parts.to.tag(),
            max_forwards: parts.max_forwards,
        };
        let key = TxnKey::Server(ServerKey::from_parts(msg, &via, || from_tag));
        match msg.method() {
            Some(Method::Ack) => self.on_ack(now, src, local, req, key),
            Some(Method::Cancel) => self.on_cancel(now, src, local, msg, key),
            _ => match self.table.find(&key) {
                Some(id) => self.absorb_request(now, id),
                None => self.on_new_request(now, src, local, req, key),
            },
        }
    }

    /// 400 (505, 513) with the parse error as reason, when the Via can be read.
    fn reject_malformed(
        &mut self,
        src: SocketAddr,
        local: SocketAddr,
        msg: &Message,
        e: ParseError,
    ) {
        if msg.method() == Some(Method::Ack) {
            return;
        }
        let reason = e.to_string();
        self.reply_with(src, local, msg, e.status_code(), &reason, &[]);
    }

    /// A retransmitted request: the server transaction resends its last response.
    fn absorb_request(&mut self, now: Instant, id: TxnId) {
        let Some(t) = self.table.get_mut(id) else {
            return;
        };
        match &mut t.machine {
            Machine::InviteServer(s) => s.handle_request(now, false, &self.timers),
            Machine::NonInviteServer(s) => s.handle_request(),
            _ => return,
        };
        self.stats.retransmissions_absorbed += 1;
        self.settle(id);
    }

    fn on_new_request(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        req: Req<'_>,
        key: TxnKey,
    ) {
        let msg = req.msg;
        if req.to_tag.is_none() && msg.method() == Some(Method::Invite) {
            self.stats.calls += 1;
        }
        let plan = route::plan(msg, &self.config, local, req.to_tag.is_some());
        let loop_hash = route::loop_hash(self.config.branch_secret, msg, req.from_tag, req.to_tag);
        if let Some(status) = self.check_request(&req, local, &plan, loop_hash) {
            let extra: &[(&str, &[u8])] = match status.0 {
                200 => &[("Allow", ALLOW)],
                _ => &[],
            };
            self.reply_with(src, local, msg, status.0, status.1, extra);
            return;
        }
        if let Some(tokens) = route::proxy_require(msg) {
            self.reply_with(
                src,
                local,
                msg,
                420,
                "Bad Extension",
                &[("Unsupported", &tokens)],
            );
            return;
        }
        if !self.admit(&req) {
            self.stats.rejected_overload += 1;
            self.reply_503(src, local, msg);
            return;
        }
        let choice = match plan.target {
            Target::Addr(a) => Some(RouteChoice::to(a)),
            Target::Router => self.router.start(now, msg),
        };
        let Some(RouteChoice { dst, hunt }) = choice else {
            self.stats.no_route += 1;
            self.reply_503(src, local, msg);
            return;
        };
        let branch = route::branch(self.config.branch_secret, msg, req.via.as_ref(), loop_hash);
        let initial = req.to_tag.is_none();
        let rr = self.config.record_route
            && initial
            && matches!(msg.method(), Some(Method::Invite | Method::Subscribe));
        match self.forward_bytes(&req, src, local, &plan, &branch, rr) {
            Ok(fwd) => self.start_pair(now, (src, local), &req, key, (fwd, &branch), (dst, hunt)),
            Err(e) => {
                if let Some(hunt) = hunt {
                    self.router.end_hunt(hunt);
                }
                match e {
                    EditError::TooLarge { .. } => {
                        self.reply_with(src, local, msg, 513, "Message Too Large", &[])
                    }
                    _ => self.reply_with(src, local, msg, 500, "Server Internal Error", &[]),
                }
            }
        }
    }

    /// The checks of 16.3 that end in a local response: OPTIONS to us (200),
    /// Max-Forwards 0 (483), a loop (482).
    fn check_request(
        &mut self,
        req: &Req<'_>,
        local: SocketAddr,
        plan: &Plan,
        loop_hash: u32,
    ) -> Option<Status> {
        let msg = req.msg;
        if msg.method() == Some(Method::Options) && plan.to_us {
            return Some((200, "OK"));
        }
        if req.max_forwards == Some(0) {
            self.stats.too_many_hops += 1;
            return Some((483, "Too Many Hops"));
        }
        if route::is_loop(&self.config, local, msg, req.via.as_ref(), loop_hash) {
            self.stats.loops_detected += 1;
            return Some((482, "Loop Detected"));
        }
        None
    }

    /// Room for a server and a client transaction, and not shutting down for
    /// an initial request?
    fn admit(&self, req: &Req<'_>) -> bool {
        let initial = req.to_tag.is_none();
        self.table.has_room(2) && !(self.shutting_down && initial)
    }

    fn reply_503(&mut self, src: SocketAddr, local: SocketAddr, msg: &Message) {
        let retry = self.config.retry_after_s.to_string();
        self.reply_with(
            src,
            local,
            msg,
            503,
            "Service Unavailable",
            &[("Retry-After", retry.as_bytes())],
        );
    }

    /// Where a stateless ACK goes: its Route or Request-URI address, else the
    /// router's first choice (given straight back: an ACK is not hunted).
    fn next_hop(&mut self, now: Instant, msg: &Message, plan: &Plan) -> Option<SocketAddr> {
        match plan.target {
            Target::Addr(a) => Some(a),
            Target::Router => {
                let choice = self.router.start(now, msg)?;
                if let Some(hunt) = choice.hunt {
                    self.router.end_hunt(hunt);
                }
                Some(choice.dst)
            }
        }
    }

    /// The request as forwarded (16.6 steps 3-8), written in one pass: our
    /// Via above the received one (stamped with received/rport), Record-Route,
    /// Max-Forwards decremented, our Route popped, the strict-route rewrite.
    pub(super) fn forward_bytes(
        &self,
        req: &Req<'_>,
        src: SocketAddr,
        local: SocketAddr,
        plan: &Plan,
        branch: &[u8],
        record_route: bool,
    ) -> Result<Bytes, EditError> {
        let mut e = Editor::new(req.msg);
        // Record-Route first: with none in the message it goes above the top
        // Via, and the Vias stay one block, as UAs that copy them expect.
        if record_route {
            e.prepend_record_route(&route::record_route(local))?;
        }
        e.prepend_via(&route::our_via(local, branch))?;
        if let Some(stamped) = req
            .via
            .as_ref()
            .and_then(|v| route::stamped_top_via(v, src))
        {
            e.remove_top_via()?;
            e.prepend_via(&stamped)?;
        }
        let hops = req.max_forwards.map_or(70, |n| n.saturating_sub(1));
        e.set_max_forwards(hops)?;
        match &plan.edit {
            RouteEdit::Keep => {}
            RouteEdit::PopTop => {
                e.pop_route()?;
            }
            RouteEdit::Rewrite(routes) => {
                e.remove_header(HeaderKind::Route.name())?;
                if !routes.is_empty() {
                    e.add_header(HeaderKind::Route.name(), routes)?;
                }
            }
        }
        if let Some(uri) = &plan.new_request_uri {
            e.set_request_uri(uri)?;
        }
        e.finish()
    }

    /// Creates the server transaction (sending 100 Trying for an INVITE) and
    /// the client transaction that sends `fwd` to `dst`, linked both ways.
    fn start_pair(
        &mut self,
        now: Instant,
        (src, local): (SocketAddr, SocketAddr),
        req: &Req<'_>,
        key: TxnKey,
        (fwd, branch): (Bytes, &[u8]),
        (dst, hunt): (SocketAddr, Option<R::Hunt>),
    ) {
        let msg = req.msg;
        let invite = msg.method() == Some(Method::Invite);
        let peer = req.reply_addr(src);
        let server = if invite {
            let mut s = InviteServer::new(msg.bytes().clone(), &self.timers);
            s.respond(
                now,
                100,
                response_to(msg, 100, "Trying", None, &[]),
                &self.timers,
            );
            self.stats.responses_generated += 1;
            self.stats.response_out(Method::Invite, 100);
            Machine::InviteServer(s)
        } else {
            Machine::NonInviteServer(NonInviteServer::new(msg.bytes().clone()))
        };
        let Ok(sid) = self.table.insert(key, txn(server, local, peer)) else {
            if let Some(hunt) = hunt {
                self.router.end_hunt(hunt);
            }
            return;
        };
        if let Some(t) = self.table.get_mut(sid) {
            t.hunt = hunt;
            if invite && req.to_tag.is_none() {
                t.setup = Some(super::SetupClock {
                    since: now,
                    first_seen: false,
                });
            }
        }
        // The forwarded request starts with its method token; the branch is ours.
        let method_len = msg.method_name().map_or(0, <[u8]>::len);
        debug_assert!(fwd.starts_with(msg.method_name().unwrap_or_default()));
        let ckey = ClientKey::new(Bytes::copy_from_slice(branch), fwd.slice(..method_len));
        let client = if invite {
            Machine::InviteClient(InviteClient::new(now, fwd, &self.timers))
        } else {
            Machine::NonInviteClient(NonInviteClient::new(now, fwd, &self.timers))
        };
        let Ok(cid) = self
            .table
            .insert(TxnKey::Client(ckey), txn(client, local, dst))
        else {
            self.respond_local(now, sid, (500, "Server Internal Error"));
            return;
        };
        self.link(sid, cid);
        self.settle(sid);
        self.settle(cid);
        self.stats.requests_forwarded += 1;
    }

    pub(super) fn link(&mut self, a: TxnId, b: TxnId) {
        if let Some(t) = self.table.get_mut(a) {
            t.link = Some(b);
        }
        if let Some(t) = self.table.get_mut(b) {
            t.link = Some(a);
        }
    }

    /// An ACK: absorbed by the INVITE server transaction it matches (the ACK
    /// of a non-2xx final), else forwarded statelessly end to end (2xx ACK).
    fn on_ack(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        req: Req<'_>,
        key: TxnKey,
    ) {
        let msg = req.msg;
        if let Some(id) = self.table.find(&key) {
            if let Some(ProxyTxn {
                machine: Machine::InviteServer(s),
                ..
            }) = self.table.get_mut(id)
            {
                s.handle_request(now, true, &self.timers);
                self.stats.acks_absorbed += 1;
                self.settle(id);
                return;
            }
        }
        if req.max_forwards == Some(0) {
            return;
        }
        let plan = route::plan(msg, &self.config, local, req.to_tag.is_some());
        if plan.to_us {
            return;
        }
        let Some(dst) = self.next_hop(now, msg, &plan) else {
            return;
        };
        let loop_hash = route::loop_hash(self.config.branch_secret, msg, req.from_tag, req.to_tag);
        let branch = route::branch(self.config.branch_secret, msg, req.via.as_ref(), loop_hash);
        if let Ok(fwd) = self.forward_bytes(&req, src, local, &plan, &branch, false) {
            self.push(local, dst, fwd);
            self.stats.requests_forwarded += 1;
        }
    }

    /// CANCEL (16.10): 200 at once and CANCEL the pending branch; 481 when no
    /// INVITE matches.
    fn on_cancel(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        msg: &Message,
        key: TxnKey,
    ) {
        if let Some(id) = self.table.find(&key) {
            self.absorb_request(now, id);
            return;
        }
        let TxnKey::Server(server_key) = &key else {
            return;
        };
        let invite_key = TxnKey::Server(server_key.with_method(b"INVITE"));
        let Some(invite) = self.table.find(&invite_key) else {
            self.reply_with(src, local, msg, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.stats.cancels += 1;
        self.end_hunt(invite);
        let tag = route::to_tag(self.config.branch_secret, msg);
        let ok = response_to(msg, 200, "OK", Some(tag.as_bytes()), &[]);
        self.stats.responses_generated += 1;
        self.stats.response_out(Method::Cancel, 200);
        let peer = msg.top_via().map_or(src, |v| route::reply_addr(&v, src));
        let mut server = NonInviteServer::new(msg.bytes().clone());
        server.respond(now, 200, ok.clone(), &self.timers);
        match self.table.has_room(2) {
            true => {
                let t = txn(Machine::NonInviteServer(server), local, peer);
                if let Ok(id) = self.table.insert(key, t) {
                    self.settle(id);
                }
            }
            false => self.push(local, peer, ok),
        }
        self.cancel_branch(now, invite);
    }

    /// Cancels the INVITE client transaction linked to server transaction
    /// `server`: now if a provisional arrived, else when one does (9.1).
    fn cancel_branch(&mut self, now: Instant, server: TxnId) {
        let Some(client) = self.table.get(server).and_then(|t| t.link) else {
            return;
        };
        let Some(t) = self.table.get_mut(client) else {
            return;
        };
        let Machine::InviteClient(c) = &t.machine else {
            return;
        };
        if c.is_cancelled() || c.is_terminated() {
            return;
        }
        match (c.has_provisional(), c.state()) {
            (_, crate::transaction::InviteClientState::Completed) => {}
            (true, _) => self.send_cancel(now, client),
            (false, _) => t.cancel_pending = true,
        }
    }

    /// Sends a CANCEL for INVITE client transaction `client` through a new
    /// non-INVITE client transaction to the same next hop.
    pub(super) fn send_cancel(&mut self, now: Instant, client: TxnId) {
        let Some(t) = self.table.get_mut(client) else {
            return;
        };
        let Machine::InviteClient(c) = &mut t.machine else {
            return;
        };
        c.cancel_sent(now, &self.timers);
        t.cancel_pending = false;
        let (local, dst, request) = (t.local, t.peer, c.request().clone());
        self.settle(client);
        let Some(cancel) = Message::parse_datagram(request, &self.limits)
            .ok()
            .and_then(|m| cancel_for(&m))
        else {
            return;
        };
        let Ok(key) = Message::parse_datagram(cancel.clone(), &self.limits)
            .and_then(|m| ClientKey::from_request(&m))
        else {
            return;
        };
        let machine =
            Machine::NonInviteClient(NonInviteClient::new(now, cancel.clone(), &self.timers));
        match self
            .table
            .insert(TxnKey::Client(key), txn(machine, local, dst))
        {
            Ok(id) => self.settle(id),
            Err(_) => self.push(local, dst, cancel),
        }
    }

    /// A response to `msg` written here, sent to the request's response
    /// address (statelessly: no transaction keeps it).
    pub(super) fn reply_with(
        &mut self,
        src: SocketAddr,
        local: SocketAddr,
        msg: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let Ok(via) = msg.top_via() else {
            return;
        };
        let dst = route::reply_addr(&via, src);
        let tag = route::to_tag(self.config.branch_secret, msg);
        let bytes = response_to(msg, code, reason, Some(tag.as_bytes()), extra);
        self.stats.responses_generated += 1;
        self.stats.response_out(msg.cseq().method, code);
        self.push(local, dst, bytes);
    }
}

fn txn<H>(machine: Machine, local: SocketAddr, peer: SocketAddr) -> ProxyTxn<H> {
    super::hunt::new_txn(machine, local, peer)
}
