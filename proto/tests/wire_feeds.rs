//! Wire compatibility of the xDS (state of the world), `RateLimitConfig` and RLQS messages:
//! field numbers and types as upstream (Envoy's api/ tree, and envoyproxy/ratelimit's
//! rls_conf.proto).
//!
//! Expected bytes are written by hand: a tag byte is `field_number << 3 | wire_type`
//! (0 = varint, 2 = length-delimited).

use std::collections::BTreeMap;

use prost::Message;
use proto::core::{ControlPlane, Locality, Node, node::UserAgentVersionType};
use proto::rlqs::rate_limit_quota_response::{
    BucketAction,
    bucket_action::{self, AbandonAction, QuotaAssignmentAction},
};
use proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;
use proto::rlqs::{BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports};
use proto::rls_config::{
    RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitReplace, RateLimitUnit,
};
use proto::rpc::Status;
use proto::types::{RateLimitStrategy, TokenBucket, rate_limit_strategy};
use proto::wkt::{Any, Duration, UInt32Value};
use proto::xds::{DiscoveryRequest, DiscoveryResponse};

#[test]
fn discovery_request_uses_envoy_field_numbers() {
    let request = DiscoveryRequest {
        version_info: "1".into(),
        node: Some(Node {
            id: "n".into(),
            ..Default::default()
        }),
        resource_names: vec!["r".into()],
        type_url: "t".into(),
        response_nonce: "x".into(),
        error_detail: Some(Status {
            code: 3,
            message: "m".into(),
            details: vec![],
        }),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'1',                 // version_info = 1
        0x12, 0x03, 0x0a, 0x01, b'n',     // node = 2 { id = 1 }
        0x1a, 0x01, b'r',                 // resource_names = 3
        0x22, 0x01, b't',                 // type_url = 4
        0x2a, 0x01, b'x',                 // response_nonce = 5
        0x32, 0x05,                       // error_detail = 6 (google.rpc.Status)
        0x08, 0x03,                       //   code = 1
        0x12, 0x01, b'm',                 //   message = 2
    ];
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn node_uses_envoy_field_numbers() {
    let node = Node {
        id: "i".into(),
        cluster: "c".into(),
        metadata: None,
        locality: Some(Locality {
            region: "r".into(),
            ..Default::default()
        }),
        user_agent_name: "u".into(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion("v".into())),
        client_features: vec!["f".into()],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'i',                 // id = 1
        0x12, 0x01, b'c',                 // cluster = 2
        0x22, 0x03, 0x0a, 0x01, b'r',     // locality = 4 { region = 1 }
        0x32, 0x01, b'u',                 // user_agent_name = 6
        0x3a, 0x01, b'v',                 // user_agent_version = 7
        0x52, 0x01, b'f',                 // client_features = 10
    ];
    assert_eq!(node.encode_to_vec(), expected);
}

#[test]
fn discovery_response_decodes_from_envoy_field_numbers() {
    #[rustfmt::skip]
    let bytes = [
        0x0a, 0x01, b'1',                 // version_info = 1
        0x12, 0x06,                       // resources = 2 (Any)
        0x0a, 0x01, b't',                 //   type_url = 1
        0x12, 0x01, 0x01,                 //   value = 2
        0x18, 0x01,                       // canary = 3
        0x22, 0x01, b't',                 // type_url = 4
        0x2a, 0x01, b'x',                 // nonce = 5
        0x32, 0x03, 0x0a, 0x01, b'c',     // control_plane = 6 { identifier = 1 }
        0x3a, 0x00,                       // resource_errors = 7: not ours, skipped
    ];
    let response = DiscoveryResponse::decode(&bytes[..]).unwrap();
    assert_eq!(
        response,
        DiscoveryResponse {
            version_info: "1".into(),
            resources: vec![Any {
                type_url: "t".into(),
                value: vec![1].into(),
            }],
            canary: true,
            type_url: "t".into(),
            nonce: "x".into(),
            control_plane: Some(ControlPlane {
                identifier: "c".into()
            }),
        }
    );
}

#[test]
fn rate_limit_config_uses_the_reference_field_numbers() {
    let config = RateLimitConfig {
        name: "n".into(),
        domain: "d".into(),
        descriptors: vec![RateLimitDescriptor {
            key: "k".into(),
            value: "v".into(),
            rate_limit: Some(RateLimitPolicy {
                unit: RateLimitUnit::Week.into(),
                requests_per_unit: 5,
                unlimited: true,
                name: "l".into(),
                replaces: vec![RateLimitReplace { name: "o".into() }],
            }),
            descriptors: vec![RateLimitDescriptor::default()],
            shadow_mode: true,
            detailed_metric: true,
            quota_mode: true,
            metadata: None,
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'n',                 // name = 1
        0x12, 0x01, b'd',                 // domain = 2
        0x1a, 0x1e,                       // descriptors = 3, 30 bytes
        0x0a, 0x01, b'k',                 //   key = 1
        0x12, 0x01, b'v',                 //   value = 2
        0x1a, 0x0e,                       //   rate_limit = 3, 14 bytes
        0x08, 0x07,                       //     unit = 1: WEEK is 7
        0x10, 0x05,                       //     requests_per_unit = 2
        0x18, 0x01,                       //     unlimited = 3
        0x22, 0x01, b'l',                 //     name = 4
        0x2a, 0x03, 0x0a, 0x01, b'o',     //     replaces = 5 { name = 1 }
        0x22, 0x00,                       //   descriptors = 4 (one, empty)
        0x28, 0x01,                       //   shadow_mode = 5
        0x30, 0x01,                       //   detailed_metric = 6
        0x38, 0x01,                       //   quota_mode = 7
    ];
    assert_eq!(config.encode_to_vec(), expected);
    assert_eq!(RateLimitUnit::Month as i32, 5);
    assert_eq!(RateLimitUnit::Year as i32, 6);
}

fn bucket(key: &str, value: &str) -> BucketId {
    BucketId {
        bucket: BTreeMap::from([(key.to_string(), value.to_string())]),
    }
}

#[test]
fn usage_reports_use_envoy_field_numbers() {
    let reports = RateLimitQuotaUsageReports {
        domain: "d".into(),
        bucket_quota_usages: vec![BucketQuotaUsage {
            bucket_id: Some(bucket("k", "v")),
            time_elapsed: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            num_requests_allowed: 7,
            num_requests_denied: 2,
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'd',                 // domain = 1
        0x12, 0x12,                       // bucket_quota_usages = 2, 18 bytes
        0x0a, 0x08,                       //   bucket_id = 1
        0x0a, 0x06,                       //     bucket = 1 (a map entry)
        0x0a, 0x01, b'k',                 //       key = 1
        0x12, 0x01, b'v',                 //       value = 2
        0x12, 0x02, 0x08, 0x05,           //   time_elapsed = 2 { seconds = 1 }
        0x18, 0x07,                       //   num_requests_allowed = 3
        0x20, 0x02,                       //   num_requests_denied = 4
    ];
    assert_eq!(reports.encode_to_vec(), expected);
}

#[test]
fn bucket_actions_use_envoy_field_numbers() {
    let token_bucket = RateLimitStrategy {
        strategy: Some(rate_limit_strategy::Strategy::TokenBucket(TokenBucket {
            max_tokens: 20,
            tokens_per_fill: Some(UInt32Value { value: 20 }),
            fill_interval: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
        })),
    };
    let response = RateLimitQuotaResponse {
        bucket_action: vec![
            BucketAction {
                bucket_id: Some(bucket("k", "v")),
                bucket_action: Some(bucket_action::BucketAction::QuotaAssignmentAction(
                    QuotaAssignmentAction {
                        assignment_time_to_live: Some(Duration {
                            seconds: 3,
                            nanos: 0,
                        }),
                        rate_limit_strategy: Some(token_bucket),
                    },
                )),
            },
            BucketAction {
                bucket_id: None,
                bucket_action: Some(bucket_action::BucketAction::AbandonAction(AbandonAction {})),
            },
        ],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x1e,                       // bucket_action = 1, 30 bytes
        0x0a, 0x08,                       //   bucket_id = 1
        0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v',
        0x12, 0x12,                       //   quota_assignment_action = 2, 18 bytes
        0x12, 0x02, 0x08, 0x03,           //     assignment_time_to_live = 2 { seconds = 1 }
        0x1a, 0x0c,                       //     rate_limit_strategy = 3, 12 bytes
        0x1a, 0x0a,                       //       token_bucket = 3, 10 bytes
        0x08, 0x14,                       //         max_tokens = 1
        0x12, 0x02, 0x08, 0x14,           //         tokens_per_fill = 2 { value = 1 }
        0x1a, 0x02, 0x08, 0x01,           //         fill_interval = 3 { seconds = 1 }
        0x0a, 0x02,                       // bucket_action = 1, 2 bytes
        0x1a, 0x00,                       //   abandon_action = 3
    ];
    assert_eq!(response.encode_to_vec(), expected);

    let deny_all = RateLimitStrategy {
        strategy: Some(rate_limit_strategy::Strategy::BlanketRule(
            rate_limit_strategy::BlanketRule::DenyAll.into(),
        )),
    };
    assert_eq!(deny_all.encode_to_vec(), [0x08, 0x01]); // blanket_rule = 1: DENY_ALL is 1
}

#[test]
fn grpc_service_names_match_envoy() {
    use proto::rlqs::rate_limit_quota_service_server::SERVICE_NAME as RLQS;
    use proto::xds::aggregated_discovery_service_server::SERVICE_NAME as ADS;
    assert_eq!(ADS, "envoy.service.discovery.v3.AggregatedDiscoveryService");
    assert_eq!(
        RLQS,
        "envoy.service.rate_limit_quota.v3.RateLimitQuotaService"
    );
    assert_eq!(
        proto::RATE_LIMIT_CONFIG_TYPE_URL,
        "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig"
    );
}
