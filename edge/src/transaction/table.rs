//! The bounded table of a shard's live transactions: a slab of entries, a hash
//! index by [`TxnKey`] and one timer-wheel entry a transaction.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Instant;

use super::key::TxnKey;
use super::wheel::{TimerId, TimerWheel};

/// A transaction's handle: slab index and generation, so a handle to a removed
/// transaction finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId {
    index: u32,
    gen: u32,
}

/// Why a transaction was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table holds its capacity already.
    #[error("transaction table full")]
    Full,
    /// A transaction with this key exists.
    #[error("duplicate transaction key")]
    Duplicate,
}

struct Entry<V> {
    key: TxnKey,
    value: V,
    timer: Option<(TimerId, Instant)>,
}

struct Slot<V> {
    gen: u32,
    entry: Option<Entry<V>>,
}

/// Live transactions of type `V`, at most `capacity` of them.
pub struct TransactionTable<V> {
    slots: Vec<Slot<V>>,
    free: Vec<u32>,
    index: HashMap<TxnKey, TxnId, KeyState>,
    wheel: TimerWheel<TxnId>,
    capacity: usize,
    /// Transactions inserted and removed since creation (for metrics).
    inserted: u64,
    removed: u64,
}

impl<V> TransactionTable<V> {
    /// An empty table for at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        TransactionTable {
            slots: Vec::with_capacity(capacity.min(4096)),
            free: Vec::new(),
            index: HashMap::with_capacity_and_hasher(capacity.min(4096), KeyState::new()),
            wheel: TimerWheel::new(capacity),
            capacity,
            inserted: 0,
            removed: 0,
        }
    }

    /// Sets the timer origin on first use.
    pub fn start(&mut self, now: Instant) {
        self.wheel.start(now);
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The most transactions the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Room for `n` more transactions?
    pub fn has_room(&self, n: usize) -> bool {
        self.len() + n <= self.capacity
    }

    /// Transactions inserted and removed so far: (inserted, removed).
    pub fn turnover(&self) -> (u64, u64) {
        (self.inserted, self.removed)
    }

    /// Timer entries the wheel visited so far (fired or cascaded).
    pub fn timer_visits(&self) -> u64 {
        self.wheel.visited()
    }

    /// Adds a transaction under `key`.
    pub fn insert(&mut self, key: TxnKey, value: V) -> Result<TxnId, TableError> {
        if !self.has_room(1) {
            return Err(TableError::Full);
        }
        let MapEntry::Vacant(vacant) = self.index.entry(key.clone()) else {
            return Err(TableError::Duplicate);
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.entry.is_none());
        let id = TxnId {
            index,
            gen: slot.gen,
        };
        vacant.insert(id);
        slot.entry = Some(Entry {
            key,
            value,
            timer: None,
        });
        self.inserted += 1;
        Ok(id)
    }

    /// The transaction matching `key`.
    pub fn find(&self, key: &TxnKey) -> Option<TxnId> {
        self.index.get(key).copied()
    }

    /// The transaction `id`, if live.
    pub fn get(&self, id: TxnId) -> Option<&V> {
        self.entry(id).map(|e| &e.value)
    }

    /// The transaction `id`, if live.
    pub fn get_mut(&mut self, id: TxnId) -> Option<&mut V> {
        self.entry_mut(id).map(|e| &mut e.value)
    }

    /// Every live transaction, in slab order. O(capacity): not for the
    /// per-message path.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|e| &e.value))
    }

    /// The key of transaction `id`.
    pub fn key(&self, id: TxnId) -> Option<&TxnKey> {
        self.entry(id).map(|e| &e.key)
    }

    /// Removes transaction `id` and its timer.
    pub fn remove(&mut self, id: TxnId) -> Option<V> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(id.index);
        self.index.remove(&entry.key);
        if let Some((timer, _)) = entry.timer {
            self.wheel.cancel(timer);
        }
        self.removed += 1;
        Some(entry.value)
    }

    /// Arms the transaction's one timer at `deadline` (or disarms it).
    pub fn arm(&mut self, id: TxnId, deadline: Option<Instant>) {
        let Some(current) = self.entry(id).map(|e| e.timer) else {
            return;
        };
        if current.map(|(_, at)| at) == deadline {
            return;
        }
        if let Some((timer, _)) = current {
            self.wheel.cancel(timer);
        }
        // The wheel holds one timer a transaction, so it has room for this one.
        let timer = deadline.and_then(|at| self.wheel.insert(at, id).ok().map(|t| (t, at)));
        debug_assert_eq!(timer.is_some(), deadline.is_some());
        if let Some(e) = self.entry_mut(id) {
            e.timer = timer;
        }
    }

    /// Appends to `out` the transactions whose timer is due at `now`, at most
    /// `max` of them; their timers are disarmed.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<TxnId>, max: usize) {
        let before = out.len();
        self.wheel.advance(now, out, max);
        for &id in &out[before..] {
            if let Some(slot) = self.slots.get_mut(id.index as usize) {
                if let Some(e) = slot.entry.as_mut().filter(|_| slot.gen == id.gen) {
                    e.timer = None;
                }
            }
        }
    }

    /// When [`TransactionTable::expire`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.next_deadline()
    }

    fn entry(&self, id: TxnId) -> Option<&Entry<V>> {
        let slot = self.slots.get(id.index as usize)?;
        slot.entry.as_ref().filter(|_| slot.gen == id.gen)
    }

    fn entry_mut(&mut self, id: TxnId) -> Option<&mut Entry<V>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        let gen = slot.gen;
        slot.entry.as_mut().filter(|_| gen == id.gen)
    }
}

/// The index's hasher: a multiply-fold hash keyed with two random words per
/// table, drawn from std's per-process random keys. Branches and Call-IDs come
/// from peers, so the keys keep them from choosing colliding values; it is
/// much cheaper than SipHash on the short keys of the index.
#[derive(Clone, Debug)]
struct KeyState {
    k0: u64,
    k1: u64,
}

impl KeyState {
    fn new() -> KeyState {
        let random = RandomState::new();
        KeyState {
            k0: random.hash_one(0x243f_6a88_85a3_08d3_u64),
            k1: random.hash_one(0x1319_8a2e_0370_7344_u64) | 1,
        }
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            h: self.k0,
            k: self.k1,
        }
    }
}

/// See [`KeyState`].
struct KeyHasher {
    h: u64,
    k: u64,
}

/// The high and low halves of the 128-bit product, xored.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.h = folded_multiply(self.h ^ word, self.k ^ 0x5851_f42d_4c95_7f2d);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.h, self.k.rotate_left(23) | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::ClientKey;
    use bytes::Bytes;
    use std::time::Duration;

    fn key(n: u32) -> TxnKey {
        TxnKey::Client(ClientKey::new(
            Bytes::from(format!("z9hG4bK{n}")),
            Bytes::from_static(b"INVITE"),
        ))
    }

    #[test]
    fn bounded_and_generation_checked() {
        let mut t = TransactionTable::new(2);
        let a = t.insert(key(1), 'a').unwrap();
        assert_eq!(t.insert(key(1), 'x'), Err(TableError::Duplicate));
        t.insert(key(2), 'b').unwrap();
        assert_eq!(t.insert(key(3), 'c'), Err(TableError::Full));
        assert_eq!(t.remove(a), Some('a'));
        assert_eq!(t.find(&key(1)), None);
        let c = t.insert(key(3), 'c').unwrap();
        assert_eq!(t.get(a), None, "stale handle");
        assert_eq!(t.get(c), Some(&'c'));
    }

    #[test]
    fn one_timer_per_transaction() {
        let t0 = Instant::now();
        let mut t = TransactionTable::new(4);
        t.start(t0);
        let a = t.insert(key(1), ()).unwrap();
        t.arm(a, Some(t0 + Duration::from_millis(500)));
        t.arm(a, Some(t0 + Duration::from_millis(100)));
        let mut out = Vec::new();
        t.expire(t0 + Duration::from_millis(600), &mut out, 10);
        assert_eq!(out, [a], "the re-armed timer fires once");
        let b = t.insert(key(2), ()).unwrap();
        t.arm(b, Some(t0 + Duration::from_secs(1)));
        t.remove(b);
        out.clear();
        t.expire(t0 + Duration::from_secs(2), &mut out, 10);
        assert!(out.is_empty(), "a removed transaction's timer is gone");
    }

    #[test]
    fn index_hasher_tells_keys_apart() {
        let state = KeyState::new();
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            let k = key(n);
            assert!(seen.insert(state.hash_one(&k)), "collision at {n}");
            assert_eq!(state.hash_one(&k), state.hash_one(key(n)));
        }
        // Branches that differ only past a chunk boundary or in length.
        let a = state.hash_one(key(12_345_678));
        let b = state.hash_one(key(1_234_567));
        assert_ne!(a, b);
    }
}
