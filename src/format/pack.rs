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
use crate::format::crypto::{MasterKey, SEAL_OVERHEAD};
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
        let sealed = key.seal(&format::header(ObjectType::PackHeader), &plain)?;
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
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

/// Where the sealed header starts and how long it is, from the pack's size
/// and its last four bytes.
fn header_bounds(size: u64, last4: &[u8], object: &str) -> Result<(u64, u64)> {
    let hlen = u64::from(u32::from_le_bytes(last4.try_into().expect("4 bytes")));
    if hlen > MAX_HEADER_LEN || hlen + 4 + HEADER_LEN as u64 > size || hlen < SEAL_OVERHEAD as u64 {
        return Err(Error::damaged(
            object,
            format!("implausible header length {hlen} in a {size}-byte pack"),
        ));
    }
    Ok((size - 4 - hlen, hlen))
}

fn open_header(
    key: &MasterKey,
    sealed: &[u8],
    start: u64,
    object: &str,
) -> Result<Vec<PackedBlob>> {
    let plain = key
        .open(&format::header(ObjectType::PackHeader), sealed)
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
    /// The tail held the whole sealed header: the blobs it lists.
    Decoded(Vec<PackedBlob>),
    /// The header is longer than the tail read: read `len` bytes at `start`
    /// and pass them to [`open_header_at`].
    At {
        /// Offset of the sealed header.
        start: u64,
        /// Its length.
        len: u64,
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
    let (start, hlen) = header_bounds(size, &tail[tail.len() - 4..], object)?;
    let guess = tail.len() as u64;
    if hlen + 4 <= guess {
        Ok(TailHeader::Decoded(open_header(
            key,
            &tail[(guess - 4 - hlen) as usize..(guess - 4) as usize],
            start,
            object,
        )?))
    } else {
        Ok(TailHeader::At { start, len: hlen })
    }
}

/// Authenticates and decodes a sealed pack header read at `start`.
pub fn open_header_at(
    key: &MasterKey,
    sealed: &[u8],
    start: u64,
    object: &str,
) -> Result<Vec<PackedBlob>> {
    open_header(key, sealed, start, object)
}

/// Bytes of a pack that are not blobs: the file header, the sealed pack
/// header (its count, one entry per blob, the seal) and its length.
pub fn framing_len(blobs: &[PackedBlob]) -> u64 {
    let entries: usize = blobs.iter().map(|b| b.entry.encoded_len()).sum();
    (HEADER_LEN + 4 + SEAL_OVERHEAD + 4 + entries) as u64
}

/// Parses the header of a pack already read whole.
pub fn parse_header(key: &MasterKey, bytes: &[u8], object: &str) -> Result<Vec<PackedBlob>> {
    let size = bytes.len() as u64;
    check_size(size, object)?;
    format::check_header(bytes, ObjectType::Pack, object)?;
    let (start, hlen) = header_bounds(size, &bytes[bytes.len() - 4..], object)?;
    open_header(
        key,
        &bytes[start as usize..(start + hlen) as usize],
        start,
        object,
    )
}

/// Decodes a sealed blob where it lies: authenticates and decrypts
/// `sealed` in place, decompresses into `out` and checks the id, as
/// [`open_blob`] does, without allocating per blob.
pub fn open_blob_into(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &mut [u8],
    base: Option<&[u8]>,
    object: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    open_blob_into_unhashed(key, entry, sealed, base, object, out)?;
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
    let plain = key
        .open_in_place(&entry.ty.aad(), sealed)
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

/// Opens one sealed blob: authenticates, decompresses, and checks that the
/// plaintext hashes to the expected id. `object` names it in errors.
pub fn open_blob(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
    object: &str,
) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    open_blob_into(key, entry, &mut sealed.to_vec(), base, object, &mut raw)?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the header as a reader does: the tail, then the rest if needed.
    fn header_of(key: &MasterKey, bytes: &[u8]) -> Vec<PackedBlob> {
        let size = bytes.len() as u64;
        let (off, len) = tail_range(size, "pack").unwrap();
        let tail = &bytes[off as usize..(off + len) as usize];
        match header_from_tail(key, size, tail, "pack").unwrap() {
            TailHeader::Decoded(b) => b,
            TailHeader::At { start, len } => open_header_at(
                key,
                &bytes[start as usize..(start + len) as usize],
                start,
                "pack",
            )
            .unwrap(),
        }
    }

    #[test]
    fn pack_round_trip_via_tail() {
        let key = MasterKey::generate().unwrap();
        let mut w = PackWriter::new();
        let blobs: Vec<Vec<u8>> = (0..50u8)
            .map(|i| vec![i; 1000 + usize::from(i) * 37])
            .collect();
        for b in &blobs {
            w.add(&key, BlobType::Data, key.blob_id(b), b, Some(3))
                .unwrap();
        }
        let (_, bytes, written) = w.finish(&key).unwrap();
        let read = header_of(&key, &bytes);
        assert_eq!(read, written);
        assert_eq!(parse_header(&key, &bytes, "pack").unwrap(), written);
        for (b, pb) in blobs.iter().zip(&read) {
            let start = pb.offset as usize;
            let sealed = &bytes[start..start + pb.entry.stored_len as usize];
            assert_eq!(
                &open_blob(&key, &pb.entry, sealed, None, "blob").unwrap(),
                b
            );
        }
        let blob_bytes: u64 = written.iter().map(|b| u64::from(b.entry.stored_len)).sum();
        assert_eq!(framing_len(&written) + blob_bytes, bytes.len() as u64);
    }

    #[test]
    fn large_header_needs_second_read() {
        let key = MasterKey::generate().unwrap();
        let mut w = PackWriter::new();
        for i in 0..1000u32 {
            let b = i.to_le_bytes();
            w.add(&key, BlobType::Tree, key.blob_id(&b), &b, None)
                .unwrap();
        }
        let (_, bytes, written) = w.finish(&key).unwrap();
        let size = bytes.len() as u64;
        let (off, _) = tail_range(size, "pack").unwrap();
        assert!(matches!(
            header_from_tail(&key, size, &bytes[off as usize..], "pack").unwrap(),
            TailHeader::At { .. }
        ));
        assert_eq!(header_of(&key, &bytes), written);
    }
}
