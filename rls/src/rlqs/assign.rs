//! The share maths of RLQS, as pure functions: each Envoy's part of a quota ([`share`], in
//! proportion to [`weight`]s of recent demand, with a floor), the token bucket that
//! enforces a share in Envoy ([`grant`]), and when a new grant replaces the one an Envoy
//! holds ([`settle`]). [`DemandMeter`] turns usage reports into a rate.

use std::time::Duration;

/// A quota as the Envoys reporting one bucket share it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    /// The long-run rate, in requests per second, over all Envoys.
    pub rate: f64,
    /// The most requests at once, over all Envoys.
    pub burst: f64,
    /// The `fill_interval` of every grant of this quota, in whole seconds.
    pub fill_secs: u64,
}

/// The part of a quota that idle Envoys keep between them: each of `n` Envoys weighs at
/// least `FLOOR × rate / n`, so one that starts sending again (or a new one) is not at
/// zero, and idle ones together never hold more than about this fraction.
pub const FLOOR: f64 = 1.0 / 64.0;

/// How far below the share just computed a held grant may stay before it is replaced.
/// Envoy starts a replaced token bucket full (its `max_tokens` pass at once), so grants
/// change only when a share moves by more than this; a held grant never exceeds the new
/// share, so the grants of a bucket never add up to more than its quota.
pub const BAND: f64 = 0.05;

/// The shortest time over which reported requests become a rate.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// How much an Envoy's demand (requests per second, allowed and denied) weighs when a
/// quota of `quota_rate` is split among `clients` Envoys: the demand, but at least the
/// floor ([`FLOOR`]).
pub fn weight(demand: f64, quota_rate: f64, clients: u32) -> f64 {
    let floor = FLOOR * quota_rate / f64::from(clients.max(1));
    if demand.is_finite() {
        demand.max(floor)
    } else {
        floor
    }
}

/// The weight of an Envoy whose demand is not measured yet (it reported the bucket for
/// less than [`MIN_WINDOW`]; its first report counts only the request that created the
/// bucket): its own, but at least the mean of the `others` Envoys on the bucket, which
/// weigh `others_weight` together. A newcomer starts with at least an equal share.
pub fn newcomer_weight(own: f64, others_weight: f64, others: u32) -> f64 {
    if others == 0 {
        return own;
    }
    own.max(others_weight / f64::from(others))
}

/// The rate of a quota of `quota_rate` that an Envoy of `weight` gets when all the Envoys
/// reporting the bucket weigh `total`. The shares of all of them add up to `quota_rate`.
pub fn share(quota_rate: f64, weight: f64, total: f64) -> f64 {
    if weight <= 0.0 || !weight.is_finite() {
        return 0.0;
    }
    quota_rate * weight / total.max(weight)
}

/// What an Envoy is told to do with a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every request passes.
    AllowAll,
    /// Every request is denied.
    DenyAll,
    /// A token bucket.
    Bucket(TokenGrant),
}

/// A token bucket as Envoy's `envoy.type.v3.TokenBucket` carries it. Envoy 1.40 refills
/// continuously at `tokens_per_fill / fill_secs` a second, so the fill interval sets only
/// the rate's resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    /// Capacity, and what a new bucket starts with.
    pub max_tokens: u32,
    /// Tokens added over each fill interval.
    pub tokens_per_fill: u32,
    /// The fill interval, in whole seconds (Envoy reads no fraction of a second).
    pub fill_secs: u64,
}

impl TokenGrant {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        f64::from(self.tokens_per_fill) / self.fill_secs.max(1) as f64
    }
}

/// The grant that enforces a share of `share` requests a second of `quota`: a token bucket
/// refilling at the share rounded down to `1 / fill_secs` (at least one token per fill;
/// the interval shortened where the tokens would not fit in 32 bits), holding the same
/// part of the quota's burst (at least one). A quota of zero denies all.
pub fn grant(quota: &Quota, share: f64) -> Grant {
    if quota.rate <= 0.0 || share <= 0.0 || !share.is_finite() {
        return Grant::DenyAll;
    }
    let whole = |x: f64| x.floor().clamp(1.0, f64::from(u32::MAX)) as u32;
    // A shorter interval where a share of the quota's would not fit in 32-bit tokens.
    let fitting = (f64::from(u32::MAX) / share).floor().max(1.0) as u64;
    let fill_secs = quota.fill_secs.clamp(1, fitting);
    Grant::Bucket(TokenGrant {
        max_tokens: whole(quota.burst * share.min(quota.rate) / quota.rate),
        tokens_per_fill: whole(share * fill_secs as f64),
        fill_secs,
    })
}

/// The grant to push when an Envoy holds `held` and `next` was just computed: `held` while
/// it is at most [`BAND`] below `next` and no larger in any way (so that Envoy keeps its
/// bucket), else `next`.
///
/// Envoy 1.40 tells token buckets apart by `max_tokens`, `tokens_per_fill` and the fill
/// interval's nanoseconds only: a `next` that differs from `held` in the fill interval's
/// seconds alone would be taken for `held`. It is then sent as twice the tokens over twice
/// the interval: the same rate, told apart.
pub fn settle(held: Option<&Grant>, next: Grant) -> Grant {
    let (Some(Grant::Bucket(held)), Grant::Bucket(mut next)) = (held, next) else {
        return next;
    };
    let keep = held.fill_secs == next.fill_secs
        && held.tokens_per_fill <= next.tokens_per_fill
        && held.max_tokens <= next.max_tokens
        && held.rate() >= next.rate() * (1.0 - BAND);
    if keep {
        return Grant::Bucket(*held);
    }
    let mistaken = held.max_tokens == next.max_tokens
        && held.tokens_per_fill == next.tokens_per_fill
        && held.fill_secs != next.fill_secs;
    if mistaken {
        match next.tokens_per_fill.checked_mul(2) {
            Some(tokens) => {
                next.tokens_per_fill = tokens;
                next.fill_secs *= 2;
            }
            // No room to double: one token less per fill (a little under the share).
            None => next.tokens_per_fill -= 1,
        }
    }
    Grant::Bucket(next)
}

/// Requests reported for one bucket by one Envoy, as a rate: over windows of at least
/// [`MIN_WINDOW`] (reports may come less than a second apart: Envoy reports a new bucket at
/// once, then with all the others every 5 s). Times are offsets from any fixed origin.
#[derive(Clone, Debug, PartialEq)]
pub struct DemandMeter {
    since: Duration,
    count: u64,
    rate: Option<f64>,
}

impl DemandMeter {
    /// A meter counting from `now`.
    pub fn new(now: Duration) -> DemandMeter {
        DemandMeter {
            since: now,
            count: 0,
            rate: None,
        }
    }

    /// Counts `requests` reported at `now`; closes the window once it is long enough.
    pub fn record(&mut self, now: Duration, requests: u64) {
        self.count = self.count.saturating_add(requests);
        let elapsed = now.saturating_sub(self.since);
        if elapsed >= MIN_WINDOW {
            self.rate = Some(self.count as f64 / elapsed.as_secs_f64());
            self.count = 0;
            self.since = now;
        }
    }

    /// Whether a window has closed: the rate is measured, not guessed.
    pub fn is_measured(&self) -> bool {
        self.rate.is_some()
    }

    /// Requests per second over the last closed window; before one has closed, what was
    /// counted so far as if over [`MIN_WINDOW`].
    pub fn rate(&self) -> f64 {
        self.rate
            .unwrap_or(self.count as f64 / MIN_WINDOW.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
