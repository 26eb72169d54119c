//! Fetching many blobs at once: the plan of a reassembly and its reader
//! threads (see [`super::reader`]'s module docs).
//!
//! A plan lists the chunks to read, and also every link of the delta
//! chains of its delta chunks: a base is an item of the plan like a chunk,
//! so a base lying near the chunks being read (the previous version of a
//! chunk sits in the packs of the snapshot before, between the chunks that
//! did not change) comes with their range read instead of a read of its
//! own. On remote storage that is the difference between one request per
//! changed chunk and a few per pack.
//!
//! The plan is fetched in groups of runs holding at most [`GROUP_BYTES`]
//! of sealed bases and delta chunks. First every run of a group, in
//! parallel: full chunks, and deltas whose base is already decoded, are
//! decoded and written at once; bases and the other deltas are held,
//! still sealed. Then the held deltas, in parallel, each against its chain
//! decoded from the held bases. A base no group holds (one in a later
//! group) is read on its own, so the result never depends on the
//! grouping, only the number of requests does.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::index::Index;
use super::reader::{blob_object, truncated, BaseCache, MAX_GAP, MAX_RUN};
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack;
use crate::id::{BlobId, PackId};
use crate::progress::{Cancel, Progress};

/// Sealed bases and delta chunks a group of runs holds at most.
pub const GROUP_BYTES: u64 = 64 << 20;

/// The image offset of an item that is a base, not a chunk of the image.
const BASE: u64 = u64::MAX;

/// A chunk of an image where the index lists it (or a base of one, at
/// [`BASE`]): 16 bytes, so that the plan of a 10 GiB image (650 000
/// chunks) stays small beside the index.
#[derive(Clone, Copy)]
pub(super) struct Located {
    /// Offset in the image.
    offset: u64,
    /// Pack and blob positions in the index ([`Index::at`]).
    pack: u32,
    blob: u32,
}

/// A run of blobs close together in one pack, fetched with one range read.
struct Run {
    pack: PackId,
    start: u64,
    len: u64,
    /// Its blobs: a range of [`Plan::located`], in pack order.
    items: Range<usize>,
}

/// What a reassembly reads: every chunk and base located, sorted by pack
/// and offset in the pack, cut into runs, and the runs into groups.
pub(super) struct Plan {
    pub(super) index: Arc<Index>,
    located: Vec<Located>,
    runs: Vec<Run>,
    groups: Vec<Range<usize>>,
}

/// Whether a reader recomputes each blob's id as it decodes it, or leaves
/// that to a check of the whole image afterwards.
#[derive(Clone, Copy)]
pub(super) enum Ids {
    Check,
    Later,
}

/// Where the index lists chunk `id` (at image offset `offset`).
pub(super) fn locate(index: &Index, offset: u64, id: &BlobId) -> Result<Located> {
    let (pack, blob) = index.position(id).ok_or_else(|| {
        Error::damaged(
            format!("blob {id}"),
            "no index lists it: the snapshot's data is missing",
        )
    })?;
    Ok(Located { offset, pack, blob })
}

/// Adds every link of the delta chains of `located`'s chunks, once each,
/// checking each link as readers do ([`Index::delta_base`]).
fn add_bases(index: &Index, located: &mut Vec<Located>) -> Result<()> {
    let mut seen = HashSet::new();
    for i in 0..located.len() {
        let (_, b) = index.at(located[i].pack, located[i].blob);
        let mut link = b.entry;
        while let Some(base) = index.delta_base(&link) {
            let base = base.map_err(|m| {
                Error::damaged(format!("delta chain of blob {}", b.entry.id.short()), m)
            })?;
            let id = base.blob.entry.id;
            if !seen.insert(id) {
                // The rest of its chain is in already.
                break;
            }
            let (pack, blob) = index
                .position(&id)
                .expect("the index lists the base it found");
            located.push(Located {
                offset: BASE,
                pack,
                blob,
            });
            link = base.blob.entry;
        }
    }
    Ok(())
}

/// Sorts the located chunks and their bases by pack and offset in the
/// pack, cuts them into range reads and the reads into groups, checking
/// every pack is present before anything is read.
pub(super) fn plan(
    index: Arc<Index>,
    mut located: Vec<Located>,
    packs: &HashMap<String, u64>,
) -> Result<Plan> {
    add_bases(&index, &mut located)?;
    // A base sorts before the same blob as a chunk: it is held sealed
    // before the chunk is decrypted in place.
    located.sort_unstable_by_key(|l| {
        (
            l.pack,
            index.at(l.pack, l.blob).1.offset,
            l.offset.wrapping_add(1),
        )
    });
    let mut runs: Vec<Run> = Vec::new();
    for (i, l) in located.iter().enumerate() {
        let (pack, b) = index.at(l.pack, l.blob);
        let (start, len) = (u64::from(b.offset), u64::from(b.entry.stored_len));
        match runs.last_mut() {
            Some(r)
                if r.pack == pack
                    && start >= r.start + r.len
                    && start - (r.start + r.len) <= MAX_GAP
                    && start + len - r.start <= MAX_RUN =>
            {
                r.len = start + len - r.start;
                r.items.end = i + 1;
            }
            // The same blob again (at another offset of the image, or as
            // a base): one read.
            Some(r) if r.pack == pack && start + len <= r.start + r.len => {
                r.items.end = i + 1;
            }
            _ => {
                let name = pack.to_hex();
                if !packs.contains_key(&name) {
                    return Err(Error::damaged(
                        FileType::Pack.describe(&name),
                        "the pack is missing",
                    ));
                }
                runs.push(Run {
                    pack,
                    start,
                    len,
                    items: i..i + 1,
                });
            }
        }
    }
    let mut groups = Vec::new();
    let (mut first, mut held) = (0, 0u64);
    for (i, r) in runs.iter().enumerate() {
        let bytes: u64 = located[r.items.clone()]
            .iter()
            .map(|l| index.at(l.pack, l.blob).1)
            .filter(|b| b.entry.base.is_some())
            .map(|b| u64::from(b.entry.stored_len))
            .chain(
                located[r.items.clone()]
                    .iter()
                    .filter(|l| l.offset == BASE)
                    .map(|l| u64::from(index.at(l.pack, l.blob).1.entry.stored_len)),
            )
            .sum();
        if held > 0 && held + bytes > GROUP_BYTES {
            groups.push(first..i);
            (first, held) = (i, 0);
        }
        held += bytes;
    }
    groups.push(first..runs.len());
    Ok(Plan {
        index,
        located,
        runs,
        groups,
    })
}

/// What a group's runs hold for its second pass: sealed bases by id, and
/// sealed delta chunks whose base was not decoded yet.
#[derive(Default)]
struct Held {
    bases: Mutex<HashMap<BlobId, Vec<u8>>>,
    deltas: Mutex<Vec<(Located, Vec<u8>)>>,
}

/// One reassembly's fixed parts, shared by its threads.
struct Fetch<'a> {
    plan: &'a Plan,
    write_at: &'a (dyn Fn(u64, &[u8]) -> Result<()> + Sync),
    progress: Option<&'a dyn Progress>,
    cancel: &'a Cancel,
    open: OpenFn,
    bases: BaseCache,
}

type OpenFn = fn(
    &crate::format::crypto::MasterKey,
    &pack::BlobEntry,
    &mut [u8],
    Option<&[u8]>,
    &str,
    &mut Vec<u8>,
) -> Result<()>;

/// Runs `work(i)` for every `i` in `items` on `threads` threads; the
/// first error stops the others and is returned.
fn in_parallel(
    threads: usize,
    items: Range<usize>,
    work: &(dyn Fn(usize, &mut Vec<u8>) -> Result<()> + Sync),
) -> Result<()> {
    let next = AtomicUsize::new(items.start);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.min(items.len()).max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut raw = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.end {
                            return Ok(());
                        }
                        if let Err(e) = work(i, &mut raw) {
                            // Stop the other threads: the reassembly has failed.
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                })
            })
            .collect();
        let mut first = None;
        for h in handles {
            if let Err(e) = h.join().expect("reader thread panicked") {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    })
}

impl Repository {
    /// Fetches the plan's runs on as many threads as the storage wants
    /// reads in flight, group by group, calling `write_at` for every
    /// chunk (see the module docs).
    pub(super) fn fetch_all(
        &self,
        plan: &Plan,
        write_at: &(dyn Fn(u64, &[u8]) -> Result<()> + Sync),
        progress: Option<&dyn Progress>,
        cancel: &Cancel,
        ids: Ids,
    ) -> Result<()> {
        let f = Fetch {
            plan,
            write_at,
            progress,
            cancel,
            open: match ids {
                Ids::Check => pack::open_blob_into,
                Ids::Later => pack::open_blob_into_unhashed,
            },
            bases: BaseCache::default(),
        };
        let threads = self.backend().read_parallelism();
        for group in &plan.groups {
            let held = Held::default();
            in_parallel(threads, group.clone(), &|i, raw| {
                self.fetch_run(&f, &plan.runs[i], &held, raw)
            })?;
            let Held { bases, deltas } = held;
            let bases = bases.into_inner().unwrap_or_else(PoisonError::into_inner);
            let count = deltas.lock().unwrap_or_else(PoisonError::into_inner).len();
            in_parallel(threads, 0..count, &|_, raw| {
                let next = deltas.lock().unwrap_or_else(PoisonError::into_inner).pop();
                match next {
                    Some((l, sealed)) => self.open_held(&f, l, sealed, &bases, raw),
                    None => Ok(()),
                }
            })?;
        }
        Ok(())
    }

    /// Reads one run and decodes what it can of it (see the module docs).
    fn fetch_run(&self, f: &Fetch, run: &Run, held: &Held, raw: &mut Vec<u8>) -> Result<()> {
        f.cancel.check("reading stopped")?;
        let name = run.pack.to_hex();
        let mut bytes = self
            .backend()
            .read_range(FileType::Pack, &name, run.start, run.len)
            .map_err(|e| truncated(e, &FileType::Pack.describe(&name)))?;
        let mut done: Option<(u32, BlobId)> = None;
        for l in &f.plan.located[run.items.clone()] {
            let (_, b) = f.plan.index.at(l.pack, l.blob);
            let at = (u64::from(b.offset) - run.start) as usize;
            let sealed = &mut bytes[at..at + b.entry.stored_len as usize];
            if l.offset == BASE {
                held.bases
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(b.entry.id)
                    .or_insert_with(|| sealed.to_vec());
                continue;
            }
            // A repeat of the blob just decoded (decrypting in place
            // consumed it) is written again from `raw`.
            if done != Some((b.offset, b.entry.id)) {
                let base = match b.entry.base {
                    None => None,
                    Some(d) => {
                        let Some(p) = f.bases.get(&d.id) else {
                            held.deltas
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((*l, sealed.to_vec()));
                            continue;
                        };
                        Some(p)
                    }
                };
                (f.open)(
                    self.key(),
                    &b.entry,
                    sealed,
                    base.as_deref().map(Vec::as_slice),
                    &blob_object(&b.entry.id, &name),
                    raw,
                )?;
                done = Some((b.offset, b.entry.id));
            }
            f.deliver(l.offset, raw)?;
        }
        Ok(())
    }

    /// Decodes a held delta chunk against its chain, decoded from the
    /// group's held bases (or read, for a base it does not hold).
    fn open_held(
        &self,
        f: &Fetch,
        l: Located,
        mut sealed: Vec<u8>,
        held: &HashMap<BlobId, Vec<u8>>,
        raw: &mut Vec<u8>,
    ) -> Result<()> {
        f.cancel.check("reading stopped")?;
        let (pack, b) = f.plan.index.at(l.pack, l.blob);
        let base = self.chain_plaintext(&f.plan.index, &b.entry, &f.bases, Some(held))?;
        (f.open)(
            self.key(),
            &b.entry,
            &mut sealed,
            Some(&base),
            &blob_object(&b.entry.id, &pack.to_hex()),
            raw,
        )?;
        f.deliver(l.offset, raw)
    }
}

impl Fetch<'_> {
    /// Writes a decoded chunk at its image offset, and counts it.
    fn deliver(&self, offset: u64, raw: &[u8]) -> Result<()> {
        (self.write_at)(offset, raw)?;
        if let Some(p) = self.progress {
            p.advance(raw.len() as u64);
        }
        Ok(())
    }
}
