//! Restore: the backup path backwards, then a safe swap (SPEC.md, "Restore").
//!
//! Steps, in this order, each a guarantee the next relies on:
//!
//! 1. **Reassemble** into a temporary file in the target's directory (same
//!    filesystem) with the repository's reader (`repo::reader`); the file is
//!    fsynced and, at the same time, read back to check the whole image's
//!    keyed hash and size.
//! 2. **Verify** the database: `PRAGMA integrity_check` (`quick_check` with
//!    `quick`), page size and page count against the manifest.
//! 3. **Scrub** (optional, `sqlite::scrub`): run SQL on the copy, confined
//!    to it and with `secure_delete` on, then rebuild it with `VACUUM` so
//!    no byte the SQL deleted or overwrote remains, and check it again on
//!    a fresh connection.
//! 4. **Protect** what is there: refuse if another process has the target
//!    open or may have it open (unless live or forced); back the target up
//!    as a `pre-restore` snapshot, or, if SQLite cannot read it (a
//!    destroyed header), keep its bytes aside under a new name.
//! 5. **Swap** (`sqlite::target::swap`), the copy first given the target's
//!    owner, group and mode and the snapshot's journal mode; or, live,
//!    copy into the open database through SQLite's online backup API.
//!
//! A failure, signal or crash before step 5 leaves the target untouched:
//! the temporary file (mode 0600) is removed, or, after a kill, has its own
//! name and is removed by the next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::backup::{backup, BackupOptions};
use super::pitr::{apply_stream, Applied};
use crate::backend::IoStats;
use crate::error::{BackendErrorKind, Error, Result, SourceProblem};
use crate::format::manifest::{DbPath, Manifest, Strategy};
use crate::id::SnapshotId;
use crate::progress::{Cancel, Progress};
use crate::repo::{Repository, PRE_RESTORE_TAG};
use crate::sqlite::planted::refuse_planted_database;
use crate::sqlite::scrub::{scrub, ScrubReport};
use crate::sqlite::target::{
    check_space, check_target, inspect, live_copy, prepare_copy, refuse_if_open, resolve_target,
    swap, Ownership, TargetState,
};
use crate::sqlite::tempdb::{remove_stale, TempDb};
use crate::sqlite::verify::{verify_database, CopyCheck};
use crate::sys::fsync;

const STOPPED: &str = "restore stopped; the target was not touched";

/// The moment a restore or dump goes to in a stream of captured changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum At {
    /// The newest commit captured.
    Latest,
    /// The last commit read at or before this moment (ns since the Unix
    /// epoch).
    Moment(i64),
}

impl At {
    /// `latest`, or an RFC 3339 time (the form the HTTP API and config
    /// take; the command line also reads local times and durations ago).
    pub fn parse(s: &str) -> Result<At> {
        if s == "latest" {
            return Ok(At::Latest);
        }
        let t: jiff::Timestamp = s.parse().map_err(|e| {
            Error::InvalidInput(format!(
                "at {s:?} is not `latest` or an RFC 3339 time (2026-12-05T14:03:07.25Z): {e}"
            ))
        })?;
        Ok(At::Moment(
            i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX),
        ))
    }

    /// The moment, `None` for the newest.
    pub fn until_ns(self) -> Option<i64> {
        match self {
            At::Latest => None,
            At::Moment(t) => Some(t),
        }
    }
}

/// Options of [`restore`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreOptions {
    /// The database file to restore into (created or replaced).
    pub target: PathBuf,
    /// `quick_check` instead of `integrity_check`.
    #[serde(default)]
    pub quick: bool,
    /// SQL run on the restored copy before it goes live.
    #[serde(default)]
    pub post_sql: Option<String>,
    /// After `post_sql`, rebuild the copy with `VACUUM` so that it holds
    /// none of what the SQL deleted or overwrote (default). Off, the
    /// restore is faster on large databases but the file keeps those bytes
    /// in free pages and inside pages.
    #[serde(default = "yes")]
    pub vacuum: bool,
    /// Back the existing target up first (tagged `pre-restore`).
    #[serde(default = "yes")]
    pub pre_restore: bool,
    /// Write into the target through SQLite while it stays open.
    #[serde(default)]
    pub live: bool,
    /// Replace the target even if another process has it open, or may
    /// have (data written through such a process is lost).
    #[serde(default)]
    pub force: bool,
    /// Apply the snapshot's stream of captured changes after its image, up
    /// to this moment (SPEC.md 20.6); `None`: the snapshot as it is.
    #[serde(default)]
    pub at: Option<At>,
    /// Stops the restore early; the target is left untouched.
    #[serde(skip)]
    pub cancel: Cancel,
    /// Progress reports (bytes of image fetched).
    #[serde(skip)]
    pub progress: Option<Arc<dyn Progress>>,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("target", &self.target)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl RestoreOptions {
    /// Defaults: full integrity check, pre-restore snapshot, file swap.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        Self {
            target: target.into(),
            quick: false,
            post_sql: None,
            vacuum: true,
            pre_restore: true,
            live: false,
            force: false,
            at: None,
            cancel: Cancel::new(),
            progress: None,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoreSummary {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// The target, absolute.
    pub target: PathBuf,
    /// Image bytes written.
    pub bytes: u64,
    /// The snapshot of the replaced target, if one was taken.
    pub pre_restore: Option<SnapshotId>,
    /// True if written through SQLite into an open database.
    pub live: bool,
    /// Where a target SQLite could not read was kept, renamed.
    pub kept_damaged: Option<PathBuf>,
    /// What the `post_sql` scrub did, if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubReport>,
    /// The captured changes applied after the snapshot (`at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Applied>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

/// Restores snapshot `id` into `opts.target` (see the module docs).
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    if opts.target.as_os_str().is_empty() {
        return Err(Error::option("target", "the target path is empty"));
    }
    let phase = |name: &str| {
        if let Some(p) = &opts.progress {
            p.phase(name);
        }
    };
    phase("locking");
    let lock = repo.lock_reading("restore")?;
    phase("loading snapshot");
    let manifest = repo.load_manifest(id)?;
    let (target, dir) = where_to(&opts.target, manifest.image.bytes)?;
    let before = inspect(&target)?;
    let guard = |state: &TargetState| -> Result<()> {
        if opts.live || opts.force || *state == TargetState::Missing {
            return Ok(());
        }
        refuse_if_open(&target, state)
    };
    // Before the long part: fail early if the swap would be refused.
    guard(&before)?;
    let stem = target
        .file_name()
        .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
    let (tmp, file) = TempDb::create(&dir, &stem, "restore")?;
    repo.reassemble_into(
        &manifest,
        &file,
        tmp.path(),
        opts.progress.as_deref(),
        &opts.cancel,
    )?;
    opts.cancel.check(STOPPED)?;
    if opts.at.is_some() {
        phase("applying captured changes");
    }
    let (checked, changes) = apply_at(repo, &manifest, &file, tmp.path(), opts)?;
    drop(file);
    opts.cancel.check(STOPPED)?;
    let scrubbed = verify_and_scrub(repo, &checked, changes.is_none(), tmp.path(), opts, &phase)?;
    opts.cancel.check(STOPPED)?;
    // The target may have appeared, or changed, while the copy was made.
    let state = inspect(&target)?;
    guard(&state)?;
    // Before the copy is given the target's owner: a name planted meanwhile
    // must not receive the data.
    refuse_planted_database(&target, "target")?;
    let own = match std::fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::InvalidInput(format!(
                "target {} was replaced by a symlink during the restore: nothing was changed; check who did, then restore again",
                target.display()
            )))
        }
        Ok(m) => Ownership::of(&m),
        Err(_) => Ownership::new_file(manifest.database.mode),
    };
    let live = opts.live && matches!(state, TargetState::Database { .. });
    if !live {
        prepare_copy(tmp.path(), &target, own, &manifest.image.journal_mode)?;
    }
    if opts.pre_restore && matches!(state, TargetState::Database { .. }) {
        phase("pre-restore backup");
    }
    let pre_restore = match (&state, opts.pre_restore) {
        (TargetState::Database { .. }, true) => pre_restore_snapshot(repo, &target)?,
        _ => None,
    };
    let state = if pre_restore.is_none() && opts.pre_restore {
        // The backup could not read it: keep its bytes instead.
        match state {
            TargetState::Database { .. } => TargetState::Damaged("SQLite could not read it".into()),
            s => s,
        }
    } else {
        state
    };
    opts.cancel.check(STOPPED)?;
    lock.ensure_held()?;
    let mut kept_damaged = None;
    if live {
        phase("writing through SQLite");
        live_copy(tmp.path(), &target, &opts.cancel)?;
    } else {
        phase("swapping");
        // The pre-restore backup took a while: check nobody opened the
        // target, or planted a name beside it, meanwhile.
        guard(&state)?;
        refuse_planted_database(&target, "target")?;
        kept_damaged = swap(tmp.path(), &target, &dir, &state)?;
        tmp.keep();
    }
    drop(lock);
    Ok(RestoreSummary {
        snapshot: *id,
        target,
        bytes: manifest.image.bytes,
        pre_restore,
        live,
        kept_damaged,
        scrub: scrubbed,
        changes,
        duration_ms: started.elapsed().as_millis() as u64,
        io: repo.io_stats(),
    })
}

/// The target to write (a symlink resolved, unless another user may have
/// planted it) and its directory, with room for `bytes`.
fn where_to(given: &Path, bytes: u64) -> Result<(PathBuf, PathBuf)> {
    // Names another user may have planted (a symlink to one of ours) are
    // refused before anything follows them.
    refuse_planted_database(given, "target")?;
    let target = resolve_target(given)?;
    if let Some(why) = crate::sqlite::name_too_long(&target) {
        return Err(Error::InvalidInput(format!(
            "target {}: {why}",
            target.display()
        )));
    }
    refuse_planted_database(&target, "target")?;
    let dir = check_target(&target)?;
    remove_stale(&dir);
    check_space(&dir, bytes, "restore")?;
    Ok((target, dir))
}

/// With `at`: the snapshot's own image is checked first (the changes go
/// onto exactly it), then its stream's changes are applied, each page
/// checked by its hash. Returns the manifest the result is verified
/// against (the last commit's size) and what was applied.
fn apply_at(
    repo: &Repository,
    manifest: &Manifest,
    file: &std::fs::File,
    path: &Path,
    opts: &RestoreOptions,
) -> Result<(Manifest, Option<Applied>)> {
    let Some(at) = opts.at else {
        return Ok((manifest.clone(), None));
    };
    repo.check_image_file(manifest, path)?;
    let applied = apply_stream(repo, manifest, file, at.until_ns(), &opts.cancel)?;
    let mut m = manifest.clone();
    m.image.page_count = applied.pages;
    m.image.bytes = applied.pages * u64::from(m.image.page_size);
    Ok((m, Some(applied)))
}

/// Steps 2 and 3: the copy verified, then scrubbed (with `post_sql`).
fn verify_and_scrub(
    repo: &Repository,
    m: &Manifest,
    image_hash: bool,
    path: &Path,
    opts: &RestoreOptions,
    phase: &dyn Fn(&str),
) -> Result<Option<ScrubReport>> {
    phase(if opts.quick {
        "verifying (quick_check)"
    } else {
        "verifying (integrity_check)"
    });
    verify_copy(repo, m, image_hash, path, opts)?;
    opts.post_sql
        .as_deref()
        .map(|sql| {
            phase("running post-sql");
            scrub(path, sql, "post_sql", opts.vacuum, opts.quick, &opts.cancel)
        })
        .transpose()
}

/// Checks the reassembled copy at `path` before anything replaces the
/// target: the fsync and the hash read-back run beside SQLite's check, and
/// all three must pass.
fn verify_copy(
    repo: &Repository,
    m: &Manifest,
    image_hash: bool,
    path: &Path,
    opts: &RestoreOptions,
) -> Result<()> {
    std::thread::scope(|s| {
        let synced = s.spawn(|| fsync(path).map_err(|e| Error::io("fsyncing", path, e)));
        let image = s.spawn(|| {
            if image_hash {
                repo.check_image_file(m, path)
            } else {
                Ok(())
            }
        });
        let db = verify_database(path, m, opts.quick, &opts.cancel);
        let image = image.join().expect("image check thread panicked");
        let synced = synced.join().expect("fsync thread panicked");
        image?;
        synced?;
        db.map_err(|e| copy_error(m, e))
    })
}

/// The error for a restored copy that did not verify although its image
/// matched the manifest's hash: the database was already so when it was
/// backed up.
fn copy_error(m: &Manifest, e: CopyCheck) -> Error {
    match e {
        CopyCheck::Failed(problem) | CopyCheck::Broken(problem) => Error::CorruptSnapshot {
            database: m.database.name.clone(),
            time: m.time.clone(),
            problem,
        },
        CopyCheck::Shape(p) => Error::damaged(
            format!(
                "the restored copy of {} taken at {}",
                m.database.name, m.time
            ),
            p,
        ),
        CopyCheck::Stopped(e) => e,
    }
}

/// Backs the target up, tagged `pre-restore` plus the tags its own latest
/// snapshot had. `None` when SQLite cannot read the target (then its bytes
/// are kept aside instead).
fn pre_restore_snapshot(repo: &Repository, target: &Path) -> Result<Option<SnapshotId>> {
    let path = DbPath::of(target);
    let own =
        repo.snapshots()?.into_iter().rev().find(|(_, m)| {
            m.database.key() == path && !m.tags.iter().any(|t| t == PRE_RESTORE_TAG)
        });
    let mut opts = BackupOptions::new(target);
    opts.force = true;
    opts.strategy = Strategy::Pages;
    opts.tags = vec![PRE_RESTORE_TAG.to_string()];
    if let Some((_, m)) = own {
        opts.tags.extend(m.tags);
        opts.name = Some(m.database.name);
    }
    match backup(repo, &opts) {
        Ok(s) => s
            .snapshot
            .map(Some)
            .ok_or_else(|| Error::Internal("the pre-restore backup stored no snapshot".into())),
        Err(Error::Source {
            problem: SourceProblem::Corrupt | SourceProblem::NotSqlite,
            ..
        }) => Ok(None),
        Err(Error::Backend(e))
            if matches!(e.kind, BackendErrorKind::ReadOnly | BackendErrorKind::PermissionDenied) =>
        {
            Err(Error::option(
                "pre_restore",
                format!(
                    "the current target cannot be backed up before it is replaced: the repository cannot be written ({})",
                    e.detail
                ),
            ))
        }
        Err(Error::Source {
            path,
            problem,
            message,
        }) => Err(Error::Source {
            path,
            problem,
            message: format!("backing up the current target before replacing it: {message}"),
        }),
        Err(e) => Err(e),
    }
}
