//! The repository format in bytes: no I/O here, only encoding, decoding and
//! the cryptography that binds them (SPEC.md is the contract, byte by byte;
//! `repo-format/vectors/` holds the golden vectors [`golden`] re-encodes).
//!
//! * this file: the envelope shared by every stored object ("Objects") and
//!   a bounds-checked [`Reader`] for untrusted bytes;
//! * [`crypto`]: master key, sub-keys, Argon2id, XChaCha20-Poly1305;
//! * [`key`]: key files; [`config`]: the repository config;
//! * [`compression`]: zstd, or stored;
//! * [`chunker`]: page-aligned content-defined chunking;
//! * [`pack`]: the pack codec; [`index`]: index files;
//! * [`tree`]: the chunk-list tree; [`manifest`]: snapshot manifests;
//! * [`lock`]: lock records and when they are stale.
//!
//! Nothing in this folder reads a file or talks to a backend, so every
//! decoder can be fuzzed on bytes alone (`fuzz/`).
//!
//! # The envelope
//!
//! Every file in a repository starts with a 6-byte header: the magic `LVLT`,
//! the format version, and the object type. The header is in the clear so a
//! reader can tell "written by a newer litevault" from "damaged" before it
//! decrypts anything, and it is the associated data of the object's
//! encryption, so it cannot be changed undetected.
//!
//! A whole object (config, index, snapshot, lock, key metadata) is
//! `header || seal(header, plaintext)` where
//! `plaintext = compression(1) || raw_len(u32 LE) || payload`.

pub mod change;
pub mod chunker;
pub mod compression;
pub mod config;
pub mod crypto;
pub mod index;
pub mod key;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod recipient;
pub mod tree;
pub mod wal;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod golden_v4;

use crate::error::{Error, Result};
use crate::id::storage_hash;
use compression::Compression;
use crypto::{MasterKey, SealedBy};

/// Magic bytes opening every repository file.
pub const MAGIC: [u8; 4] = *b"LVLT";
/// The version byte of every object's header except the config's: the
/// envelope and the encodings of sections 2 to 9 of SPEC.md.
pub const FORMAT_VERSION: u8 = 1;
/// The newest repository format this build reads and writes: the config's
/// header byte. Format 2 adds delta blobs (SPEC.md, "Delta blobs"), format
/// 3 change objects and the snapshots of their streams (SPEC.md 20); a
/// repository is read and written in its own format.
pub const REPOSITORY_VERSION: u8 = 4;
/// The version byte of the format-4 objects (SPEC.md 21.3): index files and
/// locks sealed with `K_share`, snapshots and packs a write-only session
/// sealed, write-only key files.
pub const OBJECT_VERSION_4: u8 = 2;
/// Length of the object header.
pub const HEADER_LEN: usize = 6;
/// Largest whole object (config, index, snapshot, lock) litevault reads:
/// 256 MiB. Index files are written well below it.
pub const MAX_OBJECT_LEN: usize = 256 << 20;

/// Object types; the byte value is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectType {
    /// The repository config (`config`).
    Config = 1,
    /// A key file (`keys/`).
    Key = 2,
    /// An index file (`index/`).
    Index = 3,
    /// A snapshot manifest (`snapshots/`).
    Snapshot = 4,
    /// A lock file (`locks/`).
    Lock = 5,
    /// A pack file (`data/`).
    Pack = 6,
    /// The header sealed at the end of a pack (associated data only).
    PackHeader = 7,
    /// A data blob: a chunk of a database image (associated data only).
    DataBlob = 8,
    /// A tree blob: a piece of a snapshot's chunk list (associated data only).
    TreeBlob = 9,
    /// A change object: commits continuous capture read (`changes/`,
    /// format 3).
    Change = 10,
    /// A bundle of change objects (`changes/`, format 3; header only, its
    /// members are sealed).
    ChangeBundle = 11,
}

impl ObjectType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Config,
            2 => Self::Key,
            3 => Self::Index,
            4 => Self::Snapshot,
            5 => Self::Lock,
            6 => Self::Pack,
            7 => Self::PackHeader,
            8 => Self::DataBlob,
            9 => Self::TreeBlob,
            10 => Self::Change,
            11 => Self::ChangeBundle,
            _ => return None,
        })
    }

    /// Lower-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Key => "key file",
            Self::Index => "index",
            Self::Snapshot => "snapshot",
            Self::Lock => "lock",
            Self::Pack => "pack",
            Self::PackHeader => "pack header",
            Self::DataBlob => "data blob",
            Self::TreeBlob => "tree blob",
            Self::Change => "change object",
            Self::ChangeBundle => "bundle of change objects",
        }
    }
}

/// The 6-byte header of an object of type `ty`.
pub fn header(ty: ObjectType) -> [u8; HEADER_LEN] {
    header_version(ty, FORMAT_VERSION)
}

/// The 6-byte header of an object of type `ty` with version byte `version`
/// (a config's is its repository's format).
pub fn header_version(ty: ObjectType, version: u8) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], version, ty as u8]
}

/// Checks that `bytes` opens with the header of a `ty` object of a version
/// this build reads. `object` names the object in errors.
pub fn check_header(bytes: &[u8], ty: ObjectType, object: &str) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::damaged(object, "the file is empty"));
    }
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
        return Err(Error::damaged(
            object,
            "it does not start with litevault's magic bytes \"LVLT\"",
        ));
    }
    let version = bytes[4];
    let supported = match ty {
        ObjectType::Config => REPOSITORY_VERSION,
        ObjectType::Key
        | ObjectType::Index
        | ObjectType::Lock
        | ObjectType::Snapshot
        | ObjectType::Change
        | ObjectType::Pack => OBJECT_VERSION_4,
        _ => FORMAT_VERSION,
    };
    if version > supported {
        return Err(Error::NewerFormat {
            object: object.to_string(),
            version,
            supported,
        });
    }
    if version == 0 {
        return Err(Error::damaged(
            object,
            format!("unknown format version {version}"),
        ));
    }
    match ObjectType::from_byte(bytes[5]) {
        Some(t) if t == ty => Ok(()),
        Some(t) => Err(Error::damaged(
            object,
            format!("it holds a {} where a {} belongs", t.name(), ty.name()),
        )),
        None => Err(Error::damaged(
            object,
            format!("unknown object type {}", bytes[5]),
        )),
    }
}

/// Checks that `bytes` hash to `name`: every object but `config` is named
/// by the BLAKE3 hash of its bytes, so a changed or truncated object is
/// detected before anything else reads it.
pub fn verify_name(bytes: &[u8], name: &str, object: &str) -> Result<()> {
    if hex::encode(storage_hash(bytes)) != name {
        return Err(Error::damaged(
            object,
            "its content does not match its name (the stored bytes were changed or truncated)",
        ));
    }
    Ok(())
}

/// Encodes the plaintext of a whole object: `compression || raw_len || payload`.
pub fn encode_plaintext(payload: &[u8], zstd_level: Option<i32>) -> Result<Vec<u8>> {
    if payload.len() > MAX_OBJECT_LEN {
        return Err(Error::InvalidInput(format!(
            "object of {} bytes exceeds the {MAX_OBJECT_LEN}-byte limit",
            payload.len()
        )));
    }
    let (c, data) = compression::compress(payload, zstd_level);
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(c as u8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Decodes what [`encode_plaintext`] made.
pub fn decode_plaintext(plain: &[u8], object: &str) -> Result<Vec<u8>> {
    if plain.len() < 5 {
        return Err(Error::damaged(
            object,
            "plaintext shorter than its 5-byte prefix",
        ));
    }
    let c = Compression::from_tag(plain[0])
        .ok_or_else(|| Error::damaged(object, format!("unknown compression {}", plain[0])))?;
    let raw_len = u32::from_le_bytes(plain[1..5].try_into().expect("4 bytes")) as usize;
    if raw_len > MAX_OBJECT_LEN {
        return Err(Error::damaged(
            object,
            format!("recorded size {raw_len} exceeds the {MAX_OBJECT_LEN}-byte limit"),
        ));
    }
    compression::decompress(c, &plain[5..], raw_len).map_err(|e| Error::damaged(object, e))
}

/// Seals a whole object of type `ty`: `header || seal(header, plaintext)`.
pub fn seal_object(
    key: &MasterKey,
    ty: ObjectType,
    payload: &[u8],
    zstd_level: Option<i32>,
) -> Result<Vec<u8>> {
    seal_object_version(key, ty, FORMAT_VERSION, payload, zstd_level)
}

/// [`seal_object`] with header version byte `version` (a config's).
pub fn seal_object_version(
    key: &MasterKey,
    ty: ObjectType,
    version: u8,
    payload: &[u8],
    zstd_level: Option<i32>,
) -> Result<Vec<u8>> {
    if key.is_write_only() {
        return Err(Error::write_only(format!(
            "writing a {} sealed with K_enc",
            ty.name()
        )));
    }
    let hdr = header_version(ty, version);
    let plain = encode_plaintext(payload, zstd_level)?;
    let sealed = key.seal(&hdr, &plain)?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals a format-4 object (SPEC.md 21.3): an index file or lock with
/// `K_share`, which every key holds; a snapshot or change object as the
/// key's session (`header || epk || seal(header || epk, plaintext)`),
/// which only a full key opens.
pub fn seal_object_v4(
    key: &MasterKey,
    ty: ObjectType,
    payload: &[u8],
    zstd_level: Option<i32>,
) -> Result<Vec<u8>> {
    let hdr = header_version(ty, OBJECT_VERSION_4);
    let plain = encode_plaintext(payload, zstd_level)?;
    let mut out = hdr.to_vec();
    match ty {
        ObjectType::Index | ObjectType::Lock => {
            out.extend_from_slice(&key.seal_shared(&hdr, &plain)?);
        }
        ObjectType::Snapshot | ObjectType::Change => {
            let SealedBy::Session(epk) = key.sealed_by() else {
                return Err(Error::Internal(format!(
                    "a full key seals a {} with K_enc",
                    ty.name()
                )));
            };
            out.extend_from_slice(&epk);
            let sealed = key.seal(&out, &plain)?;
            out.extend_from_slice(&sealed);
        }
        _ => return Err(Error::Internal(format!("no format-4 {}", ty.name()))),
    }
    Ok(out)
}

/// Seals a whole object as a repository of format `repository` stores it:
/// from format 4 its index files and locks with `K_share`; a write-only
/// key's snapshots and change objects as its session; everything else
/// with `K_enc`.
pub fn seal_stored(
    key: &MasterKey,
    ty: ObjectType,
    repository: u8,
    payload: &[u8],
    zstd_level: Option<i32>,
) -> Result<Vec<u8>> {
    match ty {
        ObjectType::Index | ObjectType::Lock if repository >= 4 => {
            seal_object_v4(key, ty, payload, zstd_level)
        }
        ObjectType::Snapshot | ObjectType::Change if key.is_write_only() => {
            seal_object_v4(key, ty, payload, zstd_level)
        }
        _ => seal_object(key, ty, payload, zstd_level),
    }
}

/// Opens a whole object of type `ty` sealed by [`seal_object`] or
/// [`seal_object_v4`]. A write-only key opens only what is sealed with
/// `K_share`; anything else is refused ([`Error::WriteOnly`]).
pub fn open_object(key: &MasterKey, ty: ObjectType, bytes: &[u8], object: &str) -> Result<Vec<u8>> {
    check_header(bytes, ty, object)?;
    if bytes.len() > MAX_OBJECT_LEN + 1024 {
        return Err(Error::damaged(
            object,
            format!("{} bytes is larger than any valid object", bytes.len()),
        ));
    }
    let failed = || {
        Error::damaged(object, "it failed authentication (modified, truncated, or sealed with another repository's key)")
    };
    let (hdr, body) = bytes.split_at(HEADER_LEN);
    let plain = match (bytes[4], ty) {
        (OBJECT_VERSION_4, ObjectType::Index | ObjectType::Lock) => {
            key.open_shared(hdr, body).ok_or_else(failed)?
        }
        (OBJECT_VERSION_4, ObjectType::Snapshot | ObjectType::Change) => {
            if key.is_write_only() {
                return Err(Error::write_only(format!("reading {object}")));
            }
            if body.len() < 32 {
                return Err(Error::damaged(
                    object,
                    "truncated: its session key is missing",
                ));
            }
            let epk: [u8; 32] = body[..32].try_into().expect("32 bytes");
            key.open_by(
                SealedBy::Session(epk),
                &bytes[..HEADER_LEN + 32],
                &body[32..],
            )
            .ok_or_else(failed)?
        }
        (FORMAT_VERSION, _) | (_, ObjectType::Config) => {
            if key.is_write_only() {
                return Err(Error::write_only(format!("reading {object}")));
            }
            key.open(hdr, body).ok_or_else(failed)?
        }
        (v, _) => {
            return Err(Error::damaged(
                object,
                format!("a {} has no version {v}", ty.name()),
            ))
        }
    };
    decode_plaintext(&plain, object)
}

/// A little-endian reader over untrusted bytes: every read is bounds-checked
/// and reports truncation instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: needed {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A count of records of `record_len` bytes each, checked against the
    /// bytes that remain before anything is allocated for them.
    pub fn count(&mut self, record_len: usize) -> std::result::Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(record_len) > self.remaining() {
            return Err(format!(
                "count {n} of {record_len}-byte records exceeds the {} bytes left",
                self.remaining()
            ));
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> std::result::Result<(), String> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(format!("{} unexpected trailing bytes", self.remaining()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let h = header(ObjectType::Index);
        assert!(check_header(&h, ObjectType::Index, "index/x").is_ok());
        let e = check_header(&h, ObjectType::Snapshot, "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds a index where a snapshot belongs"), "{e}");
        let mut newer = h;
        newer[4] = 7;
        let e = check_header(&newer, ObjectType::Index, "index/x").unwrap_err();
        assert!(matches!(e, Error::NewerFormat { version: 7, .. }));
        assert!(e
            .to_string()
            .contains("written by a newer litevault (format 7)"));
        assert!(check_header(b"", ObjectType::Index, "x")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(check_header(b"LVL", ObjectType::Index, "x").is_err());
    }

    #[test]
    fn object_round_trip() {
        let key = MasterKey::from_secret(&[9u8; 32]);
        let payload = b"{\"a\":1}".repeat(100);
        let obj = seal_object(&key, ObjectType::Snapshot, &payload, Some(3)).unwrap();
        assert_eq!(
            open_object(&key, ObjectType::Snapshot, &obj, "s").unwrap(),
            payload
        );
        for i in 0..obj.len() {
            let mut bad = obj.clone();
            bad[i] ^= 0x01;
            assert!(
                open_object(&key, ObjectType::Snapshot, &bad, "s").is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn reader_bounds_counts() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert!(r.count(44).unwrap_err().contains("exceeds"));
        let mut r = Reader::new(&[1, 2]);
        assert!(r.u32().unwrap_err().contains("truncated"));
    }
}
