//! [`Input`]: the `kind: RateLimit` resources of the quota files `rls serve` would load,
//! validated as it validates them, and a note for each file that holds documents in the
//! reference format (they say nothing of which requests they apply to).

use anyhow::Context;
use config::QuotaSet;
use config::resource::{RateLimitResource, read_quota_file};

use crate::error::RlsError;
use crate::settings::QuotaArgs;

/// What `rls render` renders from.
#[derive(Debug)]
pub struct Input {
    /// The resources, in load order (files by name, documents in file order).
    pub resources: Vec<RateLimitResource>,
    /// One sentence per file with reference-format documents, and one when there is no
    /// resource at all.
    pub notes: Vec<String>,
}

impl Input {
    /// Loads the quota files of `quotas` as `rls check` does, refusing what it refuses.
    pub fn load(quotas: &QuotaArgs) -> anyhow::Result<Input> {
        let path = quotas.config.as_deref().ok_or(RlsError::NoConfigPath)?;
        let options = quotas.load_options();
        let quotas = QuotaSet::load(path, &options)?;
        let mut resources = Vec::new();
        let mut notes = Vec::new();
        for file in quotas.files() {
            let name = file.display().to_string();
            let text =
                std::fs::read_to_string(file).with_context(|| format!("{name}: cannot read"))?;
            let contents = read_quota_file(&name, &text, &options)?;
            if contents.quota_documents > 0 {
                notes.push(format!(
                    "{name}: {} document(s) in the reference format carry no match \
                     information, so nothing is rendered for them; write their Envoy \
                     rate_limits actions by hand, or rewrite them as kind: RateLimit \
                     (docs/ratelimit-resource.md)",
                    contents.quota_documents
                ));
            }
            resources.extend(contents.resources);
        }
        if resources.is_empty() {
            notes.push(format!(
                "{}: no kind: RateLimit resource, so the output limits nothing",
                path.display()
            ));
        }
        Ok(Input { resources, notes })
    }
}
