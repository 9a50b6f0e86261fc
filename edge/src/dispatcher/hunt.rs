//! Failover: one proxied request walks its ranked destinations until one
//! answers, the attempts run out, or the caller cancels.

use std::time::{Duration, Instant};

use super::select::{Candidates, MAX_CANDIDATES};
use super::state::{DestId, Dispatcher};

/// A set of SIP status codes (100..=699), as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeSet {
    bits: [u64; 11],
}

impl CodeSet {
    /// No code.
    pub const fn empty() -> Self {
        CodeSet { bits: [0; 11] }
    }

    /// Every code in `from..=to` (clamped to 0..=699).
    pub fn range(from: u16, to: u16) -> Self {
        let mut set = Self::empty();
        (from..=to.min(699)).for_each(|c| set.insert(c));
        set
    }

    /// These codes.
    pub fn of(codes: &[u16]) -> Self {
        let mut set = Self::empty();
        codes.iter().for_each(|&c| set.insert(c));
        set
    }

    /// Adds `code` (ignored above 699).
    pub fn insert(&mut self, code: u16) {
        if code < 700 {
            self.bits[usize::from(code / 64)] |= 1 << (code % 64);
        }
    }

    /// Is `code` in the set?
    pub fn contains(&self, code: u16) -> bool {
        code < 700 && self.bits[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }
}

/// Failover settings of a dispatcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Destinations tried for one request, the first included (default 3,
    /// 1..=[`MAX_CANDIDATES`]).
    pub max_attempts: u8,
    /// Final codes that make the hunt try the next destination (default 408,
    /// 500, 502, 503, 504; 480 is the callee's answer, not the server's).
    pub codes: CodeSet,
    /// An attempt with no reply at all (not even 1xx) for this long fails over
    /// (default 4 s, well under Timer B's 32 s).
    pub attempt_timeout: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            max_attempts: 3,
            codes: CodeSet::of(&[408, 500, 502, 503, 504]),
            attempt_timeout: Duration::from_secs(4),
        }
    }
}

impl FailoverConfig {
    /// `max_attempts` within 1..=[`MAX_CANDIDATES`].
    pub fn attempts(&self) -> usize {
        usize::from(self.max_attempts).clamp(1, MAX_CANDIDATES)
    }
}

/// What the proxy branch does after an input to the hunt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuntVerdict {
    /// A provisional reply: forward it, keep waiting (the attempt timer stops).
    Provisional,
    /// A 2xx: forward it; the hunt is over and the call counts on `dest`.
    Answered {
        /// Where the call went.
        dest: DestId,
    },
    /// A final reply that is not a failover code: forward it; the hunt is over.
    Final,
    /// Failover: send the request to `dest` (and CANCEL the old branch after
    /// a timeout); the reply that caused it is not forwarded.
    Retry {
        /// The next destination.
        dest: DestId,
    },
    /// Failover, but no destination is left: answer upstream with `code` (the
    /// last failure's code, 408 after a timeout).
    Exhausted {
        /// The code to answer with.
        code: u16,
    },
    /// Nothing to do (a stale timer, or the hunt is over).
    Ignored,
}

/// The failover state of one proxied request, driven by its branch. Every
/// method that reports an outcome takes the shard's [`Dispatcher`], which it
/// keeps current: pending attempts, call load, passive health marking.
///
/// A hunt that [`Hunt::is_done`] holds nothing; one dropped earlier leaves a
/// pending attempt counted, so a branch ends every hunt with a reply, a
/// timeout or [`Hunt::on_cancel`].
#[derive(Clone, Debug)]
pub struct Hunt {
    candidates: Candidates,
    next: usize,
    attempts: usize,
    max_attempts: usize,
    timeout: Duration,
    current: Option<DestId>,
    deadline: Option<Instant>,
    track_load: bool,
    done: bool,
    last_code: u16,
}

impl Hunt {
    /// A hunt over `candidates` (from [`Dispatcher::select`]). `track_load`
    /// counts the call on its destination (initial INVITEs).
    pub fn new(candidates: Candidates, config: &FailoverConfig, track_load: bool) -> Self {
        Hunt {
            candidates,
            next: 0,
            attempts: 0,
            max_attempts: config.attempts(),
            timeout: config.attempt_timeout,
            current: None,
            deadline: None,
            track_load,
            done: false,
            last_code: 503,
        }
    }

    /// The first destination to try (or the next after a failure the caller
    /// handled itself); `None` when none is left that takes calls. Skips a
    /// candidate that stopped taking calls since the ranking.
    pub fn next_destination(&mut self, d: &mut Dispatcher, now: Instant) -> Option<DestId> {
        self.release(d, false);
        while self.attempts < self.max_attempts && !self.done {
            let id = *self.candidates.as_slice().get(self.next)?;
            self.next += 1;
            if d.takes_new_calls(id) {
                self.attempts += 1;
                self.current = Some(id);
                self.deadline = Some(now + self.timeout);
                d.attempt_started(id, self.track_load);
                return Some(id);
            }
        }
        None
    }

    /// A reply from the current destination.
    pub fn on_response(&mut self, d: &mut Dispatcher, now: Instant, code: u16) -> HuntVerdict {
        let Some(dest) = self.current.filter(|_| !self.done) else {
            return HuntVerdict::Ignored;
        };
        if code < 200 {
            self.deadline = None;
            d.report_alive(dest);
            return HuntVerdict::Provisional;
        }
        if d.config().failover.codes.contains(code) {
            return self.fail_over(d, now, code);
        }
        d.report_alive(dest);
        let answered = code < 300;
        self.release(d, answered);
        self.done = true;
        if answered {
            HuntVerdict::Answered { dest }
        } else {
            HuntVerdict::Final
        }
    }

    /// The timer of [`Hunt::poll_timeout`] fired.
    pub fn on_timeout(&mut self, d: &mut Dispatcher, now: Instant) -> HuntVerdict {
        match self.deadline {
            Some(deadline) if now >= deadline && !self.done => self.fail_over(d, now, 408),
            _ => HuntVerdict::Ignored,
        }
    }

    /// The caller sent CANCEL: the hunt stops (the branch cancels downstream).
    pub fn on_cancel(&mut self, d: &mut Dispatcher) {
        self.release(d, false);
        self.done = true;
    }

    /// When the current attempt times out, if it waits for a first reply.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.done)
    }

    /// The destination of the current attempt.
    pub fn current(&self) -> Option<DestId> {
        self.current
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// The code of the last failover (503 before any): what to answer
    /// upstream when [`Hunt::next_destination`] finds none.
    pub fn last_code(&self) -> u16 {
        self.last_code
    }

    /// Is the hunt over?
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Does it count call load (an initial INVITE)?
    pub fn tracks_load(&self) -> bool {
        self.track_load
    }

    fn fail_over(&mut self, d: &mut Dispatcher, now: Instant, code: u16) -> HuntVerdict {
        if let Some(dest) = self.current {
            d.report_failure(dest);
        }
        self.last_code = code;
        match self.next_destination(d, now) {
            Some(dest) => HuntVerdict::Retry { dest },
            None => {
                self.done = true;
                HuntVerdict::Exhausted { code }
            }
        }
    }

    /// Ends the current attempt's pending count (once: a finished hunt has none).
    fn release(&mut self, d: &mut Dispatcher, answered: bool) {
        if self.done {
            return;
        }
        if let Some(dest) = self.current.take() {
            d.attempt_ended(dest, self.track_load, answered);
            self.current = answered.then_some(dest);
        }
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_set_bounds() {
        let set = CodeSet::of(&[100, 408, 699, 700, 65535]);
        assert!(set.contains(100) && set.contains(408) && set.contains(699));
        assert!(!set.contains(700) && !set.contains(480) && !set.contains(65535));
        assert!(CodeSet::range(200, 299).contains(299));
        assert!(!CodeSet::range(200, 299).contains(300));
    }

    #[test]
    fn default_failover_codes_exclude_480() {
        let c = FailoverConfig::default().codes;
        assert!([408, 500, 502, 503, 504].iter().all(|&x| c.contains(x)));
        assert!(!c.contains(480) && !c.contains(486) && !c.contains(501));
    }
}
