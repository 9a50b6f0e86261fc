//! The reply cache: each reply kept by its cookie for a while, so that a
//! retransmitted request is answered with the same bytes without running
//! the command again.
//!
//! Kamailio resends a request it got no reply to (the same bytes, the same
//! cookie) up to 5 times, 1 s apart. Running a retransmitted `offer` again
//! would allocate a second set of ports; replaying the cached reply is
//! what rtpengine does. The default time to live, [`DEFAULT_TTL`] (60 s),
//! is the top of rtpengine's 30-60 s range and covers Kamailio's 5 s of
//! retransmissions many times over.
//!
//! Bounded three ways: by time (entries expire after the TTL), by count
//! (`max_entries`, the oldest evicted first) and by bytes (`max_bytes`).
//! Cookies are bounded in length by [`Cookie::MAX_BYTES`].
//!
//! A request arriving again while the first copy is still being handled
//! cannot happen here: the handler is synchronous and the shell handles one
//! datagram at a time ([`super::Control::handle`] runs the command and
//! caches its reply before it returns). A handler that yields before its
//! reply is cached would need a "pending" mark per cookie (rtpengine's
//! cookie cache has one, and makes the duplicate wait); dropping the
//! duplicate would then be enough, since Kamailio sends it again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::datagram::Cookie;

/// How long a reply is kept by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How many replies are kept at most by default: 60 s of about 1,000
/// commands a second.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;
/// How many bytes of replies are kept at most by default.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// What the cache did, for metrics: each counter says a limit was hit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Replies stored.
    pub inserted: u64,
    /// Replies dropped because their TTL passed.
    pub expired: u64,
    /// Replies dropped before their TTL to make room (count or bytes).
    pub evicted: u64,
    /// Replies not stored because one alone is over `max_bytes`.
    pub too_large: u64,
}

struct Entry {
    reply: Bytes,
    inserted_at: Instant,
}

/// Replies by cookie, for a TTL, bounded in count and bytes.
pub struct ReplyCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<Cookie, Entry>,
    /// Cookies in insertion order, oldest first; always the same set as
    /// `entries`' keys. With one TTL for all, the oldest expires first.
    order: VecDeque<Cookie>,
    counters: CacheCounters,
}

impl ReplyCache {
    /// A cache keeping replies for `ttl`, at most `max_entries` of them
    /// (at least 1) and [`DEFAULT_MAX_BYTES`].
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        ReplyCache::with_max_bytes(ttl, max_entries, DEFAULT_MAX_BYTES)
    }

    /// As [`ReplyCache::new`], with at most `max_bytes` of replies.
    pub fn with_max_bytes(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        let max_entries = max_entries.max(1);
        ReplyCache {
            ttl,
            max_entries,
            max_bytes,
            bytes: 0,
            // Grow on demand: most relays see far fewer than max_entries.
            entries: HashMap::new(),
            order: VecDeque::new(),
            counters: CacheCounters::default(),
        }
    }

    /// The reply cached for `cookie`, if there is one younger than the TTL.
    pub fn get(&self, now: Instant, cookie: &Cookie) -> Option<&Bytes> {
        self.entries
            .get(cookie)
            .filter(|e| !self.expired(e, now))
            .map(|e| &e.reply)
    }

    /// Caches `reply` for `cookie` from `now`, dropping expired replies and
    /// then the oldest ones while over a limit. A cookie already cached
    /// gets the new reply and a fresh TTL.
    pub fn insert(&mut self, now: Instant, cookie: &Cookie, reply: Bytes) {
        self.expire(now);
        if reply.len() > self.max_bytes {
            self.counters.too_large += 1;
            return;
        }
        if let Some(entry) = self.entries.get_mut(cookie) {
            // Keeps its place in `order`, so it may leave a little early;
            // `get` still honours its own time.
            self.bytes = self.bytes - entry.reply.len() + reply.len();
            *entry = Entry {
                reply,
                inserted_at: now,
            };
            self.evict_while_over(0);
            return;
        }
        self.evict_while_over(reply.len());
        // A copy, so that the cache does not keep the whole request
        // datagram (the cookie is a slice of it) alive for the TTL.
        let cookie = cookie.detached();
        self.bytes += reply.len();
        self.entries.insert(
            cookie.clone(),
            Entry {
                reply,
                inserted_at: now,
            },
        );
        self.order.push_back(cookie);
        self.counters.inserted += 1;
    }

    /// Drops the replies whose TTL has passed at `now`.
    pub fn expire(&mut self, now: Instant) {
        // Bounded by the number of entries: each turn removes one.
        while let Some(oldest) = self.order.front() {
            match self.entries.get(oldest) {
                Some(e) if !self.expired(e, now) => break,
                _ => {
                    self.pop_oldest();
                    self.counters.expired += 1;
                }
            }
        }
    }

    /// When the oldest reply expires, for the shell's timer; `None` when
    /// the cache is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let oldest = self.order.front()?;
        self.entries.get(oldest).map(|e| e.inserted_at + self.ttl)
    }

    /// How many replies are cached (expired ones included until
    /// [`ReplyCache::expire`] or the next insert).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of replies cached.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the cache has done so far.
    pub fn counters(&self) -> CacheCounters {
        self.counters
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.inserted_at) >= self.ttl
    }

    /// Evicts the oldest replies until `incoming` more bytes and one more
    /// entry fit (for a replacement, `incoming` is 0 and the count stays).
    fn evict_while_over(&mut self, incoming: usize) {
        let adding = usize::from(incoming > 0);
        while !self.order.is_empty()
            && (self.entries.len() + adding > self.max_entries
                || self.bytes + incoming > self.max_bytes)
        {
            self.pop_oldest();
            self.counters.evicted += 1;
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(cookie) = self.order.pop_front() {
            if let Some(e) = self.entries.remove(&cookie) {
                self.bytes -= e.reply.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::datagram::split_datagram;

    fn cookie(s: &str) -> Cookie {
        let datagram = Bytes::from(format!("{s} d7:command4:pinge"));
        split_datagram(&datagram).expect("framed").0
    }

    fn reply(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_hit_within_the_ttl_returns_the_same_bytes() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(DEFAULT_TTL, 8);
        let sent = reply("1 d6:result2:oke");
        cache.insert(t0, &cookie("1"), sent.clone());
        for s in 1..=5 {
            let again = t0 + Duration::from_secs(s);
            assert_eq!(cache.get(again, &cookie("1")), Some(&sent));
        }
        assert_eq!(cache.get(t0, &cookie("2")), None);
    }

    #[test]
    fn replies_expire_after_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut cache = ReplyCache::new(ttl, 8);
        cache.insert(t0, &cookie("a"), reply("x"));
        cache.insert(t0 + Duration::from_secs(10), &cookie("b"), reply("y"));
        assert_eq!(cache.poll_timeout(), Some(t0 + ttl));
        let later = t0 + ttl;
        assert_eq!(
            cache.get(later - Duration::from_millis(1), &cookie("a")),
            Some(&reply("x"))
        );
        assert_eq!(cache.get(later, &cookie("a")), None);
        cache.expire(later);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.counters().expired, 1);
        assert_eq!(cache.get(later, &cookie("b")), Some(&reply("y")));
        cache.expire(t0 + Duration::from_secs(40));
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.poll_timeout(), None);
    }

    #[test]
    fn the_oldest_is_evicted_at_max_entries() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(DEFAULT_TTL, 3);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(
                t0 + Duration::from_millis(i as u64),
                &cookie(name),
                reply("r"),
            );
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(t0, &cookie("a")), None);
        assert!(cache.get(t0, &cookie("b")).is_some());
        assert!(cache.get(t0, &cookie("d")).is_some());
        assert_eq!(cache.counters().evicted, 1);
    }

    #[test]
    fn bytes_are_bounded_too() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::with_max_bytes(DEFAULT_TTL, 100, 10);
        cache.insert(t0, &cookie("a"), reply("12345"));
        cache.insert(t0, &cookie("b"), reply("12345"));
        cache.insert(t0, &cookie("c"), reply("123"));
        assert_eq!(cache.get(t0, &cookie("a")), None);
        assert_eq!(cache.bytes(), 8);
        cache.insert(t0, &cookie("d"), reply("12345678901"));
        assert_eq!(cache.get(t0, &cookie("d")), None);
        assert_eq!(cache.counters().too_large, 1);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn inserting_a_cached_cookie_replaces_its_reply() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(10), 2);
        cache.insert(t0, &cookie("a"), reply("old"));
        cache.insert(t0 + Duration::from_secs(5), &cookie("a"), reply("newer"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 5);
        let at = t0 + Duration::from_secs(12);
        assert_eq!(cache.get(at, &cookie("a")), Some(&reply("newer")));
    }

    #[test]
    fn the_cache_keeps_a_copy_of_the_cookie_not_the_datagram() {
        let datagram = Bytes::from(vec![b'x'; 1000]);
        let mut framed = b"ck ".to_vec();
        framed.extend_from_slice(&datagram);
        let framed = Bytes::from(framed);
        let (c, _) = split_datagram(&framed).expect("framed");
        let mut cache = ReplyCache::new(DEFAULT_TTL, 2);
        cache.insert(Instant::now(), &c, reply("r"));
        let stored = cache.order.front().expect("stored");
        assert_ne!(stored.as_bytes().as_ptr(), c.as_bytes().as_ptr());
    }
}
