//! Sealed blobs in the local cache of a remote repository (SPEC.md 17):
//! tree blobs, and the data blobs a delta chain needs, so that an
//! incremental backup finds its previous snapshot's tree and most of its
//! delta bases without a request.
//!
//! A blob is kept as its sealed envelope, exactly as it lies in its pack,
//! at `<cache>/blobs/<xx>/<blob id>`. A cached envelope is trusted no
//! further than a fetched one: it is authenticated and checked against its
//! id when opened, and deleted if that fails. What is cached: every blob
//! read through [`Repository::read_located`](super::Repository) (tree
//! blobs and delta chains; never a whole image, which a restore streams
//! from its packs), and the tree and delta blobs a backup writes. Prune
//! drops the blobs it removes, and a writer trims the cache to [`LIMIT`]
//! after its last pack, least recently used first (a hit refreshes a
//! blob's modification time).

use std::path::PathBuf;

use crate::backend::cache::store_private;
use crate::format::pack::BlobEntry;
use crate::id::BlobId;

/// Bytes of cached blobs a repository's cache keeps at most: a 10 GiB
/// database's tree is about 13 MiB, and a day's delta blobs a few MiB, so
/// this holds months of them.
pub(crate) const LIMIT: u64 = 1 << 30;

/// The cached sealed blobs of one repository.
pub(crate) struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// The blobs under the repository's cache directory `cache_dir`.
    pub(crate) fn new(cache_dir: &std::path::Path) -> Self {
        Self {
            dir: cache_dir.join("blobs"),
        }
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The cached envelope of the blob `entry` describes, if its length is
    /// the entry's (the caller authenticates it).
    pub(crate) fn get(&self, entry: &BlobEntry) -> Option<Vec<u8>> {
        use std::io::Read;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(&entry.id))
            .ok()?;
        let mut bytes = Vec::with_capacity(entry.stored_len as usize);
        f.read_to_end(&mut bytes).ok()?;
        if bytes.len() != entry.stored_len as usize {
            return None;
        }
        // Used now: the last to go when the cache is trimmed.
        let _ = f.set_modified(std::time::SystemTime::now());
        Some(bytes)
    }

    /// Keeps a blob's envelope; a failure only means it is not cached.
    pub(crate) fn put(&self, id: &BlobId, sealed: &[u8]) {
        store_private(&self.path(id), sealed);
    }

    /// Forgets one blob (its cached copy did not open).
    pub(crate) fn remove(&self, id: &BlobId) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Every file in the cache's directories.
    fn files(&self) -> Vec<std::fs::DirEntry> {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dirs.flatten()
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(Iterator::flatten)
            .collect()
    }

    /// Forgets every cached blob `keep` rejects (prune removed them).
    pub(crate) fn retain(&self, keep: &dyn Fn(&BlobId) -> bool) {
        for f in self.files() {
            let name = f.file_name().to_string_lossy().into_owned();
            match name.parse::<BlobId>() {
                Ok(id) if keep(&id) => {}
                _ => {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }

    /// If the cached blobs take more than `limit` bytes, removes the least
    /// recently used until they take at most three quarters of it.
    pub(crate) fn trim(&self, limit: u64) {
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = self
            .files()
            .into_iter()
            .filter_map(|f| {
                let m = f.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), f.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= limit {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= limit / 4 * 3 {
                break;
            }
            if std::fs::remove_file(path).is_ok() {
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BlobCache;
    use crate::format::compression::Compression;
    use crate::format::pack::{BlobEntry, BlobType};
    use crate::id::BlobId;

    #[test]
    fn trimming_removes_the_least_recently_used_down_to_three_quarters() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let ids: Vec<BlobId> = (0u8..8).map(|i| BlobId::from_bytes([i; 32])).collect();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (i, id) in ids.iter().enumerate() {
            cache.put(id, &[i as u8; 1000]);
            // Written in order, an hour ago, a second apart.
            let f = std::fs::File::options()
                .write(true)
                .open(cache.path(id))
                .unwrap();
            f.set_modified(old + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        // The oldest, read now, becomes the newest.
        let entry = |id: BlobId| BlobEntry {
            ty: BlobType::Data,
            compression: Compression::None,
            stored_len: 1000,
            raw_len: 1000,
            id,
            base: None,
        };
        assert!(cache.get(&entry(ids[0])).is_some());
        cache.trim(8000);
        assert_eq!(cache.files().len(), 8, "within its limit, nothing goes");
        cache.trim(4000);
        let kept: Vec<bool> = ids.iter().map(|id| cache.path(id).exists()).collect();
        // 3000 bytes kept: the one just read and the two newest.
        assert_eq!(
            kept,
            [true, false, false, false, false, false, true, true],
            "{kept:?}"
        );
    }
}
