//! `HeaderNames`: the RateLimit-Limit / -Remaining / -Reset response headers, chosen the
//! way the reference service chooses them.

use proto::core::HeaderValue;
use proto::rls::rate_limit_response::{Code, DescriptorStatus};

/// Names of the three response headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNames {
    /// The limit header (default `RateLimit-Limit`).
    pub limit: String,
    /// The remaining header (default `RateLimit-Remaining`).
    pub remaining: String,
    /// The reset header (default `RateLimit-Reset`).
    pub reset: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            limit: HeaderNames::LIMIT.into(),
            remaining: HeaderNames::REMAINING.into(),
            reset: HeaderNames::RESET.into(),
        }
    }
}

impl HeaderNames {
    /// The default limit header.
    pub const LIMIT: &'static str = "RateLimit-Limit";
    /// The default remaining header.
    pub const REMAINING: &'static str = "RateLimit-Remaining";
    /// The default reset header.
    pub const RESET: &'static str = "RateLimit-Reset";

    /// The headers for an answer: those of the last descriptor over its limit that is not
    /// in quota mode (`is_quota(i)` for descriptor `i`) if any, else of the first with the
    /// fewest tokens left; none when no descriptor has a limit.
    pub fn headers_for(
        &self,
        statuses: &[DescriptorStatus],
        is_quota: impl Fn(usize) -> bool,
    ) -> Vec<HeaderValue> {
        let limited = statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| s.current_limit.is_some());
        let over = limited
            .clone()
            .filter(|&(i, s)| s.code == Code::OverLimit as i32 && !is_quota(i))
            .last();
        let least = || limited.min_by_key(|(_, s)| s.limit_remaining);
        let Some((_, status)) = over.or_else(least) else {
            return Vec::new();
        };
        let limit = status
            .current_limit
            .as_ref()
            .map_or(0, |l| l.requests_per_unit);
        // Whole seconds, rounded up so that a client waiting that long finds tokens.
        let reset = status
            .duration_until_reset
            .as_ref()
            .map_or(0, |d| d.seconds + i64::from(d.nanos > 0));
        let header = |key: &str, value: String| HeaderValue {
            key: key.to_string(),
            value,
            ..HeaderValue::default()
        };
        vec![
            header(&self.limit, limit.to_string()),
            header(&self.remaining, status.limit_remaining.to_string()),
            header(&self.reset, reset.to_string()),
        ]
    }
}
