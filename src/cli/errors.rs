//! Errors as the command line shows them: one line, the library's message
//! plus advice that names this tool's flags and commands, and a stable exit
//! code (README.md, "Exit codes"). The library's messages never name flags;
//! this file alone turns an error's kind into what to type next.

use litevault::error::{BackendErrorKind, SourceProblem};
use litevault::Error;

pub use litevault::error::codes::{code, exit_code};

/// The command-line flag of a library option.
fn flag(option: &str) -> String {
    match option {
        "tags" => "--tag".into(),
        "kdf" | "config" => "the repository settings".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// What to do about `e`, in this tool's terms.
fn advice(e: &Error) -> Option<String> {
    Some(match e {
        Error::RepositoryNotFound { .. } => "create one with `litevault init`".into(),
        Error::NotARepository { .. } => {
            "check --repo, or create a repository with `litevault init`".into()
        }
        Error::AlreadyExists { .. } => "choose an empty or new location".into(),
        Error::NewerFormat { .. } => "upgrade litevault".into(),
        Error::KeyGone { .. } => "run the command again".into(),
        // Nothing opens a repository without its config, `check` neither.
        Error::Damaged { object, .. } if object == "config" => {
            "nothing can open the repository without it: put back its `config` file from a copy of the repository".into()
        }
        Error::Damaged { object, .. } if object.starts_with("index/") => {
            "run `litevault repair index` to rebuild the index from the packs".into()
        }
        Error::Damaged { object, .. } if object.starts_with("snapshots/") => {
            "run `litevault repair snapshots` to set it aside, or `litevault forget` it".into()
        }
        Error::Damaged { .. } => "run `litevault check` to see the extent".into(),
        Error::Locked { waited, .. } => format!(
            "{} --retry-lock DURATION, or use `litevault unlock` if that process is gone",
            if waited.is_some() { "wait longer with" } else { "wait for it with" }
        ),
        Error::LockLost { .. } => {
            "check that the repository is writable, then run the command again".into()
        }
        Error::WritesLost { .. } => {
            "do not remove the locks of running processes; run the command again".into()
        }
        Error::NotFound { what: "key", .. } => "see `litevault key list`".into(),
        Error::NotFound { .. } => "see `litevault snapshots`".into(),
        Error::Ambiguous { .. } => "give more digits".into(),
        Error::AmbiguousLatest { .. } => {
            "choose one with --db (its path, or the ending `snapshots` shows) or --host, or give a snapshot id".into()
        }
        Error::NoSnapshot { filtered: false } => "make one with `litevault backup`".into(),
        Error::NoSnapshot { filtered: true } => {
            "see `litevault snapshots`; the filters are --tag, --host and --db".into()
        }
        Error::InvalidOption {
            option: "pre_restore",
            ..
        } => "pass --no-pre-restore to replace it without a backup".into(),
        Error::InvalidOption {
            option: "output", ..
        } => "choose another output file, or stop that process first".into(),
        Error::InvalidOption {
            option: "policy", ..
        } => "give --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within or --keep-tag".into(),
        Error::InvalidOption { option, .. } => format!("check {}", flag(option)),
        Error::LastKey => "add another key first with `litevault key add`".into(),
        Error::KeyInUse { .. } => {
            "open with another key's password, or change this key's password with `litevault key passwd`".into()
        }
        Error::WouldRemoveAll { .. } => "keep something, or pass --allow-remove-all".into(),
        Error::Source { path, problem, .. } => match problem {
            SourceProblem::Missing => "check the path".into(),
            SourceProblem::Corrupt => format!(
                "inspect it with `sqlite3 {} 'PRAGMA integrity_check'`",
                path.display()
            ),
            SourceProblem::CheckFailed => {
                "repair it first, or back up without --verify-source to keep the damaged state"
                    .into()
            }
            SourceProblem::Busy => "retry when its writer is done, or raise --lock-timeout".into(),
            SourceProblem::Unreadable => "check the path and permissions".into(),
            SourceProblem::NoPageReader => "use --strategy vacuum".into(),
            SourceProblem::ExportFailed => {
                "choose a writable temporary directory with enough space (--temp-dir)".into()
            }
            _ => return None,
        },
        Error::TargetBusy { .. } => {
            "stop it first, or restore into the open database with --live (--force replaces it anyway, and what that process writes later is lost)".into()
        }
        Error::TargetMaybeBusy { .. } => {
            "run as root to see every process, restore into the open database with --live, or pass --force if you are sure nothing has it open".into()
        }
        Error::TargetOwner { .. } => {
            "run the restore as root, or restore to a path this user owns".into()
        }
        Error::CorruptSnapshot { .. } => {
            "salvage what it holds with `litevault dump`, or restore an earlier snapshot".into()
        }
        Error::LivePageSize { .. } => "stop the application and restore without --live".into(),
        Error::NoSpace {
            what: "VACUUM INTO export",
            ..
        } => "free space there, or choose another directory with --temp-dir".into(),
        Error::NoSpace { .. } => "free space on that filesystem, or choose another one".into(),
        Error::Backend(b) => return storage_advice(b),
        Error::Io { path, source, .. } => match source.raw_os_error() {
            Some(28) => format!("free space on the filesystem of {}", path.display()),
            Some(30) => format!("{} is on a read-only filesystem", path.display()),
            Some(1 | 13) => format!("check the permissions of {}", path.display()),
            _ => return None,
        },
        _ => return None,
    })
}

/// What to do about a storage failure.
fn storage_advice(b: &litevault::BackendError) -> Option<String> {
    Some(match b.kind {
        BackendErrorKind::NoSpace => {
            "free space on the repository's filesystem, or run `litevault prune`".into()
        }
        BackendErrorKind::ReadOnly => "the repository's filesystem is mounted read-only".into(),
        BackendErrorKind::PermissionDenied => {
            "check the credentials, and the ownership and permissions of the repository".into()
        }
        BackendErrorKind::Permanent if b.detail.contains("another region") => {
            "set the storage's region with -o s3.region=REGION or AWS_DEFAULT_REGION".into()
        }
        BackendErrorKind::Permanent if b.detail.contains("bucket does not exist") => {
            "create the bucket first, or check its name in --repo".into()
        }
        BackendErrorKind::Permanent if b.detail.contains("host key is unknown") => {
            "record the server's key as said, or pass -o sftp.known-hosts=add to record it on first contact (accept: trust it for this run only)".into()
        }
        BackendErrorKind::Permanent if b.detail.contains("host key") => {
            "ask the server's owner whether its key changed; if it did, replace its line in the known hosts file (`ssh-keygen -R HOST -f FILE`, then ssh-keyscan)".into()
        }
        BackendErrorKind::Permanent if b.detail.contains("not an S3 store") => {
            "check the endpoint in --repo".into()
        }
        BackendErrorKind::Transient => {
            "check the network and the storage, then try again; -o timeout=DURATION and -o retries=N set the patience".into()
        }
        _ => return None,
    })
}

/// One line for `e`: its message (in this tool's words where the library's
/// would name an option) and the advice, if any.
pub fn render(e: &Error) -> String {
    let message = match e {
        Error::Sql {
            option,
            message,
            outcome,
        } => format!("{} failed: {message}; {outcome}", flag(option)),
        e => e.to_string(),
    };
    match advice(e) {
        Some(a) => format!("{message} ({a})"),
        None => message,
    }
}
