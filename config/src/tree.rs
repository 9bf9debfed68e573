//! [`Domain`]: one domain's descriptor tree, built from validated documents, and the
//! reference's matching (`resolve`) without allocation.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use crate::budget::PathBudget;
use crate::error::{ConfigError, Position};
use crate::file::{self, DescriptorDto};
use crate::load::LoadOptions;
use crate::pattern::Pattern;
use crate::quota::{Algorithm, Rule, Step, StepValue};
use crate::rate_limit;

/// Index of a node in [`Domain::nodes`].
type NodeId = usize;

/// One domain: its rules and the tree that finds them.
#[derive(Debug)]
pub struct Domain {
    name: String,
    root: Level,
    nodes: Vec<Node>,
    rules: Vec<Rule>,
}

/// The descriptors of one level, grouped by key.
#[derive(Debug, Default)]
struct Level {
    keys: HashMap<String, KeyGroup>,
}

/// The descriptors of one level that share a key.
#[derive(Debug, Default)]
struct KeyGroup {
    exact: HashMap<String, NodeId>,
    /// In file order: the first match wins.
    wildcards: Vec<(Pattern, NodeId)>,
    default: Option<NodeId>,
}

#[derive(Debug)]
struct Node {
    children: Level,
    rule: Option<usize>,
    /// Where the descriptor was defined, for duplicate errors.
    origin: Position,
}

impl KeyGroup {
    /// Exact value first, then wildcards in file order, then the default; an empty value
    /// matches only the default.
    fn find(&self, value: &str) -> Option<NodeId> {
        if value.is_empty() {
            return self.default;
        }
        self.exact
            .get(value)
            .copied()
            .or_else(|| {
                let mut wildcards = self.wildcards.iter();
                wildcards.find(|(p, _)| p.matches(value)).map(|&(_, id)| id)
            })
            .or(self.default)
    }

    /// The node already defined for this value, if any.
    fn existing(&self, value: &StepValue) -> Option<NodeId> {
        match value {
            StepValue::Exact(v) => self.exact.get(v).copied(),
            StepValue::Wildcard(v) => {
                let mut wildcards = self.wildcards.iter();
                wildcards.find(|(p, _)| p.as_str() == v).map(|&(_, id)| id)
            }
            StepValue::Default => self.default,
        }
    }

    fn insert(&mut self, value: &StepValue, id: NodeId) {
        match value {
            StepValue::Exact(v) => {
                self.exact.insert(v.clone(), id);
            }
            StepValue::Wildcard(v) => self.wildcards.push((Pattern::new(v.clone()), id)),
            StepValue::Default => self.default = Some(id),
        }
    }
}

impl Domain {
    /// The domain name (`domain:` in the file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reference's matching: per level, the exact key+value first, then that key's
    /// wildcard values in file order, then the bare-key default; an entry with an empty
    /// value matches only the default. Returns the rule at the node matched by the last
    /// entry: `None` when any entry fails to match, when the request is deeper or shallower
    /// than a rule, or when that node has no rate limit. Never backtracks to a less specific
    /// sibling. Does not allocate.
    pub fn resolve<'a>(&'a self, entries: &[(&str, &str)]) -> Option<&'a Rule> {
        let mut level = &self.root;
        let mut node = None;
        for &(key, value) in entries {
            let id = level.keys.get(key)?.find(value)?;
            node = Some(id);
            level = &self.nodes[id].children;
        }
        let rule = self.nodes[node?].rule?;
        Some(&self.rules[rule])
    }

    /// Every rule of the domain, in file order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            root: Level::default(),
            nodes: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Numbers the domain's rules from `first` in file order ([`Rule::index`]); returns
    /// the next free number.
    pub(crate) fn number_rules(&mut self, first: usize) -> usize {
        for (i, rule) in self.rules.iter_mut().enumerate() {
            rule.index = first + i;
        }
        first + self.rules.len()
    }

    /// Adds one document's top-level descriptors; with domain merging a later document
    /// adds to the same root, and a repeated composite key there still fails.
    pub(crate) fn add_descriptors(
        &mut self,
        file: &str,
        descriptors: Vec<Spanned<DescriptorDto>>,
        options: &LoadOptions,
        paths: &mut PathBudget,
    ) -> Result<(), ConfigError> {
        let mut root = std::mem::take(&mut self.root);
        let mut builder = Builder {
            domain: self,
            file,
            default_algorithm: options.default_algorithm,
            max_depth: options.max_depth,
            steps: Vec::new(),
            paths,
        };
        let result = builder.level(&mut root, "", descriptors);
        self.root = root;
        result
    }
}

/// State while adding one document's descriptors.
struct Builder<'d, 'f, 'p> {
    domain: &'d mut Domain,
    file: &'f str,
    default_algorithm: Algorithm,
    /// How many levels deep descriptors may nest.
    max_depth: usize,
    /// The path from the root to the level being built.
    steps: Vec<Step>,
    /// What the load's rules may keep of their paths.
    paths: &'p mut PathBudget,
}

impl Builder<'_, '_, '_> {
    /// Adds `descriptors` to `level`; `parent` is the key path of their parent.
    fn level(
        &mut self,
        level: &mut Level,
        parent: &str,
        descriptors: Vec<Spanned<DescriptorDto>>,
    ) -> Result<(), ConfigError> {
        for (i, descriptor) in descriptors.into_iter().enumerate() {
            let path = if parent.is_empty() {
                format!("descriptors[{i}]")
            } else {
                format!("{parent}.descriptors[{i}]")
            };
            let at = file::position(self.file, &descriptor.referenced);
            self.descriptor(level, path, at, descriptor.value)?;
        }
        Ok(())
    }

    /// Adds one descriptor at `path` (defined at `at`) to `level`, then its children.
    fn descriptor(
        &mut self,
        level: &mut Level,
        path: String,
        at: Position,
        mut dto: DescriptorDto,
    ) -> Result<(), ConfigError> {
        if self.steps.len() >= self.max_depth {
            return Err(ConfigError::TooDeep {
                at,
                path,
                max: self.max_depth,
            });
        }
        let step = step(self.file, &path, &at, &dto)?;
        let group = level.keys.entry(step.key.clone()).or_default();
        if let Some(first) = group.existing(&step.value) {
            return Err(ConfigError::DuplicateDescriptor {
                at,
                path,
                composite_key: self.stats_key(Some(&step)),
                first: self.domain.nodes[first].origin.clone(),
            });
        }
        let id = self.domain.nodes.len();
        group.insert(&step.value, id);
        self.domain.nodes.push(Node {
            children: Level::default(),
            rule: None,
            origin: at.clone(),
        });
        self.steps.push(step);

        if let Some(rule) = self.rule(&path, &at, &mut dto)? {
            self.domain.nodes[id].rule = Some(self.domain.rules.len());
            self.domain.rules.push(rule);
        }

        let mut children = Level::default();
        let result = self.level(&mut children, &path, dto.descriptors.unwrap_or_default());
        self.domain.nodes[id].children = children;
        self.steps.pop();
        result
    }

    /// The rule of the descriptor at the end of the current path, if it has limits.
    fn rule(
        &mut self,
        path: &str,
        at: &Position,
        dto: &mut DescriptorDto,
    ) -> Result<Option<Rule>, ConfigError> {
        let Some(limits) = rate_limit::rule_limits(self.file, path, dto, self.default_algorithm)?
        else {
            return Ok(None);
        };
        // The stats key, and the steps again: what this rule keeps of its path.
        let kept = self.domain.name.len()
            + self
                .steps
                .iter()
                .map(|s| 2 * (s.composite_len() + 1))
                .sum::<usize>();
        self.paths.charge(kept, at, path)?;
        Ok(Some(Rule {
            limits: limits.limits,
            unlimited: limits.unlimited,
            shadow_mode: dto.shadow_mode.unwrap_or(false),
            quota_mode: dto.quota_mode.unwrap_or(false),
            detailed_metric: dto.detailed_metric.unwrap_or(false),
            value_to_metric: dto.value_to_metric.unwrap_or(false),
            metadata: dto.metadata.take(),
            shared_values: self.steps.iter().map(shared_value).collect(),
            stats_key: self.stats_key(None),
            origin: at.to_string(),
            index: 0,
            domain_len: self.domain.name.len(),
            steps: self.steps.clone(),
            replaces: limits.replaces,
        }))
    }

    /// `domain.k1_v1.k2...` for the current path, plus `extra` if given.
    fn stats_key(&self, extra: Option<&Step>) -> String {
        let mut key = self.domain.name.clone();
        for step in self.steps.iter().chain(extra) {
            key.push('.');
            key.push_str(&step.composite());
        }
        key
    }
}

/// The step a descriptor adds to the path: its key (required, non-empty), its value (exact,
/// wildcard or default), and `share_threshold`, which needs a wildcard.
fn step(file: &str, path: &str, at: &Position, dto: &DescriptorDto) -> Result<Step, ConfigError> {
    let key = match &dto.key {
        None => {
            return Err(ConfigError::Missing {
                at: at.clone(),
                path: format!("{path}.key"),
            });
        }
        Some(key) if key.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &key.referenced),
                path: format!("{path}.key"),
            });
        }
        Some(key) => key.value.clone(),
    };
    let value = match dto.value.as_ref().map(|v| v.value.as_str()) {
        None | Some("") => StepValue::Default,
        Some(v) if v.contains('*') => StepValue::Wildcard(v.to_owned()),
        Some(v) => StepValue::Exact(v.to_owned()),
    };
    let share_threshold = match &dto.share_threshold {
        Some(flag) if flag.value => {
            if !matches!(value, StepValue::Wildcard(_)) {
                return Err(ConfigError::ShareThresholdWithoutWildcard {
                    at: file::position(file, &flag.referenced),
                    path: format!("{path}.share_threshold"),
                    value: dto
                        .value
                        .as_ref()
                        .map_or("absent".to_owned(), |v| format!("{:?}", v.value)),
                });
            }
            true
        }
        _ => false,
    };
    Ok(Step {
        key,
        value,
        value_to_metric: dto.value_to_metric.unwrap_or(false),
        share_threshold,
    })
}

/// The pattern that names a `share_threshold` depth's bucket.
fn shared_value(step: &Step) -> Option<String> {
    match &step.value {
        StepValue::Wildcard(pattern) if step.share_threshold => Some(pattern.clone()),
        _ => None,
    }
}
