//! Compression of blobs and objects: zstd, or stored as is.
//!
//! Data that zstd does not shrink (attachments, already-compressed images) is
//! stored uncompressed, so compression never makes a blob larger. The
//! decompressed size is recorded beside every compressed payload and bounds
//! the allocation when it is decompressed: a hostile size field cannot make
//! litevault allocate more than [`MAX_RAW_LEN`].

use std::borrow::Cow;
use std::cell::RefCell;

/// Largest plaintext litevault will decompress into (1 GiB).
pub const MAX_RAW_LEN: usize = 1 << 30;
/// Up to this size, decompression allocates the recorded size at once.
const BULK_LIMIT: usize = 4 << 20;

/// Compression of one stored payload; the byte value is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Stored as is.
    None = 0,
    /// zstd frame.
    Zstd = 1,
}

impl Compression {
    /// Decodes the on-disk tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Compresses `data` with zstd at `level`, unless that does not make it
/// smaller (or `level` is `None`): then it is stored as is.
pub fn compress(data: &[u8], level: Option<i32>) -> (Compression, Cow<'_, [u8]>) {
    if let Some(level) = level {
        if let Ok(c) = with_compressor(level, |z| z.compress(data)) {
            if c.len() < data.len() {
                return (Compression::Zstd, Cow::Owned(c));
            }
        }
    }
    (Compression::None, Cow::Borrowed(data))
}

thread_local! {
    // zstd contexts are costly to create (a profile of a restore showed
    // more time in ZSTD_createDCtx than in decompressing): one per thread.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    // Delta frames load their base as a dictionary: contexts of their own,
    // so the plain ones above never carry a dictionary.
    static DELTA_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DELTA_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// zstd's dictionary magic (`37 a4 30 ec`): a base starting with it would be
/// read as a structured dictionary, not as raw content, so no delta uses one.
pub const DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xa4, 0x30, 0xec];

/// True if `base` can serve as the raw-content dictionary of a delta frame:
/// not empty and not opening with [`DICTIONARY_MAGIC`].
pub fn usable_base(base: &[u8]) -> bool {
    !base.is_empty() && !base.starts_with(&DICTIONARY_MAGIC)
}

/// Compresses `data` at `level` with `base` as a raw-content dictionary
/// (what `zstd --patch-from` does): bytes shared with the base cost a
/// match instead of a literal. `None` if the base cannot be one
/// ([`usable_base`]) or zstd fails.
pub fn compress_delta(data: &[u8], base: &[u8], level: i32) -> Option<Vec<u8>> {
    if !usable_base(base) {
        return None;
    }
    DELTA_COMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(level).ok()?);
        }
        let z = slot.as_mut().expect("set above");
        z.set_dictionary(level, base).ok()?;
        z.compress(data).ok()
    })
}

/// Reverses [`compress_delta`] into `out` (cleared first): exactly
/// `raw_len` bytes (at most [`MAX_RAW_LEN`]) or an error.
pub fn decompress_delta_into(
    data: &[u8],
    base: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    recorded(raw_len)?;
    if !usable_base(base) {
        return Err("its delta base is empty or opens with zstd's dictionary magic".into());
    }
    out.clear();
    out.reserve_exact(raw_len);
    DELTA_DECOMPRESSOR
        .with_borrow_mut(|slot| -> std::io::Result<()> {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new()?);
            }
            let z = slot.as_mut().expect("set above");
            z.set_dictionary(base)?;
            z.decompress_to_buffer(data, out)?;
            Ok(())
        })
        .map_err(|e| format!("zstd delta: {e}"))?;
    decoded_to(out, raw_len)
}

/// Checks a recorded plaintext size before anything is allocated for it.
fn recorded(raw_len: usize) -> Result<(), String> {
    if raw_len > MAX_RAW_LEN {
        return Err(format!(
            "recorded size {raw_len} exceeds the {MAX_RAW_LEN}-byte limit"
        ));
    }
    Ok(())
}

/// Checks a decompressed plaintext has its recorded size.
fn decoded_to(out: &[u8], raw_len: usize) -> Result<(), String> {
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, recorded size is {raw_len}",
            out.len()
        ));
    }
    Ok(())
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with_borrow_mut(|slot| {
        if !matches!(slot, Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, z) = slot.as_mut().expect("set above");
        f(z)
    })
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        f(slot.as_mut().expect("set above"))
    })
}

/// Reverses [`compress`]: `raw_len` is the recorded plaintext length, checked
/// against [`MAX_RAW_LEN`] before allocating and against the result after.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decompress_into(compression, data, raw_len, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (cleared first), so a caller decoding many
/// blobs reuses one buffer.
pub fn decompress_into(
    compression: Compression,
    data: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    recorded(raw_len)?;
    out.clear();
    match compression {
        Compression::None => out.extend_from_slice(data),
        // Chunks are small: at most the recorded size, in one allocation.
        Compression::Zstd if raw_len <= BULK_LIMIT => {
            out.reserve_exact(raw_len);
            with_decompressor(|z| z.decompress_to_buffer(data, out))
                .map_err(|e| format!("zstd: {e}"))?;
        }
        // Large objects: memory grows with what the frame really holds,
        // so a false size field cannot reserve gigabytes up front.
        Compression::Zstd => {
            use std::io::Read;
            out.reserve(BULK_LIMIT);
            zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| format!("zstd: {e}"))?
                .take(raw_len as u64 + 1)
                .read_to_end(out)
                .map_err(|e| format!("zstd: {e}"))?;
        }
    }
    decoded_to(out, raw_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incompressible_is_stored() {
        let mut noise = vec![0u8; 4096];
        getrandom::fill(&mut noise).unwrap();
        let (c, data) = compress(&noise, Some(3));
        assert_eq!(c, Compression::None);
        assert_eq!(&*data, &noise[..]);
    }

    #[test]
    fn lying_size_is_rejected() {
        let (c, data) = compress(&[7u8; 10_000], Some(3));
        assert_eq!(c, Compression::Zstd);
        assert!(decompress(c, &data, 9_999).is_err());
        assert!(decompress(c, &data, 10_001).is_err());
        assert!(decompress(c, &data, usize::MAX)
            .unwrap_err()
            .contains("limit"));
        assert!(decompress(c, b"garbage", 10).is_err());
    }

    #[test]
    fn a_reused_buffer_and_context_give_the_same_results() {
        let mut out = Vec::new();
        let big = vec![9u8; 100_000];
        let (c, z) = compress(&big, Some(3));
        decompress_into(c, &z, big.len(), &mut out).unwrap();
        assert_eq!(out, big);
        // A smaller blob into the larger buffer: its capacity must not let
        // a frame exceed its recorded size.
        let small = b"0123456789".repeat(100);
        let (c, z) = compress(&small, Some(3));
        decompress_into(c, &z, small.len(), &mut out).unwrap();
        assert_eq!(out, small);
        assert!(decompress_into(c, &z, small.len() - 1, &mut out).is_err());
        // After a failure the context still works.
        assert!(decompress_into(c, b"garbage", 10, &mut out).is_err());
        decompress_into(c, &z, small.len(), &mut out).unwrap();
        assert_eq!(out, small);
        // A reused compression context gives the bytes a fresh one does.
        assert_eq!(
            compress(&small, Some(3)).1,
            zstd::bulk::compress(&small, 3).unwrap()
        );
        assert_eq!(
            compress(&small, Some(19)).1,
            zstd::bulk::compress(&small, 19).unwrap()
        );
    }

    #[test]
    fn large_objects_decompress_by_stream() {
        let data = vec![3u8; 9 << 20];
        let (c, z) = compress(&data, Some(1));
        assert_eq!(decompress(c, &z, data.len()).unwrap(), data);
        assert!(decompress(c, &z, data.len() + 5).is_err());
        assert!(decompress(c, &z, data.len() - 5).is_err());
    }

    #[test]
    fn a_delta_against_the_previous_version_is_small_and_exact() {
        let mut base = vec![0u8; 16_384];
        blake3::Hasher::new()
            .update(b"delta base")
            .finalize_xof()
            .fill(&mut base);
        let mut new = base.clone();
        new[5000..5010].copy_from_slice(b"0123456789");
        let full = compress(&new, Some(3)).1.len();
        let delta = compress_delta(&new, &base, 3).unwrap();
        assert!(
            delta.len() * 20 < full,
            "delta {} vs full {full}",
            delta.len()
        );
        let mut out = Vec::new();
        decompress_delta_into(&delta, &base, new.len(), &mut out).unwrap();
        assert_eq!(out, new);
        // The wrong base, a wrong size, a bad frame: errors, never wrong bytes.
        let mut other = base.clone();
        other[100] ^= 1;
        assert!(decompress_delta_into(&delta, &other, new.len(), &mut out)
            .map_or(true, |()| out != new));
        assert!(decompress_delta_into(&delta, &base, new.len() - 1, &mut out).is_err());
        assert!(decompress_delta_into(&delta, &base, new.len() + 1, &mut out).is_err());
        assert!(decompress_delta_into(b"garbage", &base, 10, &mut out).is_err());
        // A base zstd would take for a structured dictionary is refused.
        let mut magic = base.clone();
        magic[..4].copy_from_slice(&DICTIONARY_MAGIC);
        assert!(compress_delta(&new, &magic, 3).is_none());
        assert!(decompress_delta_into(&delta, &magic, new.len(), &mut out).is_err());
        assert!(compress_delta(&new, &[], 3).is_none());
        // The plain contexts carry no dictionary afterwards.
        let (c, z) = compress(&new, Some(3));
        assert_eq!(decompress(c, &z, new.len()).unwrap(), new);
    }

    proptest! {
        #[test]
        fn delta_decompress_inverts_delta_compress(base in proptest::collection::vec(0u8..8, 1..5_000), data in proptest::collection::vec(0u8..8, 0..5_000)) {
            prop_assume!(usable_base(&base));
            let z = compress_delta(&data, &base, 3).unwrap();
            let mut out = Vec::new();
            decompress_delta_into(&z, &base, data.len(), &mut out).unwrap();
            prop_assert_eq!(out, data);
        }

        #[test]
        fn decompress_inverts_compress(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            let (c, stored) = compress(&data, Some(3));
            prop_assert_eq!(decompress(c, &stored, data.len()).unwrap(), data);
        }
    }
}
