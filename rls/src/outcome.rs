//! What requests came to, counted in one place for gRPC and `POST /json` alike:
//! `rls_requests_total{code}` for answers, `rls_errors_total{kind}` for refusals.

use proto::rls::RateLimitResponse;
use proto::rls::rate_limit_response::Code;

use crate::error::{ErrorKind, RlsError};

/// Counts one request's outcome.
pub fn count(outcome: &Result<RateLimitResponse, RlsError>) {
    match outcome {
        Ok(answer) => {
            let code = if answer.overall_code == Code::OverLimit as i32 {
                "over_limit"
            } else {
                "ok"
            };
            metrics::counter!("rls_requests_total", "code" => code).increment(1);
        }
        Err(error) => count_refusal(error.kind()),
    }
}

/// Counts one request refused as `kind`, including those refused before they reached the
/// decider (a body or message over `--max-request-bytes`, bytes that are no request).
pub fn count_refusal(kind: ErrorKind) {
    metrics::counter!("rls_errors_total", "kind" => kind.label()).increment(1);
}
