//! The Lua scripts of the Redis store ([`CHECK_BUCKETS`], [`REFUND_BUCKETS`]), how their
//! calls are encoded ([`encode_request`], [`check_call`], [`refund_call`]) and how their
//! replies are decoded ([`decode`]).
//!
//! Lua numbers are doubles, exact only to 2^53, and epoch nanoseconds are about 2^60, so
//! the scripts keep every time as a pair (seconds, nanoseconds) and only add, subtract and
//! compare: Rust precomputes `cost × T` and `τ`, and rebuilds each decision from what the
//! script read with the same function the memory store uses ([`limiter::Rate::decide`]).
//!
//! Arguments and stored values are packed binary (Redis's bundled `struct` library reads
//! and writes them in one call each) and replies are integers: no decimal text is formed
//! or parsed on either side, which halves the script's time per check (BENCHMARKS.md).

use limiter::{Decision, Nanos, WindowCount};
use redis::{Script, ScriptInvocation, Value};

use crate::store::{Batch, Check, Meter, Role};

/// Lua shared by both scripts: the clock and key expiry.
macro_rules! lua_prelude {
    () => {
        r#"
local BILLION = 1000000000
local unpack_, pack, call, ceil = struct.unpack, struct.pack, redis.call, math.ceil
-- Keys expire a second after they stop mattering: a stored tat at or before now already
-- reads as a full bucket, and a window's key names its start, so expiry only frees
-- memory and may be late (or measured on a caller's clock) without changing an answer.
local function expiry_ms(s, n)
  return s * 1000 + ceil(n / 1000000) + 1000
end

-- The time of a request: the caller's when it sent one, else the server's TIME (read
-- once per script call).
local time_s, time_n
local function clock(own, s, n)
  if own == 1 then return s, n end
  if not time_s then
    local t = call('TIME')
    time_s, time_n = tonumber(t[1]), tonumber(t[2]) * 1000
  end
  return time_s, time_n
end
"#
    };
}

/// Checks the buckets of one or more requests, each request all-or-nothing.
///
/// Atomic because each request's decision depends on all its buckets, and its writes
/// must not interleave with another caller's reads (no lost updates, no overshoot).
///
/// - `KEYS[i]`: the bucket key of check i, in order over all requests.
/// - `ARGV[1]`: the number of requests. Then per request its header (`struct` format
///   `>BBBBI4dI4`: `fold` 1 to charge its token buckets only if the request passes as a
///   whole, 0 for each check on its own; the global shadow and stop-increment flags;
///   whether the time is its own; the number of checks; the time), then one argument per
///   check (`>BBI4I4dI4dI4`): kind `t` token bucket, `f` fixed window, `x` a token
///   bucket and `y` a window known over without a look (in stop-increment mode a `y`
///   holds the request's other windows as an `f` going over does); role `e` enforced,
///   `s` shadow, `q` quota; the descriptor's index; the cost; for `t` the charge
///   `cost × T` and the tolerance `τ`, for `f` the period in seconds and the limit
///   (nanoseconds 0), for `x` and `y` zeros.
/// - Returns three integers per check, over all requests in order: for `t` the seconds
///   and nanoseconds the stored tat was ahead of now (0 0 when full) and 1 if it charged;
///   for `f` the count after, and the seconds and nanoseconds to the window's end; for
///   `x` and `y` 0 0 0.
///
/// Every bucket key is read with one `MGET`; a bucket several requests of the call share
/// is read once and written once, at the end, with its last tat. Token-bucket keys hold
/// the tat (`>dI4`: seconds, nanoseconds) and expire a second after the bucket is full
/// again; a window's count lives under the key plus `:<window start>` and expires a
/// second after the window's end.
pub const CHECK_BUCKETS: &str = concat!(
    lua_prelude!(),
    r#"
local stored = call('MGET', unpack(KEYS))
-- written[key]: the index of the check that last charged the bucket; its new tat and
-- expiry are at that index of new_s, new_n, new_ex.
local written, order, new_s, new_n, new_ex = {}, {}, {}, {}, {}
-- Per check of the request at hand (reused: a request overwrites what it reads).
local kinds, roles, descs, costs, over, d1, d2, d3, d4 = {}, {}, {}, {}, {}, {}, {}, {}, {}
local out = {}
local a = 2
local k = 1
for _ = 1, tonumber(ARGV[1]) do
  local fold, shadow_all, stop, own, n, ns, nn = unpack_('>BBBBI4dI4', ARGV[a])
  local now_s, now_n = clock(own, ns, nn)
  a = a + 1
  local first = k
  local any_window_over = false
  for i = 1, n do
    local kind, role, desc, cost, as, an, bs, bn = unpack_('>BBI4I4dI4dI4', ARGV[a])
    kinds[i], roles[i], descs[i], costs[i] = kind, role, desc, cost
    a = a + 1
    if kind == 116 then -- t: a is the charge, b the tolerance
      local key = KEYS[k]
      local ts, tn = 0, 0
      local w = written[key]
      if w then
        ts, tn = new_s[w], new_n[w]
      elseif stored[k] then
        ts, tn = unpack_('>dI4', stored[k])
      end
      local ds, dn = 0, 0
      if ts > now_s or (ts == now_s and tn > now_n) then
        ds, dn = ts - now_s, tn - now_n
        if dn < 0 then ds, dn = ds - 1, dn + BILLION end
      end
      local xs, xn = ds + as, dn + an
      if xn >= BILLION then xs, xn = xs + 1, xn - BILLION end
      over[i] = xs > bs or (xs == bs and xn > bn)
      d1[i], d2[i], d3[i], d4[i] = ds, dn, xs, xn
    elseif kind == 102 then -- f: a is the period, b the limit
      local start = now_s - (now_s % as)
      local window_key = KEYS[k] .. ':' .. start
      local after = tonumber(call('GET', window_key) or '0') + cost
      d1[i], d2[i], d3[i] = window_key, start + as, after
      over[i] = after > bs
      any_window_over = any_window_over or over[i]
    else -- x, y
      over[i] = true
      any_window_over = any_window_over or kind == 121
    end
    k = k + 1
  end

  -- The request's fold, as the server folds statuses (store::request_denied).
  local denied = false
  if fold == 1 and shadow_all == 0 then
    if n == 1 then
      denied = over[1] and roles[1] ~= 115 -- not s
    else
      local over_by_desc, role_by_desc, seen = {}, {}, {}
      for i = 1, n do
        local d = descs[i]
        if role_by_desc[d] == nil then
          role_by_desc[d] = roles[i]
          over_by_desc[d] = false
          seen[#seen + 1] = d
        end
        over_by_desc[d] = over_by_desc[d] or over[i]
      end
      local quota_seen, quota_all_over = false, true
      for _, d in ipairs(seen) do
        if role_by_desc[d] == 101 and over_by_desc[d] then denied = true end -- e
        if role_by_desc[d] == 113 then -- q
          quota_seen = true
          quota_all_over = quota_all_over and over_by_desc[d]
        end
      end
      denied = denied or (quota_seen and quota_all_over)
    end
  end

  local o = #out
  for i = 1, n do
    local kind = kinds[i]
    if kind == 116 then
      local charged = 0
      if not over[i] and not denied and costs[i] > 0 then
        local g = first + i - 1
        local key = KEYS[g]
        local xs, xn = d3[i], d4[i]
        local ts, tn = now_s + xs, now_n + xn
        if tn >= BILLION then ts, tn = ts + 1, tn - BILLION end
        if not written[key] then order[#order + 1] = key end
        written[key] = g
        new_s[g], new_n[g], new_ex[g] = ts, tn, expiry_ms(xs, xn)
        charged = 1
      end
      out[o + 1], out[o + 2], out[o + 3] = d1[i], d2[i], charged
    elseif kind == 102 then
      local cost = costs[i]
      local hits = cost
      if stop == 1 and any_window_over and not over[i] then hits = 0 end
      local after = d3[i] - cost + hits
      local rs, rn = d2[i] - now_s, -now_n
      if rn < 0 then rs, rn = rs - 1, rn + BILLION end
      if hits > 0 then
        local count = call('INCRBY', d1[i], hits)
        if count == hits then
          call('PEXPIRE', d1[i], expiry_ms(rs, rn))
        end
        after = count
      end
      out[o + 1], out[o + 2], out[o + 3] = after, rs, rn
    else
      out[o + 1], out[o + 2], out[o + 3] = 0, 0, 0
    end
    o = o + 3
  end
end
for _, key in ipairs(order) do
  local g = written[key]
  call('SET', key, pack('>dI4', new_s[g], new_n[g]), 'PX', new_ex[g])
end
return out
"#
);

/// Gives back what a request took from token buckets on this shard, when another shard
/// denied the request.
///
/// Atomic per key (read tat, move it back, write) so that a concurrent charge is not lost.
///
/// - `KEYS[i]`: the bucket keys.
/// - `ARGV[1]`: the time, as a check's header (only its last three fields are read).
/// - `ARGV[i + 1]`: the charge `cost × T` to give back to `KEYS[i]` (`>dI4`).
/// - Returns the number of keys moved back.
pub const REFUND_BUCKETS: &str = concat!(
    lua_prelude!(),
    r#"
local _, _, _, own, _, ns, nn = unpack_('>BBBBI4dI4', ARGV[1])
local now_s, now_n = clock(own, ns, nn)
local moved = 0
for i, key in ipairs(KEYS) do
  local stored = call('GET', key)
  if stored then
    local ss, sn = unpack_('>dI4', stored)
    local bs, bn = unpack_('>dI4', ARGV[i + 1])
    local ts, tn = ss - bs, sn - bn
    if tn < 0 then ts, tn = ts - 1, tn + BILLION end
    if ts < now_s or (ts == now_s and tn <= now_n) then
      call('DEL', key)
    else
      local as, an = ts - now_s, tn - now_n
      if an < 0 then as, an = as - 1, an + BILLION end
      call('SET', key, pack('>dI4', ts, tn), 'PX', expiry_ms(as, an))
    end
    moved = moved + 1
  end
end
return moved
"#
);

/// A pair as the scripts read it (`dI4`): a whole number as a double, exact below 2^53,
/// and a u32.
fn push_pair(out: &mut Vec<u8>, (whole, part): (u64, u32)) {
    out.extend_from_slice(&(whole as f64).to_be_bytes());
    out.extend_from_slice(&part.to_be_bytes());
}

/// A duration or time in nanoseconds as the scripts' (seconds, nanoseconds) pair:
/// `u64::MAX` ns is about 2^34 seconds, exact as a double.
fn time_pair(nanos: Nanos) -> (u64, u32) {
    (nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
}

/// A request's header (see [`CHECK_BUCKETS`]); `now` `None` for the server's time.
fn header(now: Option<Nanos>, fold: bool, shadow: bool, stop: bool, checks: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&[
        u8::from(fold),
        u8::from(shadow),
        u8::from(stop),
        u8::from(now.is_some()),
    ]);
    // A request's checks number far fewer than 2^32.
    out.extend_from_slice(&(checks as u32).to_be_bytes());
    push_pair(&mut out, time_pair(now.unwrap_or(0)));
    out
}

/// A charge to give back, as [`REFUND_BUCKETS`] reads it (`>dI4`).
fn refund_arg(charge: Nanos) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    push_pair(&mut out, time_pair(charge));
    out
}

/// A call of [`CHECK_BUCKETS`] (loaded as `script`) for the parts of several requests:
/// each its keys and the arguments [`encode_request`] wrote.
pub fn check_call<'s, 'p>(
    script: &'s Script,
    parts: impl ExactSizeIterator<Item = (&'p [Vec<u8>], &'p [Vec<u8>])>,
) -> ScriptInvocation<'s> {
    let mut invocation = script.prepare_invoke();
    // ARGV[1] is the number of requests; each part's arguments start with its header.
    invocation.arg(parts.len());
    for (keys, args) in parts {
        for key in keys {
            invocation.key(key.as_slice());
        }
        for arg in args {
            invocation.arg(arg.as_slice());
        }
    }
    invocation
}

/// A call of [`REFUND_BUCKETS`] (loaded as `script`) giving back `(key, charge)` pairs;
/// `now` `None` for the server's time.
pub fn refund_call(
    script: &Script,
    now: Option<Nanos>,
    refunds: Vec<(Vec<u8>, Nanos)>,
) -> ScriptInvocation<'_> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(header(now, false, false, false, 0));
    for (key, charge) in refunds {
        invocation.key(key).arg(refund_arg(charge));
    }
    invocation
}

/// Appends the script arguments of one request's part of a batch: `checks` are indices
/// into `batch.checks`, `known_over` marks those already known to be over (answered from
/// the local cache), `now` is `None` for the server's time.
pub fn encode_request(
    batch: &Batch,
    now: Option<Nanos>,
    checks: &[usize],
    known_over: &[bool],
    fold: bool,
    args: &mut Vec<Vec<u8>>,
) {
    args.push(header(
        now,
        fold,
        batch.global_shadow,
        batch.stop_increment,
        checks.len(),
    ));
    for (&i, &over) in checks.iter().zip(known_over) {
        let check = &batch.checks[i];
        let role = match check.role {
            Role::Enforced => b'e',
            // Neither denies the request; the status reads the role on this side.
            Role::Shadow | Role::Reported => b's',
            Role::Quota => b'q',
        };
        // For `t` the charge and the tolerance; for `f` the period and the limit.
        let (kind, first, second) = match (over, check.meter) {
            (true, Meter::TokenBucket(_)) => (b'x', (0, 0), (0, 0)),
            (true, Meter::FixedWindow { .. }) => (b'y', (0, 0), (0, 0)),
            (false, Meter::TokenBucket(rate)) => (
                b't',
                time_pair(charge(rate, check.cost)),
                time_pair(rate.tolerance()),
            ),
            (false, Meter::FixedWindow { period_secs, limit }) => {
                (b'f', (period_secs.max(1), 0), (u64::from(limit), 0))
            }
        };
        let mut arg = Vec::with_capacity(34);
        arg.extend_from_slice(&[kind, role]);
        // A request's descriptors number far fewer than 2^32.
        arg.extend_from_slice(&(check.descriptor as u32).to_be_bytes());
        arg.extend_from_slice(&check.cost.to_be_bytes());
        push_pair(&mut arg, first);
        push_pair(&mut arg, second);
        args.push(arg);
    }
}

/// `cost × T`, saturated: a saturated charge is never allowed, exactly as in
/// [`limiter::Rate::decide`].
pub fn charge(rate: limiter::Rate, cost: u32) -> Nanos {
    u64::from(cost).saturating_mul(rate.interval())
}

/// Rebuilds the decision of `check` from its three reply values.
pub fn decode(check: &Check, reply: [i64; 3]) -> Result<Decision, String> {
    let bad = || format!("unexpected script reply {reply:?}");
    let [first, second, third] = reply.map(|v| u64::try_from(v).map_err(|_| bad()));
    let (first, second, third) = (first?, second?, third?);
    let nanos = |seconds: u64, nanos: u64| {
        (nanos < 1_000_000_000)
            .then(|| seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
            .ok_or_else(bad)
    };
    Ok(match check.meter {
        // Relative to a zero "now": the decision depends only on how far ahead the tat
        // was, which is what the script reports.
        Meter::TokenBucket(rate) => rate.decide(check.cost, nanos(first, second)?, 0).0,
        Meter::FixedWindow { limit, .. } => WindowCount {
            after: first,
            reset_after: nanos(second, third)?,
        }
        .decision(limit),
    })
}

/// The check script's reply: three integers per check.
pub fn reply_integers(value: Value) -> Result<Vec<i64>, String> {
    let Value::Array(items) = value else {
        return Err(format!("unexpected script reply {value:?}"));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Int(v) => Ok(v),
            other => Err(format!("unexpected script reply item {other:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use limiter::Rate;

    use super::*;

    fn check(meter: Meter, cost: u32) -> Check {
        Check {
            key: 0..1,
            identity: 1,
            meter,
            cost,
            descriptor: 0,
            role: Role::Enforced,
        }
    }

    #[test]
    fn times_are_packed_as_whole_seconds_and_nanoseconds() {
        let mut out = Vec::new();
        push_pair(&mut out, time_pair(1_763_700_000_123_456_789));
        assert_eq!(out[..8], 1_763_700_000f64.to_be_bytes());
        assert_eq!(out[8..], 123_456_789u32.to_be_bytes());
        // The largest time is still exact: 2^64 ns is about 2^34 s.
        out.clear();
        push_pair(&mut out, time_pair(u64::MAX));
        let seconds = f64::from_be_bytes(out[..8].try_into().unwrap());
        assert_eq!(seconds as u64, u64::MAX / 1_000_000_000);
    }

    #[test]
    fn a_header_carries_the_flags_the_count_and_the_time_when_it_is_ours() {
        let ours = header(Some(2_500_000_000), true, false, true, 3);
        assert_eq!(ours[..8], [1, 0, 1, 1, 0, 0, 0, 3]);
        assert_eq!(ours[8..16], 2f64.to_be_bytes());
        assert_eq!(ours[16..], 500_000_000u32.to_be_bytes());
        let servers = header(None, false, true, false, 1);
        assert_eq!(servers[..8], [0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(servers.len(), 20);
    }

    #[test]
    fn replies_decode_as_the_memory_store_decides() {
        let rate = Rate::new(10, Duration::from_secs(1), 10);
        let bucket = check(Meter::TokenBucket(rate), 1);
        // The tat was 1.5 s ahead of now.
        let decoded = decode(&bucket, [1, 500_000_000, 1]).expect("decodes");
        assert_eq!(decoded, rate.decide(1, 1_500_000_000, 0).0);
        let window = check(
            Meter::FixedWindow {
                period_secs: 60,
                limit: 5,
            },
            1,
        );
        let decoded = decode(&window, [6, 12, 250_000_000]).expect("decodes");
        let expected = WindowCount {
            after: 6,
            reset_after: 12_250_000_000,
        }
        .decision(5);
        assert_eq!(decoded, expected);
    }

    #[test]
    fn malformed_replies_are_errors_not_decisions() {
        let rate = Rate::new(10, Duration::from_secs(1), 10);
        let bucket = check(Meter::TokenBucket(rate), 1);
        assert!(decode(&bucket, [-1, 0, 1]).is_err());
        assert!(decode(&bucket, [0, 1_000_000_000, 1]).is_err());
        assert!(reply_integers(Value::Nil).is_err());
        assert!(reply_integers(Value::Array(vec![Value::Int(1), Value::Nil])).is_err());
        assert_eq!(
            reply_integers(Value::Array(vec![Value::Int(1), Value::Int(2)])),
            Ok(vec![1, 2])
        );
    }
}
