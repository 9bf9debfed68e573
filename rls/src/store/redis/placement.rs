//! `Placer`: where a check's bucket lives — its shard (jump consistent hashing of its
//! descriptor), its Redis key (prefix, `{hash tag}`, the binary key), and the checks it
//! may share a script call with.

use super::connect::Endpoint;
use crate::store::keys::identity_hash;

/// Where a check goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The shard.
    pub shard: usize,
    /// The descriptor's hash tag, in braces in every key of its limits.
    pub tag: u64,
    /// In a cluster, the tag again: a script may touch the keys of one slot only, so a
    /// call holds the checks of one tag. `None` elsewhere: a shard's checks share a call.
    pub slot: Option<u64>,
}

/// The checks that may share a script call: a shard's, or in a cluster a slot's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallGroup {
    /// The shard.
    pub shard: usize,
    /// The slot's hash tag, in a cluster.
    pub slot: Option<u64>,
}

impl Placement {
    /// The script call this check may share.
    pub fn group(&self) -> CallGroup {
        CallGroup {
            shard: self.shard,
            slot: self.slot,
        }
    }
}

/// Places checks on the shards of one store.
pub struct Placer {
    prefix: Vec<u8>,
    shards: usize,
    cluster: bool,
}

impl Placer {
    /// Places keys under `prefix` on `endpoints`: several servers, or one cluster.
    pub fn new(prefix: String, endpoints: &[Endpoint]) -> Placer {
        Placer {
            prefix: prefix.into_bytes(),
            shards: endpoints.len(),
            cluster: matches!(endpoints, [one] if one.is_cluster()),
        }
    }

    /// True when one request's checks may need several script calls.
    pub fn spreads(&self) -> bool {
        self.shards > 1 || self.cluster
    }

    /// Where the checks of the descriptor `identity` go, from one hash of it.
    pub fn place(&self, identity: &[u8]) -> Placement {
        let tag = identity_hash(identity);
        let shard = if self.shards <= 1 {
            0
        } else {
            jump(tag, self.shards)
        };
        Placement {
            shard,
            tag,
            slot: self.cluster.then_some(tag),
        }
    }

    /// The Redis key of the bucket `key`: prefix, `{hash tag}`, then the binary key.
    pub fn key(&self, key: &[u8], tag: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 18 + key.len());
        out.extend_from_slice(&self.prefix);
        // `{` sixteen hex digits `}`: written by hand, this runs for every check.
        out.push(b'{');
        out.extend(
            (0..16)
                .rev()
                .map(|nibble| b"0123456789abcdef"[((tag >> (nibble * 4)) & 0xf) as usize]),
        );
        out.push(b'}');
        out.extend_from_slice(key);
        out
    }
}

/// Jump consistent hashing (Lamping and Veach): the shard of `key` among `shards`, such
/// that going from N to N+1 shards moves only about 1/(N+1) of the keys.
pub fn jump(mut key: u64, shards: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < shards as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hashing_moves_about_one_key_in_n_when_a_shard_is_added() {
        let keys = 100_000u64;
        let hashes = (0..keys).map(|k| identity_hash(&k.to_le_bytes()));
        let moved = hashes.filter(|&h| jump(h, 3) != jump(h, 4)).count() as f64;
        // Ideal: a quarter. Jump hashing never moves a key between old shards.
        assert!((moved / keys as f64 - 0.25).abs() < 0.01, "moved {moved}");
        for k in 0..1000u64 {
            let h = identity_hash(&k.to_le_bytes());
            let (a, b) = (jump(h, 3), jump(h, 4));
            assert!(a == b || b == 3, "a key moved between old shards");
        }
    }

    #[test]
    fn a_key_carries_its_hash_tag_in_braces_after_the_prefix() {
        let placer = Placer::new("rls:".into(), &[Endpoint::Cluster(vec![])]);
        let place = placer.place(b"identity");
        assert_eq!(place.slot, Some(place.tag));
        let key = placer.key(b"k", 0x0123_4567_89ab_cdef);
        assert_eq!(key, b"rls:{0123456789abcdef}k");
    }
}
