//! [`QuotaSet`]: every domain loaded from a file, a directory of files, or named sources;
//! one load is all-or-nothing.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::budget::PathBudget;
use crate::error::{ConfigError, Position};
use crate::file::{self, DomainFile};
use crate::local::{self, LocalSection};
use crate::quota::Algorithm;
use crate::resource::{Document, LocalRules};
use crate::tree::Domain;

/// The default [`LoadOptions::max_depth`]: 32 levels, as many as the entries the RLS takes
/// in one request descriptor by default, since a descriptor of N entries is matched by a
/// rule N levels deep.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// The default [`LoadOptions::max_nodes`].
pub const DEFAULT_MAX_NODES: usize = 250_000;

/// How to load quota files.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Let several documents define the same domain, adding their descriptors to it (the
    /// reference's `MERGE_DOMAIN_CONFIG`). Off: a repeated domain is an error.
    pub merge_domains: bool,
    /// The algorithm of limits that do not name one.
    pub default_algorithm: Algorithm,
    /// How many levels deep descriptors may nest ([`DEFAULT_MAX_DEPTH`]). A rule N levels
    /// deep is reached only by request descriptors of N entries, so this should be at
    /// least the most entries a request may carry. The file may nest maps and lists as
    /// deep as these descriptors need, and `metadata` [`METADATA_NESTING`](crate::METADATA_NESTING)
    /// levels more; the parser refuses deeper text before building anything.
    pub max_depth: usize,
    /// How many YAML nodes (maps, lists and values) one file may hold
    /// ([`DEFAULT_MAX_NODES`]), counted while parsing, so an oversized file is refused
    /// before it is built.
    pub max_nodes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            merge_domains: false,
            default_algorithm: Algorithm::default(),
            max_depth: DEFAULT_MAX_DEPTH,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
}

/// Every domain of a load, and its `local` section if one document has it; immutable once
/// built.
#[derive(Debug, Default)]
pub struct QuotaSet {
    /// Sorted by name.
    domains: Vec<Domain>,
    index: HashMap<String, usize>,
    files: Vec<PathBuf>,
    local: Option<LocalSection>,
}

impl QuotaSet {
    /// Loads a quota file, or every quota file of a directory: its top-level, non-hidden
    /// (not starting with `.`) regular files — symlinks followed — ending in `.yaml` or
    /// `.yml`, in name order. This skips a Kubernetes ConfigMap mount's `..data` entries and
    /// any subdirectory. Each file may hold several `---` documents, one domain each; empty
    /// documents are skipped. No files or no domains is a valid, empty set.
    ///
    /// A document may also hold a `local` section (see [`QuotaSet::local`]), with or without a
    /// domain; one load holds at most one.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<QuotaSet, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let files = if fs::metadata(path).map_err(io)?.is_dir() {
            quota_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let texts = files
            .iter()
            .map(|file| {
                let bytes = fs::read(file).map_err(|source| ConfigError::Io {
                    path: file.clone(),
                    source,
                })?;
                let name = file.display().to_string();
                let text = utf8(&name, bytes, options)?;
                Ok((name, text))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let sources: Vec<_> = texts
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        on_deep_stack(options, || Self::build(sources, options, files.clone()))
    }

    /// Loads several named sources (the name is used in errors, then the YAML text), as if
    /// each were a file of a directory, in the order given.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
        options: &LoadOptions,
    ) -> Result<QuotaSet, ConfigError> {
        let sources: Vec<_> = sources.into_iter().collect();
        let files = sources
            .iter()
            .map(|(name, _)| PathBuf::from(name))
            .collect();
        on_deep_stack(options, || Self::build(sources, options, files))
    }

    /// The domain named `name`.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.index.get(name).map(|&i| &self.domains[i])
    }

    /// Every domain, sorted by name.
    pub fn domains(&self) -> impl Iterator<Item = &Domain> {
        self.domains.iter()
    }

    /// The number of rules (descriptor nodes with a rate limit) in all domains.
    pub fn rule_count(&self) -> usize {
        self.domains.iter().map(Domain::rule_count).sum()
    }

    /// The files that were loaded, in load order (source names for
    /// [`QuotaSet::from_sources`]).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// This pod's own limits, for the embedded limiter: the load's `local` section, or the
    /// section its `kind: RateLimit` resources' `mode: local` rules make (a load may not
    /// have both). The RLS ignores it.
    pub fn local(&self) -> Option<&LocalSection> {
        self.local.as_ref()
    }

    fn build<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
        options: &LoadOptions,
        files: Vec<PathBuf>,
    ) -> Result<QuotaSet, ConfigError> {
        let mut assembly = Assembly::new(options);
        for (name, text) in sources {
            assembly.allow(text.len());
            for document in crate::resource::documents(name, text, options)? {
                match document {
                    Document::Quota(served) => assembly.add(name, served)?,
                    Document::RateLimit {
                        resource,
                        served,
                        places,
                    } => {
                        assembly.add(name, served)?;
                        assembly.resources.add(resource, places);
                    }
                }
            }
        }
        assembly.finish(files)
    }
}

/// A [`QuotaSet`] being built from documents, whatever their source: quota files, or the
/// xDS resources that `xds` turns into the same documents.
pub(crate) struct Assembly<'o> {
    options: &'o LoadOptions,
    domains: Vec<Domain>,
    /// Domain name -> (index in `domains`, where its first `domain:` is).
    seen: HashMap<String, (usize, Position)>,
    local: Option<(LocalSection, Position)>,
    /// The `kind: RateLimit` resources, for their local rules.
    resources: LocalRules,
    /// What the rules may keep of their key paths.
    paths: PathBudget,
}

impl<'o> Assembly<'o> {
    pub(crate) fn new(options: &'o LoadOptions) -> Self {
        Assembly {
            options,
            domains: Vec::new(),
            seen: HashMap::new(),
            local: None,
            resources: LocalRules::default(),
            paths: PathBudget::new(),
        }
    }

    /// Lets the rules keep more of their paths for `bytes` more of source read.
    pub(crate) fn allow(&mut self, bytes: usize) {
        self.paths.allow(bytes);
    }

    /// Validates one document of the source `name` and adds it.
    pub(crate) fn add(
        &mut self,
        name: &str,
        document: Spanned<DomainFile>,
    ) -> Result<(), ConfigError> {
        let root = file::position(name, &document.referenced);
        let doc = document.value;
        if let Some(section) = doc.local {
            let at = file::position(name, &section.referenced);
            if let Some((_, first)) = &self.local {
                return Err(ConfigError::DuplicateLocal {
                    at,
                    first: first.clone(),
                });
            }
            self.local = Some((local::section(name, section)?, at));
            // A document of local limits only needs no domain.
            if doc.domain.is_none() && doc.descriptors.is_none() {
                return Ok(());
            }
        }
        let domain = match doc.domain {
            None => {
                return Err(ConfigError::Missing {
                    at: root,
                    path: "domain".to_owned(),
                });
            }
            Some(domain) if domain.value.is_empty() => {
                return Err(ConfigError::Empty {
                    at: file::position(name, &domain.referenced),
                    path: "domain".to_owned(),
                });
            }
            Some(domain) => domain,
        };
        let at = file::position(name, &domain.referenced);
        let index = match self.seen.get(&domain.value) {
            Some((index, _)) if self.options.merge_domains => *index,
            Some((_, first)) => {
                return Err(ConfigError::DuplicateDomain {
                    at,
                    domain: domain.value,
                    first: first.clone(),
                });
            }
            None => {
                self.seen
                    .insert(domain.value.clone(), (self.domains.len(), at));
                self.domains.push(Domain::new(domain.value));
                self.domains.len() - 1
            }
        };
        let descriptors = doc.descriptors.unwrap_or_default();
        self.domains[index].add_descriptors(name, descriptors, self.options, &mut self.paths)
    }

    /// The set of every document added; `files` names their sources. Its local limits
    /// are the `local` section or the resources' local rules: a load with both is refused.
    pub(crate) fn finish(self, files: Vec<PathBuf>) -> Result<QuotaSet, ConfigError> {
        let local = match (self.local, self.resources.first()) {
            (Some((_, section)), Some((path, at))) => {
                return Err(ConfigError::Conflict {
                    at,
                    path,
                    other: format!(
                        "the local section at {section} (the embedded limiter enforces either \
                         a local section or the local rules of RateLimit resources)"
                    ),
                });
            }
            (Some((section, _)), None) => Some(section),
            (None, _) => self.resources.section()?,
        };
        let mut domains = self.domains;
        domains.sort_by(|a, b| a.name().cmp(b.name()));
        domains
            .iter_mut()
            .fold(0, |first, domain| domain.number_rules(first));
        let index = domains
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name().to_owned(), i))
            .collect();
        Ok(QuotaSet {
            domains,
            index,
            files,
            local,
        })
    }
}

/// Stack a load needs per level of descriptors: parsing and building recurse once per level,
/// about 100 KiB a level unoptimised and 16 KiB optimised.
const STACK_PER_LEVEL: usize = 256 << 10;

/// The largest stack a load runs on.
const MOST_STACK: usize = 1 << 30;

/// The deepest [`LoadOptions::max_depth`] a load's stack covers: a larger bound would let a
/// file deep enough overflow it.
pub const MOST_MAX_DEPTH: usize = (MOST_STACK - (1 << 20)) / STACK_PER_LEVEL;

/// Runs `load` on a thread whose stack fits [`LoadOptions::max_depth`] levels, so that a
/// deep file cannot overflow the caller's (a tokio worker or a test has 2 MiB, which an
/// unoptimised build spends in about 16 levels). Only the pages used are committed. Should
/// no thread start, it runs here.
fn on_deep_stack<T: Send>(options: &LoadOptions, load: impl FnOnce() -> T + Send) -> T {
    let size = options
        .max_depth
        .saturating_mul(STACK_PER_LEVEL)
        .saturating_add(1 << 20)
        .min(MOST_STACK);
    let mut job = Some(load);
    let spawned = std::thread::scope(|scope| {
        let job = &mut job;
        std::thread::Builder::new()
            .name("quota-load".to_owned())
            .stack_size(size)
            .spawn_scoped(scope, move || job.take().map(|load| load()))
            .map(|thread| thread.join())
    });
    match spawned {
        Ok(Ok(Some(loaded))) => loaded,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Ok(Ok(None)) | Err(_) => match job.take() {
            Some(load) => load(),
            None => unreachable!("a load that ran returned"),
        },
    }
}

/// The text of a file, or where it stops being UTF-8.
fn utf8(name: &str, bytes: Vec<u8>, options: &LoadOptions) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        // Valid by construction: the prefix `from_utf8` vouched for.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let at = Position {
            file: name.to_owned(),
            line: file::saturate(before.matches('\n').count() as u64 + 1),
            column: file::saturate(before[line_start..].chars().count() as u64 + 1),
        };
        // The key path of the last node before the fault, read from the valid part.
        let place = (u64::from(at.line), u64::from(at.column));
        let found = crate::yaml_error::locate(before, place, crate::budget::nesting(options));
        let path = found
            .value()
            .map_or_else(|| crate::yaml_nodes::ROOT.to_owned(), |n| n.display_path());
        ConfigError::NotUtf8 { at, path }
    })
}

/// True for the name of a file a directory's quota set reads: not hidden (editors' swap
/// files, a ConfigMap's `..data`), ending in `.yaml` or `.yml`.
pub fn is_quota_file_name(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml"].iter().any(|ext| name.ends_with(ext))
}

/// The quota files of a directory, sorted by name.
fn quota_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !is_quota_file_name(&name) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: ConfigMap mounts link each file into `..data/`.
        if fs::metadata(&path).map_err(io(&path))?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
