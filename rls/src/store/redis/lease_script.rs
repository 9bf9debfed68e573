//! The lease scripts ([`TAKE_LEASES`], [`RETURN_HITS`]), how their calls are encoded
//! ([`take_call`], [`return_call`]) and their replies decoded ([`Taken`]). Token buckets
//! given back use the check script's companion, `REFUND_BUCKETS`.

use limiter::Nanos;
use redis::{Script, ScriptInvocation, Value};

use super::script::{header, lua_prelude, push_pair, time_pair};
use crate::store::Meter;

/// Takes leases: up to `want` tokens (hits) from each bucket, with the check script's
/// maths (`limiter::lease` in Rust; the shared lease vectors hold the two together).
///
/// Atomic per bucket (read, take, write) so that concurrent checks and leases of other
/// replicas never take the same token twice.
///
/// - `KEYS[i]`: the bucket keys (a window's key without its `:<window start>`).
/// - `ARGV[1]`: the time, as a check's header (only its last three fields are read).
/// - `ARGV[i + 1]` (`>BI4dI4dI4`): kind `t` or `f`; the tokens wanted; for `t` the
///   emission interval T and the tolerance τ (τ below 2^52 ns, so whole nanoseconds are
///   exact in a double), for `f` the period in seconds and the limit (nanoseconds 0).
/// - Returns five integers per key: for `t` the seconds and nanoseconds the tat is ahead of
///   now after the lease, the tokens taken, 0, 0; for `f` the count after, the seconds and
///   nanoseconds to the window's end, the hits taken, and the window's start.
pub const TAKE_LEASES: &str = concat!(
    lua_prelude!(),
    r#"
local _, _, _, own, _, ns, nn = unpack_('>BBBBI4dI4', ARGV[1])
local now_s, now_n = clock(own, ns, nn)
local out = {}
for i, key in ipairs(KEYS) do
  local kind, want, as, an, bs, bn = unpack_('>BI4dI4dI4', ARGV[i + 1])
  local o = #out
  if kind == 116 then -- t: a is T, b is τ
    local ds, dn = 0, 0
    local stored = call('GET', key)
    if stored then
      local ts, tn = unpack_('>dI4', stored)
      if ts > now_s or (ts == now_s and tn > now_n) then
        ds, dn = ts - now_s, tn - now_n
        if dn < 0 then ds, dn = ds - 1, dn + BILLION end
      end
    end
    -- Whole nanoseconds below 2^53: exact as doubles.
    local room = (bs - ds) * BILLION + (bn - dn)
    local interval = as * BILLION + an
    local k = 0
    if room >= interval then
      k = math.floor(room / interval)
      if k * interval > room then k = k - 1 end
      if k > want then k = want end
    end
    if k > 0 then
      local add = k * interval
      local add_s = math.floor(add / BILLION)
      if add_s * BILLION > add then add_s = add_s - 1 end
      local xs, xn = ds + add_s, dn + (add - add_s * BILLION)
      if xn >= BILLION then xs, xn = xs + 1, xn - BILLION end
      local ts, tn = now_s + xs, now_n + xn
      if tn >= BILLION then ts, tn = ts + 1, tn - BILLION end
      call('SET', key, pack('>dI4', ts, tn), 'PX', expiry_ms(xs, xn))
      ds, dn = xs, xn
    end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = ds, dn, k, 0, 0
  else -- f: a is the period, b the limit; the check script's window key
    local start = now_s - (now_s % as)
    local window_key = key .. ':' .. start
    local count = tonumber(call('GET', window_key) or '0')
    local k = bs - count
    if k > want then k = want end
    if k < 0 then k = 0 end
    local rs, rn = start + as - now_s, -now_n
    if rn < 0 then rs, rn = rs - 1, rn + BILLION end
    if k > 0 then
      count = call('INCRBY', window_key, k)
      if count == k then call('PEXPIRE', window_key, expiry_ms(rs, rn)) end
    end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = count, rs, rn, k, start
  end
end
return out
"#
);

/// Gives back hits a window lease took and did not give out, while their window lasts.
///
/// Atomic so that the check for the window's key and the decrement are one step.
///
/// - `KEYS[i]`: window keys, with their `:<window start>`.
/// - `ARGV[i]`: the hits to give back to `KEYS[i]`.
/// - Returns the number of windows given back to (an ended window's key is gone).
pub const RETURN_HITS: &str = r#"
local given = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('DECRBY', key, ARGV[i])
    given = given + 1
  end
end
return given
"#;

/// Tolerances at or above this (about 52 days) are not leased: the script counts whole
/// nanoseconds in a double.
pub const LEASABLE_TOLERANCE: Nanos = 1 << 52;

/// A call of [`TAKE_LEASES`] (loaded as `script`): `(key, meter, want)` for each bucket;
/// `now` `None` for the server's time.
pub fn take_call<'s>(
    script: &'s Script,
    now: Option<Nanos>,
    leases: &[(Vec<u8>, Meter, u64)],
) -> ScriptInvocation<'s> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(header(now, false, false, false, 0));
    for (key, meter, want) in leases {
        let (kind, first, second) = match *meter {
            Meter::TokenBucket(rate) => (
                b't',
                time_pair(rate.interval()),
                time_pair(rate.tolerance()),
            ),
            Meter::FixedWindow { period_secs, limit } => {
                (b'f', (period_secs.max(1), 0), (u64::from(limit), 0))
            }
        };
        let mut arg = Vec::with_capacity(29);
        arg.push(kind);
        // Leases are sized far below 2^32 tokens (at most a bucket's burst or a limit).
        arg.extend_from_slice(&u32::try_from(*want).unwrap_or(u32::MAX).to_be_bytes());
        push_pair(&mut arg, first);
        push_pair(&mut arg, second);
        invocation.key(key.as_slice()).arg(arg);
    }
    invocation
}

/// A call of [`RETURN_HITS`] (loaded as `script`): `(window key, hits)` pairs.
pub fn return_call<'s>(script: &'s Script, hits: &[(Vec<u8>, u64)]) -> ScriptInvocation<'s> {
    let mut invocation = script.prepare_invoke();
    for (key, n) in hits {
        invocation.key(key.as_slice()).arg(*n);
    }
    invocation
}

/// What one lease took, as the script reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// A token bucket: tokens taken, and how far its tat is ahead of the script's now.
    Bucket {
        /// Tokens taken.
        granted: u64,
        /// The tat after, ahead of now.
        ahead: Nanos,
    },
    /// A window: hits taken, its count after, the time to its end and its start (Unix s).
    Window {
        /// Hits taken.
        granted: u64,
        /// The window's count after (the lease's hits included).
        count: u64,
        /// Until the window ends.
        ends_in: Nanos,
        /// The window's start, which names its key.
        start: u64,
    },
}

impl Taken {
    /// Tokens (hits) taken.
    pub fn granted(&self) -> u64 {
        match *self {
            Taken::Bucket { granted, .. } | Taken::Window { granted, .. } => granted,
        }
    }
}

/// Decodes a [`TAKE_LEASES`] reply for `meters`, in order.
pub fn decode_taken(value: Value, meters: &[Meter]) -> Result<Vec<Taken>, String> {
    let bad = || format!("unexpected lease reply {value:?}");
    let Value::Array(items) = &value else {
        return Err(bad());
    };
    if items.len() != 5 * meters.len() {
        return Err(bad());
    }
    let ints: Vec<u64> = items
        .iter()
        .map(|item| match item {
            Value::Int(v) => u64::try_from(*v).map_err(|_| bad()),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    let nanos = |s: u64, n: u64| {
        (n < 1_000_000_000)
            .then(|| s.saturating_mul(1_000_000_000).saturating_add(n))
            .ok_or_else(bad)
    };
    meters
        .iter()
        .zip(ints.chunks_exact(5))
        .map(|(meter, v)| {
            Ok(match meter {
                Meter::TokenBucket(_) => Taken::Bucket {
                    granted: v[2],
                    ahead: nanos(v[0], v[1])?,
                },
                Meter::FixedWindow { .. } => Taken::Window {
                    granted: v[3],
                    count: v[0],
                    ends_in: nanos(v[1], v[2])?,
                    start: v[4],
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use limiter::Rate;

    use super::*;

    #[test]
    fn replies_decode_per_kind_and_malformed_ones_are_errors() {
        let bucket = Meter::TokenBucket(Rate::new(10, Duration::from_secs(1), 5));
        let window = Meter::FixedWindow {
            period_secs: 60,
            limit: 10,
        };
        let reply = Value::Array(
            [0, 300_000_000, 3, 0, 0, 7, 12, 5, 2, 1_700_000_040]
                .into_iter()
                .map(Value::Int)
                .collect(),
        );
        let taken = decode_taken(reply, &[bucket, window]).expect("decodes");
        assert_eq!(
            taken,
            [
                Taken::Bucket {
                    granted: 3,
                    ahead: 300_000_000
                },
                Taken::Window {
                    granted: 2,
                    count: 7,
                    ends_in: 12_000_000_005,
                    start: 1_700_000_040
                }
            ]
        );
        assert!(decode_taken(Value::Array(vec![Value::Int(1)]), &[bucket]).is_err());
        assert!(decode_taken(Value::Nil, &[]).is_err());
    }
}
