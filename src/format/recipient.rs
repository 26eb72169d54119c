//! The repository's recipient key and write-only sessions (SPEC.md 21).
//!
//! A full key derives an X25519 secret `rsk` from the master secret; its
//! public key `rpk` is all a write-only key holds of it. A write-only key
//! starts a **session** when it opens the repository: a fresh ephemeral
//! X25519 pair `(esk, epk)`, and the session key
//!
//! ```text
//! K_sess = derive_key("litevault 2026-12 v4 session key", X25519(esk, rpk) || epk || rpk)
//! ```
//!
//! `esk` is dropped at once, so the host keeps only `K_sess`, in memory,
//! for the session; once the process ends, nothing on the host can open
//! what it sealed. A full key derives the same `K_sess` from
//! `X25519(rsk, epk)`, with `epk` stored beside what the session sealed.

use std::collections::HashMap;
use std::sync::Mutex;

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of the master secret.
const KEY_LEN: usize = 32;

/// Length of an X25519 public key.
pub const PUBLIC_LEN: usize = 32;
/// Bytes of a capability before its config (SPEC.md 21.2): `K_id`,
/// `K_chunk`, `K_share`, `rpk` and the config's hash.
pub const CAPABILITY_FIXED: usize = 5 * 32;

const CTX_RECIPIENT: &str = "litevault 2026-12 v4 recipient key";
const CTX_SESSION: &str = "litevault 2026-12 v4 session key";
/// Sessions a full key keeps derived (a restore of a repository many
/// write-only backups filled meets one per backup).
const SESSIONS_KEPT: usize = 4096;

/// The recipient half of a key: its secret for a full key, or the public
/// key and its own session for a write-only one.
pub(crate) enum Recipient {
    Full {
        secret: StaticSecret,
        public: [u8; PUBLIC_LEN],
        sessions: Mutex<HashMap<[u8; PUBLIC_LEN], XChaCha20Poly1305>>,
    },
    WriteOnly {
        public: [u8; PUBLIC_LEN],
        session_public: [u8; PUBLIC_LEN],
        session: XChaCha20Poly1305,
    },
}

impl Recipient {
    /// The recipient of a full key, derived from the master secret.
    pub(crate) fn full(master: &[u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(blake3::derive_key(CTX_RECIPIENT, master));
        let public = PublicKey::from(&secret).to_bytes();
        Self::Full {
            secret,
            public,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A write-only key's recipient with a fresh session, whose secret
    /// `esk` (32 random bytes) is dropped here once used.
    pub(crate) fn write_only(public: [u8; PUBLIC_LEN], esk: &Zeroizing<[u8; 32]>) -> Result<Self> {
        let esk = StaticSecret::from(**esk);
        let session_public = PublicKey::from(&esk).to_bytes();
        let shared = esk.diffie_hellman(&PublicKey::from(public));
        drop(esk);
        let session = session_cipher(&shared, &session_public, &public).ok_or_else(|| {
            Error::InvalidInput(
                "the write-only key's recipient key is not a valid X25519 public key".into(),
            )
        })?;
        Ok(Self::WriteOnly {
            public,
            session_public,
            session,
        })
    }

    /// `rpk`.
    pub(crate) fn public(&self) -> [u8; PUBLIC_LEN] {
        match self {
            Self::Full { public, .. } | Self::WriteOnly { public, .. } => *public,
        }
    }

    /// `epk` of a write-only key's session.
    pub(crate) fn session_public(&self) -> Option<[u8; PUBLIC_LEN]> {
        match self {
            Self::Full { .. } => None,
            Self::WriteOnly { session_public, .. } => Some(*session_public),
        }
    }

    /// The cipher a write-only session seals with.
    pub(crate) fn session_cipher(&self) -> Option<&XChaCha20Poly1305> {
        match self {
            Self::Full { .. } => None,
            Self::WriteOnly { session, .. } => Some(session),
        }
    }

    /// The cipher of the session `epk`: a full key derives it (and keeps
    /// it); a write-only key opens no session, its own included.
    pub(crate) fn open_session(&self, epk: &[u8; PUBLIC_LEN]) -> Option<XChaCha20Poly1305> {
        let Self::Full {
            secret,
            public,
            sessions,
        } = self
        else {
            return None;
        };
        let mut kept = sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = kept.get(epk) {
            return Some(c.clone());
        }
        let cipher = session_cipher(&secret.diffie_hellman(&PublicKey::from(*epk)), epk, public)?;
        if kept.len() >= SESSIONS_KEPT {
            kept.clear();
        }
        kept.insert(*epk, cipher.clone());
        Some(cipher)
    }
}

/// `K_sess` from the X25519 result; `None` for a non-contributory one
/// (a low-order `epk` or `rpk`, which would make the key public).
fn session_cipher(
    shared: &x25519_dalek::SharedSecret,
    epk: &[u8; PUBLIC_LEN],
    rpk: &[u8; PUBLIC_LEN],
) -> Option<XChaCha20Poly1305> {
    if !shared.was_contributory() {
        return None;
    }
    let mut material = Zeroizing::new([0u8; 96]);
    material[..32].copy_from_slice(shared.as_bytes());
    material[32..64].copy_from_slice(epk);
    material[64..].copy_from_slice(rpk);
    let mut hasher = blake3::Hasher::new_derive_key(CTX_SESSION);
    hasher.update(&*material);
    let key = Zeroizing::new(*hasher.finalize().as_bytes());
    Some(XChaCha20Poly1305::new((&*key).into()))
}

/// A write-only key's capability, parsed (SPEC.md 21.2).
pub(crate) struct CapabilityParts {
    pub(crate) id_key: [u8; 32],
    pub(crate) chunker_key: [u8; 32],
    pub(crate) shared_key: [u8; 32],
    pub(crate) recipient: [u8; PUBLIC_LEN],
    pub(crate) rest: Capability,
}

/// What a capability says of the repository it writes into.
#[derive(Clone, Debug)]
pub struct Capability {
    /// BLAKE3 of the repository's `config` file as it was when the key
    /// was made: a write-only key refuses a config that differs.
    pub config_hash: [u8; 32],
    /// The config's JSON payload (section 5), which the key cannot open.
    pub config_json: Vec<u8>,
}

impl Capability {
    pub(crate) fn parse(cap: &[u8]) -> Option<CapabilityParts> {
        if cap.len() < CAPABILITY_FIXED {
            return None;
        }
        let key =
            |i: usize| -> [u8; 32] { cap[i * 32..(i + 1) * 32].try_into().expect("32 bytes") };
        Some(CapabilityParts {
            id_key: key(0),
            chunker_key: key(1),
            shared_key: key(2),
            recipient: key(3),
            rest: Capability {
                config_hash: key(4),
                config_json: cap[CAPABILITY_FIXED..].to_vec(),
            },
        })
    }
}
