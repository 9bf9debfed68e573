//! `RlsService`: the gRPC face of the [`Decider`], Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use std::sync::Arc;

use proto::rls::rate_limit_response::Code;
use proto::rls::rate_limit_service_server::RateLimitService;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::decide::Decider;
use crate::store::BucketStore;

/// The gRPC rate limit service.
pub struct RlsService<S> {
    decider: Arc<Decider<S>>,
}

impl<S> RlsService<S> {
    /// A service answering with `decider`.
    pub fn new(decider: Arc<Decider<S>>) -> Self {
        RlsService { decider }
    }
}

#[tonic::async_trait]
impl<S: BucketStore> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        match self.decider.decide(&request).await {
            Ok(answer) => {
                record_answer(answer.overall_code);
                Ok(Response::new(answer))
            }
            Err(error) => {
                metrics::counter!("rls_errors_total", "kind" => error.kind()).increment(1);
                tracing::debug!(domain = %request.domain, %error, "request refused");
                Err(error.to_status())
            }
        }
    }
}

/// Counts one answer by its overall code.
pub(crate) fn record_answer(code: i32) {
    let code = if code == Code::OverLimit as i32 {
        "over_limit"
    } else {
        "ok"
    };
    metrics::counter!("rls_requests_total", "code" => code).increment(1);
}
