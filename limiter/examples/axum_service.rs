//! An axum service limited per pod by the `local` section of a quota file.
//!
//! Run: `cargo run -p limiter --example axum_service -- limiter/examples/page.yaml`, then
//! `curl -i http://127.0.0.1:3000/` a few times: the fourth quick request gets 429 with
//! `retry-after` and the `x-ratelimit-*` headers (three at once per client address, in
//! `page.yaml`).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use limiter::{LocalLimits, RateLimitLayer};

/// The service: one route, behind the local limits.
pub fn app(limits: LocalLimits) -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(limits))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "limiter/examples/page.yaml".to_owned());
    let limits = LocalLimits::from_quota_file(&path)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Connect info gives `remote_address` actions the peer's address.
    let service = app(limits).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
