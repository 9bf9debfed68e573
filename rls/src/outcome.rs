//! What requests came to, counted in one place for gRPC and `POST /json` alike:
//! `rls_requests_total{code}` for answers, `rls_errors_total{kind}` for refusals,
//! `rls_request_duration_seconds{backend}` for how long each took and
//! `rls_requests_in_flight` for those being answered.

use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use proto::rls::RateLimitResponse;
use proto::rls::rate_limit_response::Code;

use crate::error::RlsError;
use crate::stats::REQUEST_DURATION;

/// The request metrics of one front (gRPC or `/json`) of a store, registered once.
pub struct Outcomes {
    ok: Counter,
    over_limit: Counter,
    duration: Histogram,
    in_flight: Gauge,
}

impl Outcomes {
    /// The metrics of requests answered from the store named `backend` (`memory`,
    /// `redis`).
    pub fn new(backend: &'static str) -> Outcomes {
        let _ = crate::stats::prometheus();
        Outcomes {
            ok: metrics::counter!("rls_requests_total", "code" => "ok"),
            over_limit: metrics::counter!("rls_requests_total", "code" => "over_limit"),
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
                metrics::counter!("rls_errors_total", "kind" => error.kind().label()).increment(1);
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.outcomes.in_flight.decrement(1);
    }
}
