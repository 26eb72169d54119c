//! Key files: the master secret wrapped under a password (SPEC.md, "Key files").
//!
//! ```text
//! offset size  field
//!      0    6  header "LVLT" 0x01 0x02
//!      6    1  kdf: 1 = Argon2id version 0x13
//!      7    1  reserved, 0
//!      8    4  memory in KiB          u32 LE
//!     12    4  iterations             u32 LE
//!     16    4  parallelism            u32 LE
//!     20   32  salt
//!     52   72  wrapped master secret: nonce(24) || ct(32) || tag(16),
//!              key = Argon2id(password, salt), associated data = bytes 0..52
//!    124    …  metadata: nonce || ct || tag under the master key,
//!              associated data = bytes 0..6, plaintext = object plaintext of JSON
//! ```
//!
//! A write-only key file (format 4, SPEC.md 21.2) has the version byte 2,
//! a u32 length at 52 and then, wrapped the same way (associated data =
//! bytes 0..56), the key's capability instead of the master secret; its
//! metadata is sealed with `K_share`.
//!
//! Several key files can open one repository; each has its own password,
//! salt and parameters. The parameters are validated ([`KdfParams::validate`])
//! before any memory is allocated for them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::{self, KdfParams, MasterKey, KEY_LEN, SEAL_OVERHEAD};
use crate::format::recipient::{Capability, CAPABILITY_FIXED};
use crate::format::{self, ObjectType, Reader, HEADER_LEN};

/// The only key derivation function of format 1.
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 32;
/// Bytes covered by the wrapped secret's associated data.
const PARAMS_END: usize = HEADER_LEN + 2 + 12 + SALT_LEN;
const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;
/// Largest key file accepted (metadata is small).
const MAX_KEY_FILE_LEN: usize = 64 * 1024;
/// The header version byte of a write-only key file.
pub const WRITE_ONLY_VERSION: u8 = 2;
/// Largest wrapped capability accepted (its config is a few hundred bytes).
const MAX_CAPABILITY_LEN: usize = 16 * 1024;

/// Who made a key and when; stored encrypted under the master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Host name where the key was made.
    pub host: String,
    /// User name that made it.
    pub username: String,
}

impl KeyMeta {
    /// Metadata for a key made now by this process.
    pub fn now() -> Self {
        Self {
            created: crate::sys::now_rfc3339(),
            host: crate::sys::hostname(),
            username: crate::sys::username(),
        }
    }
}

/// The parsed clear-text part of a key file.
pub struct KeyFile<'a> {
    /// Its Argon2id parameters.
    pub kdf: KdfParams,
    /// True for a write-only key (SPEC.md 21).
    pub write_only: bool,
    salt: &'a [u8],
    wrapped: &'a [u8],
    params_bytes: &'a [u8],
    meta: &'a [u8],
}

/// Builds a key file wrapping `master` under `password`.
pub(crate) fn encode(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    meta: &KeyMeta,
) -> Result<Vec<u8>> {
    let secret = master
        .secret()
        .ok_or_else(|| Error::Internal("a write-only key wraps no master secret".into()))?;
    encode_wrapping(master, password, kdf, meta, secret, false)
}

/// Builds a write-only key file (SPEC.md 21.2) for a repository whose
/// `config` file hashes to `config_hash` and holds `config_json`; only a
/// full `master` can make one.
pub(crate) fn encode_write_only(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    meta: &KeyMeta,
    capability: &Capability,
) -> Result<Vec<u8>> {
    let cap = master
        .capability(&capability.config_hash, &capability.config_json)
        .ok_or_else(|| Error::Internal("a write-only key cannot make another key".into()))?;
    encode_wrapping(master, password, kdf, meta, &cap, true)
}

fn encode_wrapping(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    meta: &KeyMeta,
    wrapped_plain: &[u8],
    write_only: bool,
) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    crypto::random_bytes(&mut salt)?;
    let mut out = Vec::with_capacity(512);
    let version = if write_only {
        WRITE_ONLY_VERSION
    } else {
        format::FORMAT_VERSION
    };
    out.extend_from_slice(&format::header_version(ObjectType::Key, version));
    out.push(KDF_ARGON2ID);
    out.push(0);
    out.extend_from_slice(&kdf.memory_kib.to_le_bytes());
    out.extend_from_slice(&kdf.iterations.to_le_bytes());
    out.extend_from_slice(&kdf.parallelism.to_le_bytes());
    out.extend_from_slice(&salt);
    debug_assert_eq!(out.len(), PARAMS_END);
    if write_only {
        let len = wrapped_plain.len() + SEAL_OVERHEAD;
        if len > MAX_CAPABILITY_LEN {
            return Err(Error::Internal(format!("a {len}-byte capability")));
        }
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    let kek = kdf.derive(password, &salt)?;
    let wrapped = crypto::wrap(&kek, &out, wrapped_plain)?;
    out.extend_from_slice(&wrapped);
    let meta_json = serde_json::to_vec(meta).expect("key metadata serialises");
    let plain = format::encode_plaintext(&meta_json, None)?;
    let sealed = if write_only {
        master.seal_shared(&out[..HEADER_LEN], &plain)?
    } else {
        master.seal(&out[..HEADER_LEN], &plain)?
    };
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Parses the clear-text layout of a key file and validates its parameters
/// (nothing is derived or decrypted yet).
pub fn parse<'a>(bytes: &'a [u8], object: &str) -> Result<KeyFile<'a>> {
    format::check_header(bytes, ObjectType::Key, object)?;
    if bytes.len() > MAX_KEY_FILE_LEN {
        return Err(Error::damaged(
            object,
            format!("{} bytes is larger than any key file", bytes.len()),
        ));
    }
    let bad = |e: String| Error::damaged(object, e);
    let mut r = Reader::new(&bytes[HEADER_LEN..]);
    let kdf_id = r.u8().map_err(bad)?;
    if kdf_id != KDF_ARGON2ID {
        return Err(Error::damaged(
            object,
            format!("unknown key derivation function {kdf_id}"),
        ));
    }
    let _reserved = r.u8().map_err(bad)?;
    let kdf = KdfParams {
        memory_kib: r.u32().map_err(bad)?,
        iterations: r.u32().map_err(bad)?,
        parallelism: r.u32().map_err(bad)?,
    };
    kdf.validate()
        .map_err(|e| Error::damaged(object, format!("{e}; refusing to derive a key with it")))?;
    let salt = r.take(SALT_LEN).map_err(bad)?;
    let write_only = bytes[4] == WRITE_ONLY_VERSION;
    let (wrapped_len, params_end) = if write_only {
        let len = r.u32().map_err(bad)? as usize;
        if !(CAPABILITY_FIXED + SEAL_OVERHEAD..=MAX_CAPABILITY_LEN).contains(&len) {
            return Err(Error::damaged(
                object,
                format!("a wrapped capability of {len} bytes is impossible"),
            ));
        }
        (len, PARAMS_END + 4)
    } else {
        (WRAPPED_LEN, PARAMS_END)
    };
    let wrapped = r.take(wrapped_len).map_err(bad)?;
    let meta = r.take(r.remaining()).map_err(bad)?;
    if meta.len() < SEAL_OVERHEAD {
        return Err(Error::damaged(object, "truncated: the metadata is missing"));
    }
    Ok(KeyFile {
        kdf,
        write_only,
        salt,
        wrapped,
        params_bytes: &bytes[..params_end],
        meta,
    })
}

/// What a key file's password unlocks: a full key, or a write-only key
/// and its capability's record of the repository.
pub struct Unlocked {
    /// The key.
    pub key: MasterKey,
    /// For a write-only key, the config it was made for.
    pub capability: Option<Capability>,
}

impl KeyFile<'_> {
    /// Unwraps the key with `password`; `None` if it does not open.
    pub fn open(&self, password: &[u8]) -> Result<Option<Unlocked>> {
        let kek = self.kdf.derive(password, self.salt)?;
        let Some(plain) = crypto::unwrap(&kek, self.params_bytes, self.wrapped) else {
            return Ok(None);
        };
        if self.write_only {
            return Ok(
                MasterKey::from_capability(&plain)?.map(|(key, cap)| Unlocked {
                    key,
                    capability: Some(cap),
                }),
            );
        }
        let secret: [u8; KEY_LEN] = plain.as_slice().try_into().expect("32-byte secret");
        Ok(Some(Unlocked {
            key: MasterKey::from_secret(&secret),
            capability: None,
        }))
    }

    /// Decrypts the metadata with the key (a write-only key's is sealed
    /// with `K_share`, which every key holds).
    pub fn meta(&self, master: &MasterKey, object: &str) -> Result<KeyMeta> {
        let aad = &self.params_bytes[..HEADER_LEN];
        let plain = if self.write_only {
            master.open_shared(aad, self.meta)
        } else {
            master.open(aad, self.meta)
        }
        .ok_or_else(|| Error::damaged(object, "its metadata failed authentication"))?;
        let json = format::decode_plaintext(&plain, object)?;
        serde_json::from_slice(&json).map_err(|e| Error::damaged(object, format!("metadata: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let master = MasterKey::generate().unwrap();
        let meta = KeyMeta::now();
        let bytes = encode(&master, b"secret", KdfParams::TEST_ONLY_INSECURE, &meta).unwrap();
        let kf = parse(&bytes, "keys/x").unwrap();
        assert_eq!(kf.kdf, KdfParams::TEST_ONLY_INSECURE);
        let opened = kf.open(b"secret").unwrap().expect("opens").key;
        assert_eq!(opened.secret(), master.secret());
        assert_eq!(kf.meta(&opened, "keys/x").unwrap(), meta);
        assert!(kf.open(b"wrong").unwrap().is_none());
    }

    #[test]
    fn absurd_parameters_are_refused_before_allocating() {
        let master = MasterKey::generate().unwrap();
        let mut bytes = encode(
            &master,
            b"pw",
            KdfParams::TEST_ONLY_INSECURE,
            &KeyMeta::now(),
        )
        .unwrap();
        // memory: 0xffff_ffff KiB, about 4 TiB
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse(&bytes, "keys/x").err().expect("refused").to_string();
        assert!(
            err.contains("argon2 memory") && err.contains("keys/x"),
            "{err}"
        );
    }

    #[test]
    fn truncations_are_damage_not_panics() {
        let master = MasterKey::generate().unwrap();
        let bytes = encode(
            &master,
            b"pw",
            KdfParams::TEST_ONLY_INSECURE,
            &KeyMeta::now(),
        )
        .unwrap();
        for n in 0..bytes.len() {
            if let Ok(kf) = parse(&bytes[..n], "k") {
                let opened = kf.open(b"pw").unwrap();
                assert!(opened.is_none() || kf.meta(&opened.unwrap().key, "k").is_err());
            }
        }
    }
}
