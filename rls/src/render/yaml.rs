//! `to_yaml`: a `serde_json::Value` as YAML, its map keys in a fixed order that reads like
//! Envoy's and Kubernetes' own examples (`name` and `@type` first, the rest by name), so
//! that the same value always gives the same bytes.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// Keys written before the others, in this order; the rest follow by name.
const LEADING: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "@type",
    "applyTo",
    "match",
    "patch",
    "operation",
    "domain",
    "domains",
    "stage",
];

/// `value` as one YAML document (no `---`), ending in a newline.
pub(crate) fn to_yaml(value: &Value) -> anyhow::Result<String> {
    // Long strings (type URLs) stay plain scalars, not folded blocks.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    Ok(serde_saphyr::to_string_with_options(
        &Ordered(value),
        options,
    )?)
}

/// Several documents, each after its comment lines (`# ` added), separated by `---`.
pub(crate) fn documents(docs: &[(Vec<String>, Value)]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, (comments, doc)) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        for line in comments {
            out.push_str(if line.is_empty() { "#" } else { "# " });
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&to_yaml(doc)?);
    }
    Ok(out)
}

/// Serialises a value with its map keys in [`LEADING`] order.
struct Ordered<'a>(&'a Value);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                let rank = |k: &str| {
                    LEADING
                        .iter()
                        .position(|l| *l == k)
                        .unwrap_or(LEADING.len())
                };
                keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    out.serialize_entry(key, &Ordered(&map[key]))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Ordered(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leading_keys_come_first_and_the_rest_by_name() {
        let value = json!({"b": 1, "typed_config": {"z": true, "@type": "t"}, "name": "x"});
        assert_eq!(
            to_yaml(&value).unwrap(),
            "name: x\nb: 1\ntyped_config:\n  \"@type\": t\n  z: true\n"
        );
    }

    #[test]
    fn strings_that_read_as_other_types_are_quoted() {
        let value = json!({"a": "true", "b": "80", "c": ":path", "d": "*", "e": "0.02s"});
        let text = to_yaml(&value).unwrap();
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
