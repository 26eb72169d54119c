//! Reading and writing index files through the repository's cache: the
//! index is loaded once per command ([`Repository::index`]); index files
//! this process writes are merged into it without reading anything again.

use std::sync::Arc;

use super::index::Index;
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack};

/// Most blob entries per index file written by prune and repair.
pub const INDEX_ENTRIES_PER_FILE: usize = 500_000;
use crate::format::ObjectType;
use crate::id::IndexId;

impl Repository {
    /// The index of this repository, loaded on first use and kept for the
    /// command (see `repo::repository`).
    ///
    /// A damaged index file (it fails authentication, its hash or its
    /// decoding) does not stop the work of everything else: it is left
    /// out, with a note naming it, and [`Repository::damaged_index_files`]
    /// lists it. Only the blobs it alone lists are then unknown; a restore
    /// that needs one says so, a backup stores it again. Commands that
    /// delete (prune) must refuse while one is damaged.
    pub fn index(&self) -> Result<Arc<Index>> {
        let mut cache = self.cache();
        if cache.index.is_none() {
            drop(cache);
            let mut damaged = Vec::new();
            let loaded = Arc::new(self.load_index_files(Some(&mut |id, e| {
                damaged.push((id, e));
            }))?);
            let mut skipped = Vec::new();
            for (id, e) in damaged {
                // Only damage is set aside; a failing storage is an error.
                let Error::Damaged { reason, .. } = &e else {
                    return Err(e);
                };
                self.note(format!(
                    "{e}; the blobs only it lists are unknown to this command (`repair index` rebuilds the index from the packs)"
                ));
                skipped.push((id, reason.clone()));
            }
            cache = self.cache();
            cache.damaged_index = skipped;
            cache.index.get_or_insert(loaded);
        }
        let pending = std::mem::take(&mut cache.pending_index);
        let index = cache.index.as_mut().expect("loaded above");
        if !pending.is_empty() {
            let index = Arc::make_mut(index);
            for (id, file) in &pending {
                if !index.files().contains(id) {
                    index.add_file_trusting(*id, file, !self.key().is_write_only());
                }
            }
        }
        Ok(Arc::clone(index))
    }

    /// The index files [`Repository::index`] left out as damaged, with
    /// why (empty until the index is loaded).
    pub fn damaged_index_files(&self) -> Vec<(IndexId, String)> {
        self.cache().damaged_index.clone()
    }

    /// A blob no index lists, while an index file is damaged, is most
    /// likely one that file listed: the error then names that file (whose
    /// repair is the way back) rather than the blob.
    pub(crate) fn blame_damaged_index(&self, e: Error) -> Error {
        let damaged = self.damaged_index_files();
        match (e, damaged.first()) {
            (Error::Damaged { object, reason }, Some((id, why)))
                if object.starts_with("blob ") && reason.starts_with("no index lists it") =>
            {
                Error::Damaged {
                    object: FileType::Index.describe(&id.to_hex()),
                    reason: format!(
                        "{why}; {object} of the snapshot is in no readable index file, so it was most likely listed there"
                    ),
                }
            }
            (e, _) => e,
        }
    }

    /// Lists and reads every index file, bypassing the cache (but using the
    /// listing taken with the lock, if it was not used yet). With
    /// `damaged`, an index file that cannot be read is reported there and
    /// left out instead of failing the whole load (for `check`).
    pub(crate) fn load_index_files(
        &self,
        mut damaged: Option<&mut dyn FnMut(IndexId, Error)>,
    ) -> Result<Index> {
        let mut files = Vec::new();
        let listed = self.cache().listed.index.take();
        let listed = match listed {
            Some(l) => l,
            None => self.list_confirmed(FileType::Index)?,
        };
        for f in listed {
            let id: IndexId = f.name.parse()?;
            match self.load_index_file_trusting(&id) {
                Ok((file, trusted)) => files.push((id, file, trusted)),
                Err(e) => match damaged.as_mut() {
                    Some(report) => report(id, e),
                    None => return Err(e),
                },
            }
        }
        Ok(Index::from_files_trusting(files))
    }

    /// Reads one index file. A format-4 file a full key did not write
    /// (its tag is not the full key's) has its `supersedes` ignored.
    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        Ok(self.load_index_file_trusting(id)?.0)
    }

    /// [`Repository::load_index_file`], and whether a full key wrote it
    /// (SPEC.md 21.3): every file of formats 1 to 3 and every format-4
    /// file with a full key's tag; a write-only key's files are not. A
    /// write-only key cannot tell and trusts every file with a tag.
    pub fn load_index_file_trusting(&self, id: &IndexId) -> Result<(IndexFile, bool)> {
        let name = id.to_hex();
        let object = FileType::Index.describe(&name);
        let (version, payload) =
            self.load_object_version(FileType::Index, ObjectType::Index, &name)?;
        if version < crate::format::OBJECT_VERSION_4 {
            return Ok((IndexFile::decode(&payload, &object)?, true));
        }
        let Some(split) = payload.len().checked_sub(32) else {
            return Err(Error::damaged(object, "truncated: its tag is missing"));
        };
        let (body, tag) = payload.split_at(split);
        let mut file = IndexFile::decode_version(body, &object, version)?;
        let trusted = match self.key().index_tag(body) {
            Some(want) if want == tag => true,
            Some(_) if tag == [0; 32] => false,
            Some(_) => {
                return Err(Error::damaged(
                    object,
                    "its tag is neither a full key's nor a write-only key's",
                ))
            }
            None => tag != [0; 32],
        };
        if !trusted && !self.key().is_write_only() {
            // Only a full key may retire index files.
            file.supersedes.clear();
        }
        Ok((file, trusted))
    }

    /// Stores an index file; returns its id and size. The cached index
    /// learns of it.
    pub(crate) fn save_index(&self, file: IndexFile) -> Result<(IndexId, u64)> {
        let payload = if self.config().version >= 4 {
            let mut body = file.encode_version(crate::format::OBJECT_VERSION_4);
            let tag = self.key().index_tag(&body).unwrap_or([0; 32]);
            body.extend_from_slice(&tag);
            body
        } else {
            file.encode()
        };
        let (id, len) = self.save_object(FileType::Index, ObjectType::Index, &payload)?;
        let id = IndexId::from_bytes(id);
        self.cache().pending_index.push((id, file));
        Ok((id, len))
    }

    /// Writes `packs` as index files of at most [`INDEX_ENTRIES_PER_FILE`]
    /// blob entries, the last listing `supersedes` (prune, repair): until
    /// it is stored the old index files stay in force, so a crash between
    /// two of these writes loses no entry. Returns the number of files and
    /// their bytes.
    pub(crate) fn save_index_superseding(
        &self,
        supersedes: &[IndexId],
        packs: Vec<IndexPack>,
    ) -> Result<(usize, u64)> {
        let mut batches: Vec<Vec<IndexPack>> = vec![Vec::new()];
        let mut entries = 0;
        for p in packs {
            if entries + p.blobs.len() > INDEX_ENTRIES_PER_FILE
                && !batches.last().is_some_and(Vec::is_empty)
            {
                batches.push(Vec::new());
                entries = 0;
            }
            entries += p.blobs.len();
            batches.last_mut().expect("one batch").push(p);
        }
        let last = batches.len() - 1;
        let mut bytes = 0;
        let n = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            let (_, len) = self.save_index(IndexFile {
                supersedes: if i == last {
                    supersedes.to_vec()
                } else {
                    Vec::new()
                },
                packs: batch,
            })?;
            bytes += len;
        }
        Ok((n, bytes))
    }

    /// Deletes an index file (prune); the cached index is dropped, to be
    /// loaded again if needed.
    pub(crate) fn remove_index_file(&self, id: &IndexId) -> Result<()> {
        self.backend().remove(FileType::Index, &id.to_hex())?;
        let mut cache = self.cache();
        cache.index = None;
        cache.pending_index.clear();
        Ok(())
    }

    /// Fails if any of `packs` (written by this process) is no longer
    /// stored: another process deleted it, ignoring this one's lock.
    pub(crate) fn confirm_packs(&self, packs: &[crate::id::PackId]) -> Result<()> {
        if packs.len() > 8 {
            // One listing instead of a request per pack.
            let stored = self.pack_sizes()?;
            if let Some(p) = packs.iter().find(|p| !stored.contains_key(&p.to_hex())) {
                return Err(Error::WritesLost {
                    reason: format!(
                        "{} written by this process is gone",
                        FileType::Pack.describe(&p.to_hex())
                    ),
                });
            }
            return Ok(());
        }
        for p in packs {
            match self.backend().size(FileType::Pack, &p.to_hex()) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(Error::WritesLost {
                        reason: format!(
                            "{} written by this process is gone",
                            FileType::Pack.describe(&p.to_hex())
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Before a snapshot is published: fails if the lock `lock` is gone
    /// (another process took it for stale and may have deleted what this
    /// one wrote), or an index file this process read (and deduplicated
    /// against) is gone (a prune rewrote the index since, and may have
    /// deleted or repacked the blobs it listed). One listing of index files
    /// and locks (one request where the storage lists them together); the
    /// lock is asked for by name if the listing misses it (a refresh may
    /// have just replaced it).
    pub(crate) fn confirm_before_publish(&self, lock: &super::lock::LockGuard) -> Result<()> {
        let loaded = self.index()?;
        let mut lists = self
            .backend()
            .list_many(&[FileType::Index, FileType::Lock])?
            .into_iter();
        let stored: std::collections::HashSet<String> = lists
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.name)
            .collect();
        let locks: Vec<String> = lists
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.name)
            .collect();
        if lock.id().is_some_and(|id| !locks.contains(&id.to_hex())) {
            lock.confirm()?;
        }
        match loaded
            .files()
            .iter()
            .find(|f| !stored.contains(&f.to_hex()))
        {
            None => Ok(()),
            Some(gone) => Err(Error::WritesLost {
                reason: format!(
                    "{} it deduplicated against was removed by a prune meanwhile",
                    FileType::Index.describe(&gone.to_hex())
                ),
            }),
        }
    }

    /// The stored packs: name to size.
    pub fn pack_sizes(&self) -> Result<std::collections::HashMap<String, u64>> {
        Ok(self
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|f| (f.name, f.size))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::Backend;
    use crate::format::crypto::KdfParams;
    use crate::repo::InitOptions;

    #[test]
    fn a_backup_learns_that_an_index_file_it_read_was_removed() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let opts = InitOptions {
            kdf: KdfParams::TEST_ONLY_INSECURE,
            ..InitOptions::default()
        };
        let repo = Repository::init(Arc::clone(&backend), b"pw", &opts).unwrap();
        let (id, _) = repo
            .save_index(IndexFile {
                supersedes: Vec::new(),
                packs: Vec::new(),
            })
            .unwrap();
        repo.refresh();
        assert_eq!(repo.index().unwrap().files(), &[id]);
        let lock = repo
            .lock(crate::format::lock::LockKind::Shared, "backup")
            .unwrap();
        repo.confirm_before_publish(&lock).unwrap();
        // A prune elsewhere rewrote the index: the file read is gone.
        backend.remove(FileType::Index, &id.to_hex()).unwrap();
        let e = repo.confirm_before_publish(&lock).unwrap_err();
        assert!(matches!(e, Error::WritesLost { .. }), "{e}");
        assert!(e.to_string().contains(&id.to_hex()[..8]), "{e}");
        drop(lock);
        // And a lock another process removed.
        repo.refresh();
        let _ = repo.index();
        let lock = repo
            .lock(crate::format::lock::LockKind::Shared, "backup")
            .unwrap();
        backend
            .remove(FileType::Lock, &lock.id().unwrap().to_hex())
            .unwrap();
        let e = repo.confirm_before_publish(&lock).unwrap_err();
        assert!(matches!(e, Error::WritesLost { .. }), "{e}");
    }
}
