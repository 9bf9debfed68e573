//! `QuotaArgs`: where the quota files are and how they are read, for `rls serve` and
//! `rls check` alike, with the bounds a file is refused beyond.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use config::{LoadOptions, QuotaSet};

use super::Settings;
use crate::error::{RlsError, SettingsError};

/// Where the quota files are and how they are read: one group for `rls serve` and
/// `rls check`, so that both read the same files the same way.
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// Quota file, or directory of quota files (every top-level, non-hidden *.yaml / *.yml).
    #[arg(long, env = "RLS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Let several quota documents add descriptors to one domain.
    #[arg(long, env = "RLS_MERGE_DOMAINS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub merge_domains: bool,

    /// Algorithm of limits whose quota file does not name one.
    #[arg(long, env = "RLS_DEFAULT_ALGORITHM", value_enum, default_value_t = AlgorithmArg::TokenBucket)]
    pub default_algorithm: AlgorithmArg,

    /// Most levels of nested descriptors in a quota file; deeper is refused. A request
    /// descriptor of N entries is matched only by a rule N levels deep, so `rls serve`
    /// takes its --max-entries by default and refuses fewer; `rls check` takes 32.
    #[arg(long, env = "RLS_MAX_QUOTA_DEPTH", value_name = "LEVELS", value_parser = quota_depth)]
    pub max_quota_depth: Option<usize>,

    /// Most YAML nodes (maps, lists and values) in one quota file; a larger file is refused
    /// while it is parsed, before it is built.
    #[arg(long, env = "RLS_MAX_QUOTA_NODES", value_name = "NODES",
          value_parser = clap::value_parser!(u64).range(1..), default_value_t = config::DEFAULT_MAX_NODES as u64)]
    pub max_quota_nodes: u64,
}

/// A `--max-quota-depth`: from 1 to the deepest a load's stack covers.
fn quota_depth(text: &str) -> Result<usize, String> {
    let most = config::MOST_MAX_DEPTH;
    match text.parse::<usize>() {
        Ok(depth) if (1..=most).contains(&depth) => Ok(depth),
        _ => Err(format!("expected a number of levels from 1 to {most}")),
    }
}

impl QuotaArgs {
    /// How the quota files are read (32 levels deep unless told).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            merge_domains: self.merge_domains,
            default_algorithm: self.default_algorithm.into(),
            max_depth: self.max_quota_depth.unwrap_or(config::DEFAULT_MAX_DEPTH),
            max_nodes: usize::try_from(self.max_quota_nodes).unwrap_or(usize::MAX),
        }
    }

    /// Loads the quota files.
    pub fn load(&self) -> Result<QuotaSet, RlsError> {
        self.load_as(&self.load_options())
    }

    /// Loads the quota files as `options` say.
    pub fn load_as(&self, options: &LoadOptions) -> Result<QuotaSet, RlsError> {
        let path = self.config.as_ref().ok_or(RlsError::NoConfigPath)?;
        Ok(QuotaSet::load(path, options)?)
    }
}

/// The `--default-algorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// GCRA token bucket (exact, no window-edge bursts).
    TokenBucket,
    /// Epoch-aligned fixed windows, exactly like the reference service.
    FixedWindow,
}

impl From<AlgorithmArg> for config::Algorithm {
    fn from(value: AlgorithmArg) -> Self {
        match value {
            AlgorithmArg::TokenBucket => config::Algorithm::TokenBucket,
            AlgorithmArg::FixedWindow => config::Algorithm::FixedWindow,
        }
    }
}

impl Settings {
    /// How `rls serve` reads the quota files: as deep as `--max-quota-depth`, else as deep
    /// as `--max-entries` reaches. Refuses a depth below `--max-entries` (a request
    /// descriptor of N entries is matched only by a rule N levels deep, which the files
    /// could not hold), and an `--max-entries` deeper than a load can go.
    pub fn quota_options(&self) -> Result<LoadOptions, SettingsError> {
        let entries = self.max_entries;
        let depth = match self.quotas.max_quota_depth {
            Some(depth) if depth < entries => {
                return Err(SettingsError::DepthBelowEntries { depth, entries });
            }
            Some(depth) => depth,
            None if entries > config::MOST_MAX_DEPTH => {
                return Err(SettingsError::EntriesBeyondDepth {
                    entries,
                    most: config::MOST_MAX_DEPTH,
                });
            }
            None => entries.max(1),
        };
        Ok(LoadOptions {
            max_depth: depth,
            ..self.quotas.load_options()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reproduces a quota-file depth bound (31) below the request's own --max-entries (32),
    // and neither a setting.
    #[test]
    fn the_quota_depth_follows_the_entries_of_a_request_descriptor_and_is_never_below() {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let parse = |args: &[&str]| {
            let line = ["rls"].iter().chain(args).copied();
            <Only as clap::Parser>::try_parse_from(line).map(|only| only.settings)
        };
        let depth = |args: &[&str]| {
            parse(args)
                .expect("parses")
                .quota_options()
                .map(|o| o.max_depth)
        };
        assert_eq!(
            depth(&[]).expect("valid"),
            32,
            "as deep as --max-entries' default"
        );
        assert_eq!(depth(&["--max-entries", "40"]).expect("valid"), 40);
        assert_eq!(
            depth(&["--max-entries", "8", "--max-quota-depth", "50"]).expect("valid"),
            50
        );
        let below = depth(&["--max-quota-depth", "31"]).expect_err("below --max-entries");
        assert_eq!(
            below.to_string(),
            "invalid settings: --max-quota-depth 31 is less than --max-entries 32: a request \
             descriptor of 32 entries is matched only by a rule 32 levels deep, which the quota \
             files could not hold; raise --max-quota-depth to at least 32 or lower --max-entries"
        );
        let most = config::MOST_MAX_DEPTH;
        let beyond = (most + 1).to_string();
        let refused = depth(&["--max-entries", &beyond]).expect_err("deeper than a load goes");
        assert_eq!(
            refused.to_string(),
            format!(
                "invalid settings: --max-entries {beyond} needs quota files nested {beyond} \
                 levels deep, and they are read at most {most} levels deep: lower \
                 --max-entries to {most} or less"
            )
        );
        let docs = include_str!("../../../docs/quota-files.md");
        assert!(docs.contains(&format!("at most {most}: what the loader's stack covers")));
        assert!(parse(&["--max-quota-depth", &most.to_string()]).is_ok());
        for bad in ["0", beyond.as_str()] {
            let parsed = parse(&["--max-quota-depth", bad]);
            assert!(parsed.is_err(), "--max-quota-depth {bad} was accepted");
        }
        let nodes = parse(&["--max-quota-nodes", "7"]).expect("parses");
        assert_eq!(nodes.quota_options().expect("valid").max_nodes, 7);
        assert!(parse(&["--max-quota-nodes", "0"]).is_err());
    }
}
