//! The RTP/RTCP port-pair allocator, sans-IO.
//!
//! Ports come in pairs: RTP on an even port, RTCP on the next odd one (RFC
//! 3550 section 11). The configured range is split across shards by pair
//! index modulo the shard count, so each core allocates from its own
//! [`PortPool`] and no two cores ever contend for, or hand out, one pair.
//!
//! A released pair sits in quarantine for the delete delay (30 s by default,
//! as in rtpengine) before it is reused, so late packets of an old call do
//! not reach a new one; free pairs are reused oldest-released first for the
//! same reason. Time is an argument: the pool never reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Lowest port a pool accepts: below it are the privileged ports of system
/// services, which a relay has no business binding.
pub const MIN_PORT: u16 = 1024;

/// How long a released pair waits before reuse, rtpengine's default.
pub const DEFAULT_DELETE_DELAY: Duration = Duration::from_secs(30);

/// Longest delete delay accepted: beyond it released ports would look leaked.
pub const MAX_DELETE_DELAY: Duration = Duration::from_secs(3600);

/// Why a port range or shard setting cannot make a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PortConfigError {
    /// The lowest port is a privileged one (or 0).
    #[error("port-min {min} is below {MIN_PORT}: privileged ports belong to system services")]
    BelowMinimum {
        /// The configured lowest port.
        min: u16,
    },
    /// The lowest port is above the highest.
    #[error("port-min {min} is above port-max {max}")]
    Inverted {
        /// The configured lowest port.
        min: u16,
        /// The configured highest port.
        max: u16,
    },
    /// The range holds no even RTP port with its odd RTCP port.
    #[error("port range {min}-{max} holds no even/odd RTP/RTCP pair")]
    NoPair {
        /// The configured lowest port.
        min: u16,
        /// The configured highest port.
        max: u16,
    },
    /// Zero shards.
    #[error("the shard count is 0")]
    NoShards,
    /// The shard number is not below the shard count.
    #[error("shard {shard} does not exist: shards are numbered 0 to {shards} - 1")]
    ShardOutOfRange {
        /// The shard asked for.
        shard: usize,
        /// The shard count.
        shards: usize,
    },
    /// More shards than pairs: this shard would get none.
    #[error("shard {shard} of {shards} gets none of the {pairs} port pairs")]
    EmptyShard {
        /// The shard asked for.
        shard: usize,
        /// The shard count.
        shards: usize,
        /// Pairs in the whole range.
        pairs: usize,
    },
    /// The delete delay is above [`MAX_DELETE_DELAY`].
    #[error("delete delay of {delay_s} s is above the maximum of 3600 s")]
    DelayTooLong {
        /// The delay asked for, in whole seconds.
        delay_s: u64,
    },
}

/// Why a release was refused; the pool is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReleaseError {
    /// Not an RTP port of this pool: odd, out of range or another shard's.
    #[error("port {port} is not an RTP port of this shard")]
    Foreign {
        /// The port given.
        port: u16,
    },
    /// The pair is free or already in quarantine: a double release.
    #[error("port {port} is not in use")]
    NotInUse {
        /// The port given.
        port: u16,
    },
}

/// Where a pair is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    /// On the free list.
    Free,
    /// Handed out by `allocate`.
    InUse,
    /// Released, waiting out the delete delay.
    Quarantined,
}

/// One shard's share of the RTP/RTCP port pairs.
///
/// Bounded: every pair is in exactly one of the free list, the quarantine or
/// in use, so the lists never hold more than the shard's pairs and never
/// reallocate after construction.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// The lowest RTP port of the whole range (even).
    first_port: u16,
    shard: usize,
    shards: usize,
    delete_delay: Duration,
    /// State of each pair of this shard, by local index.
    states: Vec<PairState>,
    /// Free pairs as RTP ports, oldest released at the front.
    free: VecDeque<u16>,
    /// Released pairs with the instant they may be reused, in release order.
    quarantine: VecDeque<(u16, Instant)>,
    in_use: usize,
}

impl PortPool {
    /// The pool of shard `shard` (0-based) of `shards` over the ports
    /// `min..=max`: `min` is rounded up to even, and the last pair is the
    /// highest even port whose odd neighbour is still `<= max`. Pair `i` of
    /// the range (port `first + 2i`) belongs to shard `i % shards`. The
    /// delete delay is [`DEFAULT_DELETE_DELAY`].
    pub fn new(min: u16, max: u16, shard: usize, shards: usize) -> Result<Self, PortConfigError> {
        let (first_port, pairs) = pair_range(min, max)?;
        let shard_pairs = shard_pair_count(pairs, shard, shards)?;
        let free = (0..shard_pairs)
            .map(|local| port_of(first_port, local * shards + shard))
            .collect();
        Ok(Self {
            first_port,
            shard,
            shards,
            delete_delay: DEFAULT_DELETE_DELAY,
            states: vec![PairState::Free; shard_pairs],
            free,
            quarantine: VecDeque::with_capacity(shard_pairs),
            in_use: 0,
        })
    }

    /// The same pool with another delete delay (0 allows immediate reuse).
    pub fn with_delete_delay(mut self, delay: Duration) -> Result<Self, PortConfigError> {
        if delay > MAX_DELETE_DELAY {
            return Err(PortConfigError::DelayTooLong {
                delay_s: delay.as_secs(),
            });
        }
        self.delete_delay = delay;
        Ok(self)
    }

    /// Hands out a pair: returns its even RTP port (RTCP is the port + 1).
    /// Reclaims expired quarantine first. `None` means "Ran out of ports";
    /// the caller counts it.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        self.reclaim(now);
        let port = self.free.pop_front()?;
        self.set_state(port, PairState::InUse);
        self.in_use += 1;
        Some(port)
    }

    /// Takes back the pair of RTP port `port`: it goes into quarantine
    /// until `now` plus the delete delay. A port this pool did not hand
    /// out, or one released already, is refused and changes nothing.
    pub fn release(&mut self, port: u16, now: Instant) -> Result<(), ReleaseError> {
        let local = self
            .local_index(port)
            .ok_or(ReleaseError::Foreign { port })?;
        if self.states.get(local) != Some(&PairState::InUse) {
            return Err(ReleaseError::NotInUse { port });
        }
        // An Instant an hour from overflowing does not occur; if it did,
        // reusing at `now` is the least surprising fallback.
        let reuse_at = now.checked_add(self.delete_delay).unwrap_or(now);
        self.set_state(port, PairState::Quarantined);
        self.quarantine.push_back((port, reuse_at));
        self.in_use -= 1;
        Ok(())
    }

    /// Moves pairs whose delete delay has passed to the back of the free
    /// list; returns how many. `allocate` calls it too.
    ///
    /// The quarantine is in release order, so with a monotonic `now` its
    /// deadlines are in order and this stops at the first one not yet due.
    pub fn reclaim(&mut self, now: Instant) -> usize {
        let mut reclaimed = 0;
        // Bounded by the quarantine's length, at most the shard's pairs.
        while let Some(&(port, reuse_at)) = self.quarantine.front() {
            if reuse_at > now {
                break;
            }
            self.quarantine.pop_front();
            self.set_state(port, PairState::Free);
            self.free.push_back(port);
            reclaimed += 1;
        }
        reclaimed
    }

    /// When the next quarantined pair becomes reusable, for the shard's
    /// timer; `None` with an empty quarantine.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.quarantine.front().map(|&(_, reuse_at)| reuse_at)
    }

    /// Pairs ready to allocate (not counting quarantined ones, even if due).
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Pairs handed out and not released.
    pub fn in_use_count(&self) -> usize {
        self.in_use
    }

    /// Pairs waiting out the delete delay.
    pub fn quarantined_count(&self) -> usize {
        self.quarantine.len()
    }

    /// All pairs of this shard.
    pub fn capacity_pairs(&self) -> usize {
        self.states.len()
    }

    /// Whether `port` is an RTP port of this shard.
    pub fn owns(&self, port: u16) -> bool {
        self.local_index(port).is_some()
    }

    /// Whether the pair of RTP port `port` is handed out.
    pub fn is_in_use(&self, port: u16) -> bool {
        self.local_index(port)
            .and_then(|local| self.states.get(local))
            .is_some_and(|&state| state == PairState::InUse)
    }

    /// This shard's index into `states` for RTP port `port`; `None` if the
    /// port is odd, outside the range or another shard's.
    fn local_index(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.first_port)?;
        if offset % 2 != 0 {
            return None;
        }
        let pair = usize::from(offset / 2);
        if pair % self.shards != self.shard {
            return None;
        }
        let local = pair / self.shards;
        (local < self.states.len()).then_some(local)
    }

    /// Records a pair's state; `port` is always one of ours here.
    fn set_state(&mut self, port: u16, state: PairState) {
        if let Some(slot) = self.local_index(port).and_then(|l| self.states.get_mut(l)) {
            *slot = state;
        }
    }
}

/// Validates `min..=max` and returns the first RTP port and the pair count.
fn pair_range(min: u16, max: u16) -> Result<(u16, usize), PortConfigError> {
    if min < MIN_PORT {
        return Err(PortConfigError::BelowMinimum { min });
    }
    if min > max {
        return Err(PortConfigError::Inverted { min, max });
    }
    // In u32: rounding 65535 up to even leaves u16.
    let first = u32::from(min).next_multiple_of(2);
    // The highest even port whose RTCP neighbour (port + 1) is <= max.
    let last = (u32::from(max) - 1) & !1;
    if last < first {
        return Err(PortConfigError::NoPair { min, max });
    }
    let pairs = ((last - first) / 2 + 1) as usize;
    // first <= last <= 65534, so it fits.
    let first_port = u16::try_from(first).map_err(|_| PortConfigError::NoPair { min, max })?;
    Ok((first_port, pairs))
}

/// Validates the shard numbers and returns how many of `pairs` the shard
/// gets when pairs are dealt out by index modulo `shards`.
fn shard_pair_count(pairs: usize, shard: usize, shards: usize) -> Result<usize, PortConfigError> {
    if shards == 0 {
        return Err(PortConfigError::NoShards);
    }
    if shard >= shards {
        return Err(PortConfigError::ShardOutOfRange { shard, shards });
    }
    let count = pairs / shards + usize::from(shard < pairs % shards);
    if count == 0 {
        return Err(PortConfigError::EmptyShard {
            shard,
            shards,
            pairs,
        });
    }
    Ok(count)
}

/// The RTP port of pair `pair` of the range.
fn port_of(first_port: u16, pair: usize) -> u16 {
    // pair < pairs, so first + 2 * pair <= the last RTP port, a u16.
    (usize::from(first_port) + 2 * pair) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn drain(pool: &mut PortPool, now: Instant) -> Vec<u16> {
        std::iter::from_fn(|| pool.allocate(now)).collect()
    }

    #[test]
    fn pairs_are_even_rtp_odd_rtcp_within_range() {
        let now = Instant::now();
        let mut pool = PortPool::new(30_001, 30_010, 0, 1).unwrap();
        // 30001 rounds up to 30002; 30010's RTCP would be 30011 > max.
        assert_eq!(drain(&mut pool, now), [30_002, 30_004, 30_006, 30_008]);
        let mut pool = PortPool::new(30_000, 30_011, 0, 1).unwrap();
        let ports = drain(&mut pool, now);
        assert_eq!(ports.first(), Some(&30_000));
        assert_eq!(ports.last(), Some(&30_010));
        assert!(ports.iter().all(|p| p % 2 == 0 && *p < 30_011));
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            PortPool::new(0, 40_000, 0, 1).unwrap_err(),
            PortConfigError::BelowMinimum { min: 0 }
        );
        assert_eq!(
            PortPool::new(1000, 40_000, 0, 1).unwrap_err(),
            PortConfigError::BelowMinimum { min: 1000 }
        );
        assert_eq!(
            PortPool::new(40_000, 30_000, 0, 1).unwrap_err(),
            PortConfigError::Inverted {
                min: 40_000,
                max: 30_000
            }
        );
        for (min, max) in [(30_000, 30_000), (30_001, 30_002), (65_535, 65_535)] {
            assert_eq!(
                PortPool::new(min, max, 0, 1).unwrap_err(),
                PortConfigError::NoPair { min, max }
            );
        }
        assert_eq!(
            PortPool::new(30_000, 40_000, 0, 0).unwrap_err(),
            PortConfigError::NoShards
        );
        assert_eq!(
            PortPool::new(30_000, 40_000, 4, 4).unwrap_err(),
            PortConfigError::ShardOutOfRange {
                shard: 4,
                shards: 4
            }
        );
        assert_eq!(
            PortPool::new(30_000, 30_005, 3, 4).unwrap_err(),
            PortConfigError::EmptyShard {
                shard: 3,
                shards: 4,
                pairs: 3
            }
        );
        let pool = PortPool::new(30_000, 40_000, 0, 1).unwrap();
        assert_eq!(
            pool.with_delete_delay(Duration::from_secs(3601))
                .unwrap_err(),
            PortConfigError::DelayTooLong { delay_s: 3601 }
        );
    }

    #[test]
    fn smallest_and_top_of_range() {
        let now = Instant::now();
        let mut pool = PortPool::new(MIN_PORT, MIN_PORT + 1, 0, 1).unwrap();
        assert_eq!(drain(&mut pool, now), [MIN_PORT]);
        let mut pool = PortPool::new(65_530, 65_535, 0, 1).unwrap();
        assert_eq!(drain(&mut pool, now), [65_530, 65_532, 65_534]);
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_range() {
        let now = Instant::now();
        let shards = 3;
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for shard in 0..shards {
            let mut pool = PortPool::new(20_000, 20_101, shard, shards).unwrap();
            let ports = drain(&mut pool, now);
            assert_eq!(ports.len(), pool.capacity_pairs());
            total += ports.len();
            for port in ports {
                assert!(seen.insert(port), "port {port} in two shards");
                assert!(pool.owns(port));
            }
        }
        let all: BTreeSet<u16> = (20_000..=20_100).step_by(2).collect();
        assert_eq!(total, all.len());
        assert_eq!(seen, all);
    }

    #[test]
    fn exhaustion_returns_none_until_a_release_is_due() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(30_000, 30_007, 0, 1).unwrap();
        let ports = drain(&mut pool, t0);
        assert_eq!(ports.len(), 4);
        assert_eq!((pool.free_count(), pool.in_use_count()), (0, 4));
        assert_eq!(pool.allocate(t0), None);
        pool.release(ports[0], t0).unwrap();
        assert_eq!(pool.quarantined_count(), 1);
        assert_eq!(pool.in_use_count(), 3);
        // Quarantine holds even when nothing else is free.
        assert_eq!(pool.allocate(t0 + Duration::from_secs(29)), None);
        assert_eq!(pool.poll_timeout(), Some(t0 + DEFAULT_DELETE_DELAY));
        assert_eq!(pool.allocate(t0 + DEFAULT_DELETE_DELAY), Some(ports[0]));
        assert_eq!(pool.poll_timeout(), None);
    }

    #[test]
    fn no_reuse_before_the_delete_delay() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(10);
        let mut pool = PortPool::new(30_000, 30_099, 0, 1)
            .unwrap()
            .with_delete_delay(delay)
            .unwrap();
        let released = pool.allocate(t0).unwrap();
        pool.release(released, t0).unwrap();
        // Every other pair is handed out before the released one is back.
        let mut t = t0;
        while t < t0 + delay {
            if let Some(port) = pool.allocate(t) {
                assert_ne!(port, released);
            }
            t += Duration::from_millis(100);
        }
        assert_eq!(pool.in_use_count(), pool.capacity_pairs() - 1);
        assert_eq!(pool.reclaim(t0 + delay), 1);
        assert_eq!(pool.allocate(t0 + delay), Some(released));
    }

    #[test]
    fn zero_delay_reuses_at_once() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(30_000, 30_003, 0, 1)
            .unwrap()
            .with_delete_delay(Duration::ZERO)
            .unwrap();
        let port = pool.allocate(t0).unwrap();
        assert_eq!(pool.allocate(t0), Some(30_002));
        pool.release(port, t0).unwrap();
        assert_eq!(pool.allocate(t0), Some(port));
    }

    #[test]
    fn reuse_is_least_recently_released_first() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(1);
        let mut pool = PortPool::new(30_000, 30_019, 0, 1)
            .unwrap()
            .with_delete_delay(delay)
            .unwrap();
        let ports = drain(&mut pool, t0); // 30000 .. 30018
                                          // Release in a scrambled order, 1 ms apart.
        let order = [30_010, 30_002, 30_018, 30_000, 30_006];
        for (i, &port) in order.iter().enumerate() {
            pool.release(port, t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(drain(&mut pool, later), order);
        // A pair never used goes out before one that was just returned.
        let mut pool = PortPool::new(30_000, 30_009, 0, 1)
            .unwrap()
            .with_delete_delay(Duration::ZERO)
            .unwrap();
        let first = pool.allocate(t0).unwrap();
        pool.release(first, t0).unwrap();
        assert_eq!(
            drain(&mut pool, t0),
            [30_002, 30_004, 30_006, 30_008, first]
        );
        assert_eq!(ports.len(), 10);
    }

    #[test]
    fn double_and_foreign_releases_are_refused() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(30_000, 30_099, 1, 2).unwrap();
        let port = pool.allocate(t0).unwrap();
        assert_eq!(port, 30_002); // pair 1 is shard 1's first
        assert_eq!(pool.release(port, t0), Ok(()));
        assert_eq!(pool.release(port, t0), Err(ReleaseError::NotInUse { port }));
        // Free but never allocated.
        assert_eq!(
            pool.release(30_006, t0),
            Err(ReleaseError::NotInUse { port: 30_006 })
        );
        for foreign in [30_000, 30_003, 29_998, 30_100, 1, 65_535] {
            assert_eq!(
                pool.release(foreign, t0),
                Err(ReleaseError::Foreign { port: foreign })
            );
        }
        // Nothing changed: one quarantined, the rest free, none in use.
        assert_eq!(pool.quarantined_count(), 1);
        assert_eq!(pool.in_use_count(), 0);
        assert_eq!(pool.free_count(), pool.capacity_pairs() - 1);
        // The double release did not queue the pair twice.
        let later = t0 + DEFAULT_DELETE_DELAY;
        let ports = drain(&mut pool, later);
        assert_eq!(ports.len(), pool.capacity_pairs());
        assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), ports.len());
    }

    #[test]
    fn counts_stay_consistent() {
        let t0 = Instant::now();
        let mut pool = PortPool::new(30_000, 30_199, 0, 1).unwrap();
        let capacity = pool.capacity_pairs();
        assert_eq!(capacity, 100);
        let mut held = Vec::new();
        for step in 0..1000u64 {
            let now = t0 + Duration::from_secs(step);
            if step % 3 == 0 && !held.is_empty() {
                let port = held.remove((step as usize * 7) % held.len());
                pool.release(port, now).unwrap();
            } else if let Some(port) = pool.allocate(now) {
                assert!(pool.is_in_use(port));
                held.push(port);
            }
            assert_eq!(pool.in_use_count(), held.len());
            assert_eq!(
                pool.free_count() + pool.in_use_count() + pool.quarantined_count(),
                capacity
            );
        }
    }
}
