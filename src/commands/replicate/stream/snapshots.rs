//! A stream's snapshots (SPEC.md 20.4): the bridge that starts it and
//! ends each gap, and the fold that continues its chain; each a backup
//! read in a thread of its own, aligned with the WAL.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{against, hexd, random32, same_point, Against, Msg, Phase, Worker};
use crate::commands::backup::{backup, BackupOptions};
use crate::error::{Error, Result};
use crate::format::change::WalMark;
use crate::format::manifest::{Continuous, ContinuousKind, WalPosition};
use crate::id::SnapshotId;
use crate::sqlite::source::{Align, AlignHook};
use crate::sqlite::wal_index::WalIndex;

impl Worker {
    /// A bridge's read holds the commits up to `mark`: the ones buffered
    /// after it are sealed next (all received since the capture started
    /// or the last gap, so none is missing between).
    pub(super) fn aligned(&mut self, mark: WalMark) {
        let Phase::Bridging { aligned, .. } = &mut self.phase else {
            return;
        };
        *aligned = true;
        // An empty wal-index names no position a restart could go on from.
        self.bridge_mark = (mark.salts != (0, 0)).then_some(mark);
        let mut pending = std::mem::take(&mut self.pending);
        if mark.salts == (0, 0) {
            // The wal-index was empty: the file held every commit; the
            // next generation's first commit is the first after it.
            self.after = Some(mark);
            return;
        }
        // Commits come in the order the WAL files held them, so every
        // commit before the one that ends or starts at the position is in
        // the image, whatever its generation (a WAL made anew has random
        // salts, which tell no order).
        let found = pending
            .iter()
            .rposition(|c| matches!(against(c, &mark), Against::At | Against::Next));
        match found.map(|i| (i, against(&pending[i], &mark))) {
            Some((i, Against::At)) => self.pending = pending.split_off(i + 1),
            Some((i, _)) => self.pending = pending.split_off(i),
            None if pending
                .iter()
                .any(|c| c.mark.salts == mark.salts && c.mark.frames > mark.frames) =>
            {
                self.gap(
                    "commits between the bridge's read and the capture were not received".into(),
                );
            }
            // The capture has not read up to it yet: it comes (the commits
            // held are before it; had the capture missed some, it would
            // have said so).
            None => self.after = Some(mark),
        }
    }

    /// Answers a fold waiting for its position, once the commits up to it
    /// are here: they are sealed, and the fold records the point after.
    pub(super) fn answer_fold(&mut self) {
        let Some((m, _)) = &self.fold_wait else {
            return;
        };
        let m = *m;
        let last_sealed = self.state.sealed.mark.map(WalMark::from);
        let upto = self.pending.iter().position(|c| same_point(&c.mark, &m));
        let beyond = self
            .pending
            .iter()
            .any(|c| matches!(against(c, &m), Against::Past | Against::Next));
        let at_sealed = last_sealed.is_some_and(|l| same_point(&l, &m))
            && self.pending.first().is_none_or(|c| same_point(&c.prev, &m));
        let answer = if let Some(i) = upto {
            let rest = self.pending.split_off(i + 1);
            self.seal_pending();
            self.pending = rest;
            Some(Ok(self.state.sealed.clone()))
        } else if at_sealed {
            Some(Ok(self.state.sealed.clone()))
        } else if beyond || !matches!(self.phase, Phase::Running) {
            Some(Err(Error::InvalidInput(
                "the fold's position is not a commit this stream holds".into(),
            )))
        } else {
            None
        };
        if let Some(a) = answer {
            let (_, reply) = self.fold_wait.take().expect("checked");
            let _ = reply.send(a);
        }
    }

    pub(super) fn snapshot_done(&mut self, kind: ContinuousKind, r: &Result<SnapshotId>) {
        let mut st = self.s.status.lock().unwrap();
        match (&kind, r) {
            (_, Ok(id)) => {
                st.last_snapshot = Some(id.to_hex());
                if kind == ContinuousKind::Bridge {
                    st.bridges += 1;
                } else {
                    st.folds += 1;
                }
            }
            (_, Err(e)) => st.last_error = Some(e.to_string()),
        }
        drop(st);
        match kind {
            ContinuousKind::Fold => {
                self.fold_in_flight = false;
                self.last_fold = Instant::now();
                if let Some((_, reply)) = self.fold_wait.take() {
                    let _ = reply.send(Err(Error::InvalidInput("the fold ended".into())));
                }
            }
            ContinuousKind::Bridge => {
                let reason = match &self.phase {
                    Phase::Bridging { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                if let (Ok(_), Some(why)) = (r, self.gap_in_bridge.take()) {
                    // Commits after its position were missed while it was
                    // written: it restores, but ends no gap. Another
                    // bridge does (and a restart bridges too).
                    self.state.sealed.mark = self.bridge_mark.take().map(Into::into);
                    self.state.bridged = false;
                    self.pending.clear();
                    self.after = None;
                    self.phase = Phase::NeedsBridge(why, Instant::now());
                    self.save();
                } else if r.is_ok() {
                    // The stream stands at the bridge's position until a
                    // commit after it is sealed: a restart goes on from
                    // there (none recorded: it bridges again).
                    self.state.sealed.mark = self.bridge_mark.take().map(Into::into);
                    self.state.bridged = true;
                    self.phase = Phase::Running;
                    self.last_fold = Instant::now();
                    self.save();
                } else {
                    self.gap_in_bridge = None;
                    self.bridge_mark = None;
                    self.pending.clear();
                    self.after = None;
                    self.phase = Phase::NeedsBridge(reason, Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Starts a bridge or a fold: a snapshot read in a thread of its own,
    /// aligned with the WAL.
    pub(super) fn start_snapshot(&mut self, kind: ContinuousKind, reason: String) {
        let shm_path = crate::sys::with_suffix(&self.s.db, "-shm");
        if !shm_path.exists() {
            // Nobody has the database open: a reader makes its wal-index,
            // as the snapshot's own connection would (serialised with the
            // other snapshots of this database: see `Setup`).
            let _one = self
                .s
                .snapshot_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ =
                crate::sqlite::open_database(&self.s.db, self.s.opts.lock_timeout).and_then(|c| {
                    c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                        .map_err(|e| Error::InvalidInput(e.to_string()))
                });
        }
        // Only looked at: the read opens its own descriptor once its
        // connection holds the file (see `Align`).
        if let Err(e) = std::fs::metadata(&shm_path) {
            self.fail(&Error::io("opening", &shm_path, e));
            if kind == ContinuousKind::Bridge {
                self.phase = Phase::NeedsBridge(reason, Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
            }
            return;
        }
        let hook = match kind {
            ContinuousKind::Bridge => self.bridge_hook(&reason),
            ContinuousKind::Fold => fold_hook(self.s.tx.clone(), hex::encode(self.stream)),
        };
        match kind {
            ContinuousKind::Bridge => {
                // Commits received since the gap are kept: the ones after
                // the bridge's position are sealed after it.
                self.after = None;
                self.phase = Phase::Bridging {
                    aligned: false,
                    reason,
                };
            }
            ContinuousKind::Fold => {
                if !self.pending.is_empty() {
                    self.seal_pending();
                }
                self.store_unstored();
                self.fold_in_flight = true;
            }
        }
        let mut opts = BackupOptions::new(&self.s.db);
        opts.force = true;
        opts.tags.clone_from(&self.s.opts.tags);
        opts.host.clone_from(&self.s.opts.host);
        opts.lock_timeout = self.s.opts.lock_timeout;
        self.snapshot_cancel = crate::progress::Cancel::new();
        opts.cancel = self.snapshot_cancel.clone();
        opts.align = Some(Align::new(shm_path, hook));
        let repo = Arc::clone(&self.s.repo);
        let lock = Arc::clone(&self.s.snapshot_lock);
        let tx = self.s.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("litevault-snapshot".into())
            .spawn(move || {
                let r = {
                    let _one = lock
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let r = backup(&repo, &opts).and_then(|s| {
                        s.snapshot
                            .ok_or_else(|| Error::InvalidInput("no snapshot was written".into()))
                    });
                    // The -shm descriptor closes while no other snapshot's
                    // connection to the database lives.
                    drop(opts);
                    r
                };
                let _ = tx.send(Msg::SnapshotDone(kind, r));
            });
        if spawned.is_err() {
            let _ = self.s.tx.send(Msg::SnapshotDone(
                kind,
                Err(Error::InvalidInput("could not start a thread".into())),
            ));
        }
    }

    /// A bridge's hook: the stream goes on from a new digest, so no object
    /// before the bridge chains into the ones after it.
    pub(super) fn bridge_hook(&mut self, reason: &str) -> Arc<AlignHook> {
        let digest = random32();
        let seq = self.state.sealed.seq;
        self.digest = digest;
        self.state.sealed.digest = hexd(&digest);
        self.state.bridged = false;
        self.save();
        let gap = (!reason.is_empty()).then(|| reason.to_string());
        let tx = self.s.tx.clone();
        let stream = hex::encode(self.stream);
        Arc::new(move |w: WalIndex, at: i64| {
            let _ = tx.send(Msg::Aligned(mark_of(&w)));
            Ok(Continuous {
                stream: stream.clone(),
                seq,
                digest: hex::encode(digest),
                kind: ContinuousKind::Bridge,
                gap: gap.clone(),
                wal: position(&w),
                time_ns: at,
            })
        })
    }
}

/// A fold's hook: the stream seals its commits up to the fold's position
/// and answers with the point after them, which the fold records.
fn fold_hook(tx: Sender<Msg>, stream: String) -> Arc<AlignHook> {
    Arc::new(move |w: WalIndex, _at: i64| {
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        let _ = tx.send(Msg::FoldAligned(mark_of(&w), reply_tx));
        let point = reply_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| {
                Error::InvalidInput("the stream did not reach the fold's position".into())
            })??;
        Ok(Continuous {
            stream: stream.clone(),
            seq: point.seq,
            digest: point.digest,
            kind: ContinuousKind::Fold,
            gap: None,
            wal: position(&w),
            time_ns: point.time_ns,
        })
    })
}

/// The WAL position a wal-index header names.
fn mark_of(w: &WalIndex) -> WalMark {
    WalMark {
        salts: w.salts,
        checkpoint_seq: 0,
        frames: u64::from(w.mx_frame),
        checksum: w.frame_checksum,
    }
}

fn position(w: &WalIndex) -> WalPosition {
    WalPosition {
        salts: [w.salts.0, w.salts.1],
        frames: u64::from(w.mx_frame),
        checksum: [w.frame_checksum.0, w.frame_checksum.1],
    }
}
