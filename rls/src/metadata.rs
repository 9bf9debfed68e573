//! The answer's `dynamic_metadata` as the reference builds it (`RESPONSE_DYNAMIC_METADATA`,
//! `--response-dynamic-metadata`), which Envoy keeps for its access logs: the domain, each
//! descriptor's entries as `key=value` (with its `limit` override and `hits_addend` when
//! it has them), the request's `hits_addend` when set, and the `metadata` of the rules of
//! the descriptors that passed, merged (the first value of a key wins; objects merge).

use std::collections::HashMap;

use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::RateLimitOverride;
use proto::rls::RateLimitRequest;
use proto::types::RateLimitUnit;
use proto::wkt::value::Kind;
use proto::wkt::{ListValue, Struct, Value};
use serde_json::Map;

/// The metadata of `request`, merging the rule `metadata` of the descriptors that passed,
/// in request order.
pub fn dynamic_metadata<'a>(
    request: &RateLimitRequest,
    passed: impl IntoIterator<Item = &'a Map<String, serde_json::Value>>,
) -> Struct {
    let mut fields: HashMap<String, Value> = HashMap::new();
    fields.insert("domain".into(), request.domain.clone().into());
    let descriptors: Vec<Value> = request.descriptors.iter().map(descriptor).collect();
    fields.insert("descriptors".into(), ListValue::from(descriptors).into());
    if request.hits_addend != 0 {
        fields.insert("hitsAddend".into(), f64::from(request.hits_addend).into());
    }
    let mut merged = Map::new();
    for metadata in passed {
        merge(&mut merged, metadata);
    }
    if !merged.is_empty() {
        fields.insert(
            "metadata".into(),
            Value::from(Kind::StructValue(object(&merged))),
        );
    }
    Struct { fields }
}

fn descriptor(descriptor: &RateLimitDescriptor) -> Value {
    let mut fields: HashMap<String, Value> = HashMap::new();
    let entries: Vec<Value> = descriptor
        .entries
        .iter()
        .map(|e| format!("{}={}", e.key, e.value).into())
        .collect();
    fields.insert("entries".into(), ListValue::from(entries).into());
    if let Some(limit) = &descriptor.limit {
        fields.insert("limit".into(), override_text(limit).into());
    }
    if let Some(hits) = &descriptor.hits_addend {
        fields.insert("hitsAddend".into(), (hits.value as f64).into());
    }
    Value::from(Kind::StructValue(Struct { fields }))
}

/// The override in protobuf's text format, as the reference writes it (`String()` of the
/// message; fields at their default are left out).
fn override_text(limit: &RateLimitOverride) -> String {
    let mut parts = Vec::new();
    if limit.requests_per_unit != 0 {
        parts.push(format!("requests_per_unit:{}", limit.requests_per_unit));
    }
    if limit.unit != 0 {
        let unit = RateLimitUnit::try_from(limit.unit)
            .map(|u| u.as_str_name().to_owned())
            .unwrap_or_else(|_| limit.unit.to_string());
        parts.push(format!("unit:{unit}"));
    }
    parts.join(" ")
}

/// Adds `from` to `into`: a key already there keeps its value, unless both are objects,
/// which merge the same way.
fn merge(into: &mut Map<String, serde_json::Value>, from: &Map<String, serde_json::Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(serde_json::Value::Object(mine)), serde_json::Value::Object(theirs)) => {
                merge(mine, theirs)
            }
            (Some(_), _) => {}
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn object(map: &Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
    }
}

/// A JSON value as a `google.protobuf.Value` (numbers as doubles, as the type holds them).
fn json(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue::from(items.iter().map(json).collect::<Vec<_>>()))
        }
        serde_json::Value::Object(map) => Kind::StructValue(object(map)),
    };
    Value::from(kind)
}

#[cfg(test)]
mod tests {
    use proto::common::rate_limit_descriptor::Entry;
    use serde_json::json;

    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
        }
    }

    fn map(value: serde_json::Value) -> Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn metadata_names_the_domain_the_entries_and_the_hits_as_the_reference_does() {
        let request = RateLimitRequest {
            domain: "addend-domain".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![entry("test_key", "test_val"), entry("b", "")],
                limit: Some(RateLimitOverride {
                    requests_per_unit: 10,
                    unit: RateLimitUnit::Minute as i32,
                }),
                hits_addend: Some(proto::wkt::UInt64Value { value: 3 }),
            }],
            hits_addend: 5,
        };
        let metadata = dynamic_metadata(&request, []);
        assert_eq!(
            serde_json::to_value(&metadata).expect("json"),
            json!({
                "domain": "addend-domain",
                "descriptors": [{
                    "entries": ["test_key=test_val", "b="],
                    "limit": "requests_per_unit:10 unit:MINUTE",
                    "hitsAddend": 3.0
                }],
                "hitsAddend": 5.0
            })
        );
    }

    #[test]
    fn the_first_value_of_a_key_wins_and_objects_merge() {
        let request = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![entry("k", "v")],
                ..Default::default()
            }],
            hits_addend: 0,
        };
        let first = map(json!({"name": "service_1", "tags": {"a": 1}}));
        let second =
            map(json!({"name": "service_2", "other": true, "tags": {"a": 2, "b": [1, "x"]}}));
        let metadata = dynamic_metadata(&request, [&first, &second]);
        let value = serde_json::to_value(&metadata).expect("json");
        assert_eq!(
            value["metadata"],
            json!({"name": "service_1", "other": true, "tags": {"a": 1.0, "b": [1.0, "x"]}})
        );
        assert!(value.get("hitsAddend").is_none());
    }
}
