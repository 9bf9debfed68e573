//! `BucketKey`: what names a bucket, and its unambiguous byte encoding of (algorithm,
//! limit, domain, entries).
//!
//! The reference joins parts with `_`, so `a_b=c` and `a=b_c` collide; here every part is
//! length-prefixed. The quota's numbers are not part of a token-bucket key, so a changed
//! quota keeps its bucket's state; a fixed-window key carries its period, because a
//! counter of one window length means nothing for another.

use crate::store::Meter;

/// What names a bucket: a descriptor and which of its limits.
pub struct BucketKey<'d, E> {
    /// The request's domain.
    pub domain: &'d str,
    /// Per entry, its key and the value that identifies the bucket (the request's value,
    /// or a shared pattern).
    pub entries: E,
    /// Which limit of the descriptor's rule.
    pub limit: usize,
}

impl<'e, E: Iterator<Item = (&'e str, &'e str)>> BucketKey<'_, E> {
    /// Appends the key of the bucket counting with `meter` to `buf` and returns the length
    /// of its identity part: the descriptor (domain and entries) comes first, then which
    /// of its limits this is, so that every limit of one descriptor shares a prefix (one
    /// Redis shard, one cluster slot).
    pub fn write(self, buf: &mut Vec<u8>, meter: &Meter) -> usize {
        let start = buf.len();
        push_part(buf, self.domain);
        for (key, value) in self.entries {
            push_part(buf, key);
            push_part(buf, value);
        }
        let identity = buf.len() - start;
        push_suffix(buf, meter, self.limit);
        identity
    }
}

/// Which limit of the descriptor, and how it counts.
fn push_suffix(buf: &mut Vec<u8>, meter: &Meter, index: usize) {
    match meter {
        // `T`: the tat stored packed (`t` keys held it as decimal text); a new letter, so
        // that replicas of both formats never read each other's values during an upgrade.
        Meter::TokenBucket(_) => buf.push(b'T'),
        Meter::FixedWindow { period_secs, .. } => {
            buf.push(b'f');
            buf.extend_from_slice(&period_secs.to_le_bytes());
        }
    }
    // More than 255 limits on one descriptor is not a real configuration; saturate.
    buf.push(u8::try_from(index).unwrap_or(u8::MAX));
}

/// A stable 64-bit hash (FNV-1a) of a key's identity part: the same on every replica and
/// every run, unlike the standard library's seeded hashers, so replicas agree on shards.
pub fn identity_hash(identity: &[u8]) -> u64 {
    identity.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn push_part(buf: &mut Vec<u8>, part: &str) {
    // Request sizes are bounded far below 4 GiB, so a u32 length cannot truncate.
    buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
    buf.extend_from_slice(part.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use limiter::Rate;
    use std::time::Duration;

    fn push_key<'e>(
        buf: &mut Vec<u8>,
        meter: &Meter,
        limit: usize,
        domain: &str,
        entries: impl Iterator<Item = (&'e str, &'e str)>,
    ) -> usize {
        let key = BucketKey {
            domain,
            entries,
            limit,
        };
        key.write(buf, meter)
    }

    fn key(meter: Meter, index: usize, entries: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Vec::new();
        push_key(&mut buf, &meter, index, "edge", entries.iter().copied());
        buf
    }

    const MINUTE: Meter = Meter::FixedWindow {
        period_secs: 60,
        limit: 10,
    };

    #[test]
    fn keys_whose_joined_text_is_equal_stay_distinct() {
        // The reference's `edge_a_b_c` collision: key a_b value c vs key a value b_c.
        assert_ne!(
            key(MINUTE, 0, &[("a_b", "c")]),
            key(MINUTE, 0, &[("a", "b_c")])
        );
    }

    #[test]
    fn every_limit_of_a_descriptor_shares_its_identity_prefix() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ia = push_key(&mut a, &MINUTE, 0, "edge", [("k", "v")].into_iter());
        let ib = push_key(&mut b, &MINUTE, 3, "edge", [("k", "v")].into_iter());
        assert_eq!(ia, ib);
        assert_eq!(a[..ia], b[..ib]);
        assert_eq!(identity_hash(&a[..ia]), identity_hash(&b[..ib]));
        // FNV-1a of the empty input is its offset basis: the hash is the published one.
        assert_eq!(identity_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(identity_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_changed_token_bucket_quota_keeps_its_key() {
        let ten = Meter::TokenBucket(Rate::new(10, Duration::from_secs(1), 10));
        let twenty = Meter::TokenBucket(Rate::new(20, Duration::from_secs(1), 40));
        assert_eq!(key(ten, 0, &[("a", "b")]), key(twenty, 0, &[("a", "b")]));
    }

    #[test]
    fn limits_of_one_descriptor_and_window_lengths_have_their_own_keys() {
        let hour = Meter::FixedWindow {
            period_secs: 3600,
            limit: 10,
        };
        assert_ne!(key(MINUTE, 0, &[("a", "b")]), key(MINUTE, 1, &[("a", "b")]));
        assert_ne!(key(MINUTE, 0, &[("a", "b")]), key(hour, 0, &[("a", "b")]));
    }
}
