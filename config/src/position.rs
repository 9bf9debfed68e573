//! [`Position`]: where in a quota file a fault is, and [`ConfigError::position`] and
//! [`ConfigError::key_path`], which read it off any error.

use std::fmt;

use crate::error::ConfigError;

/// A place in a quota file: 1-based line and column (in characters), displayed as
/// `file:line:column`; or a whole source without lines (line 0, an xDS resource), displayed
/// as its name alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The file as it was named when loading (a path, or a source name given to
    /// [`QuotaSet::from_sources`](crate::QuotaSet::from_sources)).
    pub file: String,
    /// 1-based line; 0 for a source that has no lines.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A whole source without lines (an xDS resource): its name alone.
            return f.write_str(&self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl ConfigError {
    /// Where the fault is, for every error but [`ConfigError::Io`].
    pub fn position(&self) -> Option<&Position> {
        match self {
            Self::Io { .. } => None,
            Self::Syntax { at, .. }
            | Self::UnknownField { at, .. }
            | Self::NonStringKey { at, .. }
            | Self::WrongType { at, .. }
            | Self::DuplicateYamlKey { at, .. }
            | Self::Missing { at, .. }
            | Self::Empty { at, .. }
            | Self::DuplicateDescriptor { at, .. }
            | Self::DuplicateDomain { at, .. }
            | Self::UnknownUnit { at, .. }
            | Self::MissingUnit { at, .. }
            | Self::ConflictsWithUnlimited { at, .. }
            | Self::ReplacesOwnRule { at, .. }
            | Self::ShareThresholdWithoutWildcard { at, .. }
            | Self::RateLimitAndRateLimits { at, .. }
            | Self::BurstWithFixedWindow { at, .. }
            | Self::ZeroUnitMultiplier { at, .. }
            | Self::ZeroBurst { at, .. }
            | Self::TooLarge { at, .. }
            | Self::UnknownAlgorithm { at, .. }
            | Self::DuplicateLimitName { at, .. }
            | Self::UnlimitedNotAlone { at, .. }
            | Self::BadDuration { at, .. }
            | Self::FillIntervalTooShort { at, .. }
            | Self::OutOfRange { at, .. }
            | Self::UnknownValue { at, .. }
            | Self::ActionKinds { at, .. }
            | Self::MatcherKinds { at, .. }
            | Self::BadHeaderName { at, .. }
            | Self::DuplicateLocalDescriptor { at, .. }
            | Self::DuplicateLocal { at, .. }
            | Self::NothingToLimit { at, .. }
            | Self::TooDeep { at, .. }
            | Self::NestedTooDeep { at, .. }
            | Self::TooManyNodes { at, .. }
            | Self::NotUtf8 { at, .. }
            | Self::InvalidValue { at, .. }
            | Self::Conflict { at, .. }
            | Self::DuplicateRuleDescriptor { at, .. } => Some(at),
        }
    }

    /// The key path of the fault (`domain` for a duplicate domain, `local` for a second local
    /// section), for every error but [`ConfigError::Io`].
    pub fn key_path(&self) -> Option<&str> {
        match self {
            Self::Io { .. } => None,
            Self::DuplicateDomain { .. } => Some("domain"),
            Self::DuplicateLocal { .. } => Some("local"),
            Self::Syntax { path, .. }
            | Self::UnknownField { path, .. }
            | Self::NonStringKey { path, .. }
            | Self::WrongType { path, .. }
            | Self::DuplicateYamlKey { path, .. }
            | Self::Missing { path, .. }
            | Self::Empty { path, .. }
            | Self::DuplicateDescriptor { path, .. }
            | Self::UnknownUnit { path, .. }
            | Self::MissingUnit { path, .. }
            | Self::ConflictsWithUnlimited { path, .. }
            | Self::ReplacesOwnRule { path, .. }
            | Self::ShareThresholdWithoutWildcard { path, .. }
            | Self::RateLimitAndRateLimits { path, .. }
            | Self::BurstWithFixedWindow { path, .. }
            | Self::ZeroUnitMultiplier { path, .. }
            | Self::ZeroBurst { path, .. }
            | Self::TooLarge { path, .. }
            | Self::UnknownAlgorithm { path, .. }
            | Self::DuplicateLimitName { path, .. }
            | Self::UnlimitedNotAlone { path, .. }
            | Self::BadDuration { path, .. }
            | Self::FillIntervalTooShort { path, .. }
            | Self::OutOfRange { path, .. }
            | Self::UnknownValue { path, .. }
            | Self::ActionKinds { path, .. }
            | Self::MatcherKinds { path, .. }
            | Self::BadHeaderName { path, .. }
            | Self::DuplicateLocalDescriptor { path, .. }
            | Self::NothingToLimit { path, .. }
            | Self::TooDeep { path, .. }
            | Self::NestedTooDeep { path, .. }
            | Self::TooManyNodes { path, .. }
            | Self::NotUtf8 { path, .. }
            | Self::InvalidValue { path, .. }
            | Self::Conflict { path, .. }
            | Self::DuplicateRuleDescriptor { path, .. } => Some(path),
        }
    }
}
