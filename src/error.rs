//! The library's error type: what went wrong, to which object or path, and
//! whether trying again may help.
//!
//! Every message is one line naming the object or path concerned. Messages
//! say what happened in the library's own terms and never name command-line
//! flags or commands: a daemon or an HTTP client reaches the same errors,
//! and the command-line tool (`src/cli/`) alone turns an [`ErrorKind`] into
//! advice ("use `litevault unlock` if that process is gone") and an exit
//! code. [`Error::is_retryable`] tells a caller (the scheduler, the HTTP
//! API) whether the same call may succeed later unchanged.
//!
//! Storage backends report a [`BackendError`] with a [`BackendErrorKind`]
//! (not found, transient, permanent, no space, ...), never a faked
//! `io::Error`, so remote backends can say what their protocol said.

pub mod codes;

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a storage backend's failure means for its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The object (or the repository location) does not exist.
    NotFound,
    /// A failure that may go away by itself: a timeout, a reset
    /// connection, an HTTP 5xx or 429. Retrying may help.
    Transient,
    /// A failure that retrying will not cure: bad credentials, a refused
    /// request, an invalid name.
    Permanent,
    /// The storage is full.
    NoSpace,
    /// The storage refused access (permissions, credentials).
    PermissionDenied,
    /// The storage is read-only.
    ReadOnly,
    /// A range read past the end of the object: it is shorter than its
    /// index says, so it was truncated.
    OutOfRange,
}

/// The operation a backend error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendOp {
    /// Creating the repository layout.
    Create,
    /// Storing an object.
    Write,
    /// Reading an object or a range of it.
    Read,
    /// Asking an object's size.
    Stat,
    /// Listing objects.
    List,
    /// Deleting an object.
    Delete,
    /// Connecting to the storage.
    Connect,
}

impl BackendOp {
    fn verb(self) -> &'static str {
        match self {
            BackendOp::Create => "creating",
            BackendOp::Write => "writing",
            BackendOp::Read => "reading",
            BackendOp::Stat => "reading the size of",
            BackendOp::List => "listing",
            BackendOp::Delete => "deleting",
            BackendOp::Connect => "connecting to",
        }
    }
}

/// A storage backend's failure: its kind, the operation and the object
/// (`data/ab/ab12…`, `index/…`, `config`, or the location), and the
/// storage's own words. Secrets never appear in it.
#[derive(Debug)]
pub struct BackendError {
    /// What the failure means.
    pub kind: BackendErrorKind,
    /// What was being done.
    pub op: BackendOp,
    /// The object concerned, as messages name it.
    pub object: String,
    /// The storage's message.
    pub detail: String,
    /// The operating system's error number, when there is one.
    pub os_error: Option<i32>,
}

impl BackendError {
    /// A backend error of `kind`.
    pub fn new(
        kind: BackendErrorKind,
        op: BackendOp,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            op,
            object: object.into(),
            detail: detail.into(),
            os_error: None,
        }
    }

    /// Classifies a local I/O error.
    pub fn from_io(op: BackendOp, object: impl Into<String>, e: &io::Error) -> Self {
        let kind = match e.raw_os_error() {
            Some(28) => BackendErrorKind::NoSpace,  // ENOSPC
            Some(30) => BackendErrorKind::ReadOnly, // EROFS
            Some(1 | 13) => BackendErrorKind::PermissionDenied,
            _ => match e.kind() {
                io::ErrorKind::NotFound => BackendErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => BackendErrorKind::PermissionDenied,
                io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => BackendErrorKind::Transient,
                io::ErrorKind::UnexpectedEof => BackendErrorKind::OutOfRange,
                _ => BackendErrorKind::Permanent,
            },
        };
        Self {
            kind,
            op,
            object: object.into(),
            detail: e.to_string(),
            os_error: e.raw_os_error(),
        }
    }

    /// True if the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op.verb(), self.object, self.detail)
    }
}

impl std::error::Error for BackendError {}

/// Why the database to back up could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceProblem {
    /// The path does not exist.
    Missing,
    /// It is a directory, a FIFO, a device: not a database file.
    NotAFile,
    /// The file is not an SQLite database.
    NotSqlite,
    /// SQLite reports the database corrupt.
    Corrupt,
    /// `PRAGMA quick_check` failed on the source.
    CheckFailed,
    /// Another connection held its lock longer than the lock timeout.
    Busy,
    /// It cannot be opened or read (permissions, I/O).
    Unreadable,
    /// This SQLite build lacks the `sqlite_dbpage` virtual table.
    NoPageReader,
    /// `VACUUM INTO` could not write its export.
    ExportFailed,
    /// Its file name leaves no room for SQLite's side files.
    NameTooLong,
    /// It is in rollback-journal mode, where continuous capture has no
    /// log to read.
    NotWal,
}

/// Everything that can go wrong in litevault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository location does not exist.
    #[error("no repository at {location}: the location does not exist")]
    RepositoryNotFound {
        /// The location, without secrets.
        location: String,
    },

    /// The location exists but holds no litevault repository.
    #[error("{location} is not a litevault repository: {reason}")]
    NotARepository {
        /// The location, without secrets.
        location: String,
        /// Why not.
        reason: String,
    },

    /// A repository cannot be created where something already is.
    #[error("cannot create a repository at {location}: {reason}")]
    AlreadyExists {
        /// The location, without secrets.
        location: String,
        /// What is there.
        reason: String,
    },

    /// An object carries a format version this build does not know.
    #[error("{object} was written by a newer litevault (format {version}); this litevault reads format {supported}")]
    NewerFormat {
        /// The object.
        object: String,
        /// Its format version.
        version: u8,
        /// The newest version this build reads.
        supported: u8,
    },

    /// No key file could be opened with the password.
    #[error("wrong password: none of the {keys} key file(s) in the repository opens with it")]
    WrongPassword {
        /// How many key files were tried.
        keys: usize,
    },

    /// The key file the local cache opened the repository with is no
    /// longer in the repository (removed, or the repository replaced).
    #[error("the key {key} that opened {location} from the local cache is no longer in the repository (it was removed, or the repository was replaced); the cache has forgotten it")]
    KeyGone {
        /// The repository.
        location: String,
        /// The key's short id.
        key: String,
    },

    /// A stored object failed authentication, hashing or decoding, or is
    /// missing though the repository's structure needs it.
    #[error("{object} is damaged: {reason}")]
    Damaged {
        /// The object.
        object: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The repository is locked by someone else.
    #[error("repository is locked {mode} by {holder}{}", waited_for(.waited.as_ref()))]
    Locked {
        /// "exclusively" or "(shared)".
        mode: &'static str,
        /// Who holds the lock.
        holder: String,
        /// How long this process waited for it (`--retry-lock`), if it did.
        waited: Option<std::time::Duration>,
    },

    /// A held lock could not be refreshed in time, so another process may
    /// consider it stale.
    #[error("the repository lock could not be refreshed for {minutes} minutes, so another process may have taken it; stopped before writing more")]
    LockLost {
        /// Minutes since the last successful refresh.
        minutes: u64,
    },

    /// What this process wrote under its lock may be gone: its lock file
    /// was removed, or a pack it wrote has disappeared, so another process
    /// (a prune) did not respect its lock. Nothing was made visible.
    #[error("{reason}, so another process may have deleted what this one wrote; stopped without writing a snapshot: run it again")]
    WritesLost {
        /// What was found missing.
        reason: String,
    },

    /// An id or id prefix names no object of its kind.
    #[error("no {what} with id {id} in the repository")]
    NotFound {
        /// "snapshot" or "key".
        what: &'static str,
        /// The id or prefix given.
        id: String,
    },

    /// An id prefix names several objects.
    #[error("{what} id prefix {prefix} is ambiguous: it matches {matches} {what}s")]
    Ambiguous {
        /// "snapshot" or "key".
        what: &'static str,
        /// The prefix given.
        prefix: String,
        /// How many objects it matches.
        matches: usize,
    },

    /// `latest` matched snapshots of more than one database.
    #[error("`latest` matches snapshots of {} databases ({}): it could restore the wrong one", databases.len(), databases.join("; "))]
    AmbiguousLatest {
        /// Each database: name, host and path.
        databases: Vec<String>,
    },

    /// `latest` (or a time) matched no snapshot.
    #[error("{}", if *filtered { "no snapshot matches the given filters" } else { "the repository has no snapshots yet" })]
    NoSnapshot {
        /// True if filters were given.
        filtered: bool,
    },

    /// An option has a value the library cannot use.
    #[error("{message}")]
    InvalidOption {
        /// The option's name in the library's option types (`lock_timeout`,
        /// `tags`, `policy`, ...).
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// Invalid input that is no single option (an id that is not hex, a
    /// page size a snapshot cannot have, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// The operation would remove the last key of the repository.
    #[error("refusing to remove the last key: the repository could never be opened again")]
    LastKey,

    /// The repository was opened with a write-only key, which can back up
    /// but not read what is stored, nor delete it (SPEC.md 21).
    #[error("{what} needs a full key, and the repository was opened with a write-only key, which can only add backups: run it on a trusted host with a full key")]
    WriteOnly {
        /// What was refused ("restore", "reading snapshots/ab12…").
        what: String,
    },

    /// The operation would remove the key the repository is open with.
    #[error("refusing to remove key {id}, which this command opened the repository with")]
    KeyInUse {
        /// Short id of the key.
        id: String,
    },

    /// A retention policy would remove every snapshot of a group.
    #[error("the policy would remove all {count} snapshot(s) of group {group}: refusing")]
    WouldRemoveAll {
        /// The group, described.
        group: String,
        /// Snapshots it has.
        count: usize,
    },

    /// The database to back up could not be read.
    #[error("{message}")]
    Source {
        /// The database.
        path: PathBuf,
        /// What kind of problem.
        problem: SourceProblem,
        /// The whole message.
        message: String,
    },

    /// A restore target is open or locked by another process.
    #[error("target {} is {holder}", path.display())]
    TargetBusy {
        /// The target.
        path: PathBuf,
        /// Who has it ("open by pid 42 (app)", "locked by another connection").
        holder: String,
    },

    /// Whether another process has a restore target open cannot be ruled
    /// out.
    #[error("cannot tell whether another process has target {} open: {why}", path.display())]
    TargetMaybeBusy {
        /// The target.
        path: PathBuf,
        /// Why it cannot be ruled out.
        why: String,
    },

    /// The restored file cannot be given the target's owner.
    #[error("cannot keep the owner of target {} (uid {uid}, gid {gid}): only root can give the restored file another owner", path.display())]
    TargetOwner {
        /// The target.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },

    /// The snapshot's image is intact but the database in it fails its
    /// integrity check: it was already corrupt when it was backed up.
    #[error("the snapshot of {database} taken at {time} holds a database that was already corrupt when it was backed up (its image matches its recorded hash): {problem}")]
    CorruptSnapshot {
        /// The database's name.
        database: String,
        /// The snapshot's time.
        time: String,
        /// What the check said.
        problem: String,
    },

    /// A live restore into a WAL database whose page size differs from the
    /// snapshot's: SQLite cannot change it while the database is open.
    #[error("target {} is in WAL mode with {target_page_size}-byte pages but the snapshot has {snapshot_page_size}-byte pages: SQLite cannot change the page size of a WAL database while it is open", path.display())]
    LivePageSize {
        /// The target.
        path: PathBuf,
        /// Its page size.
        target_page_size: i64,
        /// The snapshot's.
        snapshot_page_size: i64,
    },

    /// Not enough free space where a file must be written.
    #[error("not enough free space in {}: the {what} {}", path.display(), if *needed > 0 { format!("needs {needed} bytes, {free} are free") } else { "found the filesystem full".into() })]
    NoSpace {
        /// The directory.
        path: PathBuf,
        /// What needs the space ("restore").
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },

    /// SQL given to run on a database failed.
    #[error("the SQL of option {option} failed: {message}; {outcome}")]
    Sql {
        /// The option that gave the SQL (`post_sql`).
        option: &'static str,
        /// SQLite's message.
        message: String,
        /// What was left as it was ("the target was not touched").
        outcome: &'static str,
    },

    /// A password could not be obtained.
    #[error("{0}")]
    Password(String),

    /// The storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),

    /// A local file operation failed (the restore target, a temporary
    /// file, an output file: never the repository, which is a backend).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("writing", "fsyncing", ...).
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The operation was interrupted (Ctrl-C, SIGTERM); nothing half-done
    /// was left behind.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A broken invariant inside litevault: a bug to report.
    #[error("internal error: {0}")]
    Internal(String),

    /// The service's config file is invalid (the message names the key,
    /// line or path).
    #[error("config {}: {message}", file.display())]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, naming the key and how to fix it.
        message: String,
    },
}

/// The kind of an [`Error`], for callers that map errors to advice, exit
/// codes or HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No repository at the location.
    RepositoryNotFound,
    /// The location holds something else.
    NotARepository,
    /// `init` found something at the location.
    AlreadyExists,
    /// Written by a newer litevault.
    NewerFormat,
    /// No key opens with the password.
    WrongPassword,
    /// A stored object is damaged or missing.
    Damaged,
    /// The repository was opened with a write-only key, which cannot do it.
    WriteOnly,
    /// The repository is locked.
    Locked,
    /// A held lock was lost.
    LockLost,
    /// An id names nothing, or `latest` matched nothing.
    NotFound,
    /// An id prefix names several objects.
    Ambiguous,
    /// Invalid options or input.
    InvalidInput,
    /// Refused to protect the repository (last key, key in use, a policy
    /// emptying a group).
    Refused,
    /// The database to back up could not be read.
    Source,
    /// A restore target is in use (or may be).
    TargetBusy,
    /// A snapshot holds a database that was corrupt when it was backed up.
    CorruptSnapshot,
    /// Not enough space for a local file.
    NoSpace,
    /// User-supplied SQL failed.
    Sql,
    /// No password.
    Password,
    /// The storage backend failed.
    Backend(BackendErrorKind),
    /// A local file operation failed.
    Io,
    /// Interrupted by a signal.
    Interrupted,
    /// A bug.
    Internal,
    /// The service's config file is invalid.
    Config,
}

impl Error {
    /// The refusal of `what` to a write-only key.
    pub fn write_only(what: impl Into<String>) -> Self {
        Self::WriteOnly { what: what.into() }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RepositoryNotFound { .. } => ErrorKind::RepositoryNotFound,
            Error::NotARepository { .. } => ErrorKind::NotARepository,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::NewerFormat { .. } => ErrorKind::NewerFormat,
            Error::WrongPassword { .. } | Error::KeyGone { .. } => ErrorKind::WrongPassword,
            Error::Damaged { .. } => ErrorKind::Damaged,
            Error::WriteOnly { .. } => ErrorKind::WriteOnly,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::LockLost { .. } | Error::WritesLost { .. } => ErrorKind::LockLost,
            Error::NotFound { .. } | Error::NoSnapshot { .. } => ErrorKind::NotFound,
            Error::Ambiguous { .. } | Error::AmbiguousLatest { .. } => ErrorKind::Ambiguous,
            Error::InvalidOption { .. } | Error::InvalidInput(_) | Error::LivePageSize { .. } => {
                ErrorKind::InvalidInput
            }
            Error::LastKey | Error::KeyInUse { .. } | Error::WouldRemoveAll { .. } => {
                ErrorKind::Refused
            }
            Error::Source { .. } => ErrorKind::Source,
            Error::TargetBusy { .. } | Error::TargetMaybeBusy { .. } => ErrorKind::TargetBusy,
            Error::CorruptSnapshot { .. } => ErrorKind::CorruptSnapshot,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
            Error::Sql { .. } => ErrorKind::Sql,
            Error::Password(_) => ErrorKind::Password,
            Error::Backend(e) => ErrorKind::Backend(e.kind),
            Error::Io { .. } | Error::TargetOwner { .. } => ErrorKind::Io,
            Error::Interrupted(_) => ErrorKind::Interrupted,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Config { .. } => ErrorKind::Config,
        }
    }

    /// True if the same call may succeed later without anyone changing
    /// anything: a transient storage failure, a repository or database
    /// locked by someone else, a target in use.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend(e) => e.kind == BackendErrorKind::Transient,
            Error::Locked { .. } | Error::TargetBusy { .. } | Error::TargetMaybeBusy { .. } => true,
            Error::Source { problem, .. } => *problem == SourceProblem::Busy,
            _ => false,
        }
    }

    /// A local file error on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A damaged object.
    pub(crate) fn damaged(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Damaged {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// An invalid option value.
    pub(crate) fn option(option: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidOption {
            option,
            message: message.into(),
        }
    }

    /// The database to back up could not be read.
    pub(crate) fn source(
        path: impl Into<PathBuf>,
        problem: SourceProblem,
        message: impl Into<String>,
    ) -> Self {
        Error::Source {
            path: path.into(),
            problem,
            message: message.into(),
        }
    }

    /// True if a storage backend said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Backend(e) if e.is_not_found())
    }
}

/// ", still after waiting 5m for it" when a lock was waited for.
fn waited_for(waited: Option<&std::time::Duration>) -> String {
    waited.map_or(String::new(), |d| {
        format!(
            ", still after waiting {} for it",
            crate::sys::format_duration(*d)
        )
    })
}
