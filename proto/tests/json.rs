//! proto3 JSON: the form the `/json` endpoint and the test case files use.

use proto::common::{
    RateLimitDescriptor,
    rate_limit_descriptor::{Entry, RateLimitOverride},
};
use proto::core::HeaderValue;
use proto::rls::{
    RateLimitRequest, RateLimitResponse,
    rate_limit_response::{Code, DescriptorStatus, RateLimit, rate_limit::Unit},
};
use proto::types::RateLimitUnit;
use proto::wkt::{Duration, UInt64Value};
use serde_json::json;

#[test]
fn request_parses_from_camel_case_json() {
    let request: RateLimitRequest = serde_json::from_value(json!({
        "domain": "edge",
        "hitsAddend": 2,
        "descriptors": [
            {
                "entries": [{"key": "remote_address", "value": "10.0.0.1"}],
                "limit": {"requestsPerUnit": 10, "unit": "MINUTE"},
                "hitsAddend": "7"
            },
            {
                "entries": [{"key": "path", "value": "/"}],
                "hitsAddend": 0
            },
            {"entries": [{"key": "user"}]}
        ]
    }))
    .unwrap();

    let expected = RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![
            RateLimitDescriptor {
                entries: vec![Entry {
                    key: "remote_address".into(),
                    value: "10.0.0.1".into(),
                }],
                limit: Some(RateLimitOverride {
                    requests_per_unit: 10,
                    unit: RateLimitUnit::Minute.into(),
                }),
                hits_addend: Some(UInt64Value { value: 7 }),
            },
            RateLimitDescriptor {
                entries: vec![Entry {
                    key: "path".into(),
                    value: "/".into(),
                }],
                limit: None,
                hits_addend: Some(UInt64Value { value: 0 }),
            },
            RateLimitDescriptor {
                entries: vec![Entry {
                    key: "user".into(),
                    value: String::new(),
                }],
                ..Default::default()
            },
        ],
        hits_addend: 2,
    };
    assert_eq!(request, expected);
}

#[test]
fn request_also_parses_from_proto_field_names() {
    // proto3 JSON parsers accept the original snake_case names as well.
    let request: RateLimitRequest = serde_json::from_value(json!({
        "domain": "edge",
        "hits_addend": 3,
        "descriptors": [{"entries": [{"key": "k", "value": "v"}], "hits_addend": 1}]
    }))
    .unwrap();
    assert_eq!(request.hits_addend, 3);
    assert_eq!(
        request.descriptors[0].hits_addend,
        Some(UInt64Value { value: 1 })
    );
}

#[test]
fn unknown_json_fields_and_enum_names_are_rejected() {
    let unknown_field =
        serde_json::from_value::<RateLimitRequest>(json!({"domain": "edge", "tenant": "a"}));
    assert!(unknown_field.is_err());

    let unknown_unit = serde_json::from_value::<RateLimitDescriptor>(json!({
        "limit": {"requestsPerUnit": 1, "unit": "FORTNIGHT"}
    }));
    assert!(unknown_unit.is_err());
}

#[test]
fn response_serialises_to_proto3_json_with_defaults_omitted() {
    let response = RateLimitResponse {
        overall_code: Code::OverLimit.into(),
        statuses: vec![
            DescriptorStatus {
                code: Code::OverLimit.into(),
                current_limit: Some(RateLimit {
                    requests_per_unit: 10,
                    unit: Unit::Minute.into(),
                    name: String::new(),
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                quota: None,
            },
            DescriptorStatus {
                code: Code::Ok.into(),
                current_limit: Some(RateLimit {
                    requests_per_unit: 5,
                    unit: Unit::Week.into(),
                    name: "weekly".into(),
                }),
                limit_remaining: 3,
                duration_until_reset: Some(Duration {
                    seconds: 0,
                    nanos: 250_000_000,
                }),
                quota: None,
            },
            DescriptorStatus {
                code: Code::Ok.into(),
                ..Default::default()
            },
        ],
        response_headers_to_add: vec![HeaderValue {
            key: "x-ratelimit-limit".into(),
            value: "10".into(),
            raw_value: vec![],
        }],
        ..Default::default()
    };

    let expected = json!({
        "overallCode": "OVER_LIMIT",
        "statuses": [
            {
                "code": "OVER_LIMIT",
                "currentLimit": {"requestsPerUnit": 10, "unit": "MINUTE"},
                "durationUntilReset": "1s"
            },
            {
                "code": "OK",
                "currentLimit": {"requestsPerUnit": 5, "unit": "WEEK", "name": "weekly"},
                "limitRemaining": 3,
                "durationUntilReset": "0.250s"
            },
            {"code": "OK"}
        ],
        "responseHeadersToAdd": [{"key": "x-ratelimit-limit", "value": "10"}]
    });
    assert_eq!(serde_json::to_value(&response).unwrap(), expected);

    let parsed: RateLimitResponse = serde_json::from_value(expected).unwrap();
    assert_eq!(parsed, response);
    assert_eq!(parsed.overall_code(), Code::OverLimit);
    assert_eq!(
        parsed.statuses[1].current_limit.as_ref().unwrap().unit(),
        Unit::Week
    );
}

#[test]
fn durations_parse_from_fractional_seconds() {
    let status: DescriptorStatus =
        serde_json::from_value(json!({"durationUntilReset": "1.5s"})).unwrap();
    assert_eq!(
        status.duration_until_reset,
        Some(Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
}

#[test]
fn metadata_and_raw_body_use_json_objects_and_base64() {
    let response: RateLimitResponse = serde_json::from_value(json!({
        "overallCode": "OK",
        "rawBody": "bm8=",
        "dynamicMetadata": {"domain": "edge", "descriptors": [{"entries": ["k=v"]}]}
    }))
    .unwrap();
    assert_eq!(response.raw_body, b"no");
    let metadata = response.dynamic_metadata.clone().unwrap();
    assert_eq!(
        serde_json::to_value(&metadata).unwrap(),
        json!({"domain": "edge", "descriptors": [{"entries": ["k=v"]}]})
    );
    assert_eq!(
        serde_json::from_value::<RateLimitResponse>(serde_json::to_value(&response).unwrap())
            .unwrap(),
        response
    );
}
