//! Identifiers: one 32-byte newtype per kind of thing named in a repository.
//!
//! * [`BlobId`]: keyed BLAKE3 of a blob's plaintext (the key derives from the
//!   master key, so ids reveal nothing to someone without it).
//! * [`PackId`], [`IndexId`], [`SnapshotId`], [`KeyId`], [`LockId`]: unkeyed
//!   BLAKE3 of the stored file's bytes, which is also the file's name, so any
//!   change to a stored file is detected when it is read.
//!
//! All print as 64 lower-case hex digits and parse from the same.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = 32;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Full lower-case hex form (64 digits).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Reads an id from the first 32 bytes of `bytes`.
            #[allow(dead_code)]
            pub(crate) fn from_slice(bytes: &[u8]) -> Self {
                let mut id = [0u8; 32];
                id.copy_from_slice(&bytes[..32]);
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                parse_hex32(s).map(Self).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{s:?} is not a {}: expected 64 hex digits",
                        stringify!($name)
                    ))
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                parse_hex32(&s)
                    .map(Self)
                    .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            }
        }
    };
}

define_id!(
    /// Keyed BLAKE3 of a blob's plaintext.
    BlobId
);
define_id!(
    /// BLAKE3 of a pack file's bytes; its name under `data/`.
    PackId
);
define_id!(
    /// BLAKE3 of an index file's bytes; its name under `index/`.
    IndexId
);
define_id!(
    /// BLAKE3 of a snapshot manifest file's bytes; its name under `snapshots/`.
    SnapshotId
);
define_id!(
    /// BLAKE3 of a key file's bytes; its name under `keys/`.
    KeyId
);
define_id!(
    /// BLAKE3 of a lock file's bytes; its name under `locks/`.
    LockId
);
define_id!(
    /// Random id of a repository, recorded in its config.
    RepositoryId
);

/// Parses exactly 64 hex digits.
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The storage id of a file: unkeyed BLAKE3 of its bytes.
pub(crate) fn storage_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::from_bytes([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<PackId>().unwrap(), id);
        assert_eq!(id.short(), "abababab");
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("abc".parse::<BlobId>().is_err());
        assert!("zz".repeat(32).parse::<BlobId>().is_err());
        let err = "xyz".parse::<SnapshotId>().unwrap_err().to_string();
        assert!(err.contains("SnapshotId"), "{err}");
    }
}
