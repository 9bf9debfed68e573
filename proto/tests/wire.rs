//! Wire compatibility: our messages encode with Envoy's field numbers and types.
//!
//! Expected bytes are written by hand from the upstream .proto files: a tag byte is
//! `field_number << 3 | wire_type` (0 = varint, 2 = length-delimited).

use prost::Message;
use proto::common::{
    RateLimitDescriptor,
    rate_limit_descriptor::{Entry, RateLimitOverride},
};
use proto::core::HeaderValue;
use proto::rls::{
    RateLimitRequest, RateLimitResponse,
    rate_limit_response::{
        Code, DescriptorStatus, Quota, RateLimit, quota::ExpirationSpecifier, rate_limit::Unit,
    },
};
use proto::types::RateLimitUnit;
use proto::wkt::{Duration, Timestamp, UInt64Value};

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn request_fields_use_envoy_field_numbers() {
    let request = RateLimitRequest {
        domain: "a".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![entry("k", "v")],
            ..Default::default()
        }],
        hits_addend: 2,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'a',                 // domain = 1, string
        0x12, 0x08,                       // descriptors = 2, 8 bytes
        0x0a, 0x06,                       //   entries = 1, 6 bytes
        0x0a, 0x01, b'k',                 //     key = 1
        0x12, 0x01, b'v',                 //     value = 2
        0x18, 0x02,                       // hits_addend = 3, varint
    ];
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn descriptor_limit_override_and_hits_addend_wrapper_use_envoy_field_numbers() {
    let descriptor = RateLimitDescriptor {
        entries: vec![],
        limit: Some(RateLimitOverride {
            requests_per_unit: 10,
            unit: RateLimitUnit::Minute.into(),
        }),
        hits_addend: Some(UInt64Value { value: 3 }),
    };
    #[rustfmt::skip]
    let expected = [
        0x12, 0x04,                       // limit = 2, 4 bytes
        0x08, 0x0a,                       //   requests_per_unit = 1, 10
        0x10, 0x02,                       //   unit = 2, MINUTE
        0x1a, 0x02,                       // hits_addend = 3, UInt64Value message
        0x08, 0x03,                       //   value = 1, 3
    ];
    assert_eq!(descriptor.encode_to_vec(), expected);
}

#[test]
fn descriptor_hits_addend_of_zero_is_present_on_the_wire() {
    // The wrapper distinguishes "check without counting" (Some(0)) from "not set" (None).
    let descriptor = RateLimitDescriptor {
        hits_addend: Some(UInt64Value { value: 0 }),
        ..Default::default()
    };
    assert_eq!(descriptor.encode_to_vec(), [0x1a, 0x00]);
    let decoded = RateLimitDescriptor::decode(&[0x1a, 0x00][..]).unwrap();
    assert_eq!(decoded.hits_addend, Some(UInt64Value { value: 0 }));
}

#[test]
fn response_fields_use_envoy_field_numbers() {
    let response = RateLimitResponse {
        overall_code: Code::OverLimit.into(),
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit.into(),
            current_limit: Some(RateLimit {
                requests_per_unit: 1,
                unit: Unit::Week.into(),
                name: "w".into(),
            }),
            limit_remaining: 4,
            duration_until_reset: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
            quota: None,
        }],
        response_headers_to_add: vec![HeaderValue {
            key: "x".into(),
            value: "y".into(),
            raw_value: vec![],
        }],
        request_headers_to_add: vec![HeaderValue {
            key: "r".into(),
            value: String::new(),
            raw_value: vec![0xff],
        }],
        raw_body: b"no".to_vec(),
        dynamic_metadata: None,
        quota: None,
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 0x02,                       // overall_code = 1, OVER_LIMIT
        0x12, 0x11,                       // statuses = 2, 17 bytes
        0x08, 0x02,                       //   code = 1, OVER_LIMIT
        0x12, 0x07,                       //   current_limit = 2, 7 bytes
        0x08, 0x01,                       //     requests_per_unit = 1
        0x10, 0x07,                       //     unit = 2, WEEK = 7
        0x1a, 0x01, b'w',                 //     name = 3
        0x18, 0x04,                       //   limit_remaining = 3
        0x22, 0x02,                       //   duration_until_reset = 4, Duration message
        0x08, 0x01,                       //     seconds = 1
        0x1a, 0x06,                       // response_headers_to_add = 3, 6 bytes
        0x0a, 0x01, b'x',                 //   key = 1
        0x12, 0x01, b'y',                 //   value = 2
        0x22, 0x06,                       // request_headers_to_add = 4, 6 bytes
        0x0a, 0x01, b'r',                 //   key = 1
        0x1a, 0x01, 0xff,                 //   raw_value = 3, bytes
        0x2a, 0x02, b'n', b'o',           // raw_body = 5, bytes
    ];
    assert_eq!(response.encode_to_vec(), expected);
}

#[test]
fn response_metadata_and_quotas_decode_from_envoy_field_numbers() {
    #[rustfmt::skip]
    let upstream = [
        0x32, 0x00,                       // dynamic_metadata = 6, empty Struct
        0x3a, 0x02,                       // quota = 7, 2 bytes
        0x08, 0x05,                       //   requests = 1
        0x12, 0x0c,                       // statuses = 2, 12 bytes
        0x2a, 0x0a,                       //   quota = 5, 10 bytes
        0x08, 0x01,                       //     requests = 1
        0x12, 0x02,                       //     valid_until = 2 (oneof), Timestamp message
        0x08, 0x09,                       //       seconds = 1
        0x1a, 0x02, b'i', b'd',           //     id = 3
    ];
    let response = RateLimitResponse::decode(&upstream[..]).unwrap();

    assert_eq!(response.dynamic_metadata, Some(Default::default()));
    assert_eq!(
        response.quota,
        Some(Quota {
            requests: 5,
            ..Default::default()
        })
    );
    assert_eq!(
        response.statuses[0].quota,
        Some(Quota {
            requests: 1,
            expiration_specifier: Some(ExpirationSpecifier::ValidUntil(Timestamp {
                seconds: 9,
                nanos: 0,
            })),
            id: "id".into(),
        })
    );
    // Fields upstream hides (quota) survive a round trip too.
    assert_eq!(
        RateLimitResponse::decode(&*response.encode_to_vec()).unwrap(),
        response
    );
}

#[test]
fn enum_numbers_match_envoy() {
    assert_eq!(Code::Unknown as i32, 0);
    assert_eq!(Code::Ok as i32, 1);
    assert_eq!(Code::OverLimit as i32, 2);

    let units = [
        Unit::Unknown,
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Month,
        Unit::Year,
        Unit::Week,
    ];
    for (number, unit) in units.into_iter().enumerate() {
        assert_eq!(unit as i32, number as i32, "{unit:?}");
    }

    // envoy.type.v3.RateLimitUnit stops at YEAR; WEEK exists only in RateLimit.Unit.
    let type_units = [
        RateLimitUnit::Unknown,
        RateLimitUnit::Second,
        RateLimitUnit::Minute,
        RateLimitUnit::Hour,
        RateLimitUnit::Day,
        RateLimitUnit::Month,
        RateLimitUnit::Year,
    ];
    for (number, unit) in type_units.into_iter().enumerate() {
        assert_eq!(unit as i32, number as i32, "{unit:?}");
    }
    assert_eq!(RateLimitUnit::try_from(7).ok(), None);
}

#[test]
fn grpc_service_name_matches_envoy() {
    use proto::rls::rate_limit_service_server::SERVICE_NAME;
    assert_eq!(SERVICE_NAME, "envoy.service.ratelimit.v3.RateLimitService");
}

#[test]
fn file_descriptor_set_names_the_upstream_files() {
    // Just enough of google.protobuf.FileDescriptorSet to read the file names; prost skips
    // the other fields.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        file: Vec<FileDescriptorProto>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct FileDescriptorProto {
        #[prost(string, tag = "1")]
        name: String,
    }

    let set = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let names: Vec<&str> = set.file.iter().map(|file| file.name.as_str()).collect();
    for file in [
        "envoy/service/ratelimit/v3/rls.proto",
        "envoy/extensions/common/ratelimit/v3/ratelimit.proto",
        "envoy/type/v3/ratelimit_unit.proto",
        "envoy/config/core/v3/base.proto",
        "envoy/service/discovery/v3/ads.proto",
        "envoy/service/discovery/v3/discovery.proto",
        "google/rpc/status.proto",
        "ratelimit/config/ratelimit/v3/rls_conf.proto",
        "envoy/service/rate_limit_quota/v3/rlqs.proto",
        "envoy/type/v3/ratelimit_strategy.proto",
        "envoy/type/v3/token_bucket.proto",
    ] {
        assert!(names.contains(&file), "{file} missing from {names:?}");
    }
}
