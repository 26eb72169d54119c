//! One repository's stream of one database (SPEC.md 20.3): the commits the
//! capture hands over, sealed into a change object per interval, spooled,
//! stored in order, gathered into bundles; and the snapshots that start
//! the stream, bridge its gaps and fold it.
//!
//! A worker thread per stream receives the capture's commits on a channel,
//! so a slow or unreachable storage never holds up the reading of the WAL.
//! Objects are sealed (and spooled) in order; they are stored in order,
//! and a failed write is retried with backoff while later objects wait in
//! the spool. The spool is bounded: past its bound the unstored objects
//! are dropped and the stream is bridged again once the storage is back.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::{MarkJson, Point, StatePaths, StreamState};
use super::{ReplicateOptions, StreamStatus};
use crate::error::{Error, Result};
use crate::format::change::{ChangeObject, CommitRecord, Digest, StreamId, WalMark};
use crate::format::manifest::ContinuousKind;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::capture::CapturedCommit;

mod snapshots;
mod store;

/// What the capture and the snapshot threads tell a stream.
pub(crate) enum Msg {
    /// Committed transactions, in order.
    Commits(Vec<Arc<CapturedCommit>>),
    /// Commits after the ones sent may have been missed.
    Gap(String),
    /// A snapshot's read began at this WAL position.
    Aligned(WalMark),
    /// A fold's read began at this WAL position: seal up to it and answer
    /// with the point it ends.
    FoldAligned(WalMark, Sender<Result<Point>>),
    /// A snapshot ended.
    SnapshotDone(ContinuousKind, Result<SnapshotId>),
    /// Store what is sealed and stop.
    Stop,
}

/// Where a stream is.
#[derive(Debug)]
enum Phase {
    /// Commits are sealed and stored.
    Running,
    /// A snapshot must bridge a gap (why), not before `at`.
    NeedsBridge(String, Instant),
    /// A bridge's read runs; once aligned, commits after its position are
    /// sealed again.
    Bridging { aligned: bool, reason: String },
}

/// How a stream's worker is set up.
pub(crate) struct Setup {
    pub repo: Arc<Repository>,
    pub db: PathBuf,
    pub page_size: u32,
    pub paths: StatePaths,
    pub opts: ReplicateOptions,
    pub status: Arc<Mutex<StreamStatus>>,
    /// Serialises the snapshots of one database within this process (see
    /// `sqlite::capture`: a descriptor closed while another snapshot's
    /// connection lives would drop its locks).
    pub snapshot_lock: Arc<Mutex<()>>,
    /// This stream's own channel, for the snapshot threads.
    pub tx: Sender<Msg>,
}

/// One stream's worker (see the module docs).
pub(crate) struct Worker {
    s: Setup,
    state: StreamState,
    stream: StreamId,
    digest: Digest,
    /// The point the repository holds up to.
    stored: Point,
    pending: Vec<Arc<CapturedCommit>>,
    after: Option<WalMark>,
    /// The WAL position the running bridge's read holds (recorded as the
    /// stream's point once the bridge is stored).
    bridge_mark: Option<WalMark>,
    /// A gap found while a bridge was written (why): commits after its
    /// position may be missing, so it ends no gap and another follows.
    gap_in_bridge: Option<String>,
    phase: Phase,
    unstored: VecDeque<(u8, u64)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    fold_in_flight: bool,
    /// Stops the snapshot being written (not the process's signals: a
    /// stop waits for a bridge, see [`Worker::finish`]).
    snapshot_cancel: Cancel,
    fold_wait: Option<(WalMark, Sender<Result<Point>>)>,
    last_fold: Instant,
    store_ms: u64,
    can_delete: bool,
}

fn hexd(d: &Digest) -> String {
    hex::encode(d)
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system's random source");
    b
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// True if two WAL positions are the same commit boundary (a position at
/// a generation's start has no checksum yet).
pub(crate) fn same_point(a: &WalMark, b: &WalMark) -> bool {
    a.salts == b.salts && a.frames == b.frames && (a.frames == 0 || a.checksum == b.checksum)
}

/// Where a commit stands against a position the stream goes on from (a
/// snapshot's, or the last sealed commit's). Commits arrive in the order
/// the WAL holds them, so generations need no ordering of their own.
#[derive(Debug, PartialEq, Eq)]
enum Against {
    /// Before it (or of a generation before it).
    Before,
    /// It ends exactly there.
    At,
    /// It starts exactly there: the first commit after it.
    Next,
    /// Past it without ending or starting there: commits are missing.
    Past,
}

fn against(c: &CapturedCommit, m: &WalMark) -> Against {
    if m.frames == 0 {
        // The start of generation `m.salts` (salts 0: whichever comes
        // next, the wal-index having been empty).
        let starts = c.prev.frames == 0 && (m.salts == (0, 0) || c.prev.salts == m.salts);
        return if starts {
            Against::Next
        } else if m.salts == (0, 0) || c.mark.salts == m.salts {
            Against::Past
        } else {
            Against::Before
        };
    }
    if same_point(&c.mark, m) {
        Against::At
    } else if same_point(&c.prev, m) {
        Against::Next
    } else if c.mark.salts == m.salts {
        if c.mark.frames > m.frames {
            Against::Past
        } else {
            Against::Before
        }
    } else if c.prev.frames == 0 && c.prev.salts.0 == m.salts.0.wrapping_add(1) {
        // The first commit of the generation after `m`'s: the capture read
        // `m`'s generation to its end (or reported a gap) before handing
        // it over, so nothing lies between.
        Against::Next
    } else if (1..=GENERATIONS_BEHIND).contains(&m.salts.0.wrapping_sub(c.mark.salts.0)) {
        // An earlier generation (a capture that went on from another
        // stream's earlier record).
        Against::Before
    } else {
        // A later generation, or one whose salts tell nothing (a WAL made
        // anew): commits may be missing between.
        Against::Past
    }
}

/// How long a stop waits for a bridge snapshot being written, so that the
/// commits after it are stored.
pub const STOP_WAITS_FOR_BRIDGE: Duration = Duration::from_secs(60);

/// How many restarts back a generation may be and still be known as an
/// earlier one by its salt-1 (each restart adds one; a new WAL file draws it
/// at random).
const GENERATIONS_BEHIND: u32 = 1 << 16;

impl Worker {
    /// A worker for a stream that goes on from `state` (or starts a new
    /// one, to be bridged first).
    pub(crate) fn new(s: Setup, state: Option<StreamState>) -> Self {
        let fresh = state.is_none();
        let state = state.unwrap_or_else(|| StreamState {
            version: 1,
            stream: hex::encode(random32()),
            database: crate::sys::escape_path(std::os::unix::ffi::OsStrExt::as_bytes(
                s.db.as_os_str(),
            )),
            sealed: Point {
                seq: 0,
                digest: hex::encode(random32()),
                mark: None,
                time_ns: 0,
            },
            stored: 0,
            bridged: false,
        });
        let stream = state.stream_id().expect("checked when loaded");
        let digest = state.sealed.digest_bytes().unwrap_or_else(random32);
        let phase = if fresh || !state.bridged {
            Phase::NeedsBridge(crate::commands::ranges::STARTS.into(), Instant::now())
        } else {
            Phase::Running
        };
        let after = state.sealed.mark.map(WalMark::from);
        let stored = Point {
            seq: state.stored,
            ..state.sealed.clone()
        };
        let unknown = matches!(phase, Phase::Running) && after.is_none();
        let mut worker = Self {
            stream,
            digest,
            stored,
            pending: Vec::new(),
            after,
            bridge_mark: None,
            gap_in_bridge: None,
            phase,
            unstored: VecDeque::new(),
            retry_at: None,
            backoff: Duration::from_secs(1),
            fold_in_flight: false,
            snapshot_cancel: Cancel::new(),
            fold_wait: None,
            last_fold: Instant::now(),
            store_ms: 0,
            // A write-only key deletes nothing: bundled objects stay
            // until a full key's prune.
            can_delete: !s.repo.key().is_write_only(),
            s,
            state,
        };
        if unknown {
            // Where the stream stands in the WAL is unknown: the commits
            // the WAL holds may be before or after it.
            worker.gap(
                "litevault stopped before it recorded where the stream stood in the WAL".into(),
            );
        }
        worker
    }

    /// Runs until told to stop: receives, seals, stores, bridges, folds.
    pub(crate) fn run(mut self, rx: &Receiver<Msg>) {
        self.recover_spool();
        loop {
            let wait = self.next_wakeup();
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take what else is waiting before acting on it.
            while let Ok(m) = rx.try_recv() {
                if matches!(m, Msg::Stop) {
                    self.finish(rx);
                    return;
                }
                self.handle(m);
            }
            self.tick();
        }
        self.finish(rx);
    }

    /// Seals what is captured and stores what it can, once, at the end.
    /// A bridge being written is waited for (at most
    /// [`STOP_WAITS_FOR_BRIDGE`]): the commits after it are stored only
    /// once it is; a fold is stopped (it holds nothing the stream lacks).
    fn finish(&mut self, rx: &Receiver<Msg>) {
        if self.fold_in_flight {
            self.snapshot_cancel.cancel();
        }
        let deadline = Instant::now() + STOP_WAITS_FOR_BRIDGE;
        let mut cancelled = None;
        while matches!(self.phase, Phase::Bridging { .. }) {
            let now = Instant::now();
            if now >= deadline && cancelled.is_none() {
                self.snapshot_cancel.cancel();
                cancelled = Some(now);
            }
            // A snapshot that does not stop when told is left behind.
            if cancelled.is_some_and(|t| now.duration_since(t) > Duration::from_secs(10)) {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Timeout) => {}
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if matches!(self.phase, Phase::Running) && !self.pending.is_empty() {
            self.seal_pending();
        }
        self.store_unstored();
        self.publish();
    }

    fn next_wakeup(&self) -> Duration {
        let mut at = Duration::from_millis(250);
        if let Some(c) = self.pending.first() {
            let due = self.due_ns(c.time_ns) - now_ns();
            at = at.min(Duration::from_nanos(
                u64::try_from(due.max(1_000_000)).unwrap_or(0),
            ));
        }
        if let Some(r) = self.retry_at {
            at = at.min(
                r.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(5)),
            );
        }
        at
    }

    /// When a batch whose oldest commit was read at `t` must be sealed so
    /// that it is stored within the interval.
    fn due_ns(&self, t: i64) -> i64 {
        let interval = self.s.opts.interval.as_nanos() as i64;
        let margin = (i64::try_from(self.store_ms).unwrap_or(1000) + 60) * 1_000_000;
        t + (interval - margin).max(interval / 10)
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Commits(c) => self.receive(c),
            Msg::Gap(why) => self.gap(why),
            Msg::Aligned(mark) => self.aligned(mark),
            Msg::FoldAligned(mark, reply) => {
                self.fold_wait = Some((mark, reply));
                self.answer_fold();
            }
            Msg::SnapshotDone(kind, r) => self.snapshot_done(kind, &r),
            Msg::Stop => {}
        }
    }

    fn receive(&mut self, commits: Vec<Arc<CapturedCommit>>) {
        for c in commits {
            if let Some(after) = self.after {
                match against(&c, &after) {
                    // Held already (sealed, or in the snapshot).
                    Against::Before => continue,
                    Against::At => {
                        self.after = None;
                        continue;
                    }
                    Against::Next => self.after = None,
                    Against::Past => {
                        self.after = None;
                        self.gap(
                            "the WAL no longer continues from the commit capture stopped at".into(),
                        );
                        continue;
                    }
                }
            }
            self.pending.push(c);
        }
        if matches!(
            self.phase,
            Phase::NeedsBridge(..) | Phase::Bridging { aligned: false, .. }
        ) {
            // Bounded while waiting for the bridge's position.
            let bytes: usize = self
                .pending
                .iter()
                .map(|c| c.pages.len() * self.s.page_size as usize)
                .sum();
            if bytes > 256 << 20 {
                self.pending.clear();
            }
        }
        self.answer_fold();
    }

    fn gap(&mut self, why: String) {
        if let Phase::Running = self.phase {
            if !self.pending.is_empty() {
                self.seal_pending();
            }
        }
        self.pending.clear();
        self.after = None;
        if let Phase::NeedsBridge(..) = self.phase {
            // Part of the gap a bridge is already due for (a file replaced,
            // then its WAL's commits that cannot follow): reported once,
            // with its first cause.
            return;
        }
        let mut st = self.s.status.lock().unwrap();
        st.gaps += 1;
        st.last_gap = Some(why.clone());
        drop(st);
        if matches!(self.phase, Phase::Bridging { .. }) {
            // The commits after the bridge's position are not all here:
            // see `snapshots::snapshot_done`.
            self.gap_in_bridge.get_or_insert(why);
        } else {
            self.phase = Phase::NeedsBridge(why, Instant::now());
        }
    }

    fn tick(&mut self) {
        // Store what waits, unless a failed write is backing off.
        if self.retry_at.is_none_or(|t| Instant::now() >= t) {
            self.store_unstored();
        }
        match &self.phase {
            Phase::NeedsBridge(why, at) if Instant::now() >= *at && self.unstored.is_empty() => {
                let why = why.clone();
                self.start_snapshot(ContinuousKind::Bridge, why);
            }
            Phase::Running => {
                if self
                    .pending
                    .first()
                    .is_some_and(|c| now_ns() >= self.due_ns(c.time_ns))
                    && !self.fold_in_flight
                {
                    self.seal_pending();
                    self.store_unstored();
                }
                if self.fold_in_flight && self.fold_wait.is_none() {
                    // A fold is about to name its position: do not seal
                    // past it meanwhile (at most a moment).
                }
                if !self.fold_in_flight
                    && self.last_fold.elapsed() >= self.s.opts.fold_every
                    && self.unstored.is_empty()
                    && self.state.sealed.seq > 0
                {
                    self.start_snapshot(ContinuousKind::Fold, String::new());
                }
            }
            _ => {}
        }
        self.check_spool_bound();
        self.publish();
    }

    /// Seals the pending commits into the next change object and spools
    /// it (stored by [`Worker::store_unstored`]).
    fn seal_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let commits = std::mem::take(&mut self.pending);
        let last = commits.last().expect("not empty");
        let obj = ChangeObject {
            stream: self.stream,
            seq: self.state.sealed.seq + 1,
            page_size: self.s.page_size,
            digest_before: self.digest,
            mark: last.mark,
            commits: commits
                .iter()
                .map(|c| CommitRecord {
                    time_ns: c.time_ns,
                    db_pages: c.db_pages,
                    pages: c.pages.clone(),
                })
                .collect(),
        };
        let digest = obj.digest_after();
        let bytes = match self.s.repo.seal_change(&obj) {
            Ok(b) => b,
            Err(e) => {
                self.fail(&e);
                return;
            }
        };
        if let Err(e) = self.s.paths.spool(0, obj.seq, &bytes) {
            self.fail(&e);
            return;
        }
        self.digest = digest;
        self.state.sealed = Point {
            seq: obj.seq,
            digest: hexd(&digest),
            mark: Some(MarkJson::from(last.mark)),
            time_ns: last.time_ns,
        };
        self.save();
        self.unstored.push_back((0, obj.seq));
        let mut st = self.s.status.lock().unwrap();
        st.commits += commits.len() as u64;
        st.oldest_unstored_ns.get_or_insert(commits[0].time_ns);
        st.sealed_ns = last.time_ns;
    }

    fn fail(&mut self, e: &Error) {
        self.s.status.lock().unwrap().last_error = Some(e.to_string());
    }

    fn save(&mut self) {
        if let Err(e) = self.s.paths.save(&self.state) {
            self.fail(&e);
        }
    }

    fn publish(&self) {
        let mut st = self.s.status.lock().unwrap();
        st.spool_bytes = if self.unstored.is_empty() {
            0
        } else {
            self.s.paths.spool_bytes()
        };
        st.phase = match &self.phase {
            Phase::Running => "running".into(),
            Phase::NeedsBridge(..) => "waiting to bridge".into(),
            Phase::Bridging { .. } => "bridging".into(),
        };
        if let Some(c) = self.pending.first() {
            st.oldest_unstored_ns = Some(
                st.oldest_unstored_ns
                    .map_or(c.time_ns, |o| o.min(c.time_ns)),
            );
        }
        st.seq = self.state.sealed.seq;
        st.stored_seq = self.state.stored;
    }
}
