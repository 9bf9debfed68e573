//! The largest token buckets and windows the bucket maths keeps exact
//! ([`MAX_TOLERANCE_NANOS`], [`MAX_WINDOW_SECS`]), and [`Excess`]: which value of a limit
//! passes them, and the largest it may take.
//!
//! The same bounds hold for both implementations of the maths. `limiter` keeps a bucket's
//! state as u64 nanoseconds since 1970, and a window's end as u32 seconds; the Redis scripts
//! keep times as (seconds, nanoseconds) pairs of Lua doubles, exact to 2^53 seconds, and
//! key expiries in milliseconds, so they are exact past these bounds, and `limiter`'s are
//! the ones that bind.

use std::time::Duration;

use crate::error::ConfigError;

/// The most refill a token bucket may hold: its tolerance τ = burst × emission interval,
/// 2^62 ns (about 146 years).
///
/// A bucket's state is the time at which it will be full again, in nanoseconds since 1970
/// as a u64. A check adds the cost (at most τ) to how far that time runs ahead of now (at
/// most τ), and the time a denied caller may retry is now plus that sum less τ; all of it
/// stays below 2^64 while `now + 2τ` does. With τ at most 2^62 that holds for every `now`
/// below 2^63 ns, that is until April 2262. Just past the bound, a denial at such a `now`
/// reads "never" instead of its wait (limiter's `tests/boundaries.rs` shows both sides).
pub const MAX_TOLERANCE_NANOS: u64 = 1 << 62;

/// The longest fixed window, 2^30 s (about 34 years). `limiter`'s window keeps its end in
/// 32 bits and compares ends as serial numbers, which needs every live end within 2^31 s
/// of now; a longer window would be cut to this one and count differently from Redis.
pub const MAX_WINDOW_SECS: u64 = 1 << 30;

pub(crate) const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a value is too large, as the messages say it.
const TOO_FINE: &str = "a token bucket refills at most one token per nanosecond";
const TOO_MUCH_REFILL: &str = "a token bucket may hold at most 2^62 ns (about 146 years) of refill";
const TOO_LONG_WINDOW: &str = "a fixed window lasts at most 2^30 s (about 34 years)";

/// A value of a limit that the bucket maths cannot represent exactly, and the largest it
/// may take with the limit's other values unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excess {
    /// The field: `requests_per_unit`, `unit_multiplier` or `burst` in a `rate_limit`;
    /// `tokens_per_fill`, `fill_interval` or `max_tokens` in a local `token_bucket`.
    pub field: &'static str,
    /// The value as written.
    pub value: String,
    /// The largest value allowed for it, as it would be written.
    pub largest: String,
    /// What bound it passes, in words.
    pub reason: &'static str,
}

impl Excess {
    /// The refusal of this excess in the map at `map` (key path `path`), at the field's
    /// value when `field_at` finds it, else at the map.
    pub(crate) fn refusal<'l>(
        self,
        file: &str,
        path: &str,
        map: &'l serde_saphyr::Location,
        field_at: impl FnOnce(&str) -> Option<&'l serde_saphyr::Location>,
    ) -> ConfigError {
        ConfigError::TooLarge {
            at: crate::file::position(file, field_at(self.field).unwrap_or(map)),
            path: format!("{path}.{}", self.field),
            value: self.value,
            largest: self.largest,
            reason: self.reason,
        }
    }
}

/// Which part of a token bucket passes a bound, and the largest it may be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BucketExcess {
    /// More than one token per nanosecond: at most `largest` per period.
    Rate { largest: u128 },
    /// The period makes the bucket hold too much refill: at most `largest` ns.
    Period { largest: u128 },
    /// The burst holds too much refill: at most `largest` tokens.
    Burst { largest: u128 },
}

/// The emission interval `limiter::Rate` uses: `period / requests` rounded up to whole
/// nanoseconds, at least 1.
pub(crate) fn emission_interval(requests: u32, period_nanos: u128) -> u128 {
    period_nanos.div_ceil(u128::from(requests.max(1))).max(1)
}

/// Checks a token bucket of `requests` per `period_nanos` holding `burst` tokens; `burst_given`
/// says whether the burst was written (else it is `requests`), which decides whether a
/// bucket holding too much refill is blamed on its burst or on its period.
///
/// A bucket of no requests or no tokens refuses everything without any arithmetic, so it
/// always passes.
pub(crate) fn token_bucket(
    requests: u32,
    period_nanos: u128,
    burst: u32,
    burst_given: bool,
) -> Option<BucketExcess> {
    if requests == 0 || burst == 0 {
        return None;
    }
    if u128::from(requests) > period_nanos {
        return Some(BucketExcess::Rate {
            largest: period_nanos,
        });
    }
    let max = u128::from(MAX_TOLERANCE_NANOS);
    let interval = emission_interval(requests, period_nanos);
    if interval * u128::from(burst) <= max {
        return None;
    }
    if burst_given && interval * u128::from(requests) <= max {
        return Some(BucketExcess::Burst {
            largest: max / interval,
        });
    }
    // The longest period with this burst: `burst × ceil(period / requests) <= max` is
    // `period <= requests × floor(max / burst)`.
    Some(BucketExcess::Period {
        largest: u128::from(requests) * (max / u128::from(burst)),
    })
}

/// Checks a fixed window of `period_secs`; the largest period when it is too long.
pub(crate) fn window(period_secs: u64) -> Option<u64> {
    (period_secs > MAX_WINDOW_SECS).then_some(MAX_WINDOW_SECS)
}

/// The [`Excess`] of a `rate_limit` of `requests` per `unit_nanos × multiplier`, from
/// [`token_bucket`]'s answer.
pub(crate) fn rule_excess(
    excess: BucketExcess,
    requests: u32,
    unit_nanos: u128,
    multiplier: u32,
    burst: u32,
) -> Excess {
    match excess {
        BucketExcess::Rate { largest } => Excess {
            field: "requests_per_unit",
            value: requests.to_string(),
            largest: largest.to_string(),
            reason: TOO_FINE,
        },
        BucketExcess::Burst { largest } => Excess {
            field: "burst",
            value: burst.to_string(),
            largest: largest.to_string(),
            reason: TOO_MUCH_REFILL,
        },
        BucketExcess::Period { largest } => {
            // With a burst above the rate even one unit may hold too much: then say the
            // largest multiplier for a burst of `requests`, and the burst is refused next.
            let mut multiples = largest / unit_nanos;
            if multiples == 0 {
                let max = u128::from(MAX_TOLERANCE_NANOS);
                let requests = u128::from(requests);
                multiples = requests * (max / requests) / unit_nanos;
            }
            Excess {
                field: "unit_multiplier",
                value: multiplier.to_string(),
                largest: multiples.to_string(),
                reason: TOO_MUCH_REFILL,
            }
        }
    }
}

/// The [`Excess`] of a fixed window `multiplier` units of `unit_secs` long.
pub(crate) fn window_excess(unit_secs: u64, multiplier: u32) -> Option<Excess> {
    window(unit_secs * u64::from(multiplier)).map(|largest| Excess {
        field: "unit_multiplier",
        value: multiplier.to_string(),
        largest: (largest / unit_secs).to_string(),
        reason: TOO_LONG_WINDOW,
    })
}

/// The [`Excess`] of a local `token_bucket` (Envoy's: `tokens_per_fill` per
/// `fill_interval`, holding `max_tokens`), written with `fill_interval` as `written`.
pub(crate) fn local_excess(
    tokens_per_fill: u32,
    fill_interval: Duration,
    written: &str,
    max_tokens: u32,
) -> Option<Excess> {
    let excess = token_bucket(tokens_per_fill, fill_interval.as_nanos(), max_tokens, true)?;
    Some(match excess {
        BucketExcess::Rate { largest } => Excess {
            field: "tokens_per_fill",
            value: tokens_per_fill.to_string(),
            largest: largest.to_string(),
            reason: TOO_FINE,
        },
        BucketExcess::Burst { largest } => Excess {
            field: "max_tokens",
            value: max_tokens.to_string(),
            largest: largest.to_string(),
            reason: TOO_MUCH_REFILL,
        },
        BucketExcess::Period { mut largest } => {
            // As for a rule's multiplier: when even the shortest interval holds too much
            // with this many tokens, the largest interval for `tokens_per_fill` tokens.
            if largest < crate::local::MIN_FILL_INTERVAL.as_nanos() {
                let max = u128::from(MAX_TOLERANCE_NANOS);
                let tokens = u128::from(tokens_per_fill);
                largest = tokens * (max / tokens);
            }
            Excess {
                field: "fill_interval",
                value: written.to_owned(),
                largest: seconds(largest),
                reason: TOO_MUCH_REFILL,
            }
        }
    })
}

/// Nanoseconds as decimal seconds, as a quota file may write them: `90s`, `0.25s`.
fn seconds(nanos: u128) -> String {
    let (whole, fraction) = (nanos / NANOS_PER_SEC, nanos % NANOS_PER_SEC);
    if fraction == 0 {
        format!("{whole}s")
    } else {
        let fraction = format!("{fraction:09}");
        format!("{whole}.{}s", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: u128 = 365 * 86_400 * NANOS_PER_SEC;

    #[test]
    fn a_bucket_of_its_period_is_refused_past_the_largest_period() {
        let max = u128::from(MAX_TOLERANCE_NANOS);
        assert_eq!(token_bucket(1, max, 1, false), None);
        assert_eq!(
            token_bucket(1, max + 1, 1, false),
            Some(BucketExcess::Period { largest: max })
        );
        assert_eq!(token_bucket(1, 146 * YEAR, 1, false), None);
        assert!(token_bucket(1, 147 * YEAR, 1, false).is_some());
    }

    #[test]
    fn a_burst_above_the_rate_is_blamed_on_the_burst() {
        // One a day: 53 375 days of refill fit, 53 376 do not.
        let day = 86_400 * NANOS_PER_SEC;
        assert_eq!(token_bucket(1, day, 53_375, true), None);
        assert_eq!(
            token_bucket(1, day, 53_376, true),
            Some(BucketExcess::Burst { largest: 53_375 })
        );
    }

    #[test]
    fn more_than_one_token_a_nanosecond_is_refused() {
        assert_eq!(token_bucket(1_000_000_000, NANOS_PER_SEC, 1, false), None);
        assert_eq!(
            token_bucket(1_000_000_001, NANOS_PER_SEC, 1, false),
            Some(BucketExcess::Rate {
                largest: NANOS_PER_SEC
            })
        );
    }

    #[test]
    fn buckets_that_refuse_everything_pass() {
        assert_eq!(token_bucket(0, u128::MAX, 5, true), None);
        assert_eq!(token_bucket(5, u128::MAX, 0, true), None);
    }

    #[test]
    fn a_multiplier_too_large_even_for_one_unit_says_the_largest_for_the_rate() {
        // 4e9 tokens of one a day: no multiplier fits that burst, so the message gives
        // the largest for a burst of one, and the burst is refused once it is fixed.
        let day = 86_400 * NANOS_PER_SEC;
        let excess = token_bucket(1, 300_000 * day, 4_000_000_000, true).expect("excess");
        let excess = rule_excess(excess, 1, day, 300_000, 4_000_000_000);
        assert_eq!(excess.field, "unit_multiplier");
        assert_eq!(excess.largest, "53375");
    }

    #[test]
    fn windows_pass_up_to_two_to_the_thirty_seconds() {
        assert_eq!(window(MAX_WINDOW_SECS), None);
        assert_eq!(window(MAX_WINDOW_SECS + 1), Some(MAX_WINDOW_SECS));
        let year = 365 * 86_400;
        assert_eq!(window_excess(year, 34), None);
        assert_eq!(window_excess(year, 35).expect("excess").largest, "34");
    }

    #[test]
    fn durations_are_written_as_decimal_seconds() {
        assert_eq!(seconds(90 * NANOS_PER_SEC), "90s");
        assert_eq!(seconds(250_000_000), "0.25s");
        assert_eq!(
            seconds(u128::from(MAX_TOLERANCE_NANOS)),
            "4611686018.427387904s"
        );
    }
}
