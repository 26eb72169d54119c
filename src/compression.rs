//! Compression of blobs and objects: zstd, or stored as is.
//!
//! Data that zstd does not shrink (attachments, already-compressed images) is
//! stored uncompressed, so compression never makes a blob larger. The
//! decompressed size is recorded beside every compressed payload and bounds
//! the allocation when it is decompressed: a hostile size field cannot make
//! litevault allocate more than [`MAX_RAW_LEN`].

use std::borrow::Cow;

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
        if let Ok(c) = zstd::bulk::compress(data, level) {
            if c.len() < data.len() {
                return (Compression::Zstd, Cow::Owned(c));
            }
        }
    }
    (Compression::None, Cow::Borrowed(data))
}

/// Reverses [`compress`]: `raw_len` is the recorded plaintext length, checked
/// against [`MAX_RAW_LEN`] before allocating and against the result after.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, String> {
    if raw_len > MAX_RAW_LEN {
        return Err(format!(
            "recorded size {raw_len} exceeds the {MAX_RAW_LEN}-byte limit"
        ));
    }
    let out = match compression {
        Compression::None => data.to_vec(),
        // Chunks are small: one exact allocation.
        Compression::Zstd if raw_len <= BULK_LIMIT => {
            zstd::bulk::decompress(data, raw_len).map_err(|e| format!("zstd: {e}"))?
        }
        // Large objects: memory grows with what the frame really holds,
        // so a false size field cannot reserve gigabytes up front.
        Compression::Zstd => {
            use std::io::Read;
            let mut out = Vec::with_capacity(BULK_LIMIT);
            zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| format!("zstd: {e}"))?
                .take(raw_len as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zstd: {e}"))?;
            out
        }
    };
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, recorded size is {raw_len}",
            out.len()
        ));
    }
    Ok(out)
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
    fn large_objects_decompress_by_stream() {
        let data = vec![3u8; 9 << 20];
        let (c, z) = compress(&data, Some(1));
        assert_eq!(decompress(c, &z, data.len()).unwrap(), data);
        assert!(decompress(c, &z, data.len() + 5).is_err());
        assert!(decompress(c, &z, data.len() - 5).is_err());
    }

    proptest! {
        #[test]
        fn decompress_inverts_compress(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            let (c, stored) = compress(&data, Some(3));
            prop_assert_eq!(decompress(c, &stored, data.len()).unwrap(), data);
        }
    }
}
