//! Envoy's rate limit service protocol (`envoy.service.ratelimit.v3`) as Rust types: prost
//! messages, tonic client and server stubs, and proto3-JSON serde impls, all generated at build
//! time from the wire-compatible `.proto` subset in `proto/proto/`.
//!
//! Modules mirror the proto packages under [`envoy`]; the short aliases are what callers use:
//!
//! - [`rls`] holds `RateLimitRequest`, `RateLimitResponse` and the `RateLimitService` stubs.
//! - [`common`] holds `RateLimitDescriptor` and its `Entry` / `RateLimitOverride`.
//! - [`core`] holds `HeaderValue`.
//! - [`types`] holds `RateLimitUnit`, `TokenBucket` and `RateLimitStrategy`.
//! - [`xds`] holds the Aggregated Discovery Service (state of the world):
//!   `DiscoveryRequest`, `DiscoveryResponse` and the client and server stubs; [`core`]
//!   holds its `Node`, and [`rpc`] the `google.rpc.Status` of a NACK.
//! - [`rls_config`] holds envoyproxy/ratelimit's `RateLimitConfig`, the resource its xDS
//!   feed carries ([`RATE_LIMIT_CONFIG_TYPE_URL`]).
//! - [`rlqs`] holds the Rate Limit Quota Service: `RateLimitQuotaUsageReports`,
//!   `RateLimitQuotaResponse`, `BucketId` and the stubs.
//! - [`wkt`] is `pbjson-types`: the `google.protobuf` well-known types (`Duration`, `Struct`,
//!   `UInt64Value`, `Value`, ...) with their proto3 JSON forms.
//!
//! Every message implements `serde::Serialize` / `Deserialize` in the proto3 JSON mapping
//! (camelCase names, enums by name, `Duration` as `"1.5s"`, default values omitted):
//!
//! ```
//! use proto::common::{RateLimitDescriptor, rate_limit_descriptor::Entry};
//! use proto::rls::RateLimitRequest;
//!
//! let request = RateLimitRequest {
//!     domain: "edge".into(),
//!     descriptors: vec![RateLimitDescriptor {
//!         entries: vec![Entry { key: "remote_address".into(), value: "10.0.0.1".into() }],
//!         hits_addend: Some(proto::wkt::UInt64Value { value: 5 }),
//!         ..Default::default()
//!     }],
//!     hits_addend: 0,
//! };
//!
//! let json = serde_json::to_string(&request).unwrap();
//! assert_eq!(
//!     json,
//!     r#"{"domain":"edge","descriptors":[{"entries":[{"key":"remote_address","value":"10.0.0.1"}],"hitsAddend":"5"}]}"#
//! );
//! let back: RateLimitRequest = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, request);
//! ```

pub use envoy::config::core::v3 as core;
pub use envoy::extensions::common::ratelimit::v3 as common;
pub use envoy::service::discovery::v3 as xds;
pub use envoy::service::rate_limit_quota::v3 as rlqs;
pub use envoy::service::ratelimit::v3 as rls;
pub use envoy::r#type::v3 as types;
pub use google::rpc;
pub use pbjson_types as wkt;
pub use ratelimit::config::ratelimit::v3 as rls_config;

/// The xDS type URL of [`rls_config::RateLimitConfig`], as Envoy Gateway serves it.
pub const RATE_LIMIT_CONFIG_TYPE_URL: &str =
    "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig";

/// The encoded `FileDescriptorSet` of our protos and their imports, for gRPC server
/// reflection (`tonic-reflection`) or dynamic decoding.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));

/// Generated code for the Envoy proto packages, one module per package.
///
/// The nesting must match the package names exactly: generated code refers to other packages
/// by relative `super::` paths.
pub mod envoy {
    /// `envoy.config.*` packages.
    pub mod config {
        /// `envoy.config.core.*` packages.
        pub mod core {
            /// `envoy.config.core.v3`: [`HeaderValue`](v3::HeaderValue), and
            /// [`Node`](v3::Node) for xDS.
            #[allow(missing_docs)]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.config.core.v3.rs"));
                include!(concat!(env!("OUT_DIR"), "/envoy.config.core.v3.serde.rs"));
            }
        }
    }

    /// `envoy.extensions.*` packages.
    pub mod extensions {
        /// `envoy.extensions.common.*` packages.
        pub mod common {
            /// `envoy.extensions.common.ratelimit.*` packages.
            pub mod ratelimit {
                /// `envoy.extensions.common.ratelimit.v3`:
                /// [`RateLimitDescriptor`](v3::RateLimitDescriptor).
                #[allow(missing_docs)]
                pub mod v3 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/envoy.extensions.common.ratelimit.v3.rs"
                    ));
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/envoy.extensions.common.ratelimit.v3.serde.rs"
                    ));
                }
            }
        }
    }

    /// `envoy.type.*` packages.
    pub mod r#type {
        /// `envoy.type.v3`: [`RateLimitUnit`](v3::RateLimitUnit),
        /// [`TokenBucket`](v3::TokenBucket), [`RateLimitStrategy`](v3::RateLimitStrategy).
        #[allow(missing_docs)]
        pub mod v3 {
            include!(concat!(env!("OUT_DIR"), "/envoy.r#type.v3.rs"));
            include!(concat!(env!("OUT_DIR"), "/envoy.r#type.v3.serde.rs"));
        }
    }

    /// `envoy.service.*` packages.
    pub mod service {
        /// `envoy.service.ratelimit.*` packages.
        pub mod ratelimit {
            /// `envoy.service.ratelimit.v3`: [`RateLimitRequest`](v3::RateLimitRequest),
            /// [`RateLimitResponse`](v3::RateLimitResponse) and the `RateLimitService` client
            /// and server.
            #[allow(missing_docs)]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.service.ratelimit.v3.rs"));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/envoy.service.ratelimit.v3.serde.rs"
                ));
            }
        }

        /// `envoy.service.discovery.*` packages.
        pub mod discovery {
            /// `envoy.service.discovery.v3`: the state-of-the-world
            /// [`DiscoveryRequest`](v3::DiscoveryRequest) and
            /// [`DiscoveryResponse`](v3::DiscoveryResponse), and the
            /// `AggregatedDiscoveryService` client and server.
            #[allow(missing_docs)]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.service.discovery.v3.rs"));
            }
        }

        /// `envoy.service.rate_limit_quota.*` packages.
        pub mod rate_limit_quota {
            /// `envoy.service.rate_limit_quota.v3`: usage reports, bucket actions and the
            /// `RateLimitQuotaService` client and server.
            #[allow(missing_docs)]
            pub mod v3 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/envoy.service.rate_limit_quota.v3.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/envoy.service.rate_limit_quota.v3.serde.rs"
                ));
            }
        }
    }
}

/// `google.*` packages other than the well-known types.
pub mod google {
    /// `google.rpc`: [`Status`](rpc::Status), the error of an xDS NACK.
    #[allow(missing_docs)]
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// envoyproxy/ratelimit's own packages.
pub mod ratelimit {
    /// `ratelimit.config.*` packages.
    pub mod config {
        /// `ratelimit.config.ratelimit.*` packages.
        pub mod ratelimit {
            /// `ratelimit.config.ratelimit.v3`: [`RateLimitConfig`](v3::RateLimitConfig).
            #[allow(missing_docs)]
            pub mod v3 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/ratelimit.config.ratelimit.v3.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/ratelimit.config.ratelimit.v3.serde.rs"
                ));
            }
        }
    }
}
