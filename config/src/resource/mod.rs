//! `kind: RateLimit` resources (`apiVersion: quota.rls.dev/v1alpha1`): the declarative form
//! platform teams write — hosts, a match, a quota and a unit — validated into a
//! [`RateLimitResource`] and mapped, once, to the domain and descriptor rules `rls` serves
//! ([`ResourceRule::descriptor`]) and the proxy configuration `rls render` prints.
//!
//! Modules: `model` (the validated types), `descriptor` (the mapping), `dto` (the serde
//! shape), `validate` and `rule` (the checks), `documents` (telling resources from
//! reference-format documents in one file), `local` (the local rules as the
//! [`LocalSection`](crate::LocalSection) an embedding service enforces). The format is in `docs/ratelimit-resource.md`.

mod descriptor;
mod documents;
mod dto;
mod local;
mod model;
mod rule;
mod validate;

pub use descriptor::{
    DescriptorEntry, EntryAction, MASKED_REMOTE_ADDRESS_KEY, REMOTE_ADDRESS_KEY, RULE_KEY,
};
pub use model::{
    API_VERSION, Cidr, HeaderMatch, KIND, MatchType, Mode, Per, RateLimitResource, ResourceRule,
};

pub(crate) use documents::{Document, documents};
pub(crate) use local::LocalRules;

use crate::error::ConfigError;

/// What one quota file holds, as `rls render` reads it.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct QuotaFileContents {
    /// Its `kind: RateLimit` resources, in file order.
    pub resources: Vec<RateLimitResource>,
    /// How many non-empty documents are in the reference format (they say nothing of which
    /// requests they apply to).
    pub quota_documents: usize,
}

/// Parses the documents of one quota file (`file` names it in errors) and validates its
/// resources. Reference-format documents are counted, not validated: load the files with
/// [`QuotaSet`](crate::QuotaSet) for that.
/// `load` bounds the parse as it bounds [`QuotaSet::load`](crate::QuotaSet::load).
pub fn read_quota_file(
    file: &str,
    text: &str,
    load: &crate::LoadOptions,
) -> Result<QuotaFileContents, ConfigError> {
    let mut contents = QuotaFileContents::default();
    for document in documents(file, text, load)? {
        match document {
            Document::Quota(_) => contents.quota_documents += 1,
            Document::RateLimit { resource, .. } => contents.resources.push(resource),
        }
    }
    Ok(contents)
}
