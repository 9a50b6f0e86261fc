//! A hierarchical timer wheel (six levels of 64 slots, 10 ms ticks), after the
//! one in tokio: inserting and cancelling cost O(1), and advancing the clock
//! visits only the entries that fire or move down a level. A timer moves down
//! at most five times in its life, so 100K live transactions cost nothing on a
//! tick where none of them is due.
//!
//! Entries live in a slab of nodes linked into per-slot lists; a [`TimerId`]
//! carries a generation so cancelling a timer that already fired is harmless.

use std::time::{Duration, Instant};

/// Granularity of the wheel: deadlines are rounded up to a multiple of this.
pub const TICK_MS: u64 = 10;
const LEVELS: usize = 6;
const SLOTS: usize = 64;
const BITS: usize = 6;
/// Ticks the wheel covers; later deadlines are clamped (they fire early and the
/// owner re-arms them).
const MAX_TICKS: u64 = 1 << (BITS * LEVELS);
/// List index of the due entries not yet handed out.
const PENDING: usize = LEVELS * SLOTS;
const NIL: u32 = u32::MAX;

/// A handle to cancel one armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId {
    index: u32,
    gen: u32,
}

/// The wheel refused a timer: it holds its capacity already.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timer wheel full")]
pub struct WheelFull;

#[derive(Clone, Copy, Debug)]
struct Node<K> {
    key: K,
    when: u64,
    prev: u32,
    next: u32,
    gen: u32,
    list: u16,
    live: bool,
}

/// A hierarchical timer wheel of keys `K`, bounded to `capacity` timers.
pub struct TimerWheel<K> {
    base: Option<Instant>,
    elapsed: u64,
    heads: Vec<u32>,
    occupied: [u64; LEVELS],
    nodes: Vec<Node<K>>,
    free: u32,
    len: usize,
    capacity: usize,
    visited: u64,
}

struct Expiration {
    level: usize,
    slot: usize,
    deadline: u64,
}

impl<K: Copy> TimerWheel<K> {
    /// An empty wheel for at most `capacity` timers.
    pub fn new(capacity: usize) -> Self {
        debug_assert!(capacity < NIL as usize);
        TimerWheel {
            base: None,
            elapsed: 0,
            heads: vec![NIL; PENDING + 1],
            occupied: [0; LEVELS],
            nodes: Vec::with_capacity(capacity.min(4096)),
            free: NIL,
            len: 0,
            capacity,
            visited: 0,
        }
    }

    /// Sets the wheel's time origin on first use; later calls do nothing.
    pub fn start(&mut self, now: Instant) {
        self.base.get_or_insert(now);
    }

    /// Armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is no timer armed?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries visited by [`TimerWheel::advance`] so far (fired or moved down
    /// a level): the work the wheel did.
    pub fn visited(&self) -> u64 {
        self.visited
    }

    /// Arms a timer firing at `deadline` (rounded up to a tick).
    pub fn insert(&mut self, deadline: Instant, key: K) -> Result<TimerId, WheelFull> {
        if self.len >= self.capacity {
            return Err(WheelFull);
        }
        let when = self.tick_ceil(deadline).min(self.elapsed + MAX_TICKS - 1);
        let index = self.alloc(key, when);
        self.place(index, self.elapsed);
        self.len += 1;
        Ok(TimerId {
            index,
            gen: self.nodes[index as usize].gen,
        })
    }

    /// Disarms a timer; `false` when it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let Some(node) = self.nodes.get(id.index as usize) else {
            return false;
        };
        if !node.live || node.gen != id.gen {
            return false;
        }
        self.unlink(id.index);
        self.release(id.index);
        true
    }

    /// Moves the clock to `now` and appends the keys of due timers to `out`,
    /// at most `max` of them; the rest stay due for the next call.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<K>, max: usize) {
        let now_tick = self.tick_floor(now);
        let mut taken = 0;
        loop {
            while taken < max {
                let head = self.heads[PENDING];
                if head == NIL {
                    break;
                }
                out.push(self.nodes[head as usize].key);
                self.unlink(head);
                self.release(head);
                taken += 1;
            }
            if taken >= max {
                return;
            }
            match self.next_expiration() {
                Some(e) if e.deadline <= now_tick => {
                    self.process(&e);
                    self.elapsed = e.deadline;
                }
                _ => {
                    self.elapsed = self.elapsed.max(now_tick);
                    return;
                }
            }
        }
    }

    /// When [`TimerWheel::advance`] must next be called: at or before the
    /// earliest deadline (a slot of a higher level may wake it early).
    pub fn next_deadline(&self) -> Option<Instant> {
        let base = self.base?;
        let tick = if self.heads[PENDING] != NIL {
            self.elapsed
        } else {
            self.next_expiration()?.deadline
        };
        Some(base + Duration::from_millis(tick.saturating_mul(TICK_MS)))
    }

    fn tick_ceil(&self, t: Instant) -> u64 {
        let Some(base) = self.base else { return 0 };
        let ms = t.saturating_duration_since(base).as_nanos();
        let tick_ns = u128::from(TICK_MS) * 1_000_000;
        u64::try_from(ms.div_ceil(tick_ns)).unwrap_or(u64::MAX)
    }

    fn tick_floor(&self, t: Instant) -> u64 {
        let Some(base) = self.base else { return 0 };
        let ms = t.saturating_duration_since(base).as_millis() / u128::from(TICK_MS);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    fn alloc(&mut self, key: K, when: u64) -> u32 {
        if self.free != NIL {
            let index = self.free;
            let node = &mut self.nodes[index as usize];
            self.free = node.next;
            node.key = key;
            node.when = when;
            node.live = true;
            return index;
        }
        self.nodes.push(Node {
            key,
            when,
            prev: NIL,
            next: NIL,
            gen: 0,
            list: 0,
            live: true,
        });
        (self.nodes.len() - 1) as u32
    }

    fn release(&mut self, index: u32) {
        let node = &mut self.nodes[index as usize];
        debug_assert!(node.live);
        node.live = false;
        node.gen = node.gen.wrapping_add(1);
        node.next = self.free;
        self.free = index;
        self.len -= 1;
    }

    /// Links node `index` into the list its deadline belongs to, seen from `now`.
    fn place(&mut self, index: u32, now: u64) {
        let when = self.nodes[index as usize].when;
        let list = if when <= now {
            PENDING
        } else {
            let level = level_for(now, when);
            level * SLOTS + slot_for(when, level)
        };
        self.push(list, index);
    }

    fn push(&mut self, list: usize, index: u32) {
        let head = self.heads[list];
        {
            let node = &mut self.nodes[index as usize];
            node.prev = NIL;
            node.next = head;
            node.list = list as u16;
        }
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        self.heads[list] = index;
        if list < PENDING {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        }
    }

    fn unlink(&mut self, index: u32) {
        let Node {
            prev, next, list, ..
        } = self.nodes[index as usize];
        let list = list as usize;
        if prev == NIL {
            self.heads[list] = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if self.heads[list] == NIL && list < PENDING {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    /// Empties the slot of `e`: due entries become pending, the others move
    /// down to the level their remaining time belongs to.
    fn process(&mut self, e: &Expiration) {
        let list = e.level * SLOTS + e.slot;
        let mut cursor = self.heads[list];
        self.heads[list] = NIL;
        self.occupied[e.level] &= !(1 << e.slot);
        while cursor != NIL {
            let next = self.nodes[cursor as usize].next;
            self.visited += 1;
            self.place(cursor, e.deadline);
            cursor = next;
        }
    }

    fn next_expiration(&self) -> Option<Expiration> {
        (0..LEVELS).find_map(|level| self.level_expiration(level))
    }

    fn level_expiration(&self, level: usize) -> Option<Expiration> {
        let occupied = self.occupied[level];
        if occupied == 0 {
            return None;
        }
        let slot_range = 1u64 << (BITS * level);
        let level_range = slot_range << BITS;
        let now_slot = ((self.elapsed / slot_range) % SLOTS as u64) as u32;
        let zeros = occupied.rotate_right(now_slot).trailing_zeros();
        let slot = ((zeros + now_slot) % SLOTS as u32) as usize;
        let level_start = self.elapsed & !(level_range - 1);
        let mut deadline = level_start + slot as u64 * slot_range;
        if deadline <= self.elapsed {
            // Only the top level wraps around (deadlines are clamped to its range).
            debug_assert_eq!(level, LEVELS - 1);
            deadline += level_range;
        }
        Some(Expiration {
            level,
            slot,
            deadline,
        })
    }
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let mut masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    if masked >= MAX_TICKS {
        masked = MAX_TICKS - 1;
    }
    let significant = 63 - masked.leading_zeros() as usize;
    significant / BITS
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (BITS * level)) % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_at_rounded_up_ticks() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(16);
        w.start(t0);
        for (i, d) in [500u64, 5, 32_000, 180_000, 10].iter().enumerate() {
            w.insert(t0 + ms(*d), i).unwrap();
        }
        let mut fired = Vec::new();
        let mut at = Vec::new();
        while let Some(next) = w.next_deadline() {
            let before = fired.len();
            w.advance(next, &mut fired, 100);
            if fired.len() > before {
                at.push((next - t0).as_millis() as u64);
            }
        }
        assert_eq!(fired, [1, 4, 0, 2, 3]);
        assert_eq!(at, [10, 500, 32_000, 180_000]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_is_idempotent_and_generation_checked() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(2);
        w.start(t0);
        let a = w.insert(t0 + ms(100), 'a').unwrap();
        assert!(w.cancel(a));
        assert!(!w.cancel(a));
        let b = w.insert(t0 + ms(100), 'b').unwrap();
        assert!(!w.cancel(a), "stale id must not cancel the reused node");
        w.insert(t0 + ms(50), 'c').unwrap();
        assert_eq!(w.insert(t0, 'd'), Err(WheelFull));
        let mut out = Vec::new();
        w.advance(t0 + ms(1000), &mut out, 10);
        assert_eq!(out, ['c', 'b']);
        assert!(!w.cancel(b));
    }

    #[test]
    fn advance_respects_max() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(10);
        w.start(t0);
        for i in 0..5 {
            w.insert(t0 + ms(20), i).unwrap();
        }
        let mut out = Vec::new();
        w.advance(t0 + ms(20), &mut out, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(20)));
        w.advance(t0 + ms(20), &mut out, 10);
        assert_eq!(out.len(), 5);
    }
}
