//! The response headers of a local check: `x-ratelimit-limit`, `x-ratelimit-remaining` and
//! `x-ratelimit-reset` (Envoy's `DRAFT_VERSION_03`), and `retry-after` on a refusal.

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::clock::Nanos;
use crate::local::verdict::Quota;

/// `x-ratelimit-limit`: the bucket's `max_tokens`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining`: whole tokens left.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset`: seconds until the next token.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Writes the `x-ratelimit-*` headers of `quota`. The reset is omitted for a bucket that
/// never refills.
pub(crate) fn write_quota(headers: &mut HeaderMap, quota: &Quota) {
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(quota.limit));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(quota.remaining));
    if quota.reset_after != u64::MAX {
        headers.insert(
            X_RATELIMIT_RESET,
            HeaderValue::from(seconds(quota.reset_after)),
        );
    }
}

/// Writes `retry-after` (RFC 9110, whole seconds), unless the request can never pass.
pub(crate) fn write_retry_after(headers: &mut HeaderMap, retry_after: Nanos) {
    if retry_after != u64::MAX {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds(retry_after)));
    }
}

/// Whole seconds, rounded up: a client that waits this long is not refused for waiting too
/// little. (Envoy truncates `x-ratelimit-reset`, so it may say 0 while the next token is
/// 900 ms away.)
fn seconds(nanos: Nanos) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(seconds(0), 0);
        assert_eq!(seconds(1), 1);
        assert_eq!(seconds(NANOS_PER_SEC), 1);
        assert_eq!(seconds(NANOS_PER_SEC + 1), 2);
    }

    #[test]
    fn a_bucket_that_never_refills_has_no_reset_or_retry_after() {
        let mut headers = HeaderMap::new();
        let never = Quota {
            limit: 0,
            remaining: 0,
            reset_after: u64::MAX,
        };
        write_quota(&mut headers, &never);
        write_retry_after(&mut headers, u64::MAX);
        assert_eq!(headers.len(), 2);
        assert!(headers.get(X_RATELIMIT_RESET).is_none());
        assert!(headers.get(RETRY_AFTER).is_none());
    }
}
