//! Which shard a target belongs to under `reconcile --leader-elect --shards N`.
//!
//! A target's name is hashed with 64-bit FNV-1a (fixed by its definition, so every replica
//! and every version of rangekeeper agrees) and placed with jump consistent hashing (Lamping
//! and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014): shards are evenly
//! filled, and going from N to N+1 shards moves only about 1/(N+1) of the targets, all of
//! them to the new shard.

/// 64-bit FNV-1a of `bytes`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Jump consistent hash of `key` into `0..buckets` (`buckets` ≥ 1).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The algorithm's own float step: (b + 1) * 2^31 / ((key >> 33) + 1).
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        {
            j = ((b + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
        }
    }
    u32::try_from(b).unwrap_or(0)
}

// Used by leader election, which only a build with `kubernetes` has.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
/// The shard of the target named `target`, in `0..shards` (0 when `shards` is 0 or 1).
pub fn of(target: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    jump(fnv1a64(target.as_bytes()), shards)
}

// Used by leader election, which only a build with `kubernetes` has.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
/// A short, stable hexadecimal digest of `text` (for object names derived from free text).
pub fn digest(text: &str) -> String {
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_its_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_matches_the_reference_implementation() {
        // Values of the paper's algorithm, computed independently (Python, arbitrary-precision
        // integers masked to 64 bits): pinned, since every replica must agree for ever.
        assert_eq!(jump(0, 1), 0);
        assert_eq!(jump(0, 10), 0);
        assert_eq!(jump(1, 10), 6);
        assert_eq!(jump(0xdead_beef, 10), 5);
        assert_eq!(jump(0xdead_beef, 1000), 285);
        assert_eq!(jump(123_456_789, 100), 34);
        for k in 0..1000_u64 {
            assert!(jump(k, 7) < 7);
        }
    }

    #[test]
    fn shards_are_evenly_filled() {
        let n = 8;
        let mut count = vec![0_u32; n as usize];
        for i in 0..8000 {
            count[of(&format!("aks/sub/group/cluster-{i}"), n) as usize] += 1;
        }
        for c in &count {
            assert!((850..=1150).contains(c), "{count:?}");
        }
    }

    #[test]
    fn one_more_shard_moves_only_its_share_and_only_to_the_new_shard() {
        let names: Vec<String> = (0..10_000).map(|i| format!("eks/eu-west-1/c{i}")).collect();
        let moved: Vec<&String> = names.iter().filter(|t| of(t, 4) != of(t, 5)).collect();
        assert!(moved.iter().all(|t| of(t, 5) == 4));
        // About a fifth.
        assert!((1700..=2300).contains(&moved.len()), "{}", moved.len());
    }

    #[test]
    fn one_shard_holds_everything() {
        assert_eq!(of("a", 1), 0);
        assert_eq!(of("a", 0), 0);
    }
}
