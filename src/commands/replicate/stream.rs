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
use crate::commands::backup::{backup, BackupOptions};
use crate::error::{Error, Result};
use crate::format::change::{
    block_start, bundle_bytes, span, ChangeObject, CommitRecord, Digest, StreamId, WalMark, FANOUT,
    MAX_LEVEL,
};
use crate::format::manifest::{Continuous, ContinuousKind, WalPosition};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::sqlite::capture::CapturedCommit;
use crate::sqlite::source::{Align, AlignHook};
use crate::sqlite::wal_index::WalIndex;

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
    phase: Phase,
    unstored: VecDeque<(u8, u64)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    fold_in_flight: bool,
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
    } else if c.mark.salts == m.salts && c.mark.frames > m.frames {
        Against::Past
    } else {
        Against::Before
    }
}

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
        Self {
            stream,
            digest,
            stored,
            pending: Vec::new(),
            after,
            phase,
            unstored: VecDeque::new(),
            retry_at: None,
            backoff: Duration::from_secs(1),
            fold_in_flight: false,
            fold_wait: None,
            last_fold: Instant::now(),
            store_ms: 0,
            can_delete: true,
            s,
            state,
        }
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
                    self.finish();
                    return;
                }
                self.handle(m);
            }
            self.tick();
        }
        self.finish();
    }

    /// Seals what is captured and stores what it can, once, at the end.
    fn finish(&mut self) {
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
        let mut st = self.s.status.lock().unwrap();
        st.gaps += 1;
        st.last_gap = Some(why.clone());
        drop(st);
        if !matches!(self.phase, Phase::Bridging { .. }) {
            self.phase = Phase::NeedsBridge(why, Instant::now());
        }
    }

    /// A bridge's read holds the commits up to `mark`: the ones buffered
    /// after it are sealed next (all received since the capture started
    /// or the last gap, so none is missing between).
    fn aligned(&mut self, mark: WalMark) {
        let Phase::Bridging { aligned, .. } = &mut self.phase else {
            return;
        };
        *aligned = true;
        let mut pending = std::mem::take(&mut self.pending);
        if mark.salts == (0, 0) {
            // The wal-index was empty: the file held every commit; the
            // next generation's first commit is the first after it.
            self.after = Some(mark);
            return;
        }
        let found = pending
            .iter()
            .enumerate()
            .find_map(|(i, c)| match against(c, &mark) {
                Against::Before => None,
                a => Some((i, a)),
            });
        match found {
            Some((i, Against::At)) => self.pending = pending.split_off(i + 1),
            Some((i, Against::Next)) => self.pending = pending.split_off(i),
            Some(_) => self
                .gap("commits between the bridge's read and the capture were not received".into()),
            // The capture has not read up to it yet: it comes.
            None => self.after = Some(mark),
        }
    }

    /// Answers a fold waiting for its position, once the commits up to it
    /// are here: they are sealed, and the fold records the point after.
    fn answer_fold(&mut self) {
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

    fn snapshot_done(&mut self, kind: ContinuousKind, r: &Result<SnapshotId>) {
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
                if r.is_ok() {
                    self.state.bridged = true;
                    self.phase = Phase::Running;
                    self.last_fold = Instant::now();
                    self.save();
                } else {
                    self.pending.clear();
                    self.after = None;
                    self.phase = Phase::NeedsBridge(reason, Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
                }
            }
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

    /// Stores the spooled objects in order; on a failure, backs off.
    fn store_unstored(&mut self) {
        while let Some(&(level, first)) = self.unstored.front() {
            let Some(bytes) = self.s.paths.spooled_bytes(level, first) else {
                // Lost from the spool: what it held is a gap.
                self.unstored.clear();
                self.gap(format!(
                    "the spooled change object {first} could not be read back"
                ));
                return;
            };
            let started = Instant::now();
            match self.s.repo.put_change(&self.stream, level, first, &bytes) {
                Ok(()) => {
                    self.store_ms = started.elapsed().as_millis() as u64;
                    self.unstored.pop_front();
                    self.retry_at = None;
                    self.backoff = Duration::from_secs(1);
                    let mut st = self.s.status.lock().unwrap();
                    st.objects += 1;
                    st.bytes += bytes.len() as u64;
                    st.puts += 1;
                    st.last_error = None;
                    drop(st);
                    if level == 0 {
                        self.stored_up_to(first);
                        self.bundle_after(first);
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                    return;
                }
            }
        }
    }

    /// The repository now holds change object `seq`.
    fn stored_up_to(&mut self, seq: u64) {
        self.state.stored = seq;
        self.stored.seq = seq;
        let mut st = self.s.status.lock().unwrap();
        if self.unstored.iter().all(|(l, _)| *l != 0) {
            st.oldest_unstored_ns = None;
            st.stored_ns = self.state.sealed.time_ns;
        }
        drop(st);
        if seq == self.state.sealed.seq {
            self.stored = self.state.sealed.clone();
        }
        self.save();
    }

    /// After object `seq` is stored: the bundles it completes.
    fn bundle_after(&mut self, seq: u64) {
        for level in 1..=MAX_LEVEL {
            let n = span(level);
            if seq % n != 0 {
                break;
            }
            let first = block_start(seq, level);
            let below = level - 1;
            let step = span(below);
            let members: Option<Vec<Vec<u8>>> = (0..FANOUT)
                .map(|i| self.s.paths.spooled_bytes(below, first + i * step))
                .collect();
            let Some(members) = members else {
                // A member is not in the spool (made before a restart that
                // lost it): the objects stay unbundled.
                break;
            };
            let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
            let bytes = bundle_bytes(level, first, &refs);
            if bytes.len() > crate::format::MAX_OBJECT_LEN {
                break;
            }
            if level < MAX_LEVEL {
                if let Err(e) = self.s.paths.spool(level, first, &bytes) {
                    self.fail(&e);
                    break;
                }
            }
            if let Err(e) = self.s.repo.put_change(&self.stream, level, first, &bytes) {
                self.fail(&e);
                break;
            }
            let mut st = self.s.status.lock().unwrap();
            st.puts += 1;
            st.bytes += bytes.len() as u64;
            drop(st);
            // Its members are superseded.
            let gone: Vec<(u8, u64)> = (0..FANOUT).map(|i| (below, first + i * step)).collect();
            if self.can_delete {
                if let Err(e) = self.s.repo.remove_changes(&self.stream, &gone) {
                    // A key that may not delete (write-only): prune does it.
                    self.can_delete = false;
                    self.s.status.lock().unwrap().last_error =
                        Some(format!("superseded change objects are left for prune: {e}"));
                } else {
                    self.s.status.lock().unwrap().deletes += gone.len() as u64;
                }
            }
            for (l, f) in gone {
                self.s.paths.unspool(l, f);
            }
        }
    }

    fn fail(&mut self, e: &Error) {
        self.s.status.lock().unwrap().last_error = Some(e.to_string());
    }

    /// Past the spool's bound (the storage unreachable for long): the
    /// unstored objects are dropped, and a bridge follows.
    fn check_spool_bound(&mut self) {
        if self.unstored.is_empty() {
            return;
        }
        if self.s.paths.spool_bytes() <= self.s.opts.spool_limit {
            return;
        }
        for (l, f) in self.unstored.drain(..) {
            self.s.paths.unspool(l, f);
        }
        // Back to what the repository holds.
        self.state.sealed = self.stored.clone();
        self.digest = self.stored.digest_bytes().unwrap_or_else(random32);
        self.save();
        self.gap(format!(
            "the storage was unreachable for longer than the spool ({} MiB) holds",
            self.s.opts.spool_limit >> 20
        ));
    }

    /// Stores the spooled objects a killed run left, in order: the ones
    /// after what the state says is stored.
    fn recover_spool(&mut self) {
        for (level, first) in self.s.paths.spooled_objects() {
            if level == 0 && first > self.state.stored && first <= self.state.sealed.seq {
                self.unstored.push_back((0, first));
            } else if level == 0 && first > self.state.sealed.seq {
                // Sealed but not recorded: its commits are captured again.
                self.s.paths.unspool(0, first);
            }
        }
        self.store_unstored();
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

    /// Starts a bridge or a fold: a snapshot read in a thread of its own,
    /// aligned with the WAL.
    fn start_snapshot(&mut self, kind: ContinuousKind, reason: String) {
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
        let shm = match std::fs::File::open(&shm_path) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                let e = Error::io("opening", &shm_path, e);
                self.fail(&e);
                if kind == ContinuousKind::Bridge {
                    self.phase = Phase::NeedsBridge(reason, Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
                }
                return;
            }
        };
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
        opts.cancel = self.s.opts.cancel.clone();
        opts.align = Some(Align { shm, hook });
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
}

impl Worker {
    /// A bridge's hook: the stream goes on from a new digest, so no object
    /// before the bridge chains into the ones after it.
    fn bridge_hook(&mut self, reason: &str) -> Arc<AlignHook> {
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
