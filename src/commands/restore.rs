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
//! 3. **Scrub** (optional): run SQL on the copy, checkpoint it,
//!    `quick_check` it again.
//! 4. **Protect** what is there: refuse if another process has the target
//!    open (unless live); back the target up as a `pre-restore` snapshot.
//! 5. **Swap** (`sqlite::target::swap`) or, live, copy into the open
//!    database through SQLite's online backup API.
//!
//! A failure or crash before step 5 leaves the target untouched (the
//! temporary file is removed, or ignored: it has its own name).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::backup::{backup, BackupOptions};
use crate::error::{Error, Result};
use crate::format::lock::LockKind;
use crate::format::manifest::{Manifest, Strategy};
use crate::id::{BlobId, SnapshotId};
use crate::progress::{Cancel, Progress};
use crate::repo::{Repository, PRE_RESTORE_TAG};
use crate::sqlite::target::{
    check_space, check_target, live_copy, refuse_if_open, resolve_target, swap,
};
use crate::sqlite::tempdb::TempDb;
use crate::sqlite::verify::{run_scrub, verify_database};
use crate::sys::fsync;

const STOPPED: &str = "restore stopped; the target was not touched";

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
    /// Back the existing target up first (tagged `pre-restore`).
    #[serde(default = "yes")]
    pub pre_restore: bool,
    /// Write into the target through SQLite while it stays open.
    #[serde(default)]
    pub live: bool,
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
            pre_restore: true,
            live: false,
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
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

/// Reads the reassembled file back to check the whole image's keyed hash
/// and size against the manifest.
fn check_image(repo: &Repository, m: &Manifest, path: &Path) -> Result<()> {
    let ctx = |e| Error::io("checking", path, e);
    let mut file = File::open(path).map_err(ctx)?;
    let mut h = repo.key().blob_hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(ctx)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    if total != m.image.bytes || BlobId::from_bytes(*h.finalize().as_bytes()) != m.image.hash {
        return Err(Error::damaged(
            format!("restored image {}", path.display()),
            "its hash or size differs from the snapshot's manifest",
        ));
    }
    Ok(())
}

/// Restores snapshot `id` into `opts.target` (see the module docs).
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let lock = repo.lock(LockKind::Shared, "restore")?;
    let manifest = repo.load_manifest(id)?;
    let target = resolve_target(&opts.target)?;
    let dir = check_target(&target)?;
    check_space(&dir, manifest.image.bytes, "restore")?;
    let exists = std::fs::symlink_metadata(&target).is_ok();
    if exists && !opts.live {
        // Before the long part: fail early if the swap would be refused.
        refuse_if_open(&target)?;
    }
    let stem = target
        .file_name()
        .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
    let (tmp, file) = TempDb::create(&dir, &stem, "restore")?;
    file.set_len(manifest.image.bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    repo.reassemble(
        &manifest,
        &|offset, bytes| {
            file.write_all_at(bytes, offset)
                .map_err(|e| Error::io("writing", tmp.path(), e))
        },
        opts.progress.as_deref(),
        &opts.cancel,
    )?;
    drop(file);
    // The fsync and the hash read-back run beside SQLite's check: all
    // three must pass before anything replaces the target.
    std::thread::scope(|s| {
        let synced =
            s.spawn(|| fsync(tmp.path()).map_err(|e| Error::io("fsyncing", tmp.path(), e)));
        let image = s.spawn(|| check_image(repo, &manifest, tmp.path()));
        let db = verify_database(tmp.path(), &manifest, opts.quick);
        let image = image.join().expect("image check thread panicked");
        let synced = synced.join().expect("fsync thread panicked");
        image.and(db).and(synced)
    })?;
    if let Some(sql) = &opts.post_sql {
        run_scrub(tmp.path(), sql, "post_sql")?;
    }
    opts.cancel.check(STOPPED)?;
    // The target may have appeared while the copy was being made.
    let exists = std::fs::symlink_metadata(&target).is_ok();
    if exists && !opts.live {
        refuse_if_open(&target)?;
    }
    let pre_restore = if exists && opts.pre_restore {
        Some(pre_restore_snapshot(repo, &target)?)
    } else {
        None
    };
    opts.cancel.check(STOPPED)?;
    lock.ensure_held()?;
    let live = opts.live && exists;
    if live {
        live_copy(tmp.path(), &target)?;
    } else {
        // The pre-restore backup took a while: check nobody opened the
        // target meanwhile.
        if exists {
            refuse_if_open(&target)?;
        }
        swap(tmp.path(), &target, &dir)?;
    }
    Ok(RestoreSummary {
        snapshot: *id,
        target,
        bytes: manifest.image.bytes,
        pre_restore,
        live,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Backs the target up, tagged `pre-restore` plus the tags its own latest
/// snapshot had.
fn pre_restore_snapshot(repo: &Repository, target: &Path) -> Result<SnapshotId> {
    let path = target.to_string_lossy();
    let own = repo
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, m)| m.database.path == path && !m.tags.iter().any(|t| t == PRE_RESTORE_TAG));
    let mut opts = BackupOptions::new(target);
    opts.force = true;
    opts.strategy = Strategy::Pages;
    opts.tags = vec![PRE_RESTORE_TAG.to_string()];
    if let Some((_, m)) = own {
        opts.tags.extend(m.tags);
        opts.name = Some(m.database.name);
    }
    let s = backup(repo, &opts).map_err(|e| match e {
        Error::Source {
            path,
            problem,
            message,
        } => Error::Source {
            path,
            problem,
            message: format!("backing up the current target before replacing it: {message}"),
        },
        e => e,
    })?;
    s.snapshot
        .ok_or_else(|| Error::Internal("the pre-restore backup stored no snapshot".into()))
}
