//! Reading and writing index files through the repository's cache: the
//! index is loaded once per command ([`Repository::index`]); index files
//! this process writes are merged into it without reading anything again.

use std::sync::Arc;

use super::index::Index;
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::IndexFile;
use crate::format::ObjectType;
use crate::id::IndexId;

impl Repository {
    /// The index of this repository, loaded on first use and kept for the
    /// command (see `repo::repository`).
    pub fn index(&self) -> Result<Arc<Index>> {
        let mut cache = self.cache();
        if cache.index.is_none() {
            drop(cache);
            let loaded = Arc::new(self.load_index_files(None)?);
            cache = self.cache();
            cache.index.get_or_insert(loaded);
        }
        let pending = std::mem::take(&mut cache.pending_index);
        let index = cache.index.as_mut().expect("loaded above");
        if !pending.is_empty() {
            let index = Arc::make_mut(index);
            for (id, file) in &pending {
                if !index.files().contains(id) {
                    index.add_file(*id, file);
                }
            }
        }
        Ok(Arc::clone(index))
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
            match self.load_index_file(&id) {
                Ok(file) => files.push((id, file)),
                Err(e) => match damaged.as_mut() {
                    Some(report) => report(id, e),
                    None => return Err(e),
                },
            }
        }
        Ok(Index::from_files(files))
    }

    /// Reads one index file.
    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let name = id.to_hex();
        let payload = self.load_object(FileType::Index, ObjectType::Index, &name)?;
        IndexFile::decode(&payload, &FileType::Index.describe(&name))
    }

    /// Stores an index file; returns its id and size. The cached index
    /// learns of it.
    pub(crate) fn save_index(&self, file: IndexFile) -> Result<(IndexId, u64)> {
        let (id, len) = self.save_object(FileType::Index, ObjectType::Index, &file.encode())?;
        let id = IndexId::from_bytes(id);
        self.cache().pending_index.push((id, file));
        Ok((id, len))
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
