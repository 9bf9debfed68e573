//! gRPC refusals with the `http` crate alone: a request is gRPC when its `content-type` is
//! `application/grpc*`, and its refusal is a Trailers-Only response (HTTP 200, the status in
//! `grpc-status` among the headers), which every gRPC client, tonic's included, reads.

use http::header::{CONTENT_TYPE, HeaderValue};

/// What Envoy's local filter puts in `grpc-message`.
pub(crate) const MESSAGE: &str = "local_rate_limited";

/// Whether `request` is a gRPC call.
pub(crate) fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A Trailers-Only refusal with gRPC status `code` (8 `RESOURCE_EXHAUSTED` or 14
/// `UNAVAILABLE`), echoing the request's content type (`application/grpc+proto`...).
pub(crate) fn refusal<B: Default>(
    code: u8,
    content_type: Option<HeaderValue>,
) -> http::Response<B> {
    let mut response = http::Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/grpc")),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    headers.insert("grpc-message", HeaderValue::from_static(MESSAGE));
    response
}
