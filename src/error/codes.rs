//! Exit codes: one per kind of failure, stable and documented (README.md,
//! "Exit codes"). The command line exits with them; the service reports
//! them with each failure (task views, webhooks, hooks), so a script sees
//! the same number whichever way it ran the work.

use super::{BackendErrorKind, Error};

/// Exit codes, stable and documented in README.md ("Exit codes").
pub mod code {
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
    /// The snapshot holds a database that was already corrupt when it was
    /// backed up (its image is intact).
    pub const CORRUPT_SNAPSHOT: u8 = 15;
    /// The repository's storage failed or refused a request: unreachable
    /// or timed out, bad credentials, no permission, a missing bucket, an
    /// unknown host key, full or read-only.
    pub const STORAGE: u8 = 16;
    /// The service's config file is invalid, or names a database or
    /// repository that cannot be used.
    pub const CONFIG: u8 = 17;
    /// A backup of several databases: some failed (each named in its own
    /// error line), the others were backed up.
    pub const PARTIAL: u8 = 18;
    /// The repository was opened with a write-only key, and the command
    /// reads or deletes what is stored (restore, check, forget, ...).
    pub const WRITE_ONLY: u8 = 19;
    /// Interrupted by a signal (SIGINT/SIGTERM).
    pub const INTERRUPTED: u8 = 130;
}

/// The exit code of a library error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::RepositoryNotFound { .. } | Error::NotARepository { .. } => code::NO_REPOSITORY,
        Error::Locked { .. } | Error::LockLost { .. } | Error::WritesLost { .. } => code::LOCKED,
        Error::WrongPassword { .. } | Error::KeyGone { .. } => code::WRONG_PASSWORD,
        Error::Damaged { .. } => code::DAMAGED,
        Error::NewerFormat { .. } => code::NEWER_FORMAT,
        Error::CorruptSnapshot { .. } => code::CORRUPT_SNAPSHOT,
        Error::Source { .. } => code::SOURCE,
        Error::Config { .. } => code::CONFIG,
        // A full local disk (a temporary directory, a restore's target
        // directory) is a storage failure as much as a full repository.
        Error::NoSpace { .. } => code::STORAGE,
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => code::STORAGE,
        Error::WriteOnly { .. } => code::WRITE_ONLY,
        Error::Interrupted(_) => code::INTERRUPTED,
        Error::Backend(b)
            if !matches!(
                b.kind,
                BackendErrorKind::NotFound | BackendErrorKind::OutOfRange
            ) =>
        {
            code::STORAGE
        }
        _ => code::FAILURE,
    }
}
