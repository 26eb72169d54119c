//! A repository in a local directory.
//!
//! A write goes to a temporary file in the object's final directory
//! (`.tmp-<name>-<random>`), is fsynced, renamed into place, and the directory
//! is fsynced: a half-written object never appears under its final name, and
//! an object whose write returned `Ok` survives a power cut. Temporary files
//! left by a crash start with `.` and are never listed.
//!
//! [`FaultPlan`] makes the Nth write fail or tear the way a crash would, for
//! crash-consistency tests; after it fires every later write and delete fails
//! too, as if the process had died.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Backend, FileInfo, FileType};
use crate::error::{Error, Result};

/// What goes wrong at the planned write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail before anything is written.
    FailBeforeWrite,
    /// Write only the first `keep` bytes to the temporary file, then die.
    Torn {
        /// Bytes that reach the temporary file.
        keep: usize,
    },
    /// Write and fsync the whole temporary file, then die before the rename.
    FailBeforeRename,
    /// Rename into place, then die before the directory fsync; the write is
    /// reported as failed although the object is complete.
    FailAfterRename,
}

/// Makes write number `nth_write` (1-based, counting every write of this
/// backend) fail with `fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Which write fails, counting from 1.
    pub nth_write: u64,
    /// How it fails.
    pub fault: Fault,
}

#[derive(Debug)]
struct Faults {
    plan: FaultPlan,
    writes: AtomicU64,
    crashed: AtomicBool,
    count_removes: bool,
}

/// A repository stored in a local directory.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    faults: Option<Faults>,
}

fn simulated_crash() -> io::Error {
    io::Error::other("simulated crash (fault injection)")
}

impl LocalBackend {
    /// A backend for a repository that is to be created at `root` by
    /// [`Backend::create`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            faults: None,
        }
    }

    /// A backend for an existing repository at `root`; fails with a clear
    /// error if `root` is missing or is not a directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        match fs::metadata(&root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::RepositoryNotFound { path: root })
            }
            Err(e) => Err(Error::io(
                format!("opening repository {}", root.display()),
                e,
            )),
            Ok(m) if !m.is_dir() => Err(Error::NotARepository {
                path: root,
                reason: "it is a file, not a directory".into(),
            }),
            Ok(_) => Ok(Self::new(root)),
        }
    }

    /// Injects a fault into this backend's writes.
    #[must_use]
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(Faults {
            plan,
            writes: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            count_removes: false,
        });
        self
    }

    /// Makes deletions count as writes for the fault plan: the Nth
    /// mutation, write or delete, fails (a delete fails before deleting).
    #[must_use]
    pub fn counting_removes(mut self) -> Self {
        if let Some(f) = &mut self.faults {
            f.count_removes = true;
        }
        self
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, ty: FileType, name: &str) -> PathBuf {
        match ty {
            FileType::Config => self.root.clone(),
            FileType::Pack => self.root.join("data").join(name.get(..2).unwrap_or("xx")),
            _ => self.root.join(ty.dir()),
        }
    }

    fn path_of(&self, ty: FileType, name: &str) -> Result<PathBuf> {
        if ty == FileType::Config {
            return Ok(self.root.join("config"));
        }
        if !is_object_name(name) {
            return Err(Error::InvalidInput(format!(
                "{name:?} is not a valid object name: expected 64 lower-case hex digits"
            )));
        }
        Ok(self.dir_of(ty, name).join(name))
    }

    fn check_crashed(&self) -> io::Result<()> {
        match &self.faults {
            Some(f) if f.crashed.load(Ordering::SeqCst) => Err(simulated_crash()),
            _ => Ok(()),
        }
    }

    /// Returns the fault to apply to this write, if it is the planned one.
    fn next_write_fault(&self) -> io::Result<Option<Fault>> {
        self.check_crashed()?;
        let Some(f) = &self.faults else {
            return Ok(None);
        };
        let n = f.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == f.plan.nth_write {
            f.crashed.store(true, Ordering::SeqCst);
            return Ok(Some(f.plan.fault));
        }
        Ok(None)
    }

    fn write_inner(
        &self,
        dir: &Path,
        final_path: &Path,
        name: &str,
        data: &[u8],
    ) -> io::Result<()> {
        let fault = self.next_write_fault()?;
        if fault == Some(Fault::FailBeforeWrite) {
            return Err(simulated_crash());
        }
        fs::create_dir_all(dir)?;
        let mut suffix = [0u8; 8];
        crate::crypto::random_bytes(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!(".tmp-{name}-{}", hex::encode(suffix)));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            if let Some(Fault::Torn { keep }) = fault {
                f.write_all(&data[..keep.min(data.len())])?;
                // A crash: the temporary file stays behind, nothing is renamed.
                return Err(simulated_crash());
            }
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            if fault == Some(Fault::FailBeforeRename) {
                return Err(simulated_crash());
            }
            fs::rename(&tmp, final_path)?;
            if fault == Some(Fault::FailAfterRename) {
                return Err(simulated_crash());
            }
            sync_dir(dir)
        })();
        if result.is_err() && fault.is_none() {
            // A real error (not a simulated crash): clean up the temp file.
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// True for names of content-addressed objects: 64 lower-case hex digits.
pub(crate) fn is_object_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        let ctx = || format!("creating repository at {}", self.root.display());
        match fs::metadata(&self.root) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::AlreadyExists {
                    path: self.root.clone(),
                    reason: "it is a file, not a directory (choose another path)".into(),
                })
            }
            Ok(_) => {
                if self.root.join("config").exists() {
                    return Err(Error::AlreadyExists {
                        path: self.root.clone(),
                        reason: "a repository already exists there".into(),
                    });
                }
                let not_empty = fs::read_dir(&self.root)
                    .map_err(|e| Error::io(ctx(), e))?
                    .next()
                    .is_some();
                if not_empty {
                    return Err(Error::AlreadyExists {
                        path: self.root.clone(),
                        reason: "the directory is not empty (choose an empty or new directory)"
                            .into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(ctx(), e)),
        }
        let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| Error::io(ctx(), e));
        mk(&self.root)?;
        for ty in FileType::ALL {
            if ty != FileType::Config {
                mk(&self.root.join(ty.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        sync_dir(&self.root).map_err(|e| Error::io(ctx(), e))?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| Error::io(ctx(), e))?;
        }
        Ok(())
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path_of(ty, name)?;
        let dir = self.dir_of(ty, name);
        self.write_inner(&dir, &path, name, data)
            .map_err(|e| Error::io(format!("writing {}", ty.describe(name)), e))
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        let path = self.path_of(ty, name)?;
        fs::read(&path).map_err(|e| Error::io(format!("reading {}", ty.describe(name)), e))
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path_of(ty, name)?;
        let object = ty.describe(name);
        let ctx = |e| Error::io(format!("reading {object}"), e);
        let mut f = File::open(&path).map_err(ctx)?;
        let size = f.metadata().map_err(ctx)?.len();
        let end = offset.saturating_add(len);
        if end > size {
            return Err(Error::damaged(
                &object,
                format!("truncated: bytes {offset}..{end} requested of a {size}-byte file"),
            ));
        }
        f.seek(SeekFrom::Start(offset)).map_err(ctx)?;
        let mut buf = vec![0u8; usize::try_from(len).expect("range below file size")];
        f.read_exact(&mut buf).map_err(ctx)?;
        Ok(buf)
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        let path = self.path_of(ty, name)?;
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("reading {}", ty.describe(name)), e))
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        let ctx = |e: io::Error| {
            Error::io(
                format!("listing {}/ in {}", ty.dir(), self.root.display()),
                e,
            )
        };
        let mut out = Vec::new();
        if ty == FileType::Config {
            if let Ok(m) = fs::metadata(self.root.join("config")) {
                out.push(FileInfo {
                    name: "config".into(),
                    size: m.len(),
                });
            }
            return Ok(out);
        }
        let depth = if ty == FileType::Pack { 2 } else { 1 };
        let walker = walkdir::WalkDir::new(self.root.join(ty.dir()))
            .min_depth(depth)
            .max_depth(depth)
            .follow_links(false)
            .sort_by_file_name();
        for entry in walker {
            let entry = entry.map_err(|e| ctx(e.into()))?;
            let name = entry.file_name().to_string_lossy();
            if !entry.file_type().is_file() || !is_object_name(&name) {
                continue;
            }
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                // Deleted between the directory read and the stat (a lock
                // released, a pack pruned): not there any more.
                Err(e)
                    if e.io_error()
                        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
                {
                    continue
                }
                Err(e) => return Err(ctx(e.into())),
            };
            out.push(FileInfo {
                name: name.into_owned(),
                size,
            });
        }
        Ok(out)
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        let path = self.path_of(ty, name)?;
        let ctx = |e| Error::io(format!("deleting {}", ty.describe(name)), e);
        if self.faults.as_ref().is_some_and(|f| f.count_removes) {
            if self.next_write_fault().map_err(ctx)?.is_some() {
                return Err(ctx(simulated_crash()));
            }
        } else {
            self.check_crashed().map_err(ctx)?;
        }
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir_of(ty, name)).map_err(ctx),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ctx(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        b.write(FileType::Pack, &name('a'), b"pack bytes").unwrap();
        b.write(FileType::Index, &name('b'), b"idx").unwrap();
        assert!(dir.path().join("repo/data/aa").join(name('a')).is_file());
        assert_eq!(b.read(FileType::Pack, &name('a')).unwrap(), b"pack bytes");
        assert_eq!(
            b.read_range(FileType::Pack, &name('a'), 5, 5).unwrap(),
            b"bytes"
        );
        assert!(b
            .read_range(FileType::Pack, &name('a'), 5, 6)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let listed = b.list(FileType::Pack).unwrap();
        assert_eq!(
            listed,
            vec![FileInfo {
                name: name('a'),
                size: 10
            }]
        );
        b.remove(FileType::Pack, &name('a')).unwrap();
        b.remove(FileType::Pack, &name('a')).unwrap();
        assert!(b.list(FileType::Pack).unwrap().is_empty());
        assert!(b.write(FileType::Index, "../escape", b"x").is_err());
    }

    #[test]
    fn create_refuses_existing_and_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        fs::write(dir.path().join("other"), b"x").unwrap();
        assert!(b.create().unwrap_err().to_string().contains("not empty"));
        let file = dir.path().join("other");
        assert!(LocalBackend::new(&file)
            .create()
            .unwrap_err()
            .to_string()
            .contains("is a file"));
        assert!(matches!(
            LocalBackend::open(&file),
            Err(Error::NotARepository { .. })
        ));
        assert!(matches!(
            LocalBackend::open(dir.path().join("missing")),
            Err(Error::RepositoryNotFound { .. })
        ));
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
            let b = LocalBackend::new(dir.path().join("r")).with_faults(FaultPlan {
                nth_write: 2,
                fault,
            });
            b.create().unwrap();
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
