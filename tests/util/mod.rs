//! Helpers shared by the integration tests: a temp directory with a
//! repository path and password files, a runner for the real binary, and
//! the database generator ([`workload`]).

pub mod servers;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch directory for one test, and its repository: a directory in
/// it, or a remote location.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub password_file: PathBuf,
    /// A remote repository's location (`repo` is then unused).
    pub location: Option<String>,
    /// Environment the binary gets (credentials, PATH with an ssh wrapper).
    pub vars: Vec<(String, std::ffi::OsString)>,
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        &self.stdout
    }

    /// Asserts a usage error (exit 2) shown as clap shows it: the error,
    /// the usage line, where the help is, and every one of `needles`.
    #[track_caller]
    pub fn usage(&self, needles: &[&str]) -> String {
        assert_eq!(self.code, 2, "wrong exit code: {self:?}");
        let e = &self.stderr;
        assert!(e.starts_with("error: "), "{e}");
        assert!(e.contains("Usage: litevault"), "{e}");
        assert!(e.contains("--help"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
        for n in needles {
            assert!(e.contains(n), "usage error {e:?} lacks {n:?}");
        }
        e.clone()
    }

    /// Asserts the run failed with `code` and exactly one error line that
    /// contains every one of `needles`; returns that line.
    #[track_caller]
    pub fn fails(&self, code: i32, needles: &[&str]) -> String {
        assert_eq!(self.code, code, "wrong exit code: {self:?}");
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.starts_with("litevault: warning:") && !l.starts_with("litevault: note:"))
            .collect();
        assert_eq!(lines.len(), 1, "expected a one-line error: {self:?}");
        let line = lines[0];
        assert!(line.starts_with("litevault: error: "), "{line}");
        for n in needles {
            assert!(line.contains(n), "error {line:?} lacks {n:?}");
        }
        assert!(!line.contains("panicked"), "{line}");
        line.to_string()
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        Self {
            dir,
            repo,
            password_file,
            location: None,
            vars: Vec::new(),
        }
    }

    /// An environment whose repository is at a remote `location`, reached
    /// with `vars`.
    pub fn remote(location: String, vars: Vec<(String, std::ffi::OsString)>) -> Self {
        Self {
            location: Some(location),
            vars,
            ..Self::new()
        }
    }

    /// The repository's location, as `--repo` takes it.
    pub fn location(&self) -> std::ffi::OsString {
        self.location
            .as_ref()
            .map_or_else(|| self.repo.clone().into_os_string(), Into::into)
    }

    /// Opens the repository in this process.
    pub fn open_repo(&self) -> litevault::Repository {
        let location = litevault::Location::parse(&self.location().to_string_lossy()).unwrap();
        let backend = location
            .open(&litevault::BackendOptions::default())
            .unwrap();
        litevault::Repository::open(backend, PASSWORD.as_bytes()).unwrap()
    }

    /// Writes a password file and returns its path.
    pub fn password(&self, name: &str, password: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, password).unwrap();
        p
    }

    /// The binary with a clean environment: no LITEVAULT_* from the caller,
    /// the test-only KDF, and stdin closed (so no prompt can block).
    pub fn bare(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_litevault"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LITEVAULT_") {
                c.env_remove(k);
            }
        }
        c.env("LITEVAULT_TEST_ONLY_INSECURE_KDF", "1")
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// `litevault --repo REPO --password-file PW ARGS...` for another
    /// repository than the environment's, prepared but not run.
    pub fn command_for<S: AsRef<std::ffi::OsStr>>(&self, repo: &Path, args: &[S]) -> Command {
        let mut c = self.bare();
        c.arg("--repo")
            .arg(repo)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(args);
        c
    }

    /// `litevault --repo REPO --password-file PW ARGS...`, prepared.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        self.command_for(Path::new(&self.location()), args)
    }

    /// Runs `litevault --repo REPO --password-file PW ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Initialises the repository.
    pub fn init(&self) {
        self.run(&["init"]).ok();
    }
}

/// Runs a prepared command.
pub fn run(mut c: impl std::borrow::BorrowMut<Command>) -> Run {
    let out = c.borrow_mut().output().expect("run litevault");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir` with its bytes, to show a command changed nothing.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// The names of the files in one repository directory.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().map(Result::unwrap) {
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if e.file_type().is_file() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A small tmpfs mounted at a directory for the life of the value, to test
/// full filesystems; `None` where mounting is not allowed.
pub struct SmallFs(PathBuf);

impl SmallFs {
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// An XFS filesystem (reflinks on) in a sparse file on a loop device,
/// mounted at `dir/mnt` for the life of the value; `None` where mkfs.xfs
/// or loop mounts are not available.
pub struct XfsFs(PathBuf);

impl XfsFs {
    pub fn mount(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.join("xfs.img");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        // XFS needs at least 300 MiB; the file is sparse.
        std::fs::File::create(&image)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        let made = Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "reflink=1"])
            .arg(&image)
            .status()
            .is_ok_and(|s| s.success());
        let mounted = made
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mnt)
                .status()
                .is_ok_and(|s| s.success());
        mounted.then(|| Self(mnt))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for XfsFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The program `name` on `PATH`, if there is one.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
