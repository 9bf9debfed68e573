//! The Lua scripts of the Redis store, and how a batch is encoded for them and decoded
//! from their replies.
//!
//! Lua numbers are doubles, exact only to 2^53, and epoch nanoseconds are about 2^60, so
//! the scripts keep every time as a pair (seconds, nanoseconds) and only add, subtract and
//! compare: Rust precomputes `cost × T` and `τ`, and rebuilds each decision from what the
//! script read with the same function the memory store uses ([`limiter::Rate::decide`]).

use limiter::{Decision, Nanos, WindowCount};
use redis::{FromRedisValue, Value};

use crate::store::{Batch, Check, Meter, Role};

/// Lua shared by both scripts: times as (seconds, nanoseconds) pairs parsed from and
/// shown as decimal nanoseconds, exact where a Lua double is not, and the clock.
macro_rules! lua_prelude {
    () => {
        r#"
local BILLION = 1000000000
local function parse(text)
  local len = #text
  if len <= 9 then return 0, tonumber(text) end
  return tonumber(string.sub(text, 1, len - 9)), tonumber(string.sub(text, len - 8))
end
local function add(as, an, bs, bn)
  local s, n = as + bs, an + bn
  if n >= BILLION then return s + 1, n - BILLION end
  return s, n
end
local function sub(as, an, bs, bn)
  local s, n = as - bs, an - bn
  if n < 0 then return s - 1, n + BILLION end
  return s, n
end
local function le(as, an, bs, bn)
  return as < bs or (as == bs and an <= bn)
end
local function show(s, n)
  if s == 0 then return string.format('%d', n) end
  return string.format('%d%09d', s, n)
end
-- Keys expire a second after they stop mattering: a stored tat at or before now already
-- reads as a full bucket, and a window's key names its start, so expiry only frees
-- memory and may be late (or measured on a caller's clock) without changing an answer.
local function expiry_ms(s, n)
  return s * 1000 + math.ceil(n / 1000000) + 1000
end

-- The time of a request: its decimal nanoseconds, or the server's TIME when empty
-- (read once per script call).
local time_s, time_n
local function clock(text)
  if text ~= '' then return parse(text) end
  if not time_s then
    local t = redis.call('TIME')
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
/// - `ARGV[1]`: the number of requests. Then per request one header argument,
///   `"<now> <fold> <global_shadow> <stop_increment> <checks>"`: the time as decimal
///   nanoseconds since the epoch, or empty to use the server's `TIME`; `fold` 1 to charge
///   its token buckets only if the request passes as a whole, 0 for each check on its
///   own; the flags as 1/0; the number of checks. Then one argument per check,
///   `"<kind><role><descriptor> <cost> <p1> <p2>"`: kind `t` token bucket, `f` fixed
///   window, `x` known over without a look; role `e` enforced, `s` shadow, `q` quota;
///   for `t` p1 is the charge `cost × T` and p2 the tolerance `τ` (decimal nanoseconds),
///   for `f` the period in seconds and the limit, for `x` both empty. One argument per
///   check rather than six: fewer strings to build, send and parse.
/// - Returns one string per request: two space-separated values per check, for `t` the
///   nanoseconds the stored tat was ahead of now (0 when full) and 1 if it charged; for
///   `f` the count after and the nanoseconds to the window's end; for `x` 0 0. (One
///   string per request rather than two per check: fewer replies to encode and decode.)
///
/// Token-bucket keys hold the tat as decimal nanoseconds and expire a second after the
/// bucket is full again; a window's count lives under the key plus `:<window start>` and
/// expires a second after the window's end.
pub const CHECK_BUCKETS: &str = concat!(
    lua_prelude!(),
    r#"
local out = {}
local a = 2
local k = 1
for _ = 1, tonumber(ARGV[1]) do
  local now, fold, shadow_all, stop, n = string.match(ARGV[a], '^(%d*) (%d) (%d) (%d) (%d+)$')
  fold, shadow_all, stop, n = fold == '1', shadow_all == '1', stop == '1', tonumber(n)
  a = a + 1
  local now_s, now_n = clock(now)
  local checks = {}
  local any_window_over = false
  for i = 1, n do
    local kind, role, desc, cost, p1, p2 =
      string.match(ARGV[a], '^(%a)(%a)(%d+) (%d+) (%d*) (%d*)$')
    local c = {kind = kind, role = role, desc = desc, cost = tonumber(cost), p1 = p1, p2 = p2,
               key = KEYS[k]}
    a = a + 1
    k = k + 1
    if c.kind == 't' then
      local stored = redis.call('GET', c.key)
      local ts, tn = now_s, now_n
      if stored then ts, tn = parse(stored) end
      if not le(ts, tn, now_s, now_n) then
        c.ds, c.dn = sub(ts, tn, now_s, now_n)
      else
        c.ds, c.dn = 0, 0
      end
      local is, inn = parse(c.p1)
      local taus, taun = parse(c.p2)
      c.as, c.an = add(c.ds, c.dn, is, inn)
      c.over = not le(c.as, c.an, taus, taun)
    elseif c.kind == 'f' then
      local period = tonumber(c.p1)
      local start = now_s - (now_s % period)
      c.window_key = c.key .. ':' .. start
      c.window_end = start + period
      local count = tonumber(redis.call('GET', c.window_key) or '0')
      c.after = count + c.cost
      c.over = c.after > tonumber(c.p2)
      any_window_over = any_window_over or c.over
    else
      c.over = true
    end
    checks[i] = c
  end

  -- The request's fold, as the server folds statuses (store::request_denied).
  local denied = false
  if fold and not shadow_all then
    local over_by_desc, role_by_desc, order = {}, {}, {}
    for _, c in ipairs(checks) do
      if role_by_desc[c.desc] == nil then
        role_by_desc[c.desc] = c.role
        over_by_desc[c.desc] = false
        order[#order + 1] = c.desc
      end
      over_by_desc[c.desc] = over_by_desc[c.desc] or c.over
    end
    local quota_seen, quota_all_over = false, true
    for _, d in ipairs(order) do
      if role_by_desc[d] == 'e' and over_by_desc[d] then denied = true end
      if role_by_desc[d] == 'q' then
        quota_seen = true
        quota_all_over = quota_all_over and over_by_desc[d]
      end
    end
    denied = denied or (quota_seen and quota_all_over)
  end

  local parts = {}
  for _, c in ipairs(checks) do
    if c.kind == 't' then
      local charged = '0'
      if not c.over and not denied and c.cost > 0 then
        local ts, tn = add(now_s, now_n, c.as, c.an)
        redis.call('SET', c.key, show(ts, tn), 'PX', expiry_ms(c.as, c.an))
        charged = '1'
      end
      parts[#parts + 1] = show(c.ds, c.dn)
      parts[#parts + 1] = charged
    elseif c.kind == 'f' then
      local hits = c.cost
      if stop and any_window_over and not c.over then hits = 0 end
      local after = c.after - c.cost + hits
      if hits > 0 then
        local count = redis.call('INCRBY', c.window_key, hits)
        if count == hits then
          local rs, rn = sub(c.window_end, 0, now_s, now_n)
          redis.call('PEXPIRE', c.window_key, expiry_ms(rs, rn))
        end
        after = count
      end
      local rs, rn = sub(c.window_end, 0, now_s, now_n)
      parts[#parts + 1] = tostring(after)
      parts[#parts + 1] = show(rs, rn)
    else
      parts[#parts + 1] = '0'
      parts[#parts + 1] = '0'
    end
  end
  out[#out + 1] = table.concat(parts, ' ')
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
/// - `ARGV[1]`: the time as decimal nanoseconds, or "" to use `TIME`.
/// - `ARGV[i + 1]`: the charge `cost × T` to give back to `KEYS[i]`, decimal nanoseconds.
/// - Returns the number of keys moved back.
pub const REFUND_BUCKETS: &str = concat!(
    lua_prelude!(),
    r#"
local now_s, now_n = clock(ARGV[1])
local moved = 0
for i, key in ipairs(KEYS) do
  local stored = redis.call('GET', key)
  if stored then
    -- Locals, not nested calls: Lua keeps only the first value of a call that is not
    -- the last argument.
    local ss, sn = parse(stored)
    local bs, bn = parse(ARGV[i + 1])
    local ts, tn = sub(ss, sn, bs, bn)
    if le(ts, tn, now_s, now_n) then
      redis.call('DEL', key)
    else
      local as, an = sub(ts, tn, now_s, now_n)
      redis.call('SET', key, show(ts, tn), 'PX', expiry_ms(as, an))
    end
    moved = moved + 1
  end
end
return moved
"#
);

/// Appends the script arguments of one request's part of a batch: `checks` are indices
/// into `batch.checks`, `known_over` marks those already known to be over (answered from
/// the local cache), `now` is "" for the server's time.
pub fn encode_request(
    batch: &Batch,
    now: &str,
    checks: &[usize],
    known_over: &[bool],
    fold: bool,
    args: &mut Vec<String>,
) {
    let flag = |b: bool| if b { 1 } else { 0 };
    args.push(format!(
        "{now} {} {} {} {}",
        flag(fold),
        flag(batch.global_shadow),
        flag(batch.stop_increment),
        checks.len()
    ));
    for (&i, &over) in checks.iter().zip(known_over) {
        let check = &batch.checks[i];
        let role = match check.role {
            Role::Enforced => 'e',
            Role::Shadow => 's',
            Role::Quota => 'q',
        };
        let (descriptor, cost) = (check.descriptor, check.cost);
        args.push(match (over, check.meter) {
            (true, _) => format!("x{role}{descriptor} {cost}  "),
            (false, Meter::TokenBucket(rate)) => format!(
                "t{role}{descriptor} {cost} {} {}",
                charge(rate, cost),
                rate.tolerance()
            ),
            (false, Meter::FixedWindow { period_secs, limit }) => {
                format!("f{role}{descriptor} {cost} {} {limit}", period_secs.max(1))
            }
        });
    }
}

/// `cost × T`, saturated: a saturated charge is never allowed, exactly as in
/// [`limiter::Rate::decide`].
pub fn charge(rate: limiter::Rate, cost: u32) -> Nanos {
    u64::from(cost).saturating_mul(rate.interval())
}

/// Rebuilds the decision of `check` from its two reply values.
pub fn decode(check: &Check, first: &str, second: &str) -> Result<Decision, String> {
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("unexpected script reply {text:?}"))
    };
    Ok(match check.meter {
        Meter::TokenBucket(rate) => {
            // Relative to a zero "now": the decision depends only on how far ahead the
            // tat was, which is what the script reports.
            rate.decide(check.cost, number(first)?, 0).0
        }
        Meter::FixedWindow { limit, .. } => WindowCount {
            after: number(first)?,
            reset_after: number(second)?,
        }
        .decision(limit),
    })
}

/// The script's reply: one string per request.
pub fn reply_strings(value: Value) -> Result<Vec<String>, String> {
    Vec::<String>::from_redis_value(value).map_err(|e| format!("unexpected script reply: {e}"))
}
