//! What requests came to, counted in one place for gRPC and `POST /json` alike:
//! `rls_requests_total{code}` for answers, `rls_errors_total{kind}` for refusals,
//! `rls_request_duration_seconds{backend}` for how long each took and
//! `rls_requests_in_flight` for those being answered.

use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use proto::rls::RateLimitResponse;
use proto::rls::rate_limit_response::Code;

use crate::error::{ErrorKind, RlsError};
use crate::stats::REQUEST_DURATION;

/// The request metrics of one front (gRPC or `/json`) of a store, registered once (every
/// series at zero from the start).
pub struct Outcomes {
    ok: Counter,
    over_limit: Counter,
    /// By [`ErrorKind`], in the order of [`KINDS`].
    errors: [Counter; 3],
    duration: Histogram,
    in_flight: Gauge,
}

/// Every kind of error, in the order of [`Outcomes::errors`].
const KINDS: [ErrorKind; 3] = [
    ErrorKind::InvalidRequest,
    ErrorKind::Backend,
    ErrorKind::Internal,
];

impl Outcomes {
    /// The metrics of requests answered from the store named `backend` (`memory`,
    /// `redis`).
    pub fn new(backend: &'static str) -> Outcomes {
        let _ = crate::stats::prometheus();
        Outcomes {
            ok: metrics::counter!("rls_requests_total", "code" => "ok"),
            over_limit: metrics::counter!("rls_requests_total", "code" => "over_limit"),
            errors: KINDS.map(|kind| metrics::counter!("rls_errors_total", "kind" => kind.label())),
            duration: metrics::histogram!(REQUEST_DURATION, "backend" => backend),
            in_flight: metrics::gauge!("rls_requests_in_flight"),
        }
    }

    /// A request starts: in flight until [`InFlight::finish`] or until dropped (its
    /// caller went away).
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.increment(1);
        InFlight {
            outcomes: self,
            started: Instant::now(),
        }
    }
}

/// A request being answered.
pub struct InFlight<'a> {
    outcomes: &'a Outcomes,
    started: Instant,
}

impl InFlight<'_> {
    /// Counts the request's outcome and how long it took.
    pub fn finish(self, outcome: &Result<RateLimitResponse, RlsError>) {
        let outcomes = self.outcomes;
        outcomes
            .duration
            .record(self.started.elapsed().as_secs_f64());
        match outcome {
            Ok(answer) if answer.overall_code == Code::OverLimit as i32 => {
                outcomes.over_limit.increment(1)
            }
            Ok(_) => outcomes.ok.increment(1),
            Err(error) => {
                let kind = KINDS.iter().position(|&k| k == error.kind());
                if let Some(counter) = kind.and_then(|i| outcomes.errors.get(i)) {
                    counter.increment(1);
                }
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.outcomes.in_flight.decrement(1);
    }
}

/// Counts one request refused as `kind` before it reached the decider (a body or message
/// over `--max-request-bytes`, bytes that are no request).
pub fn count_refusal(kind: ErrorKind) {
    metrics::counter!("rls_errors_total", "kind" => kind.label()).increment(1);
}
