//! A repository in memory: for tests, and for anyone who wants a
//! throw-away repository. It keeps every guarantee of the backend contract
//! (a write is all or nothing, reads return exactly what was written).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{check_name, Backend, FileInfo, FileType};
use crate::error::{BackendError, BackendErrorKind, BackendOp, Error, Result};

/// Objects by type and name.
type Objects = BTreeMap<(FileType, String), Arc<Vec<u8>>>;

/// A repository held in memory; clones share the same objects.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<Objects>>,
    created: Arc<Mutex<bool>>,
}

impl MemoryBackend {
    /// An empty backend; [`Backend::create`] makes it a repository.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, ty: FileType, name: &str, op: BackendOp) -> Result<Arc<Vec<u8>>> {
        check_name(ty, name, op)?;
        self.objects
            .lock()
            .expect("memory backend mutex")
            .get(&(ty, name.to_string()))
            .cloned()
            .ok_or_else(|| {
                BackendError::new(
                    BackendErrorKind::NotFound,
                    op,
                    ty.describe(name),
                    "not found",
                )
                .into()
            })
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }

    fn create(&self) -> Result<()> {
        let mut created = self.created.lock().expect("memory backend mutex");
        if *created
            || !self
                .objects
                .lock()
                .expect("memory backend mutex")
                .is_empty()
        {
            return Err(Error::AlreadyExists {
                location: self.location(),
                reason: "a repository already exists there".into(),
            });
        }
        *created = true;
        Ok(())
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(ty, name, BackendOp::Write)?;
        self.objects
            .lock()
            .expect("memory backend mutex")
            .insert((ty, name.to_string()), Arc::new(data.to_vec()));
        Ok(())
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(ty, name, BackendOp::Read)?.to_vec())
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.get(ty, name, BackendOp::Read)?;
        let end = offset.saturating_add(len);
        if end > data.len() as u64 {
            return Err(BackendError::new(
                BackendErrorKind::OutOfRange,
                BackendOp::Read,
                ty.describe(name),
                format!(
                    "truncated: bytes {offset}..{end} requested of a {}-byte object",
                    data.len()
                ),
            )
            .into());
        }
        Ok(data[offset as usize..end as usize].to_vec())
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        Ok(self.get(ty, name, BackendOp::Stat)?.len() as u64)
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        Ok(self
            .objects
            .lock()
            .expect("memory backend mutex")
            .iter()
            .filter(|((t, _), _)| *t == ty)
            .map(|((_, name), data)| FileInfo {
                name: name.clone(),
                size: data.len() as u64,
                modified: None,
            })
            .collect())
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        check_name(ty, name, BackendOp::Delete)?;
        self.objects
            .lock()
            .expect("memory backend mutex")
            .remove(&(ty, name.to_string()));
        Ok(())
    }
}
