//! The load harness for Envoy rate limit services: drives any RLS over gRPC (closed or open
//! loop, hot key, uniform or Zipf keys), and reports decisions per second, latency
//! percentiles, answers by code and accuracy (allowed versus what the quota permits), as
//! ratios to a no-op server measured the same way.
//!
//! Modules: [`spec`] (a phase: flags or scenario file), [`workload`] and [`sampler`] (the
//! pre-encoded requests and which key comes next), [`generator`] (connections, workers,
//! pacing), [`stats`] (HDR histograms, codes, per-second series), [`accuracy`] (permitted
//! hits and overshoot), [`report`] and [`chart`] (text, JSON, HTML/SVG), [`provenance`] (the
//! date, command, targets, quota and commit every report carries), [`baseline`] (the
//! no-op RLS), [`run`], [`compare`], [`stack`] and [`http`] (the subcommands; `http` loads
//! an HTTP proxy such as Envoy), [`processes`] (the processes the stack starts), [`cpu`]
//! (CPU lists and CPU time per process), [`fleet`] (the `rls` replicas and Redis one
//! measured side runs on), [`scrape`] (their metrics).
//!
//! ```
//! use std::sync::Arc;
//! use loadtest::baseline::BaselineServer;
//! use loadtest::run::measure;
//! use loadtest::spec::PhaseSpec;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let server = BaselineServer::start().await?;
//! let spec = PhaseSpec {
//!     domain: "edge".into(),
//!     descriptors: vec!["path=/".into()],
//!     concurrency: 4,
//!     duration: std::time::Duration::from_millis(200),
//!     warmup: std::time::Duration::ZERO,
//!     ..PhaseSpec::default()
//! };
//! let measured = measure(&[server.addr.to_string()], &spec, None, false, false).await?;
//! assert_eq!(measured.run.answers, measured.run.count("OK"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod accuracy;
pub mod baseline;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod error;
pub mod fleet;
pub mod generator;
pub mod http;
pub mod processes;
pub mod progress;
pub mod provenance;
pub mod report;
pub mod run;
pub mod sampler;
pub mod scrape;
pub mod spec;
pub mod stack;
pub mod stats;
pub mod wire;
pub mod workload;

pub use error::HarnessError;
