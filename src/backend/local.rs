//! A repository in a local directory.
//!
//! A write goes to a temporary file in the object's final directory
//! (`.tmp-<name>-<random>`), is fsynced, renamed into place, and the
//! directory is fsynced: a half-written object never appears under its
//! final name, and an object whose write returned `Ok` survives a power
//! cut. Temporary files left by a crash start with `.` and are never listed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    check_name, is_leftover_name, is_object_name, Backend, FileInfo, FileType, Interrupted,
    Leftover,
};
use crate::error::{BackendError, BackendErrorKind, BackendOp, Error, Result};

/// The file that holds a local repository's reserve of space.
const RESERVE: &str = ".reserve";

/// A repository stored in a local directory.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    file_mode: u32,
    dir_mode: u32,
}

/// File and directory modes for a repository whose directory has `root`
/// (private unless the directory grants its group access).
fn modes(root: Option<u32>) -> (u32, u32) {
    let (mut file, mut dir) = (0o600, 0o700);
    if let Some(m) = root {
        if m & 0o040 != 0 {
            file |= 0o040;
            dir |= 0o050;
        }
        if m & 0o020 != 0 {
            file |= 0o020;
            dir |= 0o020;
        }
    }
    (file, dir)
}

impl LocalBackend {
    /// A backend for a repository that is to be created at `root` by
    /// [`Backend::create`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let (file_mode, dir_mode) = modes(fs::metadata(&root).ok().map(|m| m.permissions().mode()));
        Self {
            root,
            file_mode,
            dir_mode,
        }
    }

    /// The permission bits of the files it writes.
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(self.dir_mode)
            .create(dir)
    }

    /// A backend for an existing repository at `root`; fails with a clear
    /// error if `root` is missing or is not a directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let location = root.display().to_string();
        match fs::metadata(&root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::RepositoryNotFound { location })
            }
            Err(e) => Err(BackendError::from_io(BackendOp::Connect, location, &e).into()),
            Ok(m) if !m.is_dir() => Err(Error::NotARepository {
                location,
                reason: "it is a file, not a directory".into(),
            }),
            Ok(_) => Ok(Self::new(root)),
        }
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

    fn path_of(&self, ty: FileType, name: &str, op: BackendOp) -> Result<PathBuf> {
        check_name(ty, name, op)?;
        if ty == FileType::Config {
            return Ok(self.root.join("config"));
        }
        Ok(self.dir_of(ty, name).join(name))
    }

    fn temp_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!(".tmp-{name}-{}", crate::sys::random_hex(8)))
    }

    fn write_inner(
        &self,
        dir: &Path,
        final_path: &Path,
        name: &str,
        data: &[u8],
    ) -> io::Result<()> {
        // The type's directory (`data/3f`, `changes`) is made if missing,
        // never the repository itself: a write into a repository whose
        // directory vanished (a volume unmounted) fails instead of
        // starting a new tree at its path.
        if !dir.is_dir() {
            match fs::DirBuilder::new().mode(self.dir_mode).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let tmp = Self::temp_path(dir, name);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.file_mode)
                .open(&tmp)?;
            // The umask may have taken bits the repository grants.
            f.set_permissions(fs::Permissions::from_mode(self.file_mode))?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, final_path)?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn err(ty: FileType, name: &str, op: BackendOp, e: &io::Error) -> Error {
        BackendError::from_io(op, ty.describe(name), e).into()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        let location = self.location();
        let fail = |e: &io::Error| -> Error {
            BackendError::from_io(BackendOp::Create, location.clone(), e).into()
        };
        match fs::metadata(&self.root) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::AlreadyExists {
                    location,
                    reason: "it is a file, not a directory".into(),
                })
            }
            Ok(_) => {
                if self.root.join("config").exists() {
                    return Err(Error::AlreadyExists {
                        location,
                        reason: "a repository already exists there".into(),
                    });
                }
                let not_empty = fs::read_dir(&self.root)
                    .map_err(|e| fail(&e))?
                    .next()
                    .is_some();
                if not_empty {
                    return Err(Error::AlreadyExists {
                        location,
                        reason: "the directory is not empty".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(&e)),
        }
        let mk = |p: &Path| {
            if p.is_dir() {
                return Ok(());
            }
            self.mkdir(p)
                .and_then(|()| fs::set_permissions(p, fs::Permissions::from_mode(self.dir_mode)))
                .map_err(|e| fail(&e))
        };
        // An existing (empty) directory keeps its permissions.
        mk(&self.root)?;
        for ty in FileType::ALL {
            if ty != FileType::Config {
                mk(&self.root.join(ty.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        sync_dir(&self.root).map_err(|e| fail(&e))?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| fail(&e))?;
        }
        Ok(())
    }

    fn write(&self, ty: FileType, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path_of(ty, name, BackendOp::Write)?;
        let dir = self.dir_of(ty, name);
        self.write_inner(&dir, &path, name, data)
            .map_err(|e| Self::err(ty, name, BackendOp::Write, &e))
    }

    fn read(&self, ty: FileType, name: &str) -> Result<Vec<u8>> {
        let path = self.path_of(ty, name, BackendOp::Read)?;
        // No object is longer than this: a junk file of gigabytes is read
        // only far enough for the format to call it damaged.
        let limit = if ty == FileType::Pack {
            u64::MAX
        } else {
            (crate::format::MAX_OBJECT_LEN as u64) + 2048
        };
        let read = || -> io::Result<Vec<u8>> {
            let f = File::open(&path)?;
            let len = f.metadata()?.len().min(limit);
            let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.take(limit).read_to_end(&mut out)?;
            Ok(out)
        };
        read().map_err(|e| Self::err(ty, name, BackendOp::Read, &e))
    }

    fn read_range(&self, ty: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path_of(ty, name, BackendOp::Read)?;
        let err = |e: io::Error| Self::err(ty, name, BackendOp::Read, &e);
        let mut f = File::open(&path).map_err(err)?;
        let size = f.metadata().map_err(err)?.len();
        let end = offset.saturating_add(len);
        if end > size {
            return Err(BackendError::new(
                BackendErrorKind::OutOfRange,
                BackendOp::Read,
                ty.describe(name),
                format!("truncated: bytes {offset}..{end} requested of a {size}-byte file"),
            )
            .into());
        }
        f.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut buf = vec![0u8; usize::try_from(len).expect("range below file size")];
        f.read_exact(&mut buf).map_err(err)?;
        Ok(buf)
    }

    fn size(&self, ty: FileType, name: &str) -> Result<u64> {
        let path = self.path_of(ty, name, BackendOp::Stat)?;
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| Self::err(ty, name, BackendOp::Stat, &e))
    }

    fn list(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        let err = |e: &io::Error| -> Error {
            BackendError::from_io(
                BackendOp::List,
                format!("{}/ in {}", ty.dir(), self.root.display()),
                e,
            )
            .into()
        };
        let mut out = Vec::new();
        if ty == FileType::Config {
            if let Ok(m) = fs::metadata(self.root.join("config")) {
                out.push(FileInfo {
                    name: "config".into(),
                    size: m.len(),
                    modified: m.modified().ok(),
                });
            }
            return Ok(out);
        }
        let depth = if ty == FileType::Pack { 2 } else { 1 };
        let dir = self.root.join(ty.dir());
        // A directory that older formats never made (`changes/` before
        // format 3) holds nothing; a vanished repository is still an error.
        if !dir.exists() && self.root.join("config").is_file() {
            return Ok(out);
        }
        let walker = walkdir::WalkDir::new(dir)
            .min_depth(depth)
            .max_depth(depth)
            .follow_links(false)
            .sort_by_file_name();
        for entry in walker {
            let entry = entry.map_err(|e| err(&e.into()))?;
            let name = entry.file_name().to_string_lossy();
            if !entry.file_type().is_file() || !is_object_name(&name) {
                continue;
            }
            let (size, modified) = match entry.metadata() {
                Ok(m) => (m.len(), m.modified().ok()),
                // Deleted between the directory read and the stat (a lock
                // released, a pack pruned): not there any more.
                Err(e)
                    if e.io_error()
                        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
                {
                    continue
                }
                Err(e) => return Err(err(&e.into())),
            };
            out.push(FileInfo {
                name: name.into_owned(),
                size,
                modified,
            });
        }
        Ok(out)
    }

    fn remove(&self, ty: FileType, name: &str) -> Result<()> {
        let path = self.path_of(ty, name, BackendOp::Delete)?;
        let err = |e: &io::Error| Self::err(ty, name, BackendOp::Delete, e);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir_of(ty, name)).map_err(|e| err(&e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&e)),
        }
    }

    fn reserve(&self, bytes: u64) -> Result<()> {
        let path = self.root.join(RESERVE);
        let tmp = self
            .root
            .join(format!(".tmp-reserve-{}", crate::sys::random_hex(8)));
        let err = |e: &io::Error| -> Error {
            BackendError::from_io(BackendOp::Write, RESERVE.to_string(), e).into()
        };
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.file_mode)
                .open(&tmp)?;
            // Real blocks, not a hole: the space must be taken now.
            let zeros = vec![0u8; 1 << 16];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(err(&e));
        }
        Ok(())
    }

    fn release_reserve(&self) -> Result<bool> {
        match fs::remove_file(self.root.join(RESERVE)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BackendError::from_io(BackendOp::Delete, RESERVE.to_string(), &e).into()),
        }
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>> {
        let mut out = Vec::new();
        for ty in FileType::ALL {
            let (dir, depth) = match ty {
                FileType::Config => (self.root.clone(), 1),
                FileType::Pack => (self.root.join(ty.dir()), 2),
                _ => (self.root.join(ty.dir()), 1),
            };
            let walker = walkdir::WalkDir::new(&dir)
                .min_depth(depth)
                .max_depth(depth)
                .follow_links(false)
                .sort_by_file_name();
            for entry in walker.into_iter().filter_map(std::result::Result::ok) {
                let name = entry.file_name().to_string_lossy();
                if !entry.file_type().is_file() || !is_leftover_name(&name) {
                    continue;
                }
                let Ok(m) = entry.metadata() else { continue };
                let path = entry
                    .path()
                    .strip_prefix(&self.root)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .into_owned();
                out.push(Leftover {
                    path,
                    size: m.len(),
                    modified: m.modified().ok(),
                });
            }
        }
        Ok(out)
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        // Only a temporary file of this repository, never anything else.
        super::check_leftover_path(path)?;
        let full = self.root.join(path);
        match fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::from_io(BackendOp::Delete, path.to_string(), &e).into()),
        }
    }

    fn leave_interrupted_write(&self, ty: FileType, name: &str, data: &[u8], how: Interrupted) {
        // What a killed writer leaves: its temporary file, never the object.
        let dir = self.dir_of(ty, name);
        let _ = self.mkdir(&dir);
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.file_mode)
            .open(Self::temp_path(&dir, name))
        {
            let _ = f.write_all(data);
            if how == Interrupted::Unpublished {
                let _ = f.sync_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn files_are_private_unless_the_repository_directory_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let b = LocalBackend::new(dir.path().join("private"));
        b.create().unwrap();
        b.write(FileType::Key, &"1".repeat(64), b"k").unwrap();
        assert_eq!(mode(&dir.path().join("private")), 0o700);
        assert_eq!(mode(&dir.path().join("private/keys")), 0o700);
        assert_eq!(
            mode(&dir.path().join("private/keys").join("1".repeat(64))),
            0o600
        );
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o2770)).unwrap();
        let b = LocalBackend::new(&shared);
        b.create().unwrap();
        b.write(FileType::Key, &"2".repeat(64), b"k").unwrap();
        assert_eq!(
            mode(&shared) & 0o777,
            0o770,
            "init keeps an existing directory's mode"
        );
        assert_eq!(mode(&shared.join("keys")), 0o770);
        assert_eq!(mode(&shared.join("keys").join("2".repeat(64))), 0o660);
    }

    #[test]
    fn packs_fan_out_and_names_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let name = "a".repeat(64);
        b.write(FileType::Pack, &name, b"pack bytes").unwrap();
        assert!(dir.path().join("repo/data/aa").join(&name).is_file());
        assert!(b.write(FileType::Index, "../escape", b"x").is_err());
        assert!(!dir.path().join("escape").exists());
    }
}
