//! Continuous capture (SPEC.md 20): every commit of WAL-mode databases
//! into repositories within the sync interval, without a lock on the
//! database, a byte written into it, or a read of the whole file.
//!
//! One capture per database ([`crate::sqlite::capture`]: a thread that
//! reads the WAL as it is written) feeds one stream per repository
//! ([`stream`]: a thread that seals, spools, stores and bundles), so every
//! repository gets the same commits from one read. A stream starts with a
//! snapshot (a **bridge**, read from the database and aligned with the
//! WAL), goes on from its own record after a restart, bridges each gap the
//! WAL could not account for, and is **folded** into a snapshot
//! periodically, so `snapshots`, `forget`, `prune` and the rest see it.

pub mod state;
pub(crate) mod stream;

pub use self::stream::STOP_WAITS_FOR_BRIDGE;

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::state::StatePaths;
use self::stream::{Msg, Setup, Worker};
use crate::error::{Error, Result};
use crate::format::change::WalMark;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::capture::Capture;
use crate::sqlite::watch::Watch;

/// How to replicate.
#[derive(Clone, Debug)]
pub struct ReplicateOptions {
    /// Every commit is stored within this long of being read (default 1 s).
    pub interval: Duration,
    /// How often a stream is folded into a snapshot (default 1 hour).
    pub fold_every: Duration,
    /// Where the streams' state and spools are kept.
    pub state_dir: PathBuf,
    /// The most bytes a stream's spool holds while the storage is
    /// unreachable (default 1 GiB): past it, the stream is bridged again.
    pub spool_limit: u64,
    /// How long a snapshot's read waits for a database locked by a writer.
    pub lock_timeout: Duration,
    /// Tags of the stream's snapshots.
    pub tags: Vec<String>,
    /// Host name recorded (default: this host).
    pub host: Option<String>,
    /// Stops the replication: what is captured is stored first.
    pub cancel: Cancel,
}

impl ReplicateOptions {
    /// Defaults, with state kept in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            interval: Duration::from_secs(1),
            fold_every: Duration::from_secs(3600),
            state_dir: state_dir.into(),
            spool_limit: 1 << 30,
            lock_timeout: Duration::from_secs(5),
            tags: Vec::new(),
            host: None,
            cancel: Cancel::new(),
        }
    }

    /// The default state directory: `$XDG_STATE_HOME/litevault/replicate`,
    /// else `~/.local/state/litevault/replicate`.
    pub fn default_state_dir() -> Option<PathBuf> {
        Some(crate::sys::state_home()?.join("litevault/replicate"))
    }
}

/// Where one stream (a database into a repository) stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The database, as listings show its path.
    pub database: String,
    /// The repository's name (or location).
    pub repository: String,
    /// `running`, `waiting to bridge`, `bridging`.
    pub phase: String,
    /// The last change object sealed.
    pub seq: u64,
    /// The last one the repository holds.
    pub stored_seq: u64,
    /// Commits sealed.
    pub commits: u64,
    /// Change objects stored.
    pub objects: u64,
    /// Bytes written (change objects and bundles).
    pub bytes: u64,
    /// Write requests.
    pub puts: u64,
    /// Superseded objects deleted.
    pub deletes: u64,
    /// Gaps found.
    pub gaps: u64,
    /// Bridge snapshots written.
    pub bridges: u64,
    /// Fold snapshots written.
    pub folds: u64,
    /// Why the last gap happened.
    pub last_gap: Option<String>,
    /// The last error (cleared by the next successful write).
    pub last_error: Option<String>,
    /// The last snapshot written.
    pub last_snapshot: Option<String>,
    /// When the oldest commit not yet stored was read (ns since the Unix
    /// epoch), if there is one.
    pub oldest_unstored_ns: Option<i64>,
    /// When the last sealed commit was read.
    pub sealed_ns: i64,
    /// When the last stored commit was read.
    pub stored_ns: i64,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
}

impl StreamStatus {
    /// Seconds since the oldest commit that is not yet stored was read (0
    /// when every commit read is stored).
    pub fn lag_seconds(&self, now_ns: i64) -> f64 {
        self.oldest_unstored_ns
            .map_or(0.0, |t| (now_ns - t).max(0) as f64 / 1e9)
    }
}

/// A running replication (see the module docs).
pub struct Replication {
    statuses: Vec<Arc<Mutex<StreamStatus>>>,
    captures: Vec<JoinHandle<()>>,
    workers: Vec<(Sender<Msg>, JoinHandle<()>)>,
    stop: Cancel,
}

/// Starts replicating each of `databases` into each of `repositories`
/// (name, repository). Fails at once for a database that is missing, not
/// SQLite, or not in WAL mode.
pub fn start(
    repositories: &[(String, Arc<Repository>)],
    databases: &[PathBuf],
    opts: &ReplicateOptions,
) -> Result<Replication> {
    if repositories.is_empty() || databases.is_empty() {
        return Err(Error::InvalidInput(
            "replicate needs a repository and a database".into(),
        ));
    }
    for (name, r) in repositories {
        if r.config().version < 3 {
            return Err(Error::InvalidInput(format!(
                "repository {name} is format {}: continuous capture needs format 3 (`litevault init` makes it; copy the snapshots into a new repository)",
                r.config().version
            )));
        }
    }
    let stop = Cancel::new();
    let mut out = Replication {
        statuses: Vec::new(),
        captures: Vec::new(),
        workers: Vec::new(),
        stop: stop.clone(),
    };
    for db in databases {
        let db = std::path::absolute(db).unwrap_or_else(|_| db.clone());
        let page_size = crate::sqlite::capture::check_wal_mode(&db)?;
        let snapshot_lock = Arc::new(Mutex::new(()));
        let mut senders = Vec::new();
        let mut resume: Option<WalMark> = None;
        for (name, repo) in repositories {
            let paths = StatePaths::new(&opts.state_dir, &repo.config().id.to_hex(), &db);
            paths.create()?;
            let state = paths.load();
            if let Some(m) = state.as_ref().and_then(|s| s.sealed.mark) {
                let m = WalMark::from(m);
                // The streams of one database go on from the same place
                // unless one was bridged since: the capture salvages what
                // is left of the earliest's generation.
                if resume.is_none_or(|r| m.salts == r.salts && m.frames < r.frames) {
                    resume = Some(m);
                }
            }
            let status = Arc::new(Mutex::new(StreamStatus {
                database: crate::sys::escape_path(std::os::unix::ffi::OsStrExt::as_bytes(
                    db.as_os_str(),
                )),
                repository: name.clone(),
                phase: "starting".into(),
                ..StreamStatus::default()
            }));
            let (tx, rx) = std::sync::mpsc::channel();
            let worker = Worker::new(
                Setup {
                    repo: Arc::clone(repo),
                    db: db.clone(),
                    page_size,
                    paths,
                    opts: opts.clone(),
                    status: Arc::clone(&status),
                    snapshot_lock: Arc::clone(&snapshot_lock),
                    tx: tx.clone(),
                },
                state,
            );
            let handle = std::thread::Builder::new()
                .name("litevault-stream".into())
                .spawn(move || worker.run(&rx))
                .map_err(|e| Error::InvalidInput(format!("could not start a thread: {e}")))?;
            senders.push(tx.clone());
            out.workers.push((tx, handle));
            out.statuses.push(status);
        }
        let capture = Capture::open(&db, resume)?;
        let stop = stop.clone();
        let lock = Arc::clone(&snapshot_lock);
        let handle = std::thread::Builder::new()
            .name("litevault-capture".into())
            .spawn(move || capture_loop(capture, &senders, &stop, &lock))
            .map_err(|e| Error::InvalidInput(format!("could not start a thread: {e}")))?;
        out.captures.push(handle);
    }
    Ok(out)
}

/// Reads the WAL as it is written and hands every commit to the streams.
fn capture_loop(
    mut capture: Capture,
    streams: &[Sender<Msg>],
    stop: &Cancel,
    snapshots: &Mutex<()>,
) {
    let mut watch = Watch::new(capture.path());
    let wait = if watch.is_watching() {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(20)
    };
    let send = |m: &dyn Fn() -> Msg| {
        for s in streams {
            let _ = s.send(m());
        }
    };
    loop {
        let last = stop.is_cancelled();
        match capture.poll() {
            Ok(mut batch) => {
                let gone = capture.followed_wal_gone();
                watch.take_events();
                if watch.missed(batch.wal_ends, gone) {
                    // Some of these commits may come after the missed
                    // ones: none is handed over, the bridge holds them.
                    batch.commits.clear();
                    batch.gap.get_or_insert_with(|| {
                        "a -wal file was made, written and removed between two reads (the \
                         application's last connection closed, which checkpoints and deletes \
                         the WAL): its commits were not read"
                            .into()
                    });
                }
                if !batch.commits.is_empty() {
                    let c = batch.commits;
                    send(&|| Msg::Commits(c.clone()));
                }
                if let Some(gap) = batch.gap {
                    watch.forgive();
                    send(&|| Msg::Gap(gap.clone()));
                    if capture.is_same_file() {
                        capture.rebase(None);
                    } else {
                        // Replaced: follow the file now at the path. (No
                        // snapshot's connection may live while descriptors
                        // of the old file are closed.)
                        let _one = snapshots
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        match Capture::open(capture.path(), None) {
                            Ok(c) => capture = c,
                            Err(_) => std::thread::sleep(Duration::from_secs(1)),
                        }
                    }
                }
            }
            Err(e) => {
                send(&|| Msg::Gap(format!("reading the WAL failed: {e}")));
                watch.forgive();
                capture.rebase(None);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if last {
            break;
        }
        watch.wait(wait);
    }
}

impl Replication {
    /// Where each stream stands now.
    pub fn status(&self) -> Vec<StreamStatus> {
        self.statuses
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Stops: the captures read what is left, the streams seal and store
    /// it, and every thread ends. Returns where each stream stopped.
    pub fn stop(self) -> Vec<StreamStatus> {
        self.stop.cancel();
        for c in self.captures {
            let _ = c.join();
        }
        for (tx, _) in &self.workers {
            let _ = tx.send(Msg::Stop);
        }
        for (_, w) in self.workers {
            let _ = w.join();
        }
        self.statuses
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }
}
