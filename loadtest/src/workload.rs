//! [`Workload`]: the requests of a phase, encoded once before the run (one per key number, so
//! that sending one is a reference-count increment), and the accounting keys each charges.

use std::collections::HashMap;

use prost::Message;
use prost::bytes::Bytes;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::RateLimitRequest;

use crate::error::HarnessError;
use crate::sampler::KeySampler;
use crate::spec::PhaseSpec;

/// Placeholder replaced by the key number in descriptor values.
pub const KEY_PLACEHOLDER: &str = "{key}";

/// More keys than this would spend more memory on pre-built requests than a load test needs.
pub const MAX_KEYS: u32 = 10_000_000;

/// One descriptor as given: its entries, some values possibly holding `{key}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// `(key, value)` pairs in order.
    pub entries: Vec<(String, String)>,
}

impl Template {
    /// Parses `k=v,k2=v2`; a pair without `=` has an empty value (as `rls query` reads it).
    pub fn parse(text: &str) -> Result<Template, HarnessError> {
        let entries: Vec<(String, String)> = text
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_string(), value.to_string())
            })
            .collect();
        if entries.is_empty() {
            return Err(HarnessError::Workload(format!(
                "descriptor `{text}` has no entries (write key=value,...)"
            )));
        }
        if entries.iter().any(|(key, _)| key.is_empty()) {
            return Err(HarnessError::Workload(format!(
                "descriptor `{text}` has an entry without a key"
            )));
        }
        Ok(Template { entries })
    }

    /// Whether a value holds `{key}`, so that the descriptor differs per key number.
    pub fn varies(&self) -> bool {
        self.entries
            .iter()
            .any(|(_, value)| value.contains(KEY_PLACEHOLDER))
    }

    /// The entries for key number `key`.
    pub fn instantiate(&self, key: u32) -> Vec<(String, String)> {
        let number = key.to_string();
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), v.replace(KEY_PLACEHOLDER, &number)))
            .collect()
    }
}

/// A bucket as the harness counts it: one descriptor's entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey {
    /// `(key, value)` pairs in order.
    pub entries: Vec<(String, String)>,
}

impl AccountKey {
    /// `k=v,k2=v2`, as flags write descriptors.
    pub fn label(&self) -> String {
        let pairs: Vec<String> = self
            .entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join(",")
    }

    /// The entries as `config` resolves them.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// The pre-built requests of one phase.
#[derive(Debug)]
pub struct Workload {
    /// The domain of every request.
    pub domain: String,
    /// The descriptors as given.
    pub templates: Vec<Template>,
    /// Tokens each descriptor of a request asks for (`hits_addend`, 0 read as 1).
    pub hits: u64,
    /// How the next key number is drawn.
    pub sampler: KeySampler,
    /// Every accounting key, by id.
    pub keys: Vec<AccountKey>,
    requests: Vec<Bytes>,
    charges: Vec<Box<[u32]>>,
}

impl Workload {
    /// Builds and encodes the requests a phase sends.
    pub fn build(spec: &PhaseSpec) -> Result<Workload, HarnessError> {
        if spec.domain.is_empty() {
            return Err(HarnessError::Workload("--domain is required".into()));
        }
        if spec.descriptors.is_empty() {
            return Err(HarnessError::Workload(
                "at least one --descriptor is required".into(),
            ));
        }
        let templates = spec
            .descriptors
            .iter()
            .map(|d| Template::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        Workload::with_templates(spec, templates)
    }

    /// The workload of `spec`'s domain, keys, distribution and hits over `templates`
    /// instead of its `--descriptor` flags (`loadtest http` gives its headers as one).
    pub fn with_templates(
        spec: &PhaseSpec,
        templates: Vec<Template>,
    ) -> Result<Workload, HarnessError> {
        if !(1..=MAX_KEYS).contains(&spec.keys) {
            return Err(HarnessError::Workload(format!(
                "--keys must be between 1 and {MAX_KEYS}"
            )));
        }
        if !(spec.zipf_s.is_finite() && spec.zipf_s > 0.0) {
            return Err(HarnessError::Workload(
                "--zipf-s must be a positive number".into(),
            ));
        }
        if spec.keys > 1 && !templates.iter().any(Template::varies) {
            return Err(HarnessError::Workload(format!(
                "--keys {} needs {KEY_PLACEHOLDER} in a descriptor value, e.g. user={KEY_PLACEHOLDER}",
                spec.keys
            )));
        }

        let mut ids: HashMap<AccountKey, u32> = HashMap::new();
        let mut keys = Vec::new();
        let mut requests = Vec::with_capacity(spec.keys as usize);
        let mut charges = Vec::with_capacity(spec.keys as usize);
        for number in 0..spec.keys {
            let mut descriptors = Vec::with_capacity(templates.len());
            let mut charged = Vec::with_capacity(templates.len());
            for template in &templates {
                let entries = template.instantiate(number);
                descriptors.push(RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(key, value)| Entry {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    ..RateLimitDescriptor::default()
                });
                let key = AccountKey { entries };
                let id = *ids.entry(key.clone()).or_insert_with(|| {
                    keys.push(key);
                    (keys.len() - 1) as u32
                });
                charged.push(id);
            }
            let request = RateLimitRequest {
                domain: spec.domain.clone(),
                descriptors,
                hits_addend: spec.hits,
            };
            requests.push(Bytes::from(request.encode_to_vec()));
            charges.push(charged.into_boxed_slice());
        }
        Ok(Workload {
            domain: spec.domain.clone(),
            templates,
            hits: u64::from(spec.hits.max(1)),
            sampler: KeySampler::new(spec.distribution, spec.keys, spec.zipf_s),
            keys,
            requests,
            charges,
        })
    }

    /// The encoded request for key number `number`.
    pub fn request(&self, number: u32) -> Bytes {
        self.requests[number as usize].clone()
    }

    /// The accounting keys (ids into [`Workload::keys`]) that request `number` charges, one
    /// per descriptor.
    pub fn charges(&self, number: u32) -> &[u32] {
        &self.charges[number as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(descriptors: &[&str], keys: u32) -> PhaseSpec {
        PhaseSpec {
            domain: "edge".into(),
            descriptors: descriptors.iter().map(|d| d.to_string()).collect(),
            keys,
            hits: 3,
            ..PhaseSpec::default()
        }
    }

    #[test]
    fn descriptors_read_like_rls_query_reads_them() {
        let template = Template::parse("path=/a,method=GET,flag").expect("valid");
        assert_eq!(
            template.entries,
            [
                ("path".into(), "/a".into()),
                ("method".into(), "GET".into()),
                ("flag".into(), String::new())
            ]
        );
        assert!(Template::parse("").is_err());
        assert!(Template::parse("=x").is_err());
    }

    #[test]
    fn each_key_number_gets_its_own_encoded_request() {
        let workload = Workload::build(&spec(&["user={key}", "path=/a"], 3)).expect("builds");
        let second = RateLimitRequest::decode(workload.request(2)).expect("decodes");
        assert_eq!(second.domain, "edge");
        assert_eq!(second.hits_addend, 3);
        assert_eq!(second.descriptors[0].entries[0].value, "2");
        assert_eq!(second.descriptors[1].entries[0].value, "/a");
        assert_eq!(workload.hits, 3);
    }

    #[test]
    fn a_descriptor_without_key_is_one_account_shared_by_every_request() {
        let workload = Workload::build(&spec(&["user={key}", "path=/a"], 3)).expect("builds");
        // user=0, path=/a, user=1, user=2.
        assert_eq!(workload.keys.len(), 4);
        assert_eq!(workload.charges(0), [0, 1]);
        assert_eq!(workload.charges(2), [3, 1]);
        assert_eq!(workload.keys[3].label(), "user=2");
    }

    #[test]
    fn several_keys_without_a_placeholder_are_refused() {
        let error = Workload::build(&spec(&["path=/a"], 10)).unwrap_err();
        assert!(error.to_string().contains("{key}"), "{error}");
    }

    #[test]
    fn a_missing_domain_or_descriptor_is_refused() {
        let mut no_domain = spec(&["a=b"], 1);
        no_domain.domain.clear();
        assert!(Workload::build(&no_domain).is_err());
        assert!(Workload::build(&spec(&[], 1)).is_err());
    }
}
