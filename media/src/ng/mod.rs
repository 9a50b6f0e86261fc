//! The rtpengine ng control protocol, as Kamailio's `rtpengine` module
//! speaks it: one UDP datagram `COOKIE SP DICT` per request, the reply
//! starting with the same cookie.
//!
//! All sans-IO: bytes and the time come in as arguments, bytes go out as
//! return values. The flow for one datagram, which [`Control::handle`]
//! runs:
//!
//! 1. [`split_datagram`] cuts off the cookie. No cookie: no reply at all
//!    ([`NoReply`]).
//! 2. [`ReplyCache::get`]: a retransmission (same cookie within the TTL)
//!    gets the cached reply again, byte for byte, and the command does not
//!    run twice.
//! 3. [`parse_request`] decodes the dictionary ([`bencode`], or JSON when
//!    the first byte is `{`) into a typed [`Request`] and its
//!    [`Warning`]s; a bad request becomes an `error` reply with a sentence
//!    ([`RequestError`]).
//! 4. The command handler (sessions and SDP live elsewhere) turns the
//!    request into an [`Outcome`].
//! 5. [`encode_reply`] writes the reply in rtpengine's key order, and the
//!    cache keeps it.
//!
//! [`parse_datagram`] does steps 1 and 3 in one call, for callers that
//! keep no cache (tests, fuzzing, tools).

pub mod bencode;
pub mod cache;
pub mod datagram;
mod json;
pub mod reply;
pub mod request;

use std::time::{Duration, Instant};

/// The buffer type of this API, re-exported so that callers (the fuzz
/// targets, the shell) need not name the `bytes` crate themselves.
pub use bytes::Bytes;

pub use bencode::{DecodeError, Dict, Limits, Value};
pub use cache::{CacheCounters, ReplyCache};
pub use datagram::{frame_reply, split_datagram, Cookie, NoReply};
pub use reply::{encode_error, encode_reply, reply_dict, Outcome};
pub use request::{
    parse_request, CallIds, Command, CommandKind, Flag, Ice, Missing, Options, Replace, Request,
    RequestError, RtcpMux, SipMessageType, TransportProtocol, Warning,
};

/// The limits of the ng endpoint, each with a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bounds on decoding one request.
    pub limits: Limits,
    /// How long a reply is replayed to retransmissions.
    pub cache_ttl: Duration,
    /// How many replies are kept at most.
    pub cache_max_entries: usize,
    /// How many bytes of replies are kept at most.
    pub cache_max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            cache_ttl: cache::DEFAULT_TTL,
            cache_max_entries: cache::DEFAULT_MAX_ENTRIES,
            cache_max_bytes: cache::DEFAULT_MAX_BYTES,
        }
    }
}

/// A request ready for its command handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The cookie to answer with.
    pub cookie: Cookie,
    /// The request.
    pub request: Request,
    /// Non-fatal problems with it, for the reply's `warning`.
    pub warnings: Vec<Warning>,
}

/// A datagram that will not reach a command handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Drop it: there is no cookie to answer with.
    NoReply(NoReply),
    /// Answer `result: error` with the error's sentence.
    Error {
        /// The cookie to answer with.
        cookie: Cookie,
        /// What is wrong with the request.
        error: RequestError,
    },
}

impl Rejected {
    /// The reply datagram to send, if any.
    pub fn reply(&self) -> Option<Bytes> {
        match self {
            Rejected::NoReply(_) => None,
            Rejected::Error { cookie, error } => Some(encode_error(cookie, &error.to_string())),
        }
    }
}

/// Splits and parses one datagram (no reply cache: see [`Control`]).
pub fn parse_datagram(datagram: &Bytes, limits: &Limits) -> Result<Incoming, Rejected> {
    let (cookie, body) = split_datagram(datagram).map_err(Rejected::NoReply)?;
    match parse_request(&body, limits) {
        Ok((request, warnings)) => Ok(Incoming {
            cookie,
            request,
            warnings,
        }),
        Err(error) => Err(Rejected::Error { cookie, error }),
    }
}

/// What the endpoint has done so far, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams dropped without a reply (no usable cookie).
    pub no_reply: u64,
    /// Retransmissions answered from the cache.
    pub replayed: u64,
    /// Requests refused before a handler saw them.
    pub refused: u64,
    /// Requests given to the handler.
    pub handled: u64,
}

/// The ng endpoint: the reply cache and the limits, around a command
/// handler the caller supplies.
pub struct Control {
    limits: Limits,
    cache: ReplyCache,
    counters: Counters,
}

impl Control {
    /// An endpoint with `config`'s limits and an empty cache.
    pub fn new(config: &Config) -> Self {
        Control {
            limits: config.limits,
            cache: ReplyCache::with_max_bytes(
                config.cache_ttl,
                config.cache_max_entries,
                config.cache_max_bytes,
            ),
            counters: Counters::default(),
        }
    }

    /// Handles one datagram received at `now`: the reply to send, if any.
    /// `run` is the command handler; it is called at most once, and only
    /// for a request that is not a retransmission of one already answered.
    /// Because it runs to completion before the reply is cached and this
    /// returns, a retransmission can never find its request half-handled.
    pub fn handle(
        &mut self,
        now: Instant,
        datagram: &Bytes,
        run: impl FnOnce(&Incoming) -> Outcome,
    ) -> Option<Bytes> {
        let Ok((cookie, body)) = split_datagram(datagram) else {
            self.counters.no_reply += 1;
            return None;
        };
        if let Some(reply) = self.cache.get(now, &cookie) {
            self.counters.replayed += 1;
            return Some(reply.clone());
        }
        let reply = match parse_request(&body, &self.limits) {
            Ok((request, warnings)) => {
                self.counters.handled += 1;
                let incoming = Incoming {
                    cookie: cookie.clone(),
                    request,
                    warnings,
                };
                let outcome = run(&incoming);
                let supports = incoming.request.options.supports_load_limit;
                encode_reply(&cookie, &outcome, &incoming.warnings, supports)
            }
            Err(error) => {
                self.counters.refused += 1;
                encode_error(&cookie, &error.to_string())
            }
        };
        self.cache.insert(now, &cookie, reply.clone());
        Some(reply)
    }

    /// Drops cached replies whose TTL has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cache.expire(now);
    }

    /// When [`Control::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cache.poll_timeout()
    }

    /// What the endpoint has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The reply cache, for its size and counters.
    pub fn cache(&self) -> &ReplyCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offer from COMPAT.md, byte for byte.
    const EXAMPLE_SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=-\r\n\
        c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 2000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    fn example_offer() -> Bytes {
        Bytes::from(format!(
            "1_27_17 d3:sdp155:{EXAMPLE_SDP}3:ICE6:remove7:call-id19:a84b4c76e66710@pc33\
             8:from-tag10:19283017747:command5:offere"
        ))
    }

    /// The example's SDP as the relay rewrites it (COMPAT.md elides the
    /// unchanged lines; these are they).
    const REWRITTEN_SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=-\r\n\
        c=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\na=rtcp:30001\r\n";

    fn sdp_reply(sdp: &'static str) -> Outcome {
        let mut fields = Dict::new();
        fields.push("sdp", sdp);
        Outcome::ok_with(fields)
    }

    #[test]
    fn the_compat_example_offer_parses() {
        let incoming = parse_datagram(&example_offer(), &Limits::default()).expect("valid");
        assert_eq!(incoming.cookie.as_bytes(), b"1_27_17");
        assert_eq!(incoming.request.command.kind(), CommandKind::Offer);
        let Command::Offer { ids, to_tag, sdp } = &incoming.request.command else {
            panic!("not an offer: {:?}", incoming.request.command);
        };
        assert_eq!(ids.call_id, &b"a84b4c76e66710@pc33"[..]);
        assert_eq!(ids.from_tag, &b"1928301774"[..]);
        assert_eq!(*to_tag, None);
        assert_eq!(sdp, EXAMPLE_SDP.as_bytes());
        assert_eq!(incoming.request.options.ice, Some(Ice::Remove));
        assert!(incoming.warnings.is_empty());
    }

    #[test]
    fn the_compat_example_reply_is_byte_exact() {
        let incoming = parse_datagram(&example_offer(), &Limits::default()).expect("valid");
        let reply = encode_reply(&incoming.cookie, &sdp_reply(REWRITTEN_SDP), &[], false);
        let want = format!(
            "1_27_17 d3:sdp{}:{REWRITTEN_SDP}6:result2:oke",
            REWRITTEN_SDP.len()
        );
        assert_eq!(reply, want.as_bytes());
        assert!(reply.ends_with(b"a=rtcp:30001\r\n6:result2:oke"));
    }

    #[test]
    fn rejected_datagrams_reply_with_an_error_or_not_at_all() {
        let limits = Limits::default();
        let none = parse_datagram(&Bytes::from_static(b"d7:command4:pinge"), &limits);
        assert_eq!(
            none.as_ref().map(|_| ()),
            Err(&Rejected::NoReply(NoReply::NoSpace))
        );
        assert_eq!(none.expect_err("no cookie").reply(), None);
        let bad = parse_datagram(&Bytes::from_static(b"c1 d7:command3:fooe"), &limits)
            .expect_err("unknown command");
        assert_eq!(
            bad.reply().expect("error reply"),
            &b"c1 d6:result5:error12:error-reason26:Unrecognized command \"foo\"e"[..]
        );
    }

    #[test]
    fn a_retransmission_gets_the_same_reply_without_running_again() {
        let t0 = Instant::now();
        let mut control = Control::new(&Config::default());
        let mut runs = 0;
        let mut replies = Vec::new();
        for s in 0..6 {
            let reply = control.handle(t0 + Duration::from_secs(s), &example_offer(), |_| {
                runs += 1;
                sdp_reply(REWRITTEN_SDP)
            });
            replies.push(reply.expect("a reply"));
        }
        assert_eq!(runs, 1);
        assert!(replies.iter().all(|r| r == &replies[0]));
        assert_eq!(control.counters().replayed, 5);
        assert_eq!(control.counters().handled, 1);
    }

    #[test]
    fn after_the_ttl_the_command_runs_again() {
        let t0 = Instant::now();
        let config = Config {
            cache_ttl: Duration::from_secs(30),
            ..Config::default()
        };
        let mut control = Control::new(&config);
        let ping = Bytes::from_static(b"p1 d7:command4:pinge");
        let mut runs = 0;
        let mut run = |_: &Incoming| {
            runs += 1;
            Outcome::Pong
        };
        assert_eq!(
            control.handle(t0, &ping, &mut run),
            Some(Bytes::from_static(b"p1 d6:result4:ponge"))
        );
        assert_eq!(control.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        control.handle_timeout(t0 + Duration::from_secs(30));
        assert!(control.cache().is_empty());
        assert!(control
            .handle(t0 + Duration::from_secs(31), &ping, &mut run)
            .is_some());
        assert_eq!(runs, 2);
    }

    #[test]
    fn errors_are_cached_and_no_cookie_is_dropped() {
        let t0 = Instant::now();
        let mut control = Control::new(&Config::default());
        let bad = Bytes::from_static(b"e1 d7:command5:offere");
        let first = control.handle(t0, &bad, |_| unreachable!("refused before the handler"));
        assert_eq!(
            first,
            Some(Bytes::from_static(
                b"e1 d6:result5:error12:error-reason22:No SDP body in messagee"
            ))
        );
        let again = control.handle(t0, &bad, |_| unreachable!("replayed"));
        assert_eq!(again, first);
        assert_eq!(control.counters().refused, 1);
        assert_eq!(control.counters().replayed, 1);
        let dropped = control.handle(t0, &Bytes::from_static(b"nocookie"), |_| Outcome::Pong);
        assert_eq!(dropped, None);
        assert_eq!(control.counters().no_reply, 1);
    }

    #[test]
    fn request_warnings_reach_the_reply_and_load_limit_follows_supports() {
        let t0 = Instant::now();
        let mut control = Control::new(&Config::default());
        let offer = Bytes::from_static(
            b"w1 d7:command5:offer3:sdp3:v=07:call-id1:c8:from-tag1:f\
              5:flagsl5:bogusee",
        );
        let reply = control.handle(t0, &offer, |_| Outcome::ok());
        assert_eq!(
            reply,
            Some(Bytes::from_static(
                b"w1 d7:warning20:Unknown flag \"bogus\"6:result2:oke"
            ))
        );
        let limited = Bytes::from_static(
            b"w2 d7:command5:offer3:sdp3:v=07:call-id1:c8:from-tag1:f\
              8:supportsl10:load limitee",
        );
        let reply = control.handle(t0, &limited, |_| {
            Outcome::LoadLimit(reply::LOAD_LIMIT_SESSIONS.into())
        });
        assert_eq!(
            reply,
            Some(Bytes::from_static(
                b"w2 d6:result10:load limit7:message30:Parallel session limit reachede"
            ))
        );
    }

    #[test]
    fn json_requests_are_answered_in_bencode() {
        let mut control = Control::new(&Config::default());
        let json = Bytes::from_static(br#"j1 {"command": "ping"}"#);
        let reply = control.handle(Instant::now(), &json, |i| {
            assert_eq!(i.request.command, Command::Ping);
            Outcome::Pong
        });
        assert_eq!(reply, Some(Bytes::from_static(b"j1 d6:result4:ponge")));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_datagram_is_answered_or_dropped_without_panic(
                input in proptest::collection::vec(any::<u8>(), 0..300)
            ) {
                let mut control = Control::new(&Config::default());
                let datagram = Bytes::from(input);
                let _ = parse_datagram(&datagram, &Limits::default());
                let reply = control.handle(Instant::now(), &datagram, |_| Outcome::ok());
                if let Some(reply) = reply {
                    let (cookie, _) = split_datagram(&datagram).expect("answered, so framed");
                    prop_assert!(reply.starts_with(cookie.as_bytes()));
                }
            }
        }
    }
}
