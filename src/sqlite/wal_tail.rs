//! Following a database's WAL as the application commits (SPEC.md 20.2):
//! the committed transactions, read from the `-wal` file itself, without
//! a lock, a connection, or a byte written.
//!
//! The tail keeps its own descriptor of the `-wal` file and where it stands
//! in it: the generation (header salts), the index of the next frame, and
//! the cumulative checksum before it. Each [`WalTail::poll`] reads the
//! frames after that point, checks each one's salts and checksum chain,
//! and hands over every transaction whose commit frame is valid, with, for
//! each page, the frame of the generation that held its previous version
//! (so the capture can find that version: [`super::capture`]). An
//! unfinished transaction is kept and completed by a later poll.
//!
//! What the application does to its WAL, and what the tail does then:
//!
//! * **restarts it** (a checkpoint copied every frame back, and the next
//!   writer starts over from the first frame with new salts): frames the
//!   tail had not read yet are still in the file past the new generation's
//!   end, so they are read with the old salts, their checksums continuing
//!   the old chain. That is certain when exactly one restart happened
//!   (salt-1 one more) and the new generation has not reached them; else
//!   some may be lost: a gap;
//! * **deletes it** (its last connection closed): the tail's descriptor
//!   still reads the deleted file to its end, then moves to the new one;
//! * **truncates it** (`wal_checkpoint(TRUNCATE)`, `journal_size_limit`):
//!   what was past the truncation is gone. Unless the tail had read to the
//!   old end, a gap; since the tail cannot prove it had, every truncation
//!   of a generation with frames it had not read is one.
//!
//! A gap is bridged by the caller with a page-image snapshot, aligned with
//! the WAL by [`super::wal_index`], after which the tail goes on.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::change::WalMark;
use crate::format::wal::{Checksum, WalHeader, HEADER_LEN};

/// The most bytes of frames one poll reads (unless it reads a deleted or
/// overwritten file to its end).
const READ_CHUNK: u64 = 16 << 20;
/// The first read of a poll: a WAL's file usually goes on past its valid
/// frames (a restarted WAL keeps its size), so a poll reads a little, then
/// twice as much while every frame counts, not the file's whole rest.
const FIRST_READ: u64 = 64 << 10;
/// A transaction with more page bytes than this is not kept in memory: it
/// is reported as a gap and bridged by a snapshot.
pub const HUGE_TXN_BYTES: usize = 64 << 20;

/// One page a committed transaction wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPage {
    /// The page number.
    pub pgno: u32,
    /// Its new content.
    pub data: Vec<u8>,
    /// The frame of the same generation that held its previous version,
    /// if one did (else the database file did, as of the generation's
    /// start).
    pub previous_frame: Option<u64>,
}

/// One committed transaction, as the WAL holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// When the tail read its commit frame, in nanoseconds since the Unix
    /// epoch (never earlier than the transaction before).
    pub time_ns: i64,
    /// The database's size in pages after it.
    pub db_pages: u32,
    /// The index of its first frame in its generation.
    pub first_frame: u64,
    /// The last version of each page it wrote, by page number.
    pub pages: Vec<CapturedPage>,
    /// The WAL position before it (the commit before, or its
    /// generation's start).
    pub prev: WalMark,
    /// The database's size in pages before it, if the tail read the commit
    /// before it (pages past it did not exist: they have no previous
    /// version).
    pub prev_db_pages: Option<u32>,
    /// The smallest size the database had since the tail started, before
    /// it: the database file may hold stale content past it.
    pub min_db_pages: Option<u32>,
    /// The WAL position after it (its generation's salts among it).
    pub mark: WalMark,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Polled {
    /// Transactions committed since the last poll, in order.
    pub commits: Vec<Captured>,
    /// Frames may have been missed after the commits above (why, in
    /// words): the caller must bridge with a snapshot.
    pub gap: Option<String>,
    /// Written `-wal` files this poll saw removed or replaced after reading
    /// them to their end (to be matched against the directory's events:
    /// [`super::watch::Watch::missed`]).
    pub wal_ends: u64,
}

/// A transaction whose commit frame has not been read yet.
struct Pending {
    /// The next frame to read.
    next: u64,
    /// The checksum after the frame before `next`.
    sum: Checksum,
    /// Its first frame.
    first: u64,
    pages: HashMap<u32, (u64, Vec<u8>)>,
    bytes: usize,
    huge: bool,
}

impl Pending {
    /// Adds a valid frame of the transaction: its page's latest version.
    fn add(&mut self, frame: &crate::format::wal::Frame<'_>) {
        self.sum = frame.checksum;
        let index = self.next;
        self.next += 1;
        if self.huge {
            return;
        }
        if self
            .pages
            .insert(frame.pgno, (index, frame.page.to_vec()))
            .is_none()
        {
            self.bytes += frame.page.len();
        }
        if self.bytes > HUGE_TXN_BYTES {
            self.huge = true;
            self.pages = HashMap::new();
        }
    }
}

/// The generation being read.
struct Generation {
    header: WalHeader,
    /// The first frame after the last commit read.
    next: u64,
    /// The checksum after frame `next - 1` (the header's when 0).
    sum: Checksum,
    /// The last frame of each page among the committed frames read.
    frames: HashMap<u32, u64>,
    pending: Option<Pending>,
}

impl Generation {
    fn new(header: WalHeader) -> Self {
        Self {
            header,
            next: 0,
            sum: header.checksum,
            frames: HashMap::new(),
            pending: None,
        }
    }

    fn mark(&self) -> WalMark {
        WalMark {
            salts: self.header.salts,
            checkpoint_seq: self.header.checkpoint_seq,
            frames: self.next,
            checksum: (self.sum.0, self.sum.1),
        }
    }
}

/// The tail of one database's WAL (see the module docs).
pub struct WalTail {
    wal: PathBuf,
    /// The `-wal` file read, with its device and inode.
    file: Option<(File, u64, u64)>,
    generation: Option<Generation>,
    last_time: i64,
    /// Commits up to this position are read (to learn their frames) but
    /// not handed over: a snapshot already holds them.
    skip_to: Option<WalMark>,
    /// The `-wal` file's size at the last read.
    last_size: u64,
    /// The database's size after the last commit read, and the smallest
    /// since the tail started.
    db_pages: Option<(u32, u32)>,
    /// The file followed was seen holding bytes (a header at least).
    written: bool,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Reads up to `len` bytes at `at`; fewer only at the end of the file.
pub(crate) fn read_at(f: &File, at: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

impl WalTail {
    /// A tail of the WAL of the database at `db`. Its first poll reads the
    /// current generation from its first frame and hands over the commits
    /// after `after` (all of them with `None`); a generation other than
    /// `after`'s, or one that no longer holds `after`'s frame, is a gap.
    pub fn new(db: &Path, after: Option<WalMark>) -> Self {
        Self {
            wal: crate::sys::with_suffix(db, "-wal"),
            file: None,
            generation: None,
            last_time: 0,
            skip_to: after,
            last_size: 0,
            db_pages: None,
            written: false,
        }
    }

    /// Where the tail stands: the generation and the next frame (`None`
    /// before it read a WAL header).
    pub fn mark(&self) -> Option<WalMark> {
        self.generation.as_ref().map(Generation::mark)
    }

    /// The `-wal` file it follows, open (with the generation's header), to
    /// read the previous version of a page from its frame.
    pub fn file(&self) -> Option<(&File, WalHeader)> {
        Some((&self.file.as_ref()?.0, self.generation.as_ref()?.header))
    }

    /// True if the written `-wal` file the tail follows is no longer at
    /// its path (removed or replaced since the poll looked).
    pub fn followed_gone(&self) -> bool {
        let Some((f, dev, ino)) = &self.file else {
            return false;
        };
        let there = std::fs::metadata(&self.wal)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        there != Some((*dev, *ino)) && (self.written || f.metadata().is_ok_and(|m| m.len() > 0))
    }

    /// The `-wal` path it follows.
    pub fn wal_path(&self) -> &Path {
        &self.wal
    }

    fn stamp(&mut self) -> i64 {
        let t = now_ns().max(self.last_time);
        self.last_time = t;
        t
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io("reading", &self.wal, e)
    }

    /// Reads what was committed since the last poll (see the module docs).
    pub fn poll(&mut self) -> Result<Polled> {
        let mut out = Polled::default();
        let there = std::fs::metadata(&self.wal)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let same = matches!((&self.file, there), (Some((_, d, i)), Some((d2, i2))) if *d == d2 && *i == i2);
        if !same {
            // Deleted (and maybe made anew): our descriptor still reads
            // the old file as its last writer left it, header and all (it
            // may have been written, or restarted, since the last poll).
            if let Some((f, _, _)) = &self.file {
                let len = f.metadata().map_err(|e| self.io(e))?.len();
                self.follow(&mut out, true)?;
                if self.written || len > 0 {
                    out.wal_ends += 1;
                }
                if out.gap.is_some() {
                    return Ok(out);
                }
            }
            self.file = None;
            self.generation = None;
            self.last_size = 0;
            self.written = false;
            let Some((dev, ino)) = there else {
                return Ok(out);
            };
            match File::open(&self.wal) {
                Ok(f) => self.file = Some((f, dev, ino)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(self.io(e)),
            }
        }
        self.follow(&mut out, false)?;
        Ok(out)
    }

    /// Reads the open file from where the tail stands: its header tells
    /// the generation (a new one, a restart, an emptied file), then its
    /// frames (all that are left with `to_end`: a deleted file).
    fn follow(&mut self, out: &mut Polled, to_end: bool) -> Result<()> {
        let (f, _, _) = self.file.as_ref().expect("opened");
        let head = read_at(f, 0, HEADER_LEN as u64).map_err(|e| self.io(e))?;
        let header = WalHeader::parse(&head);
        if !head.is_empty() {
            self.written = true;
        }
        let known = self.generation.as_ref().map(|g| g.header);
        match (known, header) {
            (None, None) => {}
            (Some(_), None) => {
                // Emptied (truncated), or a header being written.
                let len = f.metadata().map_err(|e| self.io(e))?.len();
                if len < HEADER_LEN as u64 {
                    self.truncated(out, len);
                }
            }
            (None, Some(h)) => {
                let restarted_since = self
                    .skip_to
                    .filter(|s| s.frames > 0 && h.salts.0 == s.salts.0.wrapping_add(1));
                if let Some(s) = restarted_since {
                    // Restarted once while nothing read it: what is left of
                    // the recorded generation past the new one is read from
                    // the recorded position, its chain from there.
                    self.skip_to = None;
                    let sum = Checksum(s.checksum.0, s.checksum.1);
                    let old = WalHeader {
                        salts: s.salts,
                        checkpoint_seq: s.checkpoint_seq,
                        checksum: sum,
                        ..h
                    };
                    let mut g = Generation::new(old);
                    g.next = s.frames;
                    g.sum = sum;
                    self.generation = Some(g);
                    self.restarted(old, h, out)?;
                    if out.gap.is_some() {
                        return Ok(());
                    }
                }
                self.generation = Some(Generation::new(h));
                self.read_frames(out, to_end)?;
            }
            (Some(old), Some(h)) if old.salts == h.salts => {
                self.read_frames(out, to_end)?;
            }
            (Some(old), Some(h)) => {
                self.restarted(old, h, out)?;
                if out.gap.is_none() {
                    self.generation = Some(Generation::new(h));
                    self.read_frames(out, to_end)?;
                }
            }
        }
        Ok(())
    }

    /// The WAL shrank below a header (a TRUNCATE checkpoint): commits
    /// written after the last read may have gone with it, and nothing left
    /// tells whether any were, so it is a gap.
    fn truncated(&mut self, out: &mut Polled, len: u64) {
        self.generation = None;
        self.skip_to = None;
        out.gap = Some(format!(
            "the WAL was truncated to {len} bytes (a TRUNCATE checkpoint) before litevault could tell it had read every commit"
        ));
    }

    /// The WAL was restarted (new salts over the old file): reads what is
    /// left of the old generation past the new one, if that is certain to
    /// be all of it; else a gap.
    fn restarted(&mut self, old: WalHeader, new: WalHeader, out: &mut Polled) -> Result<()> {
        let frame_len = old.frame_len();
        let g = self.generation.as_ref().expect("a generation");
        // The first old frame not read yet: those after it must be intact.
        let ours = old.frame_offset(g.pending.as_ref().map_or(g.next, |p| p.next));
        let one_restart = new.salts.0 == old.salts.0.wrapping_add(1);
        if !one_restart {
            out.gap = Some(format!(
                "the WAL was restarted {} times since litevault last read it",
                new.salts.0.wrapping_sub(old.salts.0)
            ));
            self.generation = None;
            return Ok(());
        }
        let size = self
            .file
            .as_ref()
            .expect("open")
            .0
            .metadata()
            .map_err(|e| self.io(e))?
            .len();
        if size < self.last_size {
            // Restarted and cut short (`journal_size_limit`): what was
            // past the cut is gone.
            out.gap = Some(format!(
                "the WAL was restarted and cut to {size} bytes, shorter than the {} it had",
                self.last_size
            ));
            self.generation = None;
            return Ok(());
        }
        if self.generation_end(new)? + frame_len > ours {
            out.gap = Some(
                "the WAL was restarted and its new frames overwrote old ones litevault had not read"
                    .into(),
            );
            self.generation = None;
            return Ok(());
        }
        self.read_frames(out, true)?;
        // The new generation must not have reached them while they were read.
        if out.gap.is_none() && self.generation_end(new)? + frame_len > ours {
            out.gap = Some(
                "the WAL was restarted and its new frames overwrote old ones while litevault read them"
                    .into(),
            );
        }
        self.generation = None;
        Ok(())
    }

    /// The end (byte offset) of the valid frames of generation `h`.
    fn generation_end(&self, h: WalHeader) -> Result<u64> {
        let (f, _, _) = self.file.as_ref().expect("open");
        let mut sum = h.checksum;
        let mut i = 0u64;
        let len = h.frame_len();
        loop {
            let at = h.frame_offset(i);
            let bytes = read_at(f, at, len).map_err(|e| self.io(e))?;
            match h.check_frame(&bytes, sum) {
                Some(fr) => sum = fr.checksum,
                None => return Ok(at),
            }
            i += 1;
        }
    }

    /// Reads the current generation's frames after the last commit read,
    /// handing over each committed transaction. With `to_end` (a deleted
    /// or overwritten file), reads everything left; else at most
    /// [`READ_CHUNK`] per call (the next poll goes on), in reads from
    /// [`FIRST_READ`] up, doubling while every frame counts.
    fn read_frames(&mut self, out: &mut Polled, to_end: bool) -> Result<()> {
        let Some(mut g) = self.generation.take() else {
            return Ok(());
        };
        let r = self.read_generation(&mut g, out, to_end);
        self.generation = Some(g);
        r
    }

    fn read_generation(
        &mut self,
        generation: &mut Generation,
        out: &mut Polled,
        to_end: bool,
    ) -> Result<()> {
        let header = generation.header;
        let frame_len = header.frame_len();
        if !self.skip_applies(header, out) {
            return Ok(());
        }
        let mut step = (FIRST_READ / frame_len).max(1);
        let mut budget = (READ_CHUNK / frame_len).max(1);
        loop {
            let mut txn = generation.pending.take().unwrap_or_else(|| Pending {
                next: generation.next,
                sum: generation.sum,
                first: generation.next,
                pages: HashMap::new(),
                bytes: 0,
                huge: false,
            });
            let (file, _, _) = self.file.as_ref().expect("open");
            let size = file.metadata().map_err(|e| self.io(e))?.len();
            self.last_size = size;
            let at = header.frame_offset(txn.next);
            let room = size.saturating_sub(at) / frame_len;
            let want = if to_end {
                room.min(step)
            } else {
                room.min(step).min(budget)
            };
            if want == 0 {
                keep(generation, txn);
                self.check_skip_reached(generation, out);
                return Ok(());
            }
            let bytes = read_at(file, at, want * frame_len).map_err(|e| self.io(e))?;
            let whole = bytes.len() as u64 / frame_len;
            let mut ended = whole < want;
            for k in 0..whole {
                let start = (k * frame_len) as usize;
                let frame_bytes = &bytes[start..start + frame_len as usize];
                let Some(frame) = header.check_frame(frame_bytes, txn.sum) else {
                    ended = true;
                    break;
                };
                txn.add(&frame);
                if !frame.is_commit() {
                    continue;
                }
                let next = Pending {
                    next: txn.next,
                    sum: txn.sum,
                    first: txn.next,
                    pages: HashMap::new(),
                    bytes: 0,
                    huge: false,
                };
                let done = std::mem::replace(&mut txn, next);
                if self.committed(generation, done, frame.commit_pages, out) {
                    keep(generation, txn);
                    return Ok(());
                }
            }
            keep(generation, txn);
            if ended {
                self.check_skip_reached(generation, out);
                return Ok(());
            }
            budget = budget.saturating_sub(whole);
            if budget == 0 && !to_end {
                return Ok(());
            }
            step = (step * 2).min((READ_CHUNK / frame_len).max(1));
        }
    }

    /// False (with a gap) if a position to skip to names another
    /// generation than `header`'s that is not the next one's start.
    fn skip_applies(&mut self, header: WalHeader, out: &mut Polled) -> bool {
        let Some(skip) = self.skip_to else {
            return true;
        };
        // A mark at frame 0 of the generation after this one (a snapshot
        // taken between a restart and the new generation's first frame)
        // holds every commit of this one.
        let before_mark = skip.frames == 0 && skip.salts.0 == header.salts.0.wrapping_add(1);
        if skip.salts == header.salts && skip.frames == 0 {
            self.skip_to = None;
        } else if skip.salts != header.salts && !before_mark {
            self.skip_to = None;
            out.gap = Some(format!(
                "the WAL is no longer the generation capture stopped in ({:08x}, now {:08x}): it was restarted while nothing read it",
                skip.salts.0, header.salts.0
            ));
            return false;
        }
        true
    }

    /// A transaction's commit frame was read: hands it over (unless it is
    /// skipped). True if a gap ends the read.
    fn committed(
        &mut self,
        generation: &mut Generation,
        done: Pending,
        db_pages: u32,
        out: &mut Polled,
    ) -> bool {
        let prev = generation.mark();
        generation.next = done.next;
        generation.sum = done.sum;
        let (prev_db_pages, min_db_pages) = (
            self.db_pages.map(|(now, _)| now),
            self.db_pages.map(|(_, min)| min),
        );
        self.db_pages = Some((db_pages, min_db_pages.map_or(db_pages, |m| m.min(db_pages))));
        if prev_db_pages.is_some_and(|p| db_pages < p) {
            // Shrunk (a VACUUM): the frames of pages past the end hold
            // versions no later commit starts from.
            generation.frames.retain(|pgno, _| *pgno <= db_pages);
        }
        let mut pages: Vec<CapturedPage> = done
            .pages
            .into_iter()
            .map(|(pgno, (frame, data))| CapturedPage {
                pgno,
                data,
                previous_frame: generation.frames.insert(pgno, frame),
            })
            .collect();
        let skipped = self.skipped(generation, out);
        if done.huge && !skipped {
            out.gap = Some(format!(
                "a transaction wrote more than {} MiB of pages",
                HUGE_TXN_BYTES >> 20
            ));
        }
        if out.gap.is_some() {
            return true;
        }
        if !skipped {
            pages.sort_unstable_by_key(|p| p.pgno);
            let time_ns = self.stamp();
            out.commits.push(Captured {
                time_ns,
                db_pages,
                first_frame: done.first,
                pages,
                prev,
                prev_db_pages,
                min_db_pages,
                mark: generation.mark(),
            });
        }
        false
    }

    /// True if the commit just read (ending at `generation.next`) is at or
    /// before the position to skip to; a position passed without landing
    /// on it, or landed on with another checksum, is a gap.
    fn skipped(&mut self, generation: &Generation, out: &mut Polled) -> bool {
        let Some(skip) = self.skip_to else {
            return false;
        };
        if skip.salts != generation.header.salts || generation.next < skip.frames {
            return true;
        }
        self.skip_to = None;
        if generation.next > skip.frames {
            out.gap = Some("the WAL does not hold the commit capture stopped at".into());
        } else if (generation.sum.0, generation.sum.1) != skip.checksum {
            out.gap =
                Some("the WAL's frames differ from the ones capture read before it stopped".into());
        }
        true
    }

    /// After reading every valid frame: a position to skip to that the WAL
    /// no longer reaches was lost (its frames overwritten or truncated).
    fn check_skip_reached(&mut self, g: &Generation, out: &mut Polled) {
        if let Some(skip) = self.skip_to {
            if skip.salts == g.header.salts && g.next < skip.frames {
                self.skip_to = None;
                out.gap = Some(
                    "the WAL no longer holds the frames capture read before it stopped".into(),
                );
            }
        }
    }
}

/// Keeps an unfinished transaction for the next read.
fn keep(g: &mut Generation, p: Pending) {
    if p.next > g.next {
        g.pending = Some(p);
    }
}
