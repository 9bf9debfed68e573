//! `RedisShares`: the weights of every Envoy on a bucket in one Redis hash per bucket, on
//! the shard (and under the `{hash tag}`) of the bucket's own keys, so that replicas on one
//! Redis split one quota. Calls go through the Redis store's shards, with its deadline and
//! its failure modes ([`OnBackendError`]).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use limiter::Nanos;
use redis::{Script, Value};

use super::assign::Grant;
use super::state::{ClientId, Contribution, MemoryShares, ShareBackend, Split, Totals};
use crate::decide::Decider;
use crate::store::redis::{
    CallGroup, Cause, Failure, OnBackendError, RedisError, RedisStore, TimeSource,
};

/// Records the weights of Envoys on buckets and returns each bucket's totals.
///
/// - `KEYS[i]`: the weights hash of the bucket of contribution i (field: the Envoy's
///   client id; value `>dd`: its weight and until when it counts, in Unix milliseconds).
/// - `ARGV[1]` (`>BdI4I4`): 1 if the time that follows is the caller's, else 0 for the
///   server's `TIME`; that time (seconds, nanoseconds); how long a weight counts unless
///   renewed, in milliseconds.
/// - `ARGV[1 + i]` (`>c8d`): contribution i's client id and weight.
/// - Returns one string per contribution (`>dI4`): the sum of its bucket's live weights,
///   this call's included, and how many they are. Weights past their time are deleted;
///   a hash no one renews expires with its last weight.
///
/// Atomic so that the totals a replica reads include its own new weights and never half
/// of another replica's call, and so that expired weights are dropped exactly once.
pub const SHARE_WEIGHTS: &str = r#"
local unpack_, pack, call = struct.unpack, struct.pack, redis.call
local own, now_s, now_n, life_ms = unpack_('>BdI4I4', ARGV[1])
local now_ms
if own == 1 then
  now_ms = now_s * 1000 + math.floor(now_n / 1000000)
else
  local t = call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
for i = 1, #KEYS do
  local client, weight = unpack_('>c8d', ARGV[i + 1])
  call('HSET', KEYS[i], client, pack('>dd', weight, now_ms + life_ms))
  call('PEXPIRE', KEYS[i], life_ms)
end
local out, seen = {}, {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local totals = seen[key]
  if not totals then
    local fields = call('HGETALL', key)
    local sum, n, stale = 0, 0, {}
    for j = 1, #fields, 2 do
      local weight, until_ms = unpack_('>dd', fields[j + 1])
      if until_ms < now_ms then
        stale[#stale + 1] = fields[j]
      else
        sum, n = sum + weight, n + 1
      end
    end
    if #stale > 0 then call('HDEL', key, unpack(stale)) end
    totals = pack('>dI4', sum, n)
    seen[key] = totals
  end
  out[i] = totals
end
return out
"#;

/// Drops one Envoy's weights (its stream ended).
///
/// - `KEYS[i]`: weights hashes.
/// - `ARGV[1]`: the client id (8 bytes).
/// - Returns nothing.
///
/// A script only so that it can go through the store's shards as the other calls do; it
/// needs no atomicity.
pub const FORGET_WEIGHTS: &str = r#"
for i = 1, #KEYS do redis.call('HDEL', KEYS[i], ARGV[1]) end
return 0
"#;

/// What follows a bucket's identity in the key of its weights hash.
const SUFFIX: &[u8] = b"Q";

/// Most contributions in one script call.
const MAX_PER_CALL: usize = 256;

/// The weights in Redis, through the store of `decider`.
pub struct RedisShares {
    decider: Arc<Decider<RedisStore>>,
    share: Script,
    forget: Script,
    lifetime: Duration,
    on_error: OnBackendError,
    replicas: NonZeroU32,
    /// This replica's own weights, for `--on-backend-error local`.
    local: MemoryShares,
}

impl RedisShares {
    /// Weights through `decider`'s Redis store, counting for `lifetime` unless renewed; on a
    /// failure, `on_error` answers (`local`: this replica's part, of `replicas`).
    pub fn new(
        decider: Arc<Decider<RedisStore>>,
        lifetime: Duration,
        on_error: OnBackendError,
        replicas: NonZeroU32,
    ) -> RedisShares {
        RedisShares {
            decider,
            share: Script::new(SHARE_WEIGHTS),
            forget: Script::new(FORGET_WEIGHTS),
            lifetime,
            on_error,
            replicas,
            local: MemoryShares::new(lifetime),
        }
    }

    fn header(&self) -> Vec<u8> {
        let store = self.decider.store();
        let now: Option<Nanos> = match store.time_source() {
            TimeSource::Redis => None,
            TimeSource::Local => Some(self.decider.clock().now()),
        };
        let now = now.unwrap_or(0);
        let mut out = Vec::with_capacity(17);
        out.push(u8::from(store.time_source() == TimeSource::Local));
        out.extend_from_slice(&((now / 1_000_000_000) as f64).to_be_bytes());
        out.extend_from_slice(&((now % 1_000_000_000) as u32).to_be_bytes());
        let life_ms = u32::try_from(self.lifetime.as_millis()).unwrap_or(u32::MAX);
        out.extend_from_slice(&life_ms.to_be_bytes());
        out
    }

    /// One script call for `chunk` (indices into `contributions`, with their Redis keys).
    async fn call(
        &self,
        group: CallGroup,
        chunk: &[(usize, Vec<u8>)],
        contributions: &[Contribution],
        header: &[u8],
    ) -> Result<Vec<Totals>, Failure> {
        let mut invocation = self.share.prepare_invoke();
        invocation.arg(header);
        for (i, key) in chunk {
            let c = &contributions[*i];
            let mut arg = Vec::with_capacity(16);
            arg.extend_from_slice(&c.client.to_be_bytes());
            arg.extend_from_slice(&c.weight.to_be_bytes());
            invocation.key(key.as_slice()).arg(arg);
        }
        let reply = self.decider.store().invoke(group, &invocation).await?;
        decode(reply, chunk.len()).map_err(|why| {
            let shard: Arc<str> = format!("shard {}", group.shard).into();
            RedisError::new(&shard, Cause::Reply(why)).into()
        })
    }

    /// What answers a contribution whose call failed.
    fn fallback(&self, local: Option<Totals>) -> Split {
        match (self.on_error, local) {
            (OnBackendError::Error, _) => Split::Hold,
            (OnBackendError::Allow, _) => Split::Fallback(Grant::AllowAll),
            (OnBackendError::Deny, _) => Split::Fallback(Grant::DenyAll),
            (OnBackendError::Local, Some(totals)) => Split::Totals(Totals {
                scale: 1.0 / f64::from(self.replicas.get()),
                ..totals
            }),
            (OnBackendError::Local, None) => Split::Hold,
        }
    }
}

/// The totals in a reply of [`SHARE_WEIGHTS`].
fn decode(reply: Value, expected: usize) -> Result<Vec<Totals>, String> {
    let Value::Array(items) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    if items.len() != expected {
        return Err(format!("{} totals for {expected} weights", items.len()));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) if bytes.len() == 12 => {
                let weight = f64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
                let clients = u32::from_be_bytes(bytes[8..].try_into().unwrap_or_default());
                Ok(Totals {
                    weight,
                    clients,
                    scale: 1.0,
                })
            }
            other => Err(format!("not packed totals: {other:?}")),
        })
        .collect()
}

impl ShareBackend for RedisShares {
    async fn exchange(&self, contributions: &[Contribution]) -> Vec<Split> {
        let local = (self.on_error == OnBackendError::Local)
            .then(|| self.local.exchange_now(contributions));
        let store = self.decider.store();
        let mut groups: BTreeMap<CallGroup, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        for (i, c) in contributions.iter().enumerate() {
            let (group, key) = store.place_beside(&c.key, SUFFIX);
            groups.entry(group).or_default().push((i, key));
        }
        let header = &self.header();
        let calls = groups.iter().flat_map(|(&group, items)| {
            items.chunks(MAX_PER_CALL).map(move |chunk| (group, chunk))
        });
        let replies = join_all(calls.map(|(group, chunk)| async move {
            (chunk, self.call(group, chunk, contributions, header).await)
        }))
        .await;
        let mut splits = vec![Split::Hold; contributions.len()];
        for (chunk, reply) in replies {
            match reply {
                Ok(totals) => {
                    for ((i, _), totals) in chunk.iter().zip(totals) {
                        splits[*i] = Split::Totals(totals);
                    }
                }
                Err(failure) => {
                    metrics::counter!("rls_backend_errors_total", "kind" => failure.kind())
                        .increment(1);
                    tracing::debug!(%failure, "RLQS weights not shared; the failure mode answers");
                    for (i, _) in chunk {
                        splits[*i] = self.fallback(local.as_ref().map(|l| l[*i]));
                    }
                }
            }
        }
        splits
    }

    async fn forget(&self, client: ClientId, keys: &[Arc<[u8]>]) {
        self.local.forget_now(client, keys);
        let store = self.decider.store();
        let mut groups: BTreeMap<CallGroup, Vec<Vec<u8>>> = BTreeMap::new();
        for key in keys {
            let (group, key) = store.place_beside(key, SUFFIX);
            groups.entry(group).or_default().push(key);
        }
        let client = client.to_be_bytes();
        let calls = groups
            .iter()
            .flat_map(|(&group, keys)| keys.chunks(MAX_PER_CALL).map(move |chunk| (group, chunk)));
        // Best effort: weights not forgotten stop counting when their time is up.
        join_all(calls.map(|(group, chunk)| async move {
            let mut invocation = self.forget.prepare_invoke();
            invocation.arg(client.as_slice());
            for key in chunk {
                invocation.key(key.as_slice());
            }
            let _ = store.invoke(group, &invocation).await;
        }))
        .await;
    }
}
