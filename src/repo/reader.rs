//! The one reader: every way blobs come back out of packs.
//!
//! * [`Repository::read_blob`]: one blob, one range read, through the index;
//! * [`Repository::read_pack_header`]: a pack's header from its tail, with
//!   at most three small range reads;
//! * [`Repository::read_pack_bytes`]: a whole pack, its name and header
//!   verified, its blobs still sealed (prune's repack, copy), and
//!   [`Repository::read_pack`]: the same with every blob opened and
//!   verified (check `--read-data`);
//! * [`Repository::reassemble`]: a snapshot's image in parallel: the
//!   blobs sorted by pack and offset (parallel compression stores adjacent
//!   chunks out of order), neighbours less than [`MAX_GAP`](super::fetch::MAX_GAP) apart joined
//!   into range reads of at most [`MAX_RUN`](super::fetch::MAX_RUN) bytes, several in flight, each
//!   blob authenticated, written at its image offsets (ids are left to the
//!   whole-image check, see [`Repository::reassemble_into`]); the delta
//!   bases it needs come with the same range reads (see [`super::fetch`]);
//! * [`Repository::write_image`]: the image in order to a stream, window
//!   by window, each reassembled as above;
//!   [`Repository::check_image_file`]: a reassembled image file read back
//!   and checked against the manifest's keyed hash.
//!
//! Every blob read is authenticated, decompressed within its recorded
//! size, and checked against its id before it is used.
//!
//! A delta blob (format 2) is decoded against its base's plaintext, which
//! [`Repository::base_plaintext`] decodes first: the chain is followed in
//! the index (every link present, of the same type, one level shallower
//! than the last, so it ends within [`pack::MAX_DELTA_DEPTH`] steps and
//! cannot loop), then decoded from its full blob up, each link checked
//! against its id. A [`BaseCache`] keeps the plaintexts for one operation.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::fetch::{blob_object, locate, plan, truncated, BaseCache, Ids, Plan};
use super::index::Index;
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::crypto::SealedBy;
use crate::format::manifest::Manifest;
use crate::format::pack::{self, BlobEntry, BlobType, PackedBlob, TailHeader};
use crate::format::tree::TreeNode;
use crate::format::{self, ObjectType, HEADER_LEN};
use crate::id::{BlobId, PackId};
use crate::progress::{Cancel, Progress};

/// Image bytes [`Repository::write_image`] reassembles at a time.
pub const WINDOW: u64 = 32 << 20;

/// A pack read whole: its name and header verified, its blobs sealed.
pub struct PackBytes {
    /// The pack.
    pub id: PackId,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The blobs its header lists.
    pub blobs: Vec<PackedBlob>,
    /// Who sealed it.
    pub sealed_by: SealedBy,
}

impl PackBytes {
    /// The sealed envelope of one of its blobs.
    pub fn sealed(&self, b: &PackedBlob) -> &[u8] {
        &self.bytes[b.offset as usize..(b.offset + b.entry.stored_len) as usize]
    }

    /// Opens one of its blobs: authenticated, decompressed, id-checked; a
    /// delta blob against `base`, its base's plaintext.
    pub fn open(
        &self,
        key: &crate::format::crypto::MasterKey,
        b: &PackedBlob,
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        pack::open_blob(
            key,
            self.sealed_by,
            &b.entry,
            self.sealed(b),
            base,
            &blob_object(&b.entry.id, &self.id.to_hex()),
        )
    }
}

/// Checks a snapshot's chunks add up to its manifest's image size.
fn check_total(m: &Manifest, total: u64) -> Result<()> {
    if total != m.image.bytes {
        return Err(Error::damaged(
            format!("snapshot of {} taken at {}", m.database.name, m.time),
            format!("its chunks add up to {total} bytes, not {}", m.image.bytes),
        ));
    }
    Ok(())
}

impl Repository {
    /// Reads one blob with a single range read, through the index.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let index = self.index()?;
        self.read_blob_with(&index, id)
    }

    /// [`Repository::read_blob`] through a given index.
    pub fn read_blob_with(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>> {
        self.read_blob_through(index, id, &BaseCache::new(0))
    }

    /// Reads one blob through the index, a delta's chain through `cache`.
    fn read_blob_through(&self, index: &Index, id: &BlobId, cache: &BaseCache) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| {
            self.blame_damaged_index(Error::damaged(
                format!("blob {id}"),
                "no index lists it (the data is missing)",
            ))
        })?;
        let base = self.base_plaintext(index, &loc.blob.entry, cache)?;
        self.read_located(
            (loc.pack, loc.sealed_by),
            &loc.blob,
            base.as_deref().map(Vec::as_slice),
        )
    }

    /// Reads and opens one blob where the index lists it, against its
    /// base's plaintext if it is a delta.
    /// With a local cache, a cached envelope is used if it opens, and a
    /// fetched one is cached (see [`super::blob_cache`]).
    fn read_located(
        &self,
        (pack, by): (PackId, SealedBy),
        b: &PackedBlob,
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let name = pack.to_hex();
        let object = blob_object(&b.entry.id, &name);
        let cache = self.blob_cache();
        if let Some(sealed) = cache.as_ref().and_then(|c| c.get(&b.entry)) {
            match pack::open_blob(self.key(), by, &b.entry, &sealed, base, &object) {
                Ok(plain) => return Ok(plain),
                Err(_) => cache.as_ref().map_or((), |c| c.remove(&b.entry.id)),
            }
        }
        let sealed = self
            .backend()
            .read_range(
                FileType::Pack,
                &name,
                u64::from(b.offset),
                u64::from(b.entry.stored_len),
            )
            .map_err(|e| truncated(e, &object))?;
        let plain = pack::open_blob(self.key(), by, &b.entry, &sealed, base, &object)?;
        if let Some(c) = cache {
            c.put(&b.entry.id, &sealed);
        }
        Ok(plain)
    }

    /// The plaintext of the base of the blob `entry` describes, if it is a
    /// delta; `None` for a full blob. The chain is checked in the index
    /// before anything is read (see the module docs); its links are read
    /// one range read each, from the full blob up, and kept in `cache`.
    pub fn base_plaintext(
        &self,
        index: &Index,
        entry: &BlobEntry,
        cache: &BaseCache,
    ) -> Result<Option<Arc<Vec<u8>>>> {
        if entry.base.is_none() {
            return Ok(None);
        }
        self.chain_plaintext(index, entry, cache).map(Some)
    }

    /// The plaintext of blob `id` (a delta's base, decoded with its chain),
    /// through `cache`.
    pub fn blob_plaintext(
        &self,
        index: &Index,
        id: &BlobId,
        cache: &BaseCache,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(p) = cache.get(id) {
            return Ok(p);
        }
        let plain = Arc::new(self.read_blob_through(index, id, cache)?);
        cache.put(*id, Arc::clone(&plain));
        Ok(plain)
    }

    /// The plaintext of the base of delta blob `entry`: its chain read and
    /// decoded from the full blob (or the last link `cache` holds) up.
    pub(super) fn chain_plaintext(
        &self,
        index: &Index,
        entry: &BlobEntry,
        cache: &BaseCache,
    ) -> Result<Arc<Vec<u8>>> {
        let mut chain: Vec<((PackId, SealedBy), PackedBlob)> = Vec::new();
        let mut found = None;
        let mut link = *entry;
        while let Some(base) = index.delta_base(&link) {
            let base = base.map_err(|m| {
                Error::damaged(format!("delta chain of blob {}", entry.id.short()), m)
            })?;
            if let Some(p) = cache.get(&base.blob.entry.id) {
                found = Some(p);
                break;
            }
            chain.push(((base.pack, base.sealed_by), base.blob));
            link = base.blob.entry;
        }
        for (pack, b) in chain.iter().rev() {
            let p = Arc::new(self.read_located(*pack, b, found.as_deref().map(Vec::as_slice))?);
            cache.put(b.entry.id, Arc::clone(&p));
            found = Some(p);
        }
        Ok(found.expect("a chain ends in a cached or a full blob"))
    }

    /// Reads and decodes one tree blob of a snapshot's chunk list; the index
    /// must list it as a tree blob.
    pub fn read_tree(&self, id: &BlobId) -> Result<TreeNode> {
        let index = self.index()?;
        self.read_tree_with(&index, id)
    }

    /// [`Repository::read_tree`] through a given index.
    pub fn read_tree_with(&self, index: &Index, id: &BlobId) -> Result<TreeNode> {
        let object = format!("tree blob {}", id.short());
        if index
            .get(id)
            .is_some_and(|l| l.blob.entry.ty != BlobType::Tree)
        {
            return Err(Error::damaged(object, "the index lists it as a data blob"));
        }
        TreeNode::decode(&self.read_blob_with(index, id)?, &object)
    }

    /// Reads and authenticates the header of pack `id` from its tail, with
    /// at most three small range reads (start, tail, and the header if the
    /// tail was too short); also says who sealed the pack.
    pub fn read_pack_header(&self, id: &PackId) -> Result<(Vec<PackedBlob>, SealedBy)> {
        let name = id.to_hex();
        let object = FileType::Pack.describe(&name);
        let backend = self.backend();
        let size = backend.size(FileType::Pack, &name)?;
        let (tail_at, tail_len) = pack::tail_range(size, &object)?;
        let head = backend
            .read_range(FileType::Pack, &name, 0, HEADER_LEN as u64)
            .map_err(|e| truncated(e, &object))?;
        format::check_header(&head, ObjectType::Pack, &object)?;
        let tail = backend
            .read_range(FileType::Pack, &name, tail_at, tail_len)
            .map_err(|e| truncated(e, &object))?;
        let (blobs, by) = match pack::header_from_tail(self.key(), size, &tail, &object)? {
            TailHeader::Decoded(blobs, by) => (blobs, by),
            TailHeader::At { start, len, by } => {
                let sealed = backend
                    .read_range(FileType::Pack, &name, start, len)
                    .map_err(|e| truncated(e, &object))?;
                (
                    pack::open_header_at(self.key(), by, &sealed, start, &object)?,
                    by,
                )
            }
        };
        if (head[4] == format::OBJECT_VERSION_4) != matches!(by, SealedBy::Session(_)) {
            return Err(Error::damaged(
                object,
                "its version byte and its tail disagree on who sealed it",
            ));
        }
        Ok((blobs, by))
    }

    /// Reads a whole pack, verifying its name and its header; the blobs
    /// stay sealed (see [`PackBytes::open`]).
    pub fn read_pack_bytes(&self, id: &PackId) -> Result<PackBytes> {
        let name = id.to_hex();
        let object = FileType::Pack.describe(&name);
        let bytes = self.backend().read(FileType::Pack, &name)?;
        format::verify_name(&bytes, &name, &object)?;
        let (blobs, sealed_by) = pack::parse_header(self.key(), &bytes, &object)?;
        Ok(PackBytes {
            id: *id,
            bytes,
            blobs,
            sealed_by,
        })
    }

    /// Reads a whole pack, verified, and returns every blob's plaintext; a
    /// delta blob's base is read through the index.
    pub fn read_pack(&self, id: &PackId) -> Result<Vec<(PackedBlob, Vec<u8>)>> {
        let index = self.index()?;
        self.read_pack_with(id, &index, &BaseCache::default())
    }

    /// [`Repository::read_pack`] through a given index, keeping the bases
    /// it decodes in `bases`.
    pub fn read_pack_with(
        &self,
        id: &PackId,
        index: &Index,
        bases: &BaseCache,
    ) -> Result<Vec<(PackedBlob, Vec<u8>)>> {
        let pack = self.read_pack_bytes(id)?;
        pack.blobs
            .iter()
            .map(|b| {
                let base = self.base_plaintext(index, &b.entry, bases)?;
                Ok((
                    *b,
                    pack.open(self.key(), b, base.as_deref().map(Vec::as_slice))?,
                ))
            })
            .collect()
    }

    /// The image's chunk list in order, with the image offset of each;
    /// checks the chunks add up to the manifest's size.
    pub fn chunk_list(&self, m: &Manifest) -> Result<Vec<(u64, BlobId)>> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        self.walk_chunks(m, None, &mut |e| {
            out.push((offset, e.id));
            offset += e.len;
            Ok(())
        })?;
        check_total(m, offset)?;
        Ok(out)
    }

    /// The plan for reading the whole image of `m`: its chunks located as
    /// the tree is walked (no list of ids is kept beside the plan).
    fn plan_image(&self, m: &Manifest) -> Result<Plan> {
        let index = self.index()?;
        let expected = usize::try_from(m.stats.chunks).unwrap_or(0).min(1 << 24);
        let mut located = Vec::with_capacity(expected);
        let mut offset = 0u64;
        self.walk_chunks(m, None, &mut |e| {
            located.push(locate(&index, offset, &e.id)?);
            offset += e.len;
            Ok(())
        })
        .map_err(|e| self.blame_damaged_index(e))?;
        check_total(m, offset)?;
        plan(index, located, Some(&self.pack_sizes()?))
    }

    /// The plan for reading `chunks` (a window of [`Repository::chunk_list`]).
    fn plan_chunks(
        &self,
        chunks: &[(u64, BlobId)],
        packs: &std::collections::HashMap<String, u64>,
    ) -> Result<Plan> {
        let index = self.index()?;
        let located = chunks
            .iter()
            .map(|(offset, id)| locate(&index, *offset, id))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| self.blame_damaged_index(e))?;
        plan(index, located, Some(packs))
    }

    /// Reads the image file at `path` back to check its size and keyed hash
    /// against `m`'s.
    pub fn check_image_file(&self, m: &Manifest, path: &Path) -> Result<()> {
        let ctx = |e| Error::io("checking", path, e);
        let mut file = std::fs::File::open(path).map_err(ctx)?;
        let mut h = self.key().blob_hasher();
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
            // Name the blob at fault when there is one: the reassembly
            // (`reassemble_into`) left the ids to this check.
            self.find_damaged_blob(m)?;
            return Err(Error::damaged(
                format!("reassembled image {}", path.display()),
                "its hash or size differs from the snapshot's manifest",
            ));
        }
        Ok(())
    }

    /// Decodes every chunk of `m` again, checking each against its id;
    /// the first that does not match is the error.
    fn find_damaged_blob(&self, m: &Manifest) -> Result<()> {
        let plan = self.plan_image(m)?;
        self.fetch_all(&plan, &|_, _| Ok(()), None, &Cancel::new(), Ids::Check)
    }

    /// Reassembles the image of `m` into `file` (at `path`, for messages),
    /// sized to the image first. Blobs are authenticated as they are
    /// decoded, but their ids are not recomputed: the caller checks the
    /// whole image with [`Repository::check_image_file`] before using it,
    /// which hashes every byte once instead of twice and names a damaged
    /// blob if the image does not match.
    pub fn reassemble_into(
        &self,
        m: &Manifest,
        file: &std::fs::File,
        path: &Path,
        progress: Option<&dyn Progress>,
        cancel: &Cancel,
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        file.set_len(m.image.bytes)
            .map_err(|e| Error::io("writing", path, e))?;
        self.reassemble_checking(
            m,
            &|offset, bytes| {
                file.write_all_at(bytes, offset)
                    .map_err(|e| Error::io("writing", path, e))
            },
            progress,
            cancel,
            Ids::Later,
        )
    }

    /// Reassembles the image of `m` by calling `write_at(offset, bytes)`
    /// for every chunk, from several threads (see the module docs). Every
    /// blob is indexed and every pack present, or nothing is written.
    pub fn reassemble(
        &self,
        m: &Manifest,
        write_at: &(dyn Fn(u64, &[u8]) -> Result<()> + Sync),
        progress: Option<&dyn Progress>,
        cancel: &Cancel,
    ) -> Result<()> {
        self.reassemble_checking(m, write_at, progress, cancel, Ids::Check)
    }

    fn reassemble_checking(
        &self,
        m: &Manifest,
        write_at: &(dyn Fn(u64, &[u8]) -> Result<()> + Sync),
        progress: Option<&dyn Progress>,
        cancel: &Cancel,
        ids: Ids,
    ) -> Result<()> {
        if let Some(p) = progress {
            p.phase("reading tree");
        }
        let plan = self.plan_image(m)?;
        if let Some(p) = progress {
            p.phase("fetching chunks");
            p.start(m.image.bytes);
        }
        self.fetch_all(&plan, write_at, progress, cancel, ids)
    }

    /// Writes the image of `manifest` to `out` in order, verified against
    /// the manifest's hash and size; returns its length. Streams it in
    /// windows of [`WINDOW`] bytes, each fetched as a restore fetches the
    /// whole image (range reads joined, several in flight); `cancel` stops
    /// it.
    pub fn write_image(
        &self,
        manifest: &Manifest,
        out: &mut dyn Write,
        cancel: &Cancel,
    ) -> Result<u64> {
        let chunks = self.chunk_list(manifest)?;
        let packs = self.pack_sizes()?;
        let mut hasher = self.key().blob_hasher();
        let mut written = 0u64;
        let mut first = 0;
        while first < chunks.len() {
            cancel.check("stopped while writing the image")?;
            let base = chunks[first].0;
            let end = first
                + chunks[first..]
                    .iter()
                    .take_while(|(offset, _)| offset - base < WINDOW)
                    .count();
            let stop = chunks.get(end).map_or(manifest.image.bytes, |c| c.0);
            let window = std::sync::Mutex::new(vec![0u8; (stop - base) as usize]);
            let plan = self.plan_chunks(&chunks[first..end], &packs)?;
            self.fetch_all(
                &plan,
                &|offset, bytes| {
                    let mut w = window
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let at = (offset - base) as usize;
                    w.get_mut(at..at + bytes.len())
                        .ok_or_else(|| {
                            Error::damaged(
                                format!(
                                    "the snapshot of {} taken at {}",
                                    manifest.database.name, manifest.time
                                ),
                                "a chunk is longer than its place in the image",
                            )
                        })?
                        .copy_from_slice(bytes);
                    Ok(())
                },
                None,
                cancel,
                Ids::Check,
            )?;
            let window = window
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            hasher.update(&window);
            written += window.len() as u64;
            out.write_all(&window).map_err(|e| Error::Io {
                op: "writing",
                path: "the output".into(),
                source: e,
            })?;
            first = end;
        }
        if written != manifest.image.bytes
            || BlobId::from_bytes(*hasher.finalize().as_bytes()) != manifest.image.hash
        {
            return Err(Error::damaged(
                format!(
                    "image of the snapshot of {} taken at {}",
                    manifest.database.name, manifest.time
                ),
                format!(
                    "the reassembled image ({written} bytes) does not match the manifest's hash and size ({} bytes)",
                    manifest.image.bytes
                ),
            ));
        }
        Ok(written)
    }
}
