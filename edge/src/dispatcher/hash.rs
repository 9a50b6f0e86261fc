//! Hashes for selection: call keys, destination seeds and rendezvous scores.
//!
//! Not seeded per process: every shard and every process of a build ranks a call
//! the same way, and a destination keeps its placement across reloads (its seed
//! comes from its duid or URI). The key hash is a different function from the
//! FNV-1a of [`crate::sip::owner_shard`], so the shard a call lands on says
//! nothing about the destination it gets.

/// Odd multiplier (2^64 / golden ratio).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
/// Seed of call key hashes.
const KEY_SEED: u64 = 0x243f_6a88_85a3_08d3;
/// Seed of destination identity hashes.
const IDENTITY_SEED: u64 = 0x1319_8a2e_0370_7344;
/// Salt of the caller's random number (algorithm 6).
const RANDOM_SALT: u64 = 0xa409_3822_299f_31d0;

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Hash of a call key (Call-ID, user name, ...), exact bytes.
pub(crate) fn key(bytes: &[u8]) -> u64 {
    hash_words(KEY_SEED, bytes, false)
}

/// Hash of a host name, ASCII case folded.
pub(crate) fn key_nocase(bytes: &[u8]) -> u64 {
    hash_words(KEY_SEED, bytes, true)
}

/// Combines two hashes (order matters).
pub(crate) fn combine(a: u64, b: u64) -> u64 {
    fmix64(a.rotate_left(23) ^ b.wrapping_mul(MUL))
}

/// The rendezvous seed of a destination identity.
pub(crate) fn identity_seed(identity: &[u8]) -> u64 {
    hash_words(IDENTITY_SEED, identity, false)
}

/// The key of algorithm 6 from the caller's random number.
pub(crate) fn random_key(random: u64) -> u64 {
    fmix64(random ^ RANDOM_SALT)
}

/// Rendezvous rank of destination `seed` for call `key`: higher wins.
pub(crate) fn rank(key: u64, seed: u64) -> u64 {
    fmix64(key ^ seed)
}

/// Weighted rendezvous score (`w / -ln(u)`, u uniform in (0, 1) from `rank`):
/// destination i wins with probability `w_i / sum(w)`.
pub(crate) fn weighted_score(rank: u64, weight: u32) -> f64 {
    f64::from(weight) / -unit(rank).ln()
}

/// An upper bound of [`weighted_score`] without a logarithm: `-ln(u) >= 1 - u`,
/// so `w / (1 - u)` is never below the score.
pub(crate) fn weighted_score_bound(rank: u64, weight: u32) -> f64 {
    f64::from(weight) / (1.0 - unit(rank))
}

/// `rank` as a number in (0, 1): 52 bits plus one half is exact in an f64.
fn unit(rank: u64) -> f64 {
    const TWO_POW_52: f64 = 4_503_599_627_370_496.0;
    ((rank >> 12) as f64 + 0.5) / TWO_POW_52
}

/// Eight bytes at a time: xor, multiply, rotate; then the finalizer.
fn hash_words(seed: u64, bytes: &[u8], fold: bool) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(MUL);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        h = round(h, word(chunk, fold));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = round(h, word(rest, fold));
    }
    fmix64(h)
}

fn round(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(MUL).rotate_left(31)
}

/// Up to eight bytes as a little-endian word, zero padded.
fn word(bytes: &[u8], fold: bool) -> u64 {
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    if fold {
        buf.make_ascii_lowercase();
    }
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_folding_only_where_asked() {
        assert_eq!(key_nocase(b"Example.NET"), key_nocase(b"example.net"));
        assert_ne!(key(b"Example.NET"), key(b"example.net"));
    }

    #[test]
    fn length_is_part_of_the_hash() {
        assert_ne!(key(b"a"), key(b"a\0"));
        assert_ne!(key(b""), key(b"\0"));
    }

    #[test]
    fn weighted_score_is_monotone_in_rank_and_weight() {
        assert!(weighted_score(u64::MAX, 1) > weighted_score(1 << 40, 1));
        assert!(weighted_score(1 << 40, 2) > weighted_score(1 << 40, 1));
        assert!(weighted_score(0, 1).is_finite());
        assert!(weighted_score(u64::MAX, 100).is_finite());
    }

    #[test]
    fn the_bound_is_never_below_the_score() {
        for i in 0..10_000u64 {
            let r = fmix64(i);
            assert!(weighted_score_bound(r, 37) >= weighted_score(r, 37));
        }
        assert!(weighted_score_bound(u64::MAX, 1) >= weighted_score(u64::MAX, 1));
    }
}
