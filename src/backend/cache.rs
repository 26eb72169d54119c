//! A local cache of a remote repository's immutable objects: key files,
//! index files and snapshot manifests.
//!
//! These objects are named by the BLAKE3 hash of their bytes and never
//! change, so a cached copy is verified on every read (a copy whose hash no
//! longer matches its name is dropped and fetched again) and is never
//! stale. Listings always go to the storage, so other processes' objects
//! are seen; a listing also drops cached objects the storage no longer has.
//! What this process writes is cached as it is written. Packs, locks and
//! the config are never cached.
//!
//! Layout: `<cache root>/<repository id>/{keys,index,snapshots}/<name>`,
//! files mode 0600; `<cache root>/configs/<hash of the config object>`
//! holds the repository id, so the key files can be served from the cache
//! before the repository is unlocked.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::counting::IoStats;
use super::{is_object_name, Backend, FileInfo, FileType, Interrupted};
use crate::error::Result;

/// The default cache root: `$XDG_CACHE_HOME/litevault`, else
/// `$HOME/.cache/litevault`.
pub fn default_root() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|p| p.join("litevault"))
}

/// What the cache of one repository holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// Its directory.
    pub dir: PathBuf,
    /// Objects cached.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `<root>/locations/<BLAKE3 of the location string>`.
fn location_path(root: &Path, location: &str) -> PathBuf {
    root.join("locations")
        .join(blake3::hash(location.as_bytes()).to_hex().as_str())
}

fn cached_type(ty: FileType) -> bool {
    matches!(ty, FileType::Key | FileType::Index | FileType::Snapshot)
}

/// Serves immutable objects of `inner` from a local directory.
#[derive(Debug)]
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
    hits: AtomicU64,
}

fn mkdir(p: &Path) {
    let _ = fs::DirBuilder::new().recursive(true).mode(0o700).create(p);
}

/// Writes a private file atomically (temporary name, rename); failures
/// only mean the object is not cached.
pub(crate) fn store_private(path: &Path, data: &[u8]) {
    let Some(dir) = path.parent() else { return };
    mkdir(dir);
    let tmp = dir.join(format!(".tmp-{}", crate::sys::random_hex(8)));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data));
    if written.is_err() || fs::rename(&tmp, path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

impl CachedBackend {
    /// Caches `inner`'s immutable objects in `dir` (one repository's).
    pub fn new(inner: Arc<dyn Backend>, dir: PathBuf) -> Self {
        mkdir(&dir);
        Self {
            inner,
            dir,
            hits: AtomicU64::new(0),
        }
    }

    fn path(&self, ty: FileType, name: &str) -> PathBuf {
        self.dir.join(ty.dir()).join(name)
    }

    /// Keeps `data`, read by other means, as the object `name` (if its
    /// hash is that name).
    pub fn insert(&self, ty: FileType, name: &str, data: &[u8]) {
        if cached_type(ty) && blake3::hash(data).to_hex().as_str() == name {
            store_private(&self.path(ty, name), data);
        }
    }

    /// Drops cached objects of `ty` that `listed` (a fresh listing) lacks:
    /// the storage no longer has them.
    fn forget_unlisted(&self, ty: FileType, listed: &[FileInfo]) {
        if !cached_type(ty) {
            return;
        }
        let names: std::collections::HashSet<&str> =
            listed.iter().map(|f| f.name.as_str()).collect();
        if let Ok(entries) = fs::read_dir(self.dir.join(ty.dir())) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if is_object_name(&n) && !names.contains(n.as_str()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Remembers that `location` holds repository `id` with this config
    /// object (kept in the repository's cache directory).
    pub fn remember_location(root: &Path, location: &str, id: &str, config: &[u8]) {
        store_private(&root.join(id).join("config"), config);
        store_private(&location_path(root, location), id.as_bytes());
    }

    /// The repository id and config object remembered for `location`.
    pub fn location_config(root: &Path, location: &str) -> Option<(String, Vec<u8>)> {
        let id = fs::read_to_string(location_path(root, location)).ok()?;
        let id = id.trim();
        if !is_object_name(id) {
            return None;
        }
        let config = fs::read(root.join(id).join("config")).ok()?;
        Some((id.to_string(), config))
    }

    /// Forgets what `location` holds.
    pub fn forget_location(root: &Path, location: &str) {
        let _ = fs::remove_file(location_path(root, location));
    }

    /// The repository id a cache root remembers for a config object.
    pub fn repository_for_config(root: &Path, config: &[u8]) -> Option<String> {
        let p = root
            .join("configs")
            .join(blake3::hash(config).to_hex().as_str());
        let id = fs::read_to_string(p).ok()?;
        let id = id.trim();
        is_object_name(id).then(|| id.to_string())
    }

    /// Remembers which repository a config object belongs to.
    pub fn remember_config(root: &Path, config: &[u8], repository: &str) {
        store_private(
            &root
                .join("configs")
                .join(blake3::hash(config).to_hex().as_str()),
            repository.as_bytes(),
        );
    }

    /// What the cache holds.
    pub fn info(dir: &Path) -> CacheInfo {
        let mut info = CacheInfo {
            dir: dir.to_path_buf(),
            ..CacheInfo::default()
        };
        for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
            if e.file_type().is_file() && is_object_name(&e.file_name().to_string_lossy()) {
                info.files += 1;
                info.bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
        info
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(ty, name, data)?;
        if cached_type(ty) {
            store_private(&self.path(ty, name), data);
        }
        Ok(())
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        if cached_type(ty) && is_object_name(name) {
            let path = self.path(ty, name);
            if let Ok(bytes) = fs::read(&path) {
                if blake3::hash(&bytes).to_hex().as_str() == name {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(bytes);
                }
                let _ = fs::remove_file(&path);
            }
            let bytes = self.inner.read(ty, name)?;
            if blake3::hash(&bytes).to_hex().as_str() == name {
                store_private(&path, &bytes);
            }
            return Ok(bytes);
        }
        self.inner.read(ty, name)
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(ty, name, offset, len)
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        self.inner.size(ty, name)
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        let listed = self.inner.list(ty)?;
        self.forget_unlisted(ty, &listed);
        Ok(listed)
    }

    fn list_many(&self, types: &[FileType]) -> Result<Vec<Vec<FileInfo>>> {
        let listed = self.inner.list_many(types)?;
        for (ty, l) in types.iter().zip(&listed) {
            self.forget_unlisted(*ty, l);
        }
        Ok(listed)
    }

    fn lists_together(&self) -> bool {
        self.inner.lists_together()
    }

    fn list_requests(&self, objects: usize) -> u64 {
        self.inner.list_requests(objects)
    }

    fn read_parallelism(&self) -> usize {
        self.inner.read_parallelism()
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        self.inner.remove(ty, name)?;
        if cached_type(ty) && is_object_name(name) {
            let _ = fs::remove_file(self.path(ty, name));
        }
        Ok(())
    }

    fn list_leftovers(&self) -> Result<Vec<super::Leftover>> {
        self.inner.list_leftovers()
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        self.inner.remove_leftover(path)
    }

    fn refuses_deletes(&self) -> Option<String> {
        self.inner.refuses_deletes()
    }

    fn object_lock(&self) -> Result<Option<super::object_lock::Retention>> {
        self.inner.object_lock()
    }

    fn set_object_lock(&self, retention: super::object_lock::Retention) -> Result<()> {
        self.inner.set_object_lock(retention)
    }

    fn reserve(&self, bytes: u64) -> Result<()> {
        self.inner.reserve(bytes)
    }

    fn release_reserve(&self) -> Result<bool> {
        self.inner.release_reserve()
    }

    fn leave_interrupted_write(&self, ty: FileType, name: &str, data: &[u8], how: Interrupted) {
        self.inner.leave_interrupted_write(ty, name, data, how);
    }

    fn io_stats(&self) -> Option<IoStats> {
        let mut s = self.inner.io_stats().unwrap_or_default();
        s.cache_hits += self.hits.load(Ordering::Relaxed);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::counting::CountingBackend;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn immutable_objects_are_read_once_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemoryBackend::new());
        let counted: Arc<dyn Backend> = Arc::new(CountingBackend::new(mem.clone()));
        let c = CachedBackend::new(counted, dir.path().join("repo"));
        let data = b"an index file".to_vec();
        let name = blake3::hash(&data).to_hex().to_string();
        mem.write(FileType::Index, &name, &data).unwrap();
        assert_eq!(c.read(FileType::Index, &name).unwrap(), data);
        assert_eq!(c.read(FileType::Index, &name).unwrap(), data);
        let s = c.io_stats().unwrap();
        assert_eq!((s.gets, s.cache_hits), (1, 1));
        // A changed cached copy is dropped and fetched again.
        let cached = dir.path().join("repo/index").join(&name);
        fs::write(&cached, b"tampered").unwrap();
        assert_eq!(c.read(FileType::Index, &name).unwrap(), data);
        assert_eq!(c.io_stats().unwrap().gets, 2);
        // A listing drops what the storage no longer has.
        mem.remove(FileType::Index, &name).unwrap();
        assert!(c.list(FileType::Index).unwrap().is_empty());
        assert!(!cached.exists());
        // Packs are never cached.
        let pack = "a".repeat(64);
        mem.write(FileType::Pack, &pack, b"p").unwrap();
        c.read(FileType::Pack, &pack).unwrap();
        assert!(!dir.path().join("repo/data").exists());
    }
}
