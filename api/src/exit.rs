//! Why a Tide binary stopped, and the exit status that tells it (documented in README):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | stopped on request (SIGTERM, Ctrl-C) or finished |
//! | 1 | a runtime failure: the work could not go on (a port taken, the runtime failed) |
//! | 2 | a usage mistake: a bad flag or combination of flags (clap's own errors are 2 too) |
//! | 3 | a configuration or environment error: an unreadable or invalid file (configuration, kubeconfig, TLS, checkpoint), a cgroup tree the node does not have |
//!
//! A supervisor can then retry 1, and stop retrying 2 and 3 until someone fixes the input.

/// A failure and the exit status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Status 2: a bad flag or flag combination.
    #[error("{0}")]
    Usage(String),
    /// Status 3: an unreadable or invalid input file or environment.
    #[error("{0}")]
    Config(String),
    /// Status 1: the work could not go on.
    #[error("{0}")]
    Runtime(String),
}

impl Failure {
    /// The process exit status.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Config(_) => 3,
        }
    }

    /// Wraps a message as a configuration failure (for `map_err`).
    pub fn config(e: impl std::fmt::Display) -> Self {
        Failure::Config(e.to_string())
    }

    /// Wraps a message as a runtime failure (for `map_err`).
    pub fn runtime(e: impl std::fmt::Display) -> Self {
        Failure::Runtime(e.to_string())
    }
}
