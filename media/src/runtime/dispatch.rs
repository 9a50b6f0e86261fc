//! Call-ID ownership across shards: which shard runs an ng command, and the
//! queue that carries it there.
//!
//! Every call lives on one shard, chosen by a hash of its call-id, and its
//! relay ports come from that shard's share of the range, so its media
//! arrives on that shard's ring without any hand-off. Only commands cross
//! threads: the control thread parses them ([`crate::ng::Control`]) and
//! [`Dispatch::run`] hands each to its owner and waits for the outcome.
//! `list` and `statistics` ask every shard and merge the answers.

use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use edge::runtime::uring::Waker;

use crate::ng::{Command, Outcome, Request};
use crate::session::{list_limit, list_reply, statistics_reply, Sessions, SessionsSummary};

/// Requests a shard's queue holds; beyond it a command is refused as
/// overload rather than queued without bound.
pub const SHARD_QUEUE_CAPACITY: usize = 1024;

/// How long the control thread waits for a shard's answer.
pub const SHARD_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The error when a shard's queue is full.
pub const SHARD_BUSY: &str = "Relay overloaded: the call's shard is busy";
/// The error when a shard did not answer in time or has stopped.
pub const SHARD_GONE: &str = "Relay shard did not answer";

/// What the control thread asks of a shard.
#[derive(Debug)]
pub enum ShardRequest {
    /// Run a command on one of the shard's calls.
    Command {
        /// The parsed request (boxed: the other requests are small).
        request: Box<Request>,
        /// Where the outcome goes.
        reply: Sender<Outcome>,
    },
    /// The shard's call-ids, at most `limit`.
    List {
        /// How many at most.
        limit: usize,
        /// Where they go.
        reply: Sender<Vec<Bytes>>,
    },
    /// The shard's sessions in numbers.
    Summary {
        /// Where it goes.
        reply: Sender<SessionsSummary>,
    },
}

impl ShardRequest {
    /// Answers this request from `sessions` at `now` (the shard's side).
    /// A reply nobody waits for any more (the control thread gave up) is
    /// dropped.
    pub fn answer(self, now: std::time::Instant, sessions: &mut Sessions) {
        match self {
            ShardRequest::Command { request, reply } => {
                let _ = reply.send(sessions.handle_request(now, &request));
            }
            ShardRequest::List { limit, reply } => {
                let _ = reply.send(sessions.call_ids(limit));
            }
            ShardRequest::Summary { reply } => {
                let _ = reply.send(sessions.summary());
            }
        }
    }
}

/// The control thread's end of one shard: its queue and its ring's waker.
#[derive(Clone, Debug)]
pub struct ShardLink {
    queue: Sender<ShardRequest>,
    waker: Waker,
}

impl ShardLink {
    /// A link over `queue`, waking the shard's ring with `waker`.
    pub fn new(queue: Sender<ShardRequest>, waker: Waker) -> Self {
        ShardLink { queue, waker }
    }

    /// Queues `request` and wakes the shard; the error is the reply to
    /// give when that is not possible.
    fn send(&self, request: ShardRequest) -> Result<(), &'static str> {
        match self.queue.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SHARD_BUSY),
            Err(TrySendError::Disconnected(_)) => return Err(SHARD_GONE),
        }
        // A failed wake leaves the request to the shard's next timer turn
        // (at most the loop's longest wait), so it is logged, not refused.
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "cannot wake a media shard");
        }
        Ok(())
    }
}

/// A shard's queue, created with its link.
pub fn shard_queue() -> (Sender<ShardRequest>, Receiver<ShardRequest>) {
    crossbeam_channel::bounded(SHARD_QUEUE_CAPACITY)
}

/// The shard that owns `call_id` among `shards`: FNV-1a, so the choice is
/// the same in every run and on every host.
pub fn shard_of(call_id: &[u8], shards: usize) -> usize {
    let hash = call_id.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    match u64::try_from(shards.max(1)) {
        Ok(n) => usize::try_from(hash % n).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The call-id a command belongs to, if it belongs to one call.
fn call_id(command: &Command) -> Option<&Bytes> {
    match command {
        Command::Offer { ids, .. } | Command::Answer { ids, .. } | Command::Delete { ids, .. } => {
            Some(&ids.call_id)
        }
        Command::Query { call_id, .. } => Some(call_id),
        Command::Ping | Command::List { .. } | Command::Statistics => None,
    }
}

/// Runs commands on the shards that own them (the control thread's side).
#[derive(Debug)]
pub struct Dispatch {
    shards: Vec<ShardLink>,
    reply_timeout: Duration,
}

impl Dispatch {
    /// A dispatcher over `shards`, by shard index.
    pub fn new(shards: Vec<ShardLink>) -> Self {
        Dispatch {
            shards,
            reply_timeout: SHARD_REPLY_TIMEOUT,
        }
    }

    /// How many shards there are.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Runs `request` where it belongs and gives its outcome.
    pub fn run(&self, request: &Request) -> Outcome {
        match &request.command {
            Command::Ping => Outcome::Pong,
            Command::List { limit } => self.list(*limit),
            Command::Statistics => self.statistics(),
            command => match call_id(command) {
                Some(id) => self.run_on(shard_of(id, self.shards.len()), request),
                None => Outcome::error(SHARD_GONE),
            },
        }
    }

    fn run_on(&self, shard: usize, request: &Request) -> Outcome {
        let Some(link) = self.shards.get(shard) else {
            return Outcome::error(SHARD_GONE);
        };
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = ShardRequest::Command {
            request: Box::new(request.clone()),
            reply,
        };
        match link.send(request) {
            Ok(()) => self.wait(shard, &answer).unwrap_or_else(Outcome::error),
            Err(reason) => Outcome::error(reason),
        }
    }

    fn list(&self, limit: Option<u32>) -> Outcome {
        let max = list_limit(limit);
        let answers = self.ask_all(|reply| ShardRequest::List { limit: max, reply });
        match answers {
            Ok(ids) => list_reply(ids.into_iter().flatten(), limit),
            Err(reason) => Outcome::error(reason),
        }
    }

    fn statistics(&self) -> Outcome {
        match self.ask_all(|reply| ShardRequest::Summary { reply }) {
            Ok(summaries) => {
                let mut total = SessionsSummary::default();
                for summary in &summaries {
                    total.add(summary);
                }
                statistics_reply(&total)
            }
            Err(reason) => Outcome::error(reason),
        }
    }

    /// Asks every shard (all queued before any answer is awaited) and
    /// gives their answers by shard.
    fn ask_all<T>(
        &self,
        request: impl Fn(Sender<T>) -> ShardRequest,
    ) -> Result<Vec<T>, &'static str> {
        let mut pending = Vec::with_capacity(self.shards.len());
        for link in &self.shards {
            let (reply, answer) = crossbeam_channel::bounded(1);
            link.send(request(reply))?;
            pending.push(answer);
        }
        pending
            .iter()
            .enumerate()
            .map(|(shard, answer)| self.wait(shard, answer))
            .collect()
    }

    fn wait<T>(&self, shard: usize, answer: &Receiver<T>) -> Result<T, &'static str> {
        answer.recv_timeout(self.reply_timeout).map_err(|e| {
            match e {
                RecvTimeoutError::Timeout => {
                    tracing::error!(shard, timeout = ?self.reply_timeout, "media shard did not answer");
                }
                RecvTimeoutError::Disconnected => {
                    tracing::error!(shard, "media shard stopped");
                }
            }
            SHARD_GONE
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use crate::ng::{CallIds, Options};
    use crate::session::SessionConfig;

    #[test]
    fn ownership_is_stable_and_spread() {
        assert_eq!(shard_of(b"abc", 1), 0);
        assert_eq!(shard_of(b"abc", 0), 0);
        assert_eq!(shard_of(b"call-1@host", 4), shard_of(b"call-1@host", 4));
        let mut per_shard = [0_u32; 4];
        for i in 0..4_000 {
            per_shard[shard_of(format!("{i}@pbx.example").as_bytes(), 4)] += 1;
        }
        // Each of 4 shards gets a fair share (1,000 expected).
        assert!(
            per_shard.iter().all(|&n| (800..1_200).contains(&n)),
            "{per_shard:?}"
        );
    }

    /// A shard on a thread of its own, answering from real `Sessions`
    /// until its queue closes.
    fn spawn_shard(
        shard: usize,
        shards: usize,
        eventfd_ring: &edge::runtime::uring::UdpRing,
    ) -> (ShardLink, std::thread::JoinHandle<()>) {
        let (tx, rx) = shard_queue();
        let config = SessionConfig {
            advertised_address: std::net::Ipv4Addr::LOCALHOST.into(),
            port_min: 30_000,
            port_max: 30_099,
            ..SessionConfig::default()
        };
        let handle = std::thread::spawn(move || {
            let Ok(mut sessions) = Sessions::new(Instant::now(), config, shard, shards) else {
                return;
            };
            while let Ok(request) = rx.recv() {
                request.answer(Instant::now(), &mut sessions);
            }
        });
        (ShardLink::new(tx, eventfd_ring.waker()), handle)
    }

    fn request_of(command: Command) -> Request {
        Request {
            command,
            options: Options::default(),
        }
    }

    fn offer(call_id: &str) -> Request {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                   t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        request_of(Command::Offer {
            ids: CallIds {
                call_id: Bytes::from(call_id.to_string()),
                from_tag: Bytes::from_static(b"tag-a"),
                via_branch: None,
            },
            to_tag: None,
            sdp: Bytes::from_static(sdp.as_bytes()),
        })
    }

    #[test]
    fn commands_reach_their_owner_and_statistics_add_up() {
        let ring = edge::runtime::uring::UdpRing::new(Vec::new(), Default::default());
        let Ok(ring) = ring else {
            // No io_uring here: the waker comes from the ring.
            return;
        };
        let (a, ta) = spawn_shard(0, 2, &ring);
        let (b, tb) = spawn_shard(1, 2, &ring);
        let dispatch = Dispatch::new(vec![a, b]);
        let ids: Vec<String> = (0..20).map(|i| format!("call-{i}")).collect();
        for id in &ids {
            assert!(
                matches!(dispatch.run(&offer(id)), Outcome::Ok { .. }),
                "{id}"
            );
        }
        let Outcome::Ok { fields, .. } = dispatch.run(&request_of(Command::Statistics)) else {
            panic!("statistics failed");
        };
        let text = format!("{fields:?}");
        assert!(
            text.contains("sessionsown") && text.contains("Int(20)"),
            "{text}"
        );
        let Outcome::Ok { fields, .. } = dispatch.run(&request_of(Command::List { limit: None }))
        else {
            panic!("list failed");
        };
        let listed = format!("{fields:?}");
        for id in &ids {
            assert!(listed.contains(id.as_str()), "{id} missing from {listed}");
        }
        drop(dispatch);
        assert!(ta.join().is_ok() && tb.join().is_ok());
    }
}
