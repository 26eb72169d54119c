//! Pack files: many sealed blobs in one object (SPEC.md, "Pack files").
//!
//! ```text
//! header(6) "LVLT" 0x01 0x06
//! blob 0    nonce || ct || tag        (associated data: "LVLT" 0x01 0x08|0x09)
//! blob 1    …
//! pack header, sealed                 (associated data: "LVLT" 0x01 0x07)
//! u32 LE    length of the sealed pack header
//! ```
//!
//! The sealed header lists every blob (type, compression, stored and raw
//! length, id) in order; offsets follow from the lengths, the first blob
//! starting at byte 6. So the tail alone lists a pack, and one range read
//! fetches one blob. Each blob is authenticated on its own.

use crate::error::{Error, Result};
use crate::format::compression::{self, Compression};
use crate::format::crypto::{MasterKey, SealedBy, SEAL_OVERHEAD};
use crate::format::{self, ObjectType, Reader, HEADER_LEN};
use crate::id::{BlobId, PackId};

/// Length of one pack-header entry of a full blob; a delta blob's entry
/// has its base's id after it ([`DELTA_ENTRY_EXTRA`] more bytes).
pub const ENTRY_LEN: usize = 44;
/// Bytes a delta blob's entry adds: the base's id.
pub const DELTA_ENTRY_EXTRA: usize = 32;
/// Longest delta chain a reader follows (format 2): a blob at depth `d`
/// needs `d` others decoded first. Writers stay far below it
/// ([`crate::format::config::DeltaParams`]).
pub const MAX_DELTA_DEPTH: u16 = 64;
/// Largest raw blob accepted (64 MiB); chunks are far smaller.
pub const MAX_BLOB_LEN: u32 = 64 << 20;
/// Largest sealed pack header accepted (64 MiB).
const MAX_HEADER_LEN: u64 = 64 << 20;
/// Bytes read from the end of a pack in the first attempt to get its header.
const TAIL_GUESS: u64 = 16 << 10;
/// Set in a pack's last four bytes when a write-only session sealed it
/// (format 4, SPEC.md 21.3): its public key precedes the length.
const SESSION_FLAG: u32 = 1 << 31;
/// Length of a session's public key in a pack's tail.
const EPK_LEN: usize = 32;

/// What a blob holds; the byte value is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of a database image.
    Data = 1,
    /// A piece of a snapshot's chunk list.
    Tree = 2,
}

impl BlobType {
    /// Decodes the on-disk tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(BlobType::Data),
            2 => Some(BlobType::Tree),
            _ => None,
        }
    }

    /// The associated data a blob of this type is sealed with.
    pub fn aad(self) -> [u8; HEADER_LEN] {
        format::header(match self {
            BlobType::Data => ObjectType::DataBlob,
            BlobType::Tree => ObjectType::TreeBlob,
        })
    }
}

/// The blob a delta blob was compressed against (format 2): its plaintext
/// is the delta's zstd dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeltaBase {
    /// The base blob; of the same type as the delta.
    pub id: BlobId,
    /// The delta's depth: 1 + the base's (a full blob has depth 0), at most
    /// [`MAX_DELTA_DEPTH`].
    pub depth: u16,
}

/// One blob as a pack header (and an index) describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Data or tree.
    pub ty: BlobType,
    /// Compression of the plaintext inside the envelope.
    pub compression: Compression,
    /// Length of the sealed envelope in the pack.
    pub stored_len: u32,
    /// Length of the blob's plaintext after decompression.
    pub raw_len: u32,
    /// Keyed hash of the plaintext.
    pub id: BlobId,
    /// For a delta blob, the blob it was compressed against.
    pub base: Option<DeltaBase>,
}

impl BlobEntry {
    /// Bytes of the entry in a pack header (an index entry has 4 more).
    pub fn encoded_len(&self) -> usize {
        ENTRY_LEN + self.base.map_or(0, |_| DELTA_ENTRY_EXTRA)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.ty as u8);
        out.push(self.compression as u8);
        out.extend_from_slice(&self.base.map_or(0u16, |b| b.depth).to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(self.id.as_bytes());
        if let Some(b) = &self.base {
            out.extend_from_slice(b.id.as_bytes());
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, String> {
        let ty = r.u8()?;
        let ty = BlobType::from_tag(ty).ok_or_else(|| format!("unknown blob type {ty}"))?;
        let c = r.u8()?;
        let compression =
            Compression::from_tag(c).ok_or_else(|| format!("unknown compression {c}"))?;
        let depth = r.u16()?;
        if depth > MAX_DELTA_DEPTH {
            return Err(format!(
                "delta depth {depth} exceeds the {MAX_DELTA_DEPTH} a chain may have"
            ));
        }
        if depth > 0 && compression != Compression::Zstd {
            return Err(format!(
                "a delta blob (depth {depth}) must be zstd-compressed, not compression {c}"
            ));
        }
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        if raw_len > MAX_BLOB_LEN || (stored_len as usize) < SEAL_OVERHEAD {
            return Err(format!(
                "implausible blob lengths: stored {stored_len}, raw {raw_len}"
            ));
        }
        let id = BlobId::from_slice(r.take(32)?);
        let base = if depth > 0 {
            let base = BlobId::from_slice(r.take(32)?);
            if base == id {
                return Err(format!("blob {} is its own delta base", id.short()));
            }
            Some(DeltaBase { id: base, depth })
        } else {
            None
        };
        Ok(Self {
            ty,
            compression,
            stored_len,
            raw_len,
            id,
            base,
        })
    }
}

/// A blob with its position in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedBlob {
    /// Where it starts in the pack file.
    pub offset: u32,
    /// Its description.
    pub entry: BlobEntry,
}

/// A blob ready for a pack: compressed (if that helped) and sealed.
pub struct SealedBlob {
    /// Data or tree.
    pub ty: BlobType,
    /// Its id.
    pub id: BlobId,
    /// Compression inside the envelope.
    pub compression: Compression,
    /// Plaintext length.
    pub raw_len: usize,
    /// The base it is a delta against, if it is one.
    pub base: Option<DeltaBase>,
    /// The envelope.
    pub sealed: Vec<u8>,
}

/// Compresses (if it helps) and seals one blob.
pub fn seal_blob(
    key: &MasterKey,
    ty: BlobType,
    id: BlobId,
    raw: &[u8],
    zstd_level: Option<i32>,
) -> Result<SealedBlob> {
    seal_blob_against(key, ty, id, raw, zstd_level, None)
}

/// [`seal_blob`], as a delta against `base` (its description and
/// plaintext) where that is clearly smaller than the blob compressed
/// alone: under half the plaintext, or under 9/10 of the plain frame.
pub fn seal_blob_against(
    key: &MasterKey,
    ty: BlobType,
    id: BlobId,
    raw: &[u8],
    zstd_level: Option<i32>,
    base: Option<(DeltaBase, &[u8])>,
) -> Result<SealedBlob> {
    let delta = match (base, zstd_level) {
        (Some((b, plain)), Some(level)) if b.depth <= MAX_DELTA_DEPTH => {
            compression::compress_delta(raw, plain, level).map(|z| (b, z))
        }
        _ => None,
    };
    let (compression, data, base) = match delta {
        Some((b, z)) if z.len() * 2 <= raw.len() => {
            (Compression::Zstd, std::borrow::Cow::Owned(z), Some(b))
        }
        Some((b, z)) => {
            let (c, full) = compression::compress(raw, zstd_level);
            if z.len() * 10 < full.len() * 9 {
                (Compression::Zstd, std::borrow::Cow::Owned(z), Some(b))
            } else {
                (c, full, None)
            }
        }
        None => {
            let (c, full) = compression::compress(raw, zstd_level);
            (c, full, None)
        }
    };
    let sealed = key.seal(&ty.aad(), &data)?;
    Ok(SealedBlob {
        ty,
        id,
        compression,
        raw_len: raw.len(),
        base,
        sealed,
    })
}

/// Builds one pack in memory.
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    /// An empty pack.
    pub fn new() -> Self {
        Self {
            buf: format::header(ObjectType::Pack).to_vec(),
            blobs: Vec::new(),
        }
    }

    /// Bytes written so far (without the header still to come).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Compresses (if it helps) and seals one blob into the pack.
    pub fn add(
        &mut self,
        key: &MasterKey,
        ty: BlobType,
        id: BlobId,
        raw: &[u8],
        zstd_level: Option<i32>,
    ) -> Result<PackedBlob> {
        let b = seal_blob(key, ty, id, raw, zstd_level)?;
        self.add_sealed(ty, id, b.compression, b.raw_len, b.base, &b.sealed)
    }

    /// Adds an envelope sealed elsewhere (by a parallel worker).
    pub fn add_sealed(
        &mut self,
        ty: BlobType,
        id: BlobId,
        compression: Compression,
        raw_len: usize,
        base: Option<DeltaBase>,
        sealed: &[u8],
    ) -> Result<PackedBlob> {
        let raw_len = u32::try_from(raw_len)
            .ok()
            .filter(|n| *n <= MAX_BLOB_LEN)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "blob of {raw_len} bytes exceeds the {MAX_BLOB_LEN}-byte limit"
                ))
            })?;
        let offset = u32::try_from(self.buf.len())
            .map_err(|_| Error::Internal("pack exceeds 4 GiB".into()))?;
        let blob = PackedBlob {
            offset,
            entry: BlobEntry {
                ty,
                compression,
                stored_len: sealed.len() as u32,
                raw_len,
                id,
                base,
            },
        };
        self.buf.extend_from_slice(sealed);
        self.blobs.push(blob);
        Ok(blob)
    }

    /// Seals the header and returns the pack's id, bytes and blobs.
    pub fn finish(mut self, key: &MasterKey) -> Result<(PackId, Vec<u8>, Vec<PackedBlob>)> {
        let mut plain = Vec::with_capacity(4 + self.blobs.len() * ENTRY_LEN);
        plain.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for b in &self.blobs {
            b.entry.encode(&mut plain);
        }
        let (aad, epk) = match key.sealed_by() {
            SealedBy::Master => (format::header(ObjectType::PackHeader), None),
            SealedBy::Session(epk) => {
                self.buf[4] = format::OBJECT_VERSION_4;
                (
                    format::header_version(ObjectType::PackHeader, format::OBJECT_VERSION_4),
                    Some(epk),
                )
            }
        };
        let sealed = key.seal(&aad, &plain)?;
        self.buf.extend_from_slice(&sealed);
        let mut len = sealed.len() as u32;
        if let Some(epk) = epk {
            self.buf.extend_from_slice(&epk);
            len |= SESSION_FLAG;
        }
        self.buf.extend_from_slice(&len.to_le_bytes());
        let id = PackId::from_bytes(crate::id::storage_hash(&self.buf));
        Ok((id, self.buf, self.blobs))
    }
}

/// Decodes a pack header's plaintext into blobs with offsets, checking they
/// tile the pack exactly up to `header_start`.
fn decode_header(plain: &[u8], header_start: u64, object: &str) -> Result<Vec<PackedBlob>> {
    let bad = |e: String| Error::damaged(object, format!("pack header: {e}"));
    let mut r = Reader::new(plain);
    let n = r.count(ENTRY_LEN).map_err(bad)?;
    let mut blobs = Vec::with_capacity(n);
    let mut offset = HEADER_LEN as u64;
    for _ in 0..n {
        let entry = BlobEntry::decode(&mut r).map_err(bad)?;
        blobs.push(PackedBlob {
            offset: offset as u32,
            entry,
        });
        offset += u64::from(entry.stored_len);
        if offset > header_start {
            return Err(bad("blobs extend past the header".into()));
        }
    }
    r.finish().map_err(bad)?;
    if offset != header_start {
        return Err(bad(format!(
            "blobs end at {offset} but the header starts at {header_start}"
        )));
    }
    Ok(blobs)
}

/// Where the sealed header starts, how long it is and who sealed the
/// pack, from the pack's size and its last `4 + 32` bytes (or fewer: a
/// master-sealed pack needs only the last four).
fn header_bounds(size: u64, tail: &[u8], object: &str) -> Result<(u64, u64, SealedBy)> {
    let last4 = u32::from_le_bytes(tail[tail.len() - 4..].try_into().expect("4 bytes"));
    let (hlen, by, framing) = if last4 & SESSION_FLAG == 0 {
        (u64::from(last4), SealedBy::Master, 4)
    } else {
        if tail.len() < 4 + EPK_LEN {
            return Err(Error::damaged(
                object,
                "truncated: the pack's session key is missing",
            ));
        }
        let epk = tail[tail.len() - 4 - EPK_LEN..tail.len() - 4]
            .try_into()
            .expect("32 bytes");
        (
            u64::from(last4 & !SESSION_FLAG),
            SealedBy::Session(epk),
            4 + EPK_LEN as u64,
        )
    };
    if hlen > MAX_HEADER_LEN
        || hlen + framing + HEADER_LEN as u64 > size
        || hlen < SEAL_OVERHEAD as u64
    {
        return Err(Error::damaged(
            object,
            format!("implausible header length {hlen} in a {size}-byte pack"),
        ));
    }
    Ok((size - framing - hlen, hlen, by))
}

fn open_header(
    key: &MasterKey,
    by: SealedBy,
    sealed: &[u8],
    start: u64,
    object: &str,
) -> Result<Vec<PackedBlob>> {
    if key.is_write_only() {
        return Err(Error::write_only(format!("reading {object}")));
    }
    let aad = match by {
        SealedBy::Master => format::header(ObjectType::PackHeader),
        SealedBy::Session(_) => {
            format::header_version(ObjectType::PackHeader, format::OBJECT_VERSION_4)
        }
    };
    let plain = key
        .open_by(by, &aad, sealed)
        .ok_or_else(|| Error::damaged(object, "its header failed authentication"))?;
    decode_header(&plain, start, object)
}

fn check_size(size: u64, object: &str) -> Result<()> {
    let min = (HEADER_LEN + SEAL_OVERHEAD + 4 + 4) as u64;
    if size < min {
        return Err(Error::damaged(
            object,
            format!("truncated: {size} bytes is shorter than an empty pack"),
        ));
    }
    Ok(())
}

/// What the tail of a pack says about its header (see [`header_from_tail`]).
#[derive(Debug)]
pub enum TailHeader {
    /// The tail held the whole sealed header: the blobs it lists, and
    /// who sealed them.
    Decoded(Vec<PackedBlob>, SealedBy),
    /// The header is longer than the tail read: read `len` bytes at `start`
    /// and pass them to [`open_header_at`].
    At {
        /// Offset of the sealed header.
        start: u64,
        /// Its length.
        len: u64,
        /// Who sealed the pack.
        by: SealedBy,
    },
}

/// The range to read from the end of a `size`-byte pack to find its header
/// in one read (most packs): `(offset, len)`.
pub fn tail_range(size: u64, object: &str) -> Result<(u64, u64)> {
    check_size(size, object)?;
    let guess = size.min(TAIL_GUESS);
    Ok((size - guess, guess))
}

/// Decodes the header from the last bytes of a `size`-byte pack (what
/// [`tail_range`] asked for), or says where the rest of it is.
pub fn header_from_tail(
    key: &MasterKey,
    size: u64,
    tail: &[u8],
    object: &str,
) -> Result<TailHeader> {
    if tail.len() < 4 {
        return Err(Error::damaged(
            object,
            "truncated: the pack tail is missing",
        ));
    }
    let (start, hlen, by) = header_bounds(size, tail, object)?;
    let framing = size - start - hlen;
    let guess = tail.len() as u64;
    if hlen + framing <= guess {
        let at = (guess - framing - hlen) as usize;
        Ok(TailHeader::Decoded(
            open_header(key, by, &tail[at..at + hlen as usize], start, object)?,
            by,
        ))
    } else {
        Ok(TailHeader::At {
            start,
            len: hlen,
            by,
        })
    }
}

/// Authenticates and decodes a sealed pack header read at `start`.
pub fn open_header_at(
    key: &MasterKey,
    by: SealedBy,
    sealed: &[u8],
    start: u64,
    object: &str,
) -> Result<Vec<PackedBlob>> {
    open_header(key, by, sealed, start, object)
}

/// Bytes of a pack sealed by `by` that are not blobs: the file header,
/// the sealed pack header (its count, one entry per blob, the seal), a
/// write-only session's public key, and the header's length.
pub fn framing_len(blobs: &[PackedBlob], by: SealedBy) -> u64 {
    let entries: usize = blobs.iter().map(|b| b.entry.encoded_len()).sum();
    let epk = match by {
        SealedBy::Master => 0,
        SealedBy::Session(_) => EPK_LEN,
    };
    (HEADER_LEN + 4 + SEAL_OVERHEAD + epk + 4 + entries) as u64
}

/// Parses the header of a pack already read whole; also says who sealed it.
pub fn parse_header(
    key: &MasterKey,
    bytes: &[u8],
    object: &str,
) -> Result<(Vec<PackedBlob>, SealedBy)> {
    let size = bytes.len() as u64;
    check_size(size, object)?;
    format::check_header(bytes, ObjectType::Pack, object)?;
    let (start, hlen, by) = header_bounds(size, bytes, object)?;
    if (bytes[4] == format::OBJECT_VERSION_4) != matches!(by, SealedBy::Session(_)) {
        return Err(Error::damaged(
            object,
            "its version byte and its tail disagree on who sealed it",
        ));
    }
    let blobs = open_header(
        key,
        by,
        &bytes[start as usize..(start + hlen) as usize],
        start,
        object,
    )?;
    Ok((blobs, by))
}

/// Decodes a sealed blob where it lies: authenticates and decrypts
/// `sealed` in place, decompresses into `out` and checks the id, as
/// [`open_blob`] does, without allocating per blob.
pub fn open_blob_into(
    key: &MasterKey,
    by: SealedBy,
    entry: &BlobEntry,
    sealed: &mut [u8],
    base: Option<&[u8]>,
    object: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    open_blob_into_unhashed(key, by, entry, sealed, base, object, out)?;
    if key.blob_id(out) != entry.id {
        return Err(Error::damaged(object, "its content does not match its id"));
    }
    Ok(())
}

/// [`open_blob_into`] without hashing the plaintext to check its id: for a
/// reader that checks the keyed hash of everything it decodes at once (a
/// restored image against its manifest) and looks for the blob at fault
/// only if that fails. The blob is still authenticated.
///
/// A delta blob needs `base`, the plaintext of its base (already checked
/// against the base's id by the caller); a full blob ignores it.
pub fn open_blob_into_unhashed(
    key: &MasterKey,
    by: SealedBy,
    entry: &BlobEntry,
    sealed: &mut [u8],
    base: Option<&[u8]>,
    object: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    if sealed.len() != entry.stored_len as usize {
        return Err(Error::damaged(
            object,
            "stored length differs from the index",
        ));
    }
    if key.is_write_only() {
        return Err(Error::write_only(format!("reading {object}")));
    }
    let plain = key
        .open_in_place_by(by, &entry.ty.aad(), sealed)
        .ok_or_else(|| Error::damaged(object, "it failed authentication"))?;
    match (entry.base, base) {
        (None, _) => {
            compression::decompress_into(entry.compression, plain, entry.raw_len as usize, out)
        }
        (Some(_), Some(base)) => {
            compression::decompress_delta_into(plain, base, entry.raw_len as usize, out)
        }
        (Some(b), None) => {
            return Err(Error::Internal(format!(
                "{object} is a delta against {} and was opened without it",
                b.id.short()
            )))
        }
    }
    .map_err(|e| Error::damaged(object, e))
}

/// The envelope of a blob a write-only session sealed (`by`), sealed
/// again by the master key: the same stored plaintext (compressed, or a
/// delta against the same base), so its entry is unchanged. A full key's
/// prune moves such blobs into packs of its own this way.
pub fn reseal(
    key: &MasterKey,
    by: SealedBy,
    entry: &BlobEntry,
    sealed: &[u8],
    object: &str,
) -> Result<Vec<u8>> {
    let stored = key
        .open_by(by, &entry.ty.aad(), sealed)
        .ok_or_else(|| Error::damaged(object, "it failed authentication"))?;
    key.seal(&entry.ty.aad(), &stored)
}

/// Opens one sealed blob: authenticates, decompresses, and checks that the
/// plaintext hashes to the expected id. `object` names it in errors.
pub fn open_blob(
    key: &MasterKey,
    by: SealedBy,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
    object: &str,
) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    open_blob_into(key, by, entry, &mut sealed.to_vec(), base, object, &mut raw)?;
    Ok(raw)
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
