//! Storage backends: where a repository's objects live.
//!
//! The [`Backend`] trait is shaped for object stores as much as for
//! directories: whole-object writes, whole and ranged reads, listing by
//! type, deletion. litevault's correctness never relies on rename or on a
//! listing being immediately complete: every object but `config` is named
//! by the BLAKE3 hash of its bytes and written once, never modified;
//! "replacing" one (a refreshed lock, a rewritten snapshot) writes the new
//! object before deleting the old. A backend must guarantee only that
//!
//! * a `write` that returns `Ok` has stored the whole object durably;
//! * a failed or interrupted write never leaves a partial object under the
//!   final name (a directory does this with temp file + fsync + rename; an
//!   object store's PUT does it by itself);
//! * a read returns exactly what was written, or an error;
//! * every failure is a [`BackendError`] whose kind says what it means
//!   (not found, transient, permanent, no space, ...), naming the object
//!   and never a secret.
//!
//! Backends are composed by wrapping: [`counting::CountingBackend`] counts
//! requests, [`cache::CachedBackend`] keeps immutable objects of a remote
//! repository on the local disk, [`faulty::FaultyBackend`] fails or tears
//! the Nth write of any backend for crash tests; [`choose`] turns a
//! location string into a backend ([`local`], or [`remote`]: S3 and SFTP
//! through OpenDAL). The contract every backend must meet is
//! checked by one test suite instantiated per backend (`tests/contract.rs`).

pub mod cache;
pub mod choose;
pub mod counting;
pub mod faulty;
pub mod local;
pub mod memory;
pub mod object_lock;
pub mod remote;
mod ssh_hosts;

use std::fmt;

use crate::error::Result;
pub use crate::error::{BackendError, BackendErrorKind, BackendOp};
pub use counting::IoStats;

/// The refusal of a delete that storage which refuses every delete
/// ([`Backend::refuses_deletes`], `why`) would not make: `what` deletes
/// (a command, or one object's removal), so it must run where the
/// storage grants full rights.
pub(crate) fn delete_refused(object: &str, what: &str, why: &str) -> crate::error::Error {
    BackendError::new(
        BackendErrorKind::PermissionDenied,
        BackendOp::Delete,
        object,
        format!("permission denied: {what} deletes, and {why}; run it on a host with full rights"),
    )
    .into()
}

/// The kinds of object in a repository, each in its own directory.
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
    /// `changes/`: change objects of continuous capture (format 3).
    Change,
}

impl FileType {
    /// All types, in layout order.
    pub const ALL: [FileType; 7] = [
        FileType::Config,
        FileType::Key,
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
        FileType::Lock,
        FileType::Change,
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
            FileType::Change => "changes",
        }
    }

    /// The object's path inside the repository: `config`, `keys/<name>`,
    /// `data/<first two digits>/<name>`.
    pub fn path(self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("")),
            _ => format!("{}/{name}", self.dir()),
        }
    }

    /// The name used for an object in messages: `index/3fa2…`, `pack data/3f/3fa2…`.
    pub fn describe(self, name: &str) -> String {
        match self {
            FileType::Pack => format!("pack {}", self.path(name)),
            _ => self.path(name),
        }
    }
}

/// True for names of content-addressed objects: 64 lower-case hex digits.
pub fn is_object_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks an object name before it becomes part of a path or a key.
pub(crate) fn check_name(ty: FileType, name: &str, op: BackendOp) -> Result<()> {
    if ty == FileType::Config || is_object_name(name) {
        return Ok(());
    }
    Err(BackendError::new(
        BackendErrorKind::Permanent,
        op,
        format!("{}/{name:?}", ty.dir()),
        "not a valid object name: expected 64 lower-case hex digits",
    )
    .into())
}

/// One listed object: its name, size in bytes and, where the listing says
/// (files, S3, SFTP), when it was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The object's name (64 hex digits, or `config`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored (by the storage's clock), if the listing says.
    pub modified: Option<std::time::SystemTime>,
}

/// A temporary file an interrupted write left behind (`.tmp-…`, SPEC.md
/// 11): never an object, removed by `prune` once no live lock may still
/// be writing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Its path inside the repository (`data/3f/.tmp-3fa2…-9c1d…`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, if the storage says.
    pub modified: Option<std::time::SystemTime>,
}

impl Leftover {
    /// True if the storage says it was last written more than `age` ago
    /// (by the local clock, against the storage's).
    pub fn older_than(&self, age: std::time::Duration) -> bool {
        self.modified.is_some_and(|m| {
            std::time::SystemTime::now()
                .duration_since(m)
                .is_ok_and(|d| d > age)
        })
    }

    /// True for a lock being taken (`locks/.tmp-*`): renamed into place
    /// by a process that holds no lock yet.
    pub fn is_lock(&self) -> bool {
        self.path.starts_with("locks/")
    }
}

/// A temporary file younger than this may belong to a write in flight,
/// whatever the locks say (clocks of host and storage differ a little).
pub const LEFTOVER_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// True for the name of a temporary file of an interrupted write.
pub fn is_leftover_name(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// Checks a path [`Backend::list_leftovers`] gave before anything deletes
/// it: relative, each component a plain name, the last a temporary file's.
pub(crate) fn check_leftover_path(path: &str) -> Result<()> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if is_leftover_name(name)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
    {
        return Ok(());
    }
    Err(BackendError::new(
        BackendErrorKind::Permanent,
        BackendOp::Delete,
        path.to_string(),
        "not a temporary file of an interrupted write",
    )
    .into())
}

/// How far an interrupted write got (see [`Backend::leave_interrupted_write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Only some bytes were sent.
    Partial,
    /// Every byte was sent and flushed, but the object was never published
    /// under its name.
    Unpublished,
}

/// Storage of a repository's objects. See the module docs for the contract.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human-readable location, for messages; never holds secrets.
    fn location(&self) -> String;

    /// Creates the empty repository layout. Fails if a repository (or
    /// anything else) is already there.
    fn create(&self) -> Result<()>;

    /// Stores a whole object durably and atomically under `name`.
    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()>;

    /// Reads a whole object.
    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes at `offset`; a range past the end is an
    /// [`BackendErrorKind::OutOfRange`] error, never a short read.
    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// The size of an object.
    fn size(&self, ty: FileType, name: &str) -> Result<u64>;

    /// Lists the objects of one type (never temporary files).
    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>>;

    /// Deletes an object. Deleting a missing object is not an error.
    fn remove(&self, ty: FileType, name: &str) -> Result<()>;

    /// Lists several types (in the order given). One listing per type by
    /// default; a backend that can do it in fewer requests overrides it
    /// (S3: one listing of everything after `data/`).
    fn list_many(&self, types: &[FileType]) -> Result<Vec<Vec<FileInfo>>> {
        types.iter().map(|ty| self.list(*ty)).collect()
    }

    /// True if [`Backend::list_many`] costs fewer requests than one listing
    /// per type.
    fn lists_together(&self) -> bool {
        false
    }

    /// How many reads are worth having in flight at once: the cores for a
    /// disk, more for a network store, where each read mostly waits.
    fn read_parallelism(&self) -> usize {
        std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .clamp(2, 8)
    }

    /// Requests a listing costs that returned `objects` objects (a store
    /// that pages its listings makes one request per page).
    fn list_requests(&self, objects: usize) -> u64 {
        let _ = objects;
        1
    }

    /// Leaves behind what a process killed in the middle of writing `data`
    /// under `name` would leave, without publishing the object: for crash
    /// tests ([`faulty::FaultyBackend`]). A directory leaves a hidden
    /// temporary file; an object store's interrupted upload leaves nothing
    /// visible, which is the default.
    fn leave_interrupted_write(&self, _ty: FileType, _name: &str, _data: &[u8], _how: Interrupted) {
    }

    /// The temporary files interrupted writes left (a directory, SFTP);
    /// an object store's interrupted upload leaves none, the default.
    fn list_leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Vec::new())
    }

    /// Removes a temporary file [`Backend::list_leftovers`] listed.
    fn remove_leftover(&self, path: &str) -> Result<()> {
        let _ = path;
        Ok(())
    }

    /// Why this storage refuses every delete, if it does (an append-only
    /// account): commands that delete are refused before they write.
    fn refuses_deletes(&self) -> Option<String> {
        None
    }

    /// The default Object Lock retention of the storage's bucket (S3),
    /// if the storage is such a bucket and has one: every object written
    /// stays, version by version, that long (SPEC.md 11.2).
    fn object_lock(&self) -> Result<Option<object_lock::Retention>> {
        Ok(None)
    }

    /// Sets the bucket's default Object Lock retention; storage other than
    /// an S3 bucket refuses.
    fn set_object_lock(&self, retention: object_lock::Retention) -> Result<()> {
        let _ = retention;
        Err(crate::error::Error::InvalidInput(format!(
            "{} is not an S3 bucket: Object Lock is an S3 feature (for SFTP, give the host an append-only account: README, \"On SFTP\")",
            self.location()
        )))
    }

    /// Sets aside `bytes` of the storage's space (a file `.reserve` in a
    /// directory or over SFTP; nothing in an object store, which does not
    /// fill up), replacing any earlier reserve: what a full repository
    /// frees so that `forget` and `prune` can write their lock and index
    /// and free space again.
    fn reserve(&self, bytes: u64) -> Result<()> {
        let _ = bytes;
        Ok(())
    }

    /// Gives the reserve back to the storage; true if there was one.
    fn release_reserve(&self) -> Result<bool> {
        Ok(false)
    }

    /// Requests made so far, when the backend counts them
    /// ([`counting::CountingBackend`]).
    fn io_stats(&self) -> Option<IoStats> {
        None
    }
}
