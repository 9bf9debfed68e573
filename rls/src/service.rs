//! `RlsService`: the gRPC face of the [`Decider`], Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use std::sync::Arc;
use std::time::Duration;

use proto::rls::rate_limit_service_server::RateLimitService;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::decide::Decider;
use crate::outcome::Outcomes;
use crate::store::BucketStore;

/// The gRPC rate limit service.
pub struct RlsService<S> {
    decider: Arc<Decider<S>>,
    outcomes: Outcomes,
}

impl<S: BucketStore> RlsService<S> {
    /// A service answering with `decider`.
    pub fn new(decider: Arc<Decider<S>>) -> Self {
        let outcomes = Outcomes::new(decider.store().kind());
        RlsService { decider, outcomes }
    }
}

#[tonic::async_trait]
impl<S: BucketStore> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let caller_timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(grpc_timeout);
        let request = request.into_inner();
        let in_flight = self.outcomes.start();
        let outcome = self.decider.decide_within(&request, caller_timeout).await;
        in_flight.finish(&outcome);
        outcome.map(Response::new).map_err(|error| {
            tracing::debug!(domain = %request.domain, %error, "request refused");
            error.to_status()
        })
    }
}

/// A `grpc-timeout` header's value (gRPC over HTTP/2: at most 8 digits and a unit), or
/// `None` if malformed.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::grpc_timeout;

    #[test]
    fn grpc_timeout_values_parse_by_their_unit_and_malformed_ones_do_not() {
        assert_eq!(grpc_timeout("20m"), Some(Duration::from_millis(20)));
        assert_eq!(grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(
            grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "20", "20x", "-1m", "123456789m", "1.5S", "२m"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
