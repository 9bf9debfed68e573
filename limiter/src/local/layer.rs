//! [`RateLimitLayer`] and [`RateLimit`]: local limits as tower middleware for `http` services
//! (axum, hyper, tonic servers). Refusals are answered in place; allowed requests go on with
//! the [`Verdict`] in their extensions and get the `x-ratelimit-*` headers on the way out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::local::grpc;
use crate::local::headers::{write_quota, write_retry_after};
use crate::local::limits::LocalLimits;
use crate::local::rules::Settings;
use crate::local::verdict::{Outcome, Quota, Verdict};

/// Applies [`LocalLimits`] to every request of the services it wraps.
///
/// ```no_run
/// use axum::{Router, routing::get};
///
/// # fn app() -> Result<Router, limiter::LimiterError> {
/// let limits = limiter::LocalLimits::from_quota_file("quotas/page.yaml")?;
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(limiter::RateLimitLayer::new(limits));
/// # Ok(app)
/// # }
/// ```
///
/// The refusal is `429 Too Many Requests` (the section's `status`), with an empty body of the
/// service's body type, or for a gRPC request (`content-type: application/grpc*`) a
/// Trailers-Only response with `grpc-status` 8 `RESOURCE_EXHAUSTED` (14 `UNAVAILABLE` when
/// `rate_limited_as_resource_exhausted: false`) and `grpc-message: local_rate_limited`.
/// Both carry `retry-after` and, unless turned off, the `x-ratelimit-*` headers.
///
/// `remote_address` actions read the peer from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) or from a plain `SocketAddr`
/// request extension; with tonic, copy `TcpConnectInfo::remote_addr()` into one with a
/// `tower::util::MapRequestLayer` placed before this layer.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limits: LocalLimits,
}

impl RateLimitLayer {
    /// A layer checking `limits` (a clone shares the buckets, so keep one to reload).
    pub fn new(limits: LocalLimits) -> Self {
        RateLimitLayer { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes: checks each request, refuses it in place or calls
/// the inner service.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limits: LocalLimits,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` directly, without a layer.
    pub fn new(inner: S, limits: LocalLimits) -> Self {
        RateLimit { inner, limits }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (verdict, settings) = self.limits.evaluate(&request);
        if let Outcome::Denied { retry_after } = verdict.outcome {
            let response = refusal(&request, &verdict, retry_after, &settings);
            return ResponseFuture {
                kind: Kind::Refused {
                    response: Some(response),
                },
            };
        }
        request.extensions_mut().insert(verdict);
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(request),
                quota: verdict.quota.filter(|_| settings.headers),
            },
        }
    }
}

/// The answer to a refused request.
fn refusal<ReqBody, ResBody: Default>(
    request: &Request<ReqBody>,
    verdict: &Verdict,
    retry_after: u64,
    settings: &Settings,
) -> Response<ResBody> {
    let mut response = if grpc::is_grpc(request) {
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        grpc::refusal(settings.grpc_status, content_type)
    } else {
        let mut response = Response::new(ResBody::default());
        // Validated to 400..=599 when the section was loaded.
        *response.status_mut() =
            StatusCode::from_u16(settings.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        response
    };
    let headers = response.headers_mut();
    if let Some(quota) = verdict.quota.as_ref().filter(|_| settings.headers) {
        write_quota(headers, quota);
    }
    write_retry_after(headers, retry_after);
    response
}

pin_project! {
    /// The future of [`RateLimit`]: the inner service's response with the quota headers
    /// added, or the refusal.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProjection]
    enum Kind<F, B> {
        Inner {
            #[pin]
            future: F,
            quota: Option<Quota>,
        },
        Refused {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Inner { future, quota } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(quota) = quota.take() {
                    write_quota(response.headers_mut(), &quota);
                }
                Poll::Ready(Ok(response))
            }
            KindProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
