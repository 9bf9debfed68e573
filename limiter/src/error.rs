//! [`LimiterError`]: why local limits could not be loaded.

/// Why [`LocalLimits`](crate::LocalLimits) could not be built or reloaded from quota files.
/// A failed reload keeps the limits in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimiterError {
    /// The quota files were refused (the message names file, line, column and key path).
    #[error(transparent)]
    Config(#[from] config::ConfigError),

    /// The quota files loaded, but no document has a `local` section and no RateLimit
    /// resource a `mode: local` rule.
    #[error(
        "{files}: no document has a local section, and no RateLimit resource a mode: local rule"
    )]
    NoLocalSection {
        /// The files or sources read, comma-separated.
        files: String,
    },
}
