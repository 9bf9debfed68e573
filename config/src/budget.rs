//! How large a quota file may be: the YAML parser's budget, made from [`LoadOptions`]
//! (`max_depth` levels of descriptors, `max_nodes` nodes), and its breaches told in plain
//! words with file, line, column and key path.

use serde_saphyr::Budget;
use serde_saphyr::budget::BudgetBreach;

use crate::error::{ConfigError, Position};
use crate::load::LoadOptions;
use crate::yaml_error::locate;
use crate::yaml_nodes::{Nodes, ROOT, descriptor_level};

/// Levels of maps and lists a `metadata` map may add below its descriptor.
pub const METADATA_NESTING: usize = 16;

/// Levels of YAML nesting a file may have: the root map, two per descriptor level (a list
/// and a map), and below the deepest descriptor either its limits (`rate_limits`, a limit,
/// `replaces`, an entry: four) or its `metadata` ([`METADATA_NESTING`] more). A `local`
/// section nests at most nine deep, which this always allows.
pub(crate) fn nesting(options: &LoadOptions) -> usize {
    let below = 4usize.max(METADATA_NESTING);
    options
        .max_depth
        .saturating_mul(2)
        .saturating_add(1 + below)
        .max(9)
}

/// The parser's budget for `options`.
pub(crate) fn yaml_budget(options: &LoadOptions) -> Budget {
    let mut budget = Budget::default();
    budget.max_depth = nesting(options);
    budget.max_nodes = options.max_nodes;
    // Every node is at most two events (a start and an end), and aliases and document
    // markers are few: the node count is the bound that speaks first.
    budget.max_events = budget
        .max_events
        .max(options.max_nodes.saturating_mul(2).saturating_add(100_000));
    budget
}

/// The refusal of a file that breached the budget at `at` (where the parser stopped).
pub(crate) fn refusal(
    text: &str,
    breach: &BudgetBreach,
    at: Position,
    options: &LoadOptions,
) -> ConfigError {
    let nesting = nesting(options);
    let place = (u64::from(at.line), u64::from(at.column));
    let path = || {
        let found = locate(text, place, nesting);
        found
            .value()
            .map_or_else(|| ROOT.to_owned(), |node| node.display_path())
    };
    match breach {
        BudgetBreach::Depth { .. } => {
            // Descriptors nested too deep are named at the first one past the bound.
            let too_deep = Nodes::new(text, nesting).find(|(_, node)| {
                descriptor_level(&node.path).is_some_and(|level| level > options.max_depth)
            });
            match too_deep {
                Some(((line, column), node)) => ConfigError::TooDeep {
                    at: Position {
                        line: crate::file::saturate(line),
                        column: crate::file::saturate(column),
                        ..at
                    },
                    path: node.path,
                    max: options.max_depth,
                },
                None => ConfigError::NestedTooDeep {
                    path: path(),
                    at,
                    max: nesting,
                },
            }
        }
        BudgetBreach::Nodes { .. } => ConfigError::TooManyNodes {
            path: path(),
            at,
            max: options.max_nodes,
        },
        other => ConfigError::Syntax {
            path: path(),
            at,
            message: words(other),
        },
    }
}

/// The rarer breaches, in words: they guard the parser against hostile files.
fn words(breach: &BudgetBreach) -> String {
    let budget = Budget::default();
    match breach {
        BudgetBreach::Events { .. } => "more YAML events than the parser reads".to_owned(),
        BudgetBreach::Aliases { .. } => format!("more than {} aliases", budget.max_aliases),
        BudgetBreach::Anchors { .. } => format!("more than {} anchors", budget.max_anchors),
        BudgetBreach::Documents { .. } => {
            format!("more than {} documents in one file", budget.max_documents)
        }
        BudgetBreach::ScalarBytes { .. } => format!(
            "more than {} MiB of text in values",
            budget.max_total_scalar_bytes >> 20
        ),
        BudgetBreach::MergeKeys { .. } => {
            format!("more than {} merge keys (<<)", budget.max_merge_keys)
        }
        BudgetBreach::AliasAnchorRatio { .. } => format!(
            "more than {} aliases per anchor",
            budget.alias_anchor_ratio_multiplier
        ),
        other => format!("the file passes a limit of the YAML parser ({other:?})"),
    }
}

/// Bytes of key paths the rules of a load may keep for each byte of its quota text.
pub const PATH_BYTES_PER_BYTE: usize = 64;
/// Bytes of key paths the rules of any load may keep, however small its text.
pub const PATH_BYTES_FLOOR: usize = 1 << 20;

/// The bytes of key paths a load's rules may keep. Each rule keeps its whole path (its
/// stats key and steps, from the domain down), so many rules under one long key or value
/// would each cost that key: charged before a rule is built, against a budget that grows
/// with the text read, the loader's memory stays linear in its input.
#[derive(Debug)]
pub(crate) struct PathBudget {
    used: usize,
    allowed: usize,
}

impl PathBudget {
    pub(crate) fn new() -> Self {
        PathBudget {
            used: 0,
            allowed: PATH_BYTES_FLOOR,
        }
    }

    /// Grows the budget by what `bytes` of quota text (or of an xDS resource) may keep.
    pub(crate) fn allow(&mut self, bytes: usize) {
        let more = bytes.saturating_mul(PATH_BYTES_PER_BYTE);
        self.allowed = self.allowed.saturating_add(more);
    }

    /// Charges the path of `bytes` of the rule at `path` (defined at `at`).
    pub(crate) fn charge(
        &mut self,
        bytes: usize,
        at: &Position,
        path: &str,
    ) -> Result<(), ConfigError> {
        self.used = self.used.saturating_add(bytes);
        if self.used <= self.allowed {
            return Ok(());
        }
        Err(ConfigError::TooLarge {
            at: at.clone(),
            path: path.to_owned(),
            value: self.used.to_string(),
            largest: self.allowed.to_string(),
            reason: "the bytes of key paths its rules keep, with those before it (each rule \
                     keeps its path from the domain down: a load may keep 64 bytes of paths \
                     per byte of its text, and 1 MiB more); shorten the keys and values many \
                     rules sit under",
        })
    }
}
