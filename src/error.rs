//! The library's error type.
//!
//! Every message is one line that says what happened and, where there is
//! something to do, what to do. Each kind maps to a stable process exit code
//! ([`Error::exit_code`]) that the command-line tool returns and README.md
//! documents; the codes follow restic's where restic has one.

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes, stable and documented in README.md ("Exit codes").
pub mod exit_code {
    /// Any error not listed below.
    pub const FAILURE: u8 = 1;
    /// Command-line usage error (unknown flag, missing argument).
    pub const USAGE: u8 = 2;
    /// The database to back up could not be read (missing, not SQLite,
    /// corrupt, locked beyond the timeout).
    pub const SOURCE: u8 = 3;
    /// The repository does not exist or is not a litevault repository.
    pub const NO_REPOSITORY: u8 = 10;
    /// The repository is locked by another process.
    pub const LOCKED: u8 = 11;
    /// No key file opens with the given password.
    pub const WRONG_PASSWORD: u8 = 12;
    /// A stored object is damaged (failed authentication or decoding).
    pub const DAMAGED: u8 = 13;
    /// The repository was written by a newer litevault.
    pub const NEWER_FORMAT: u8 = 14;
    /// Interrupted by a signal (SIGINT/SIGTERM).
    pub const INTERRUPTED: u8 = 130;
}

/// Everything that can go wrong in litevault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository location does not exist.
    #[error("no repository at {path}: the path does not exist (create one with `litevault init`)")]
    RepositoryNotFound { path: PathBuf },

    /// The location exists but holds no litevault repository.
    #[error("{path} is not a litevault repository: {reason}")]
    NotARepository { path: PathBuf, reason: String },

    /// `init` was asked to create a repository where something already is.
    #[error("cannot create a repository at {path}: {reason}")]
    AlreadyExists { path: PathBuf, reason: String },

    /// An object carries a format version this build does not know.
    #[error("{object} was written by a newer litevault (format {version}); this litevault reads format {supported}: upgrade litevault")]
    NewerFormat {
        object: String,
        version: u8,
        supported: u8,
    },

    /// No key file could be opened with the password.
    #[error("wrong password: none of the {keys} key file(s) in the repository opens with it")]
    WrongPassword { keys: usize },

    /// A stored object failed authentication, hashing or decoding.
    #[error("{object} is damaged: {reason} (run `litevault check` to see the extent)")]
    Damaged { object: String, reason: String },

    /// The repository is locked by someone else.
    #[error(
        "repository is locked {mode} by {holder} (use `litevault unlock` if that process is gone)"
    )]
    Locked { mode: &'static str, holder: String },

    /// The database to back up could not be read.
    #[error("{0}")]
    Source(String),

    /// The operation was interrupted (Ctrl-C, SIGTERM); nothing half-done
    /// was left behind.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A held lock could not be refreshed in time.
    #[error("{0}")]
    LockLost(String),

    /// A password could not be obtained.
    #[error("{0}")]
    Password(String),

    /// A key operation that would leave the repository unusable.
    #[error("{0}")]
    KeyRefused(String),

    /// An id or id prefix that does not name exactly one object.
    #[error("{0}")]
    NotFound(String),

    /// Invalid options or arguments passed to the library.
    #[error("{0}")]
    InvalidInput(String),

    /// An I/O failure, with the object or path it concerned.
    #[error("{context}: {}", describe_io(source))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::RepositoryNotFound { .. } | Error::NotARepository { .. } => {
                exit_code::NO_REPOSITORY
            }
            Error::Locked { .. } | Error::LockLost(_) => exit_code::LOCKED,
            Error::WrongPassword { .. } => exit_code::WRONG_PASSWORD,
            Error::Damaged { .. } => exit_code::DAMAGED,
            Error::NewerFormat { .. } => exit_code::NEWER_FORMAT,
            Error::Source(_) => exit_code::SOURCE,
            Error::Interrupted(_) => exit_code::INTERRUPTED,
            _ => exit_code::FAILURE,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn damaged(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Damaged {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// True if this is an I/O error of kind `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Turns the I/O errors people hit into advice.
fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(28) => {
            format!("{e} (free space on the repository's filesystem, or run `litevault prune`)")
        }
        Some(30) => format!("{e} (the repository's filesystem is mounted read-only)"),
        Some(13 | 1) => {
            format!("{e} (check the ownership and permissions of the repository)")
        }
        _ => e.to_string(),
    }
}
