//! Index files: which blob is where (SPEC.md, "Index files").
//!
//! An index file is a whole object of type `index` whose payload is:
//!
//! ```text
//! u32 LE   n_supersedes
//! 32 × n   ids of index files this one replaces (prune)
//! u32 LE   n_packs
//! per pack:
//!   32       pack id
//!   u32 LE   n_blobs
//!   48 × n   blob entries: type u8, compression u8, delta depth u16,
//!            offset u32, stored_len u32, raw_len u32, blob id (32),
//!            and for a delta (depth > 0) its base's id (32)
//! ```
//!
//! In format 4 (object version 2, SPEC.md 21.3) each pack's id is
//! followed by who sealed it: `00` for the master key, or `01` and the
//! write-only session's public key (32).
//!
//! Index files are written after the packs they describe and before the
//! snapshot that uses them, so an index never names a pack that was not
//! stored, and a snapshot never names a blob that no index lists.

use crate::error::{Error, Result};
use crate::format::crypto::SealedBy;
use crate::format::pack::{BlobEntry, PackedBlob};
use crate::format::Reader;
use crate::id::{IndexId, PackId};

/// Length of one blob entry in an index file (a delta blob's has its
/// base's id after it).
pub const ENTRY_LEN: usize = 48;
const PACK_MIN_LEN: usize = 36;

/// One pack and the blobs it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Who sealed it (always the master key before format 4).
    pub sealed_by: SealedBy,
    /// Its blobs, with offsets.
    pub blobs: Vec<PackedBlob>,
}

/// The decoded payload of one index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files this one replaces; they may be deleted once it is stored.
    pub supersedes: Vec<IndexId>,
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// The payload bytes of an index file of object version 1 (formats 1
    /// to 3), whose packs are all sealed by the master key.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_version(crate::format::FORMAT_VERSION)
    }

    /// The payload bytes for an index file of object version `version`.
    pub fn encode_version(&self, version: u8) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out = Vec::with_capacity(
            8 + self.supersedes.len() * 32 + self.packs.len() * PACK_MIN_LEN + blobs * ENTRY_LEN,
        );
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(p.id.as_bytes());
            if version >= crate::format::OBJECT_VERSION_4 {
                match p.sealed_by {
                    SealedBy::Master => out.push(0),
                    SealedBy::Session(epk) => {
                        out.push(1);
                        out.extend_from_slice(&epk);
                    }
                }
            }
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for b in &p.blobs {
                let mut e = Vec::with_capacity(b.entry.encoded_len());
                b.entry.encode(&mut e);
                // Entry layout: the pack-header entry with the offset inserted after the reserved field.
                out.extend_from_slice(&e[..4]);
                out.extend_from_slice(&b.offset.to_le_bytes());
                out.extend_from_slice(&e[4..]);
            }
        }
        out
    }

    /// Decodes the payload of an index file of object version 1.
    pub fn decode(payload: &[u8], object: &str) -> Result<Self> {
        Self::decode_version(payload, object, crate::format::FORMAT_VERSION)
    }

    /// Decodes a payload of an index file of object version `version`;
    /// `object` names the index file in errors.
    pub fn decode_version(payload: &[u8], object: &str, version: u8) -> Result<Self> {
        let bad = |e: String| Error::damaged(object, e);
        let mut r = Reader::new(payload);
        let n = r.count(32).map_err(bad)?;
        let supersedes = (0..n)
            .map(|_| r.take(32).map(IndexId::from_slice))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;
        let n = r.count(PACK_MIN_LEN).map_err(bad)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId::from_slice(r.take(32).map_err(bad)?);
            let sealed_by = if version >= crate::format::OBJECT_VERSION_4 {
                match r.u8().map_err(bad)? {
                    0 => SealedBy::Master,
                    1 => SealedBy::Session(r.take(32).map_err(bad)?.try_into().expect("32 bytes")),
                    b => return Err(bad(format!("pack {}: unknown sealer {b}", id.short()))),
                }
            } else {
                SealedBy::Master
            };
            let m = r.count(ENTRY_LEN).map_err(bad)?;
            let mut blobs = Vec::with_capacity(m);
            for _ in 0..m {
                let head = r.take(4).map_err(bad)?;
                let offset = r.u32().map_err(bad)?;
                let rest = r.take(40).map_err(bad)?;
                let mut e = Vec::with_capacity(76);
                e.extend_from_slice(head);
                e.extend_from_slice(rest);
                if head[2..4] != [0, 0] {
                    // A delta blob: its base's id follows.
                    e.extend_from_slice(r.take(32).map_err(bad)?);
                }
                let entry = BlobEntry::decode(&mut Reader::new(&e)).map_err(bad)?;
                blobs.push(PackedBlob { offset, entry });
            }
            packs.push(IndexPack {
                id,
                sealed_by,
                blobs,
            });
        }
        r.finish().map_err(bad)?;
        Ok(Self { supersedes, packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::compression::Compression;
    use crate::format::pack::BlobType;
    use crate::id::BlobId;
    use proptest::prelude::*;

    fn entry(i: u8, offset: u32) -> PackedBlob {
        PackedBlob {
            offset,
            entry: BlobEntry {
                ty: if i % 2 == 0 {
                    BlobType::Data
                } else {
                    BlobType::Tree
                },
                compression: if i % 3 == 0 && i % 5 != 1 {
                    Compression::None
                } else {
                    Compression::Zstd
                },
                stored_len: 40 + u32::from(i),
                raw_len: u32::from(i) * 3,
                id: BlobId::from_bytes([i; 32]),
                base: (i % 5 == 1).then(|| crate::format::pack::DeltaBase {
                    id: BlobId::from_bytes([i ^ 0x80; 32]),
                    depth: u16::from(i % 7) + 1,
                }),
            },
        }
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(n_sup in 0usize..3, packs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..5)) {
            let file = IndexFile {
                supersedes: (0..n_sup).map(|i| IndexId::from_bytes([i as u8; 32])).collect(),
                packs: packs.iter().enumerate().map(|(i, bl)| IndexPack {
                    id: PackId::from_bytes([200 + i as u8; 32]),
                    sealed_by: SealedBy::Master,
                    blobs: bl.iter().enumerate().map(|(j, b)| entry(*b, 6 + j as u32 * 100)).collect(),
                }).collect(),
            };
            let bytes = file.encode();
            prop_assert_eq!(&IndexFile::decode(&bytes, "index/x").unwrap(), &file);
            let mut v4 = file;
            for (i, p) in v4.packs.iter_mut().enumerate() {
                if i % 2 == 1 {
                    p.sealed_by = SealedBy::Session([i as u8; 32]);
                }
            }
            let bytes = v4.encode_version(2);
            prop_assert_eq!(IndexFile::decode_version(&bytes, "index/x", 2).unwrap(), v4);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode(&bytes, "index/x");
            let _ = IndexFile::decode_version(&bytes, "index/x", 2);
        }
    }

    #[test]
    fn absurd_counts_are_refused() {
        let mut bytes = IndexFile::default().encode();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = IndexFile::decode(&bytes, "index/abc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("index/abc") && e.contains("exceeds"), "{e}");
    }
}
