//! Storage backends: where a repository's files live.
//!
//! The [`Backend`] trait is shaped for object stores as much as for
//! directories: whole-object writes, whole and ranged reads, listing by type,
//! deletion. litevault's correctness never relies on rename: every object but
//! `config` is named by the BLAKE3 hash of its bytes and written once, never
//! modified; "replacing" one (a refreshed lock, a rewritten snapshot) writes
//! the new object before deleting the old. A backend must only guarantee that
//! a `write` that returns `Ok` has stored the whole object durably, and that
//! a failed or interrupted write never leaves a partial object under the
//! final name (a directory does this with temp file + fsync + rename; an
//! object store's PUT does it by itself).

mod local;

pub use local::{Fault, FaultPlan, LocalBackend};

use std::fmt;

use crate::error::Result;

/// The kinds of file in a repository, each in its own directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// `config`: the single repository config object.
    Config,
    /// `keys/`: key files.
    Key,
    /// `data/XX/`: pack files, fanned out by the first two hex digits.
    Pack,
    /// `index/`: index files.
    Index,
    /// `snapshots/`: snapshot manifests.
    Snapshot,
    /// `locks/`: lock files.
    Lock,
}

impl FileType {
    /// All types, in layout order.
    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
        FileType::Lock,
    ];

    /// Directory (or, for the config, file) name in the repository.
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
        }
    }

    /// The name used for an object in messages: `index/3fa2…`.
    pub fn describe(self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("pack data/{}/{name}", name.get(..2).unwrap_or("")),
            _ => format!("{}/{name}", self.dir()),
        }
    }
}

/// One listed object: its name and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The object's name (64 hex digits, or `config`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Storage of a repository's objects. See the module docs for the contract.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human-readable location, for messages.
    fn location(&self) -> String;

    /// Creates the empty repository layout. Fails if a config already exists.
    fn create(&self) -> Result<()>;

    /// Stores a whole object durably and atomically under `name`.
    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()>;

    /// Reads a whole object.
    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes at `offset`; a short read is an error.
    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// The size of an object.
    fn size(&self, ty: FileType, name: &str) -> Result<u64>;

    /// Lists the objects of one type (never temporary files).
    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>>;

    /// Deletes an object. Deleting a missing object is not an error.
    fn remove(&self, ty: FileType, name: &str) -> Result<()>;
}
