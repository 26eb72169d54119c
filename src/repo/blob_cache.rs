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
//! drops the blobs it removes.

use std::path::PathBuf;

use crate::backend::cache::store_private;
use crate::format::pack::BlobEntry;
use crate::id::BlobId;

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
        let bytes = std::fs::read(self.path(&entry.id)).ok()?;
        (bytes.len() == entry.stored_len as usize).then_some(bytes)
    }

    /// Keeps a blob's envelope; a failure only means it is not cached.
    pub(crate) fn put(&self, id: &BlobId, sealed: &[u8]) {
        store_private(&self.path(id), sealed);
    }

    /// Forgets one blob (its cached copy did not open).
    pub(crate) fn remove(&self, id: &BlobId) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Forgets every cached blob `keep` rejects (prune removed them).
    pub(crate) fn retain(&self, keep: &dyn Fn(&BlobId) -> bool) {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                match name.parse::<BlobId>() {
                    Ok(id) if keep(&id) => {}
                    _ => {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        }
    }
}
