//! The version the binary reports (`--version`, sessions, metrics).

/// `cassfs --version`: package version, git revision, build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CASSFS_GIT_REV"),
    ", built ",
    env!("CASSFS_BUILD_DATE"),
    ")"
);
