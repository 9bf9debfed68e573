//! An Envoy Rate Limit Service: answers `ShouldRateLimit` over gRPC from declarative quota
//! files, with token buckets (exact, GCRA) or the reference service's fixed windows.
//!
//! Modules, one line each:
//!
//! - [`settings`]: every setting, from flags, `RLS_*` or the reference's variables.
//! - [`cli`]: the command line, `serve`, `check`, `query` and `render`.
//! - [`server`]: serves gRPC and HTTP on bound listeners until shutdown.
//! - [`service`]: gRPC `ShouldRateLimit`, the face of the decider.
//! - [`refusal`]: gRPC requests the decoder refuses, answered `INVALID_ARGUMENT`.
//! - [`rlqs`]: gRPC `StreamRateLimitQuotas`: quota shares that Envoy enforces itself.
//! - [`http`]: health, readiness, `POST /json`, `/metrics` and `/config`.
//! - [`connections`]: the gRPC port's connections: maximum age, GOAWAY, draining.
//! - [`config_view`]: what `GET /config` shows, as text or JSON.
//! - [`decide`]: one request to one answer: admit, plan the checks, answer.
//! - [`admission`]: the line of requests waiting for a turn to be decided.
//! - [`request`]: what a well-formed request is.
//! - [`headers`]: the RateLimit-* response headers.
//! - [`health`]: `grpc.health.v1`, in step with readiness.
//! - [`outcome`]: answers and refusals counted, for gRPC and `/json` alike.
//! - [`stats`]: every metric exported, the Prometheus recorder, per-rule counters.
//! - [`snapshot`]: the quota files serving, their per-rule counters, and reloads.
//! - [`metadata`]: the answer's `dynamic_metadata`, as the reference builds it.
//! - [`store`]: where bucket state lives: in memory, in Redis; bucket keys.
//! - [`reload`]: quota files reloaded when they change.
//! - [`source`]: where the rules come from, quota files or xDS, and their readiness.
//! - [`xds`]: the xDS client, rule sets from a management server (Envoy Gateway's feed).
//! - [`tls`]: TLS on the gRPC listener, reloaded with its files; the xDS client's TLS.
//! - [`watch`]: a signal when named files change.
//! - [`error`]: what can go wrong, and the gRPC status it becomes.
//! - [`query`]: the `rls query` command.
//! - [`summary`]: the quota summary `rls check` prints and `/config` serves.
//! - [`render`]: the `rls render envoy|istio` command, the proxy half of the quotas.
//!
//! ```
//! use std::sync::Arc;
//! use config::{LoadOptions, QuotaSet};
//! use limiter::FakeClock;
//! use proto::common::{RateLimitDescriptor, rate_limit_descriptor::Entry};
//! use proto::rls::{RateLimitRequest, rate_limit_response::Code};
//! use rls::decide::{AnswerOptions, Decider};
//! use rls::store::MemoryStore;
//!
//! let yaml = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
//! let quotas = QuotaSet::from_sources([("edge.yaml", yaml)], &LoadOptions::default())?;
//! let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
//! let decider = Decider::new(quotas, MemoryStore::new(), clock, AnswerOptions::default());
//! let request = RateLimitRequest {
//!     domain: "edge".into(),
//!     descriptors: vec![RateLimitDescriptor {
//!         entries: vec![Entry { key: "path".into(), value: "/".into() }],
//!         ..Default::default()
//!     }],
//!     hits_addend: 1,
//! };
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let first = runtime.block_on(decider.decide(&request))?;
//! let second = runtime.block_on(decider.decide(&request))?;
//! assert_eq!(first.overall_code(), Code::Ok);
//! assert_eq!(second.overall_code(), Code::OverLimit);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admission;
pub mod cli;
pub mod config_view;
pub mod connections;
pub mod decide;
pub mod error;
pub mod headers;
pub mod health;
pub mod http;
pub mod metadata;
pub mod outcome;
pub mod query;
pub mod refusal;
pub mod reload;
pub mod render;
pub mod request;
pub mod rlqs;
pub mod server;
pub mod service;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod store;
pub mod summary;
pub mod tls;
pub mod watch;
pub mod xds;

pub use error::RlsError;
pub use server::{Listeners, serve};
pub use settings::Settings;

#[cfg(test)]
mod tests {
    #[test]
    fn the_crate_doc_lists_every_module() {
        let source = include_str!("lib.rs");
        let modules = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub mod "))
            .map(|name| name.trim_end_matches(';'));
        for module in modules {
            let line = format!("//! - [`{module}`]: ");
            assert!(
                source.contains(&line),
                "lib.rs's doc does not list {module}"
            );
        }
    }
}
