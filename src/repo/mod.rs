//! The repository: the only place that knows how objects are named, sealed,
//! stored, listed and cached. Every `impl Repository` block lives in this
//! folder; commands (`crate::commands`) are functions over it.
//!
//! * [`repository`]: open and create, the config and the master key, and
//!   the per-command cache of what was listed and read;
//! * [`objects`]: storing and loading sealed whole objects, verified;
//! * [`keys`]: key files; [`lock`]: repository locks;
//! * [`index`] and [`index_files`]: the blob index, loaded once per command,
//!   and [`adopt`]: what a full key takes of write-only keys' packs;
//! * [`select`] and [`snapshots`]: snapshot manifests, loaded once per
//!   command, and how commands pick them (filters, `latest`, groups, tags);
//! * [`packer`]: the one packer (backup, prune's repack, copy);
//! * [`reader`]: the one reader (range reads, whole packs, reassembly),
//!   and [`fetch`]: its plans of range reads and their reader threads;
//! * [`walker`]: the one walker of chunk-list trees;
//! * [`password`]: where a repository password comes from;
//! * [`testing`] (feature `test-support`): what tests need to forge
//!   hostile repositories.

mod adopt;
mod blob_cache;
pub mod changes;
mod fetch;
pub mod index;
mod index_files;
pub mod keys;
pub mod lock;
mod objects;
pub mod packer;
pub mod password;
pub mod reader;
pub mod repository;
pub mod select;
mod snapshots;
pub use snapshots::one_database;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod walker;

pub use fetch::BaseCache;
pub use index::{BlobLocation, Index, IndexedPack};
pub use keys::KeyInfo;
pub use lock::{LockGuard, LockInfo};
pub use repository::{InitOptions, LockPolicy, LockWait, OpenOptions, Repository};
pub use select::{split_tags, validate_tag, GroupBy, GroupKey, SnapshotFilter, PRE_RESTORE_TAG};
