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
//! Items are decoded as their runs arrive, on several threads. A delta
//! (a chunk, or a link of a longer chain) whose base is not decoded yet
//! waits, sealed, under its base's id; when the base is decoded, the
//! deltas waiting for it are decoded at once, and the base's plaintext is
//! kept only while deltas still to come need it. Runs holding delta chunks
//! are read first, so the deltas wait (they are small) rather than the
//! bases. What waits is bounded by [`HOLD_BYTES`]: past it a delta is
//! decoded against its chain read on its own, as a single blob read would,
//! so the result never depends on the order, only the number of requests
//! does.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::index::Index;
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{BackendErrorKind, Error, Result};
use crate::format::pack;
use crate::id::{BlobId, PackId};
use crate::progress::{Cancel, Progress};

/// Largest single range read when fetching runs of adjacent blobs.
pub const MAX_RUN: u64 = 8 << 20;

/// Unneeded bytes a range read may span to join two needed blobs.
pub const MAX_GAP: u64 = 64 << 10;

/// Plaintexts of delta bases decoded during one operation, shared by its
/// threads; emptied when it holds more than its budget.
pub struct BaseCache {
    /// The plaintexts, and their total length.
    map: Mutex<(Plaintexts, usize)>,
    budget: usize,
}

type Plaintexts = HashMap<BlobId, Arc<Vec<u8>>>;

impl Default for BaseCache {
    fn default() -> Self {
        Self::new(BASE_CACHE_BYTES)
    }
}

/// Bytes of base plaintexts a [`BaseCache`] keeps by default.
pub const BASE_CACHE_BYTES: usize = 32 << 20;

impl BaseCache {
    /// A cache keeping at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            map: Mutex::new((HashMap::new(), 0)),
            budget,
        }
    }

    pub(super) fn get(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        let m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.0.get(id).cloned()
    }

    pub(super) fn put(&self, id: BlobId, plain: Arc<Vec<u8>>) {
        if plain.len() > self.budget {
            return;
        }
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.1 + plain.len() > self.budget {
            m.0.clear();
            m.1 = 0;
        }
        m.1 += plain.len();
        m.0.insert(id, plain);
    }
}

/// Turns a range read past the end of a pack into damage to that pack.
pub(super) fn truncated(e: Error, object: &str) -> Error {
    match e {
        Error::Backend(b) if b.kind == BackendErrorKind::OutOfRange => {
            Error::damaged(object, b.detail)
        }
        Error::Backend(b) if b.kind == BackendErrorKind::NotFound => {
            Error::damaged(object, "the pack is missing")
        }
        e => e,
    }
}

pub(super) fn blob_object(id: &BlobId, pack: &str) -> String {
    format!("blob {} in {}", id.short(), FileType::Pack.describe(pack))
}

/// Bytes of waiting deltas and kept base plaintexts a reassembly holds at
/// most (see the module docs).
pub const HOLD_BYTES: u64 = 256 << 20;

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
/// and offset in the pack and cut into runs (those holding delta chunks
/// first), and how many items have each base as theirs.
pub(super) struct Plan {
    pub(super) index: Arc<Index>,
    located: Vec<Located>,
    runs: Vec<Run>,
    dependents: HashMap<BlobId, u32>,
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
    packs: Option<&HashMap<String, u64>>,
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
                if packs.is_some_and(|p| !p.contains_key(&name)) {
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
    let entry = |l: &Located| index.at(l.pack, l.blob).1.entry;
    let mut dependents: HashMap<BlobId, u32> = HashMap::new();
    for l in &located {
        if let Some(d) = entry(l).base {
            *dependents.entry(d.id).or_default() += 1;
        }
    }
    // Deltas first: they wait for their bases, not the bases for them.
    runs.sort_by_key(|r| {
        !located[r.items.clone()]
            .iter()
            .any(|l| l.offset != BASE && entry(l).base.is_some())
    });
    Ok(Plan {
        index,
        located,
        runs,
        dependents,
    })
}

/// A delta waiting for its base's plaintext, still sealed.
struct Pending {
    item: Located,
    sealed: Vec<u8>,
}

/// What waits during a reassembly (see the module docs).
#[derive(Default)]
struct Waiting {
    /// Deltas by the id of the base they wait for.
    by_base: HashMap<BlobId, Vec<Pending>>,
    /// Decoded bases that items still to come need.
    ready: HashMap<BlobId, Arc<Vec<u8>>>,
    /// Items that have not asked for their base yet, by its id.
    remaining: HashMap<BlobId, u32>,
    /// Bases given up to stay within [`HOLD_BYTES`]: their deltas read
    /// their chains on their own.
    dropped: HashSet<BlobId>,
    /// Bytes of `by_base` and `ready`.
    held: u64,
}

/// One reassembly's fixed parts and what waits, shared by its threads.
struct Fetch<'a> {
    plan: &'a Plan,
    write_at: &'a (dyn Fn(u64, &[u8]) -> Result<()> + Sync),
    progress: Option<&'a dyn Progress>,
    cancel: &'a Cancel,
    open: OpenFn,
    bases: BaseCache,
    waiting: Mutex<Waiting>,
}

type OpenFn = fn(
    &crate::format::crypto::MasterKey,
    crate::format::crypto::SealedBy,
    &pack::BlobEntry,
    &mut [u8],
    Option<&[u8]>,
    &str,
    &mut Vec<u8>,
) -> Result<()>;

/// What became of an item whose base was asked for.
enum Base {
    /// It has none (a full blob).
    None,
    /// Its plaintext.
    Ready(Arc<Vec<u8>>),
    /// Not decoded yet: the item now waits for it.
    Waits,
    /// Given up: the item's chain is read on its own.
    Read,
}

impl Fetch<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The base of `item` (its blob `entry`), or the item set waiting for
    /// it (`sealed` copied) when it is not decoded yet.
    fn base_or_wait(&self, item: Located, entry: &pack::BlobEntry, sealed: &[u8]) -> Base {
        let Some(d) = entry.base else {
            return Base::None;
        };
        let mut w = self.lock();
        let all = self.plan.dependents.get(&d.id).copied().unwrap_or(1);
        let left = w.remaining.entry(d.id).or_insert(all);
        *left = left.saturating_sub(1);
        let left = *left;
        if w.dropped.contains(&d.id) {
            return Base::Read;
        }
        if let Some(plain) = w.ready.get(&d.id).cloned() {
            if left == 0 {
                w.ready.remove(&d.id);
                w.held -= plain.len() as u64;
            }
            return Base::Ready(plain);
        }
        if w.held + sealed.len() as u64 > HOLD_BYTES {
            return Base::Read;
        }
        w.held += sealed.len() as u64;
        w.by_base.entry(d.id).or_default().push(Pending {
            item,
            sealed: sealed.to_vec(),
        });
        Base::Waits
    }

    /// Base `id`'s plaintext is decoded: returns the deltas that waited
    /// for it, and keeps it while items still to come need it.
    fn released(&self, id: BlobId, plain: &Arc<Vec<u8>>) -> Vec<Pending> {
        let mut w = self.lock();
        let waited = w.by_base.remove(&id).unwrap_or_default();
        w.held -= waited.iter().map(|p| p.sealed.len() as u64).sum::<u64>();
        let all = self.plan.dependents.get(&id).copied().unwrap_or(0);
        let left = w.remaining.get(&id).copied().unwrap_or(all);
        if left > 0 {
            if w.held + plain.len() as u64 > HOLD_BYTES {
                w.dropped.insert(id);
            } else {
                w.held += plain.len() as u64;
                w.ready.insert(id, Arc::clone(plain));
            }
        }
        waited
    }

    /// Writes a decoded chunk at its image offset, and counts it.
    fn deliver(&self, offset: u64, raw: &[u8]) -> Result<()> {
        (self.write_at)(offset, raw)?;
        if let Some(p) = self.progress {
            p.advance(raw.len() as u64);
        }
        Ok(())
    }
}

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
    /// Reads blobs `ids` (each listed by `index`) with range reads joined
    /// as a reassembly joins them, each authenticated and checked against
    /// its id; their plaintexts in the order of `ids`. A missing pack is
    /// found when it is read.
    pub(super) fn read_blobs(&self, index: Arc<Index>, ids: &[BlobId]) -> Result<Vec<Vec<u8>>> {
        let located = ids
            .iter()
            .zip(0u64..)
            .map(|(id, i)| locate(&index, i, id))
            .collect::<Result<Vec<_>>>()?;
        let plan = plan(index, located, None)?;
        let out: Vec<Mutex<Option<Vec<u8>>>> = ids.iter().map(|_| Mutex::new(None)).collect();
        self.fetch_all(
            &plan,
            &|i, bytes| {
                *out[i as usize]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
                Ok(())
            },
            None,
            &Cancel::new(),
            Ids::Check,
        )?;
        out.into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .ok_or_else(|| Error::Internal("a planned blob was not read".into()))
            })
            .collect()
    }

    /// Fetches the plan's runs on as many threads as the storage wants
    /// reads in flight, calling `write_at` for every chunk (see the
    /// module docs).
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
            waiting: Mutex::new(Waiting::default()),
        };
        let threads = self.backend().read_parallelism();
        in_parallel(threads, 0..plan.runs.len(), &|i, raw| {
            self.fetch_run(&f, &plan.runs[i], raw)
        })?;
        // Every base is an item of the plan, so nothing is left waiting;
        // should anything be, it is decoded on its own.
        let left: Vec<Pending> = std::mem::take(&mut f.lock().by_base)
            .into_values()
            .flatten()
            .collect();
        let mut raw = Vec::new();
        for p in left {
            self.open_pending(&f, p, None, &mut raw)?;
        }
        Ok(())
    }

    /// Reads one run and decodes its items, or sets them waiting (see the
    /// module docs).
    fn fetch_run(&self, f: &Fetch, run: &Run, raw: &mut Vec<u8>) -> Result<()> {
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
            if l.offset != BASE && b.entry.base.is_none() {
                // A full chunk is decrypted in place, which consumes it: a
                // repeat of it (the same chunk elsewhere in the image) is
                // written again from `raw`.
                if done == Some((b.offset, b.entry.id)) {
                    f.deliver(l.offset, raw)?;
                } else {
                    self.open_item(f, *l, sealed, None, raw)?;
                    done = Some((b.offset, b.entry.id));
                }
                continue;
            }
            // A base or a delta may be this run's blob again (as a chunk,
            // or as a base too): it is decoded from a copy. Bases sort
            // before the chunks that are the same blob, so they find it
            // whole.
            let mut own = sealed.to_vec();
            let base = match f.base_or_wait(*l, &b.entry, &own) {
                Base::Waits => continue,
                Base::None => None,
                Base::Ready(p) => Some(p),
                Base::Read => Some(self.chain_plaintext(&f.plan.index, &b.entry, &f.bases)?),
            };
            self.open_item(f, *l, &mut own, base.as_deref().map(Vec::as_slice), raw)?;
        }
        Ok(())
    }

    /// Decodes item `l` from `sealed` against `base`, and hands it on: a
    /// chunk to its place in the image, a base to the deltas waiting for
    /// it (each decoded in turn, and so on up their chains).
    fn open_item(
        &self,
        f: &Fetch,
        l: Located,
        sealed: &mut [u8],
        base: Option<&[u8]>,
        raw: &mut Vec<u8>,
    ) -> Result<()> {
        let (pack, b) = f.plan.index.at(l.pack, l.blob);
        let by = f.plan.index.sealed_by_at(l.pack);
        let object = blob_object(&b.entry.id, &pack.to_hex());
        if l.offset != BASE {
            (f.open)(self.key(), by, &b.entry, sealed, base, &object, raw)?;
            return f.deliver(l.offset, raw);
        }
        let mut plain = Vec::new();
        pack::open_blob_into(self.key(), by, &b.entry, sealed, base, &object, &mut plain)?;
        let plain = Arc::new(plain);
        for p in f.released(b.entry.id, &plain) {
            self.open_pending(f, p, Some(&plain), raw)?;
        }
        Ok(())
    }

    /// Decodes a delta that waited, against `base` (its base's plaintext)
    /// or, without it, its chain read on its own.
    fn open_pending(
        &self,
        f: &Fetch,
        mut p: Pending,
        base: Option<&Arc<Vec<u8>>>,
        raw: &mut Vec<u8>,
    ) -> Result<()> {
        f.cancel.check("reading stopped")?;
        let base = if let Some(b) = base {
            Arc::clone(b)
        } else {
            let (_, b) = f.plan.index.at(p.item.pack, p.item.blob);
            self.chain_plaintext(&f.plan.index, &b.entry, &f.bases)?
        };
        self.open_item(f, p.item, &mut p.sealed, Some(&base), raw)
    }
}
