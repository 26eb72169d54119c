//! A backend wrapper that fails or tears the Nth write (or delete) of any
//! backend the way a crash would, for crash-consistency tests: after the
//! fault fires every later write and delete fails too, as if the process
//! had died. Reads keep working, so a test can look at what was left.
//!
//! What an interrupted write leaves behind is the wrapped backend's to say
//! ([`Backend::leave_interrupted_write`]): a directory keeps a hidden
//! temporary file, an object store nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Backend, FileInfo, FileType, Interrupted};
use crate::error::{BackendError, BackendErrorKind, BackendOp, Result};

/// What goes wrong at the planned write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail before anything is written.
    FailBeforeWrite,
    /// Send only the first `keep` bytes, then die.
    Torn {
        /// Bytes that reach the storage.
        keep: usize,
    },
    /// Send and flush every byte, then die before the object is published
    /// (before the rename, for a directory).
    FailBeforeRename,
    /// Publish the object, then die before acknowledging it: the write is
    /// reported as failed although the object is complete.
    FailAfterRename,
}

/// Makes write number `nth_write` (1-based, counting every write through
/// the wrapper) fail with `fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Which write fails, counting from 1.
    pub nth_write: u64,
    /// How it fails.
    pub fault: Fault,
}

/// Wraps a backend and injects one planned fault.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: FaultPlan,
    writes: AtomicU64,
    crashed: AtomicBool,
    count_removes: bool,
}

fn crash(op: BackendOp, object: String) -> crate::error::Error {
    BackendError::new(
        BackendErrorKind::Permanent,
        op,
        object,
        "simulated crash (fault injection)",
    )
    .into()
}

impl FaultyBackend {
    /// Wraps `inner` with the fault `plan`.
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            writes: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            count_removes: false,
        }
    }

    /// Makes deletions count as writes for the fault plan: the Nth
    /// mutation, write or delete, fails (a delete fails before deleting).
    #[must_use]
    pub fn counting_removes(mut self) -> Self {
        self.count_removes = true;
        self
    }

    /// True once the fault fired.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// The fault for the next mutation, if it is the planned one; an error
    /// if the simulated process already died.
    fn next(&self, op: BackendOp, object: &str) -> Result<Option<Fault>> {
        if self.crashed() {
            return Err(crash(op, object.to_string()));
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.plan.nth_write {
            self.crashed.store(true, Ordering::SeqCst);
            return Ok(Some(self.plan.fault));
        }
        Ok(None)
    }
}

impl Backend for FaultyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        let object = ty.describe(name);
        let Some(fault) = self.next(BackendOp::Write, &object)? else {
            return self.inner.write(ty, name, data);
        };
        match fault {
            Fault::FailBeforeWrite => {}
            Fault::Torn { keep } => self.inner.leave_interrupted_write(
                ty,
                name,
                &data[..keep.min(data.len())],
                Interrupted::Partial,
            ),
            Fault::FailBeforeRename => {
                self.inner
                    .leave_interrupted_write(ty, name, data, Interrupted::Unpublished);
            }
            Fault::FailAfterRename => self.inner.write(ty, name, data)?,
        }
        Err(crash(BackendOp::Write, object))
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner.read(ty, name)
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(ty, name, offset, len)
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        self.inner.size(ty, name)
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        self.inner.list(ty)
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        let object = ty.describe(name);
        if self.count_removes {
            if self.next(BackendOp::Delete, &object)?.is_some() {
                return Err(crash(BackendOp::Delete, object));
            }
        } else if self.crashed() {
            return Err(crash(BackendOp::Delete, object));
        }
        self.inner.remove(ty, name)
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

    fn io_stats(&self) -> Option<super::IoStats> {
        self.inner.io_stats()
    }

    fn list_many(&self, types: &[FileType]) -> Result<Vec<Vec<super::FileInfo>>> {
        self.inner.list_many(types)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backend::memory::MemoryBackend;

    fn name(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn every_fault_leaves_no_partial_object() {
        let data = vec![0x5a; 10_000];
        for fault in [
            Fault::FailBeforeWrite,
            Fault::Torn { keep: 4_000 },
            Fault::FailBeforeRename,
            Fault::FailAfterRename,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let local = LocalBackend::new(dir.path().join("r"));
            local.create().unwrap();
            let memory = MemoryBackend::new();
            for inner in [Arc::new(local) as Arc<dyn Backend>, Arc::new(memory)] {
                let b = FaultyBackend::new(
                    inner,
                    FaultPlan {
                        nth_write: 2,
                        fault,
                    },
                );
                b.write(FileType::Index, &name('1'), &data).unwrap();
                assert!(b.write(FileType::Index, &name('2'), &data).is_err());
                assert!(
                    b.write(FileType::Index, &name('3'), &data).is_err(),
                    "writes after a crash fail"
                );
                for f in b.list(FileType::Index).unwrap() {
                    assert_eq!(
                        b.read(FileType::Index, &f.name).unwrap(),
                        data,
                        "{fault:?}: {} is partial",
                        f.name
                    );
                }
                let present = b.list(FileType::Index).unwrap().len();
                let expected = if fault == Fault::FailAfterRename {
                    2
                } else {
                    1
                };
                assert_eq!(present, expected, "{fault:?}");
            }
        }
    }

    #[test]
    fn a_torn_local_write_leaves_only_a_hidden_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path().join("r"));
        local.create().unwrap();
        let b = FaultyBackend::new(
            Arc::new(local),
            FaultPlan {
                nth_write: 1,
                fault: Fault::Torn { keep: 10 },
            },
        );
        let err = b.write(FileType::Index, &name('4'), &[1; 100]).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        let left: Vec<String> = std::fs::read_dir(dir.path().join("r/index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 1);
        assert!(left[0].starts_with(".tmp-"), "{left:?}");
        assert!(b.list(FileType::Index).unwrap().is_empty());
    }
}
