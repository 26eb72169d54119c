//! litevault: a content-addressed, deduplicating, encrypted backup repository
//! specialised for SQLite databases.
//!
//! A repository (see `SPEC.md` for the byte-level format) holds:
//!
//! * `config`: format version, repository id, chunker and compression
//!   parameters, sealed with the master key;
//! * `keys/`: key files, each wrapping the master key under a password with
//!   Argon2id ([`key`]);
//! * `data/`: pack files of sealed, compressed blobs ([`pack`]);
//! * `index/`: which blob is in which pack ([`index`]);
//! * `snapshots/`: snapshot manifests ([`snapshot`]);
//! * `locks/`: shared and exclusive locks ([`lock`]).
//!
//! The modules follow the data: a backup goes source → chunker → keyed hash
//! ([`crypto`]) → dedup against the [`index`] → [`compression`] → seal
//! ([`crypto`]) → [`pack`] → [`backend`]; a restore walks the same path
//! backwards. [`format`] holds the envelope every stored object shares, and
//! [`repository`] ties it together behind [`Repository`].
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
//! let summary = repo.backup(&backup)?;
//! let snapshot = summary.snapshot.expect("a new snapshot");
//!
//! // Reopen with the password and reassemble the image, verified.
//! let repo = Repository::open_local(&path, b"correct horse")?;
//! let mut image = Vec::new();
//! repo.dump_image(&snapshot, &mut image)?;
//! let restored = dir.path().join("restored.db");
//! std::fs::write(&restored, &image)?;
//! let x: String = rusqlite::Connection::open(&restored)?.query_row("SELECT x FROM t", [], |r| r.get(0))?;
//! assert_eq!(x, "hello");
//! assert!(Repository::open_local(&path, b"wrong").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod compression;
pub mod config;
pub mod crypto;
pub mod dump;
pub mod error;
pub mod forget;
pub mod format;
pub mod id;
pub mod index;
pub mod key;
pub mod lock;
pub mod pack;
mod packer;
pub mod prune;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod tag;
mod util;

#[cfg(test)]
mod golden;

pub use backend::{Backend, FileType, LocalBackend};
pub use backup::{BackupOptions, Progress, SnapshotSummary};
pub use config::{ChunkerParams, CompressionParams, Config};
pub use crypto::{KdfParams, MasterKey};
pub use error::{Error, Result};
pub use id::{BlobId, IndexId, KeyId, LockId, PackId, RepositoryId, SnapshotId};
pub use lock::{LockKind, LockRecord};
pub use repository::{InitOptions, KeyInfo, Repository};
pub use restore::{RestoreOptions, RestoreSummary};
pub use snapshot::{Manifest, SnapshotFilter, Strategy};
