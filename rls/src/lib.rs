//! An Envoy Rate Limit Service: answers `ShouldRateLimit` over gRPC from declarative quota
//! files, with token buckets (exact, GCRA) or the reference service's fixed windows.
//!
//! Modules: [`settings`] (flags and environment), [`decide`] (one request to one answer),
//! [`store`] (where bucket state lives: [`store::MemoryStore`]), [`service`] (gRPC),
//! [`http`] (health, `/json`, `/metrics`), [`server`] (serve both until shutdown),
//! [`reload`] (quota files reloaded when they change), [`rlqs`] (the Rate Limit Quota
//! Service: Envoy enforces shares of the quotas that rls assigns), [`query`], [`summary`]
//! and [`render`] (the `rls query`, `rls check` and `rls render` commands).
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
pub mod decide;
pub mod error;
pub mod headers;
pub mod http;
pub mod query;
pub mod reload;
pub mod render;
pub mod request;
pub mod rlqs;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod summary;

pub use error::RlsError;
pub use server::{Listeners, serve};
pub use settings::Settings;
