//! litevault: a content-addressed, deduplicating, encrypted backup
//! repository specialised for SQLite databases.
//!
//! # The data path
//!
//! The folders follow the data, layer over layer; each layer uses only
//! those below it (a test, `tests/layers.rs`, holds the rule):
//!
//! ```text
//! cli/ (the binary)    parses arguments, calls the library, prints; owns advice and exit codes
//! service/             config file, scheduler, run history, HTTP API: the commands on a schedule and over HTTP
//! commands/            backup restore dump copy snapshots tag forget prune check stats key
//! sqlite/              source (page image | VACUUM INTO | image file)  target (holders, swap, live)  verify  sqltext  tempdb
//! repo/                Repository: objects keys lock index snapshots select packer reader walker password
//! backend/             Backend trait; local memory remote (S3, SFTP); counting cache faulty (wrappers); choose
//! format/              bytes only: envelope crypto key config compression chunker pack index tree manifest lock
//! error id progress sys   the ground floor: errors with kinds, ids, progress and cancellation, process facts
//! ```
//!
//! A backup goes `sqlite::source` (a consistent page image) → chunker
//! ([`format::chunker`]) → keyed hash ([`format::crypto`]) → dedup against
//! the index ([`repo::Index`]) → compression ([`format::compression`]) →
//! seal → the one packer ([`repo::packer`]) → [`backend`]; then index
//! files and the snapshot manifest ([`format::manifest`]). A restore walks
//! the same path backwards through the one reader ([`repo::reader`]) and
//! the one tree walker ([`repo::walker`]) into `sqlite::target`.
//!
//! A repository (see `SPEC.md` for the byte-level format) holds `config`,
//! `keys/`, `data/` (packs), `index/`, `snapshots/` and `locks/`.
//!
//! Deviations from a layer-per-folder split, and why: `error.rs` also
//! defines the backend's error type ([`BackendError`]), so that every layer
//! can carry it without importing upward; `sys.rs` holds the one duration
//! and time parser, shared by the command line, config files and options.
//!
//! # Example
//!
//! ```
//! use litevault::{BackupOptions, InitOptions, KdfParams, Repository};
//!
//! let dir = tempfile::tempdir()?;
//! // A live SQLite database.
//! let db = dir.path().join("app.db");
//! let conn = rusqlite::Connection::open(&db)?;
//! conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('hello');")?;
//!
//! // Create a repository (real ones use the default, slow, brute-force resistant KDF).
//! let path = dir.path().join("repo");
//! let opts = InitOptions { kdf: KdfParams::TEST_ONLY_INSECURE, ..InitOptions::default() };
//! let repo = Repository::init_local(&path, b"correct horse", &opts)?;
//!
//! // Back it up while the application's connection stays open.
//! let mut backup = BackupOptions::new(&db);
//! backup.tags = vec!["env_production".into()];
//! let summary = litevault::backup(&repo, &backup)?;
//! let snapshot = summary.snapshot.expect("a new snapshot");
//!
//! // Reopen with the password and restore it, verified, into a new file.
//! let repo = Repository::open_local(&path, b"correct horse")?;
//! let restored = dir.path().join("restored.db");
//! litevault::restore(&repo, &snapshot, &litevault::RestoreOptions::new(&restored))?;
//! let x: String = rusqlite::Connection::open(&restored)?.query_row("SELECT x FROM t", [], |r| r.get(0))?;
//! assert_eq!(x, "hello");
//! assert!(Repository::open_local(&path, b"wrong").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod commands;
pub mod error;
pub mod format;
pub mod id;
pub mod progress;
pub mod repo;
pub mod service;
pub mod sqlite;
pub mod sys;

pub use backend::choose::{BackendOptions, Location};
pub use backend::object_lock::{Retention, RetentionMode};
pub use backend::{Backend, FileType, IoStats};
pub use commands::backup::{backup, backup_connection, backup_many, BackupOptions, BackupSummary};
pub use commands::backup_each::backup_each;
pub use commands::check::{check, check_with, CheckReport, ReadData};
pub use commands::copy::{copy, CopyOptions, CopySummary};
pub use commands::dump::{dump, dump_image, dump_to_file, DumpFormat, DumpSummary};
pub use commands::forget::{
    forget, plan_forget, plan_forget_ids, ForgetPlan, ForgetPolicy, ForgetSummary,
};
pub use commands::prune::{plan_prune, prune, PruneOptions, PrunePlan, PruneStats, PruneSummary};
pub use commands::repair::{
    repair_index, repair_snapshots, RepairIndexOptions, RepairIndexSummary, RepairSnapshotsOptions,
    RepairSnapshotsSummary,
};
pub use commands::restore::{restore, RestoreOptions, RestoreSummary};
pub use commands::stats::{stats, Stats};
pub use commands::tag::{retag, TagChange, TagSummary};
pub use error::{BackendError, BackendErrorKind, Error, ErrorKind, Result};
pub use format::config::{ChunkerParams, CompressionParams, Config};
pub use format::crypto::{KdfParams, MasterKey};
pub use format::lock::{LockKind, LockRecord};
pub use format::manifest::{Manifest, Strategy};
pub use id::{BlobId, IndexId, KeyId, LockId, PackId, RepositoryId, SnapshotId};
pub use progress::{Cancel, Progress};
pub use repo::password::{Password, PasswordSource};
#[cfg(any(test, feature = "test-support"))]
pub use repo::testing;
pub use repo::{GroupBy, InitOptions, KeyInfo, Repository, SnapshotFilter};
