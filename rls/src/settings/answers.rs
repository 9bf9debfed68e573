//! `AnswerArgs`: the reference's answer modes beyond shadow mode — global quota mode and
//! dynamic metadata.

use clap::Args;

/// Answer modes of `rls serve`.
#[derive(Debug, Clone, Args)]
pub struct AnswerArgs {
    /// Global quota mode: every descriptor counts as quota_mode, so a request is over its
    /// limit only when all its descriptors with a limit are.
    #[arg(long, env = "RLS_QUOTA_MODE", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub quota_mode: bool,

    /// Return the request's descriptors, and the metadata of the rules that passed, as the
    /// answer's dynamic_metadata (for Envoy's access logs).
    #[arg(long, env = "RLS_RESPONSE_DYNAMIC_METADATA", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub response_dynamic_metadata: bool,
}
