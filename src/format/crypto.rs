//! Keys, key derivation and authenticated encryption.
//!
//! * The **master secret** (32 random bytes) is the one secret of a
//!   repository. Sub-keys are derived from it with BLAKE3's `derive_key`
//!   under fixed context strings (SPEC.md, "Keys"): one for
//!   XChaCha20-Poly1305, one keying blob ids, one keying the chunker.
//! * A **key file** wraps the master secret under a key-encryption key derived
//!   from a password with Argon2id ([`KdfParams`]).
//! * [`MasterKey::seal`] produces `nonce(24) || ciphertext || tag(16)` with a
//!   fresh random nonce and caller-supplied associated data; [`MasterKey::open`]
//!   authenticates before returning anything.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::id::BlobId;

use super::recipient::{Capability, Recipient, CAPABILITY_FIXED, PUBLIC_LEN};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed envelope adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the master secret and of every derived key.
pub const KEY_LEN: usize = 32;

const CTX_ENCRYPTION: &str = "litevault 2026-11 v1 object encryption key";
const CTX_BLOB_ID: &str = "litevault 2026-11 v1 blob id key";
const CTX_CHUNKER: &str = "litevault 2026-11 v1 chunker key";
const CTX_SHARED: &str = "litevault 2026-12 v4 shared key";
const CTX_INDEX_TAG: &str = "litevault 2026-12 v4 index authentication key";

/// The repository's keys: a full key (derived from the master secret)
/// reads and writes everything; a write-only key (SPEC.md 21) holds only
/// what writing needs, and seals what it writes to the repository's
/// recipient key with a session key it cannot derive again.
pub struct MasterKey {
    secret: Option<Zeroizing<[u8; KEY_LEN]>>,
    cipher: Option<XChaCha20Poly1305>,
    shared_key: Zeroizing<[u8; KEY_LEN]>,
    shared: XChaCha20Poly1305,
    id_key: Zeroizing<[u8; KEY_LEN]>,
    chunker_key: Zeroizing<[u8; KEY_LEN]>,
    recipient: Recipient,
    /// `K_auth`: full keys only; authenticates the index files they write.
    index_tag_key: Option<Zeroizing<[u8; KEY_LEN]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Who sealed an object or a pack's blobs: the master key's `K_enc`, or a
/// write-only session, named by its public key (SPEC.md 21.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SealedBy {
    /// `K_enc`, which every full key derives.
    Master,
    /// A write-only session: its ephemeral X25519 public key.
    Session([u8; PUBLIC_LEN]),
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(secret.as_mut())?;
        Ok(Self::from_secret(&secret))
    }

    /// Rebuilds the key from its 32-byte secret.
    pub fn from_secret(secret: &[u8; KEY_LEN]) -> Self {
        let mut enc = Zeroizing::new(blake3::derive_key(CTX_ENCRYPTION, secret));
        let cipher = XChaCha20Poly1305::new((&*enc).into());
        enc.zeroize();
        let shared_key = Zeroizing::new(blake3::derive_key(CTX_SHARED, secret));
        Self {
            secret: Some(Zeroizing::new(*secret)),
            cipher: Some(cipher),
            shared: XChaCha20Poly1305::new((&*shared_key).into()),
            shared_key,
            id_key: Zeroizing::new(blake3::derive_key(CTX_BLOB_ID, secret)),
            index_tag_key: Some(Zeroizing::new(blake3::derive_key(CTX_INDEX_TAG, secret))),
            chunker_key: Zeroizing::new(blake3::derive_key(CTX_CHUNKER, secret)),
            recipient: Recipient::full(secret),
        }
    }

    /// A write-only key from the capability a key file wrapped
    /// ([`MasterKey::capability`]); also returns the config's hash and
    /// payload the capability carries. It starts a fresh session.
    pub(crate) fn from_capability(cap: &[u8]) -> Result<Option<(Self, Capability)>> {
        let Some(parts) = Capability::parse(cap) else {
            return Ok(None);
        };
        let mut esk = Zeroizing::new([0u8; 32]);
        random_bytes(esk.as_mut())?;
        let key = Self {
            secret: None,
            cipher: None,
            shared: XChaCha20Poly1305::new((&parts.shared_key).into()),
            shared_key: Zeroizing::new(parts.shared_key),
            id_key: Zeroizing::new(parts.id_key),
            index_tag_key: None,
            chunker_key: Zeroizing::new(parts.chunker_key),
            recipient: Recipient::write_only(parts.recipient, &esk)?,
        };
        Ok(Some((key, parts.rest)))
    }

    /// What a write-only key file wraps (SPEC.md 21.2): every key but
    /// `K_enc` and the recipient's secret, with the config it writes
    /// under. `None` for a write-only key, which cannot make another.
    pub(crate) fn capability(
        &self,
        config_hash: &[u8; 32],
        config_json: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.secret.as_ref()?;
        let mut out = Zeroizing::new(Vec::with_capacity(CAPABILITY_FIXED + config_json.len()));
        out.extend_from_slice(&*self.id_key);
        out.extend_from_slice(&*self.chunker_key);
        out.extend_from_slice(&*self.shared_key);
        out.extend_from_slice(&self.recipient.public());
        out.extend_from_slice(config_hash);
        out.extend_from_slice(config_json);
        Some(out)
    }

    /// True for a write-only key: it reads nothing a full key or another
    /// session sealed (SPEC.md 21).
    pub fn is_write_only(&self) -> bool {
        self.secret.is_none()
    }

    /// The secret, for wrapping into a key file; `None` for a write-only key.
    pub(crate) fn secret(&self) -> Option<&[u8; KEY_LEN]> {
        self.secret.as_deref()
    }

    /// Who seals what this key writes with [`MasterKey::seal`].
    pub fn sealed_by(&self) -> SealedBy {
        self.recipient
            .session_public()
            .map_or(SealedBy::Master, SealedBy::Session)
    }

    /// The tag a full key puts after a format-4 index file's payload
    /// (SPEC.md 21.3): `BLAKE3_keyed(K_auth, payload)`. `None` for a
    /// write-only key, whose index files carry 32 zero bytes there.
    pub fn index_tag(&self, payload: &[u8]) -> Option<[u8; 32]> {
        let key = self.index_tag_key.as_ref()?;
        Some(*blake3::keyed_hash(key, payload).as_bytes())
    }

    /// Key of the chunker's per-page cut function.
    pub fn chunker_key(&self) -> &[u8; KEY_LEN] {
        &self.chunker_key
    }

    /// The id of a blob with this plaintext: keyed BLAKE3.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId::from_bytes(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// A streaming hasher producing blob ids (for whole-image hashes).
    pub fn blob_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// Encrypts and authenticates `plaintext` with `aad`: returns
    /// `nonce || ciphertext || tag`, under `K_enc` for a full key and
    /// under the session's key for a write-only one
    /// ([`MasterKey::sealed_by`] says which).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        match (&self.cipher, self.recipient.session_cipher()) {
            (Some(c), _) | (None, Some(c)) => seal_with(c, aad, plaintext),
            (None, None) => Err(Error::Internal("a key that seals nothing".into())),
        }
    }

    /// Seals with `K_share`, which write-only keys hold too (index files
    /// and locks of format 4, write-only key metadata).
    pub fn seal_shared(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.shared, aad, plaintext)
    }

    /// Opens what [`MasterKey::seal_shared`] sealed.
    pub fn open_shared(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.shared, aad, sealed)
    }

    /// Authenticates and decrypts an envelope made by [`MasterKey::seal`]
    /// of a full key with the same `aad`. `None` means it failed
    /// authentication, or this key is write-only.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(self.cipher.as_ref()?, aad, sealed)
    }

    /// [`MasterKey::open`] of what `by` sealed; a write-only key opens
    /// nothing, not even what it sealed itself.
    pub fn open_by(&self, by: SealedBy, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        match by {
            SealedBy::Master => self.open(aad, sealed),
            SealedBy::Session(public) => {
                open_with(&self.recipient.open_session(&public)?, aad, sealed)
            }
        }
    }

    /// [`MasterKey::open`] without a copy: decrypts the envelope where it
    /// lies and returns the plaintext, a part of `sealed`. On `None` the
    /// bytes of `sealed` are unspecified.
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Option<&'a [u8]> {
        open_in_place_with(self.cipher.as_ref()?, aad, sealed)
    }

    /// [`MasterKey::open_in_place`] of what `by` sealed.
    pub fn open_in_place_by<'a>(
        &self,
        by: SealedBy,
        aad: &[u8],
        sealed: &'a mut [u8],
    ) -> Option<&'a [u8]> {
        match by {
            SealedBy::Master => self.open_in_place(aad, sealed),
            SealedBy::Session(public) => {
                open_in_place_with(&self.recipient.open_session(&public)?, aad, sealed)
            }
        }
    }
}

fn open_in_place_with<'a>(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &'a mut [u8],
) -> Option<&'a [u8]> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, ct, (&*tag).into())
        .ok()?;
    Some(ct)
}

pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Internal("plaintext too long to encrypt".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

/// Argon2id parameters of one key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default: 128 MiB, 6 passes, 2 lanes computed on two threads:
    /// about 0.25 s per unlock on the reference machine (2 cores; SPEC.md,
    /// "Key files"). The lanes halve the wait, not the attacker's cost,
    /// which is the memory-time product. 128 MiB, not more, keeps a
    /// backup's peak memory under its 200 MiB budget.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 128 * 1024,
        iterations: 6,
        parallelism: 2,
    };

    /// Trivially cheap parameters **for test suites only**: a key made with
    /// them can be brute-forced. The CLI uses them only when the environment
    /// variable `LITEVAULT_TEST_ONLY_INSECURE_KDF=1` is set, and warns.
    pub const TEST_ONLY_INSECURE: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// Largest memory a key file may ask for (4 GiB): bounds what a hostile
    /// key file can make us allocate.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Largest pass count accepted from a key file.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Largest lane count accepted from a key file.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Checks the parameters are within the bounds litevault accepts.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.parallelism == 0 || self.parallelism > Self::MAX_PARALLELISM {
            return Err(format!(
                "argon2 parallelism {} is outside 1..={}",
                self.parallelism,
                Self::MAX_PARALLELISM
            ));
        }
        if self.iterations == 0 || self.iterations > Self::MAX_ITERATIONS {
            return Err(format!(
                "argon2 iterations {} is outside 1..={}",
                self.iterations,
                Self::MAX_ITERATIONS
            ));
        }
        if self.memory_kib < 8 * self.parallelism || self.memory_kib > Self::MAX_MEMORY_KIB {
            return Err(format!(
                "argon2 memory {} KiB is outside {}..={} KiB",
                self.memory_kib,
                8 * self.parallelism,
                Self::MAX_MEMORY_KIB
            ));
        }
        Ok(())
    }

    /// Derives a 32-byte key-encryption key from `password` and `salt`.
    pub(crate) fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        self.validate().map_err(Error::InvalidInput)?;
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| Error::InvalidInput(format!("argon2 parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(password, salt, out.as_mut())
            .map_err(|e| Error::InvalidInput(format!("argon2: {e}")))?;
        Ok(out)
    }
}

/// Wraps `secret` under the key-encryption key `kek`.
pub(crate) fn wrap(kek: &[u8; KEY_LEN], aad: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
    seal_with(&XChaCha20Poly1305::new(kek.into()), aad, secret)
}

/// Unwraps a secret sealed by [`wrap`]; `None` if authentication fails.
pub(crate) fn unwrap(kek: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    open_with(&XChaCha20Poly1305::new(kek.into()), aad, sealed).map(Zeroizing::new)
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// In this crate's own unit tests a thread may switch to a seeded
/// deterministic stream ([`deterministic::with_seed`]) so that golden vectors
/// are reproducible; that switch does not exist in non-test builds.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    #[cfg(test)]
    if deterministic::fill(buf) {
        return Ok(());
    }
    getrandom::fill(buf).map_err(|e| {
        Error::Internal(format!(
            "reading the operating system's random number generator: {e}"
        ))
    })
}

#[cfg(test)]
pub(crate) mod deterministic {
    //! Seeded randomness for reproducible golden vectors (tests only).
    use std::cell::RefCell;

    thread_local! {
        static STREAM: RefCell<Option<blake3::OutputReader>> = const { RefCell::new(None) };
    }

    /// Runs `f` with this thread's randomness replaced by BLAKE3-XOF(seed).
    pub fn with_seed<T>(seed: &str, f: impl FnOnce() -> T) -> T {
        STREAM.with(|s| {
            *s.borrow_mut() = Some(blake3::Hasher::new().update(seed.as_bytes()).finalize_xof());
        });
        let out = f();
        STREAM.with(|s| *s.borrow_mut() = None);
        out
    }

    pub fn fill(buf: &mut [u8]) -> bool {
        STREAM.with(|s| match s.borrow_mut().as_mut() {
            Some(reader) => {
                reader.fill(buf);
                true
            }
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(b"aad", &sealed).unwrap(), b"hello");
        assert!(key.open(b"other", &sealed).is_none());
        let other = MasterKey::generate().unwrap();
        assert!(other.open(b"aad", &sealed).is_none());
        assert!(key.open(b"aad", &sealed[..10]).is_none());
    }

    #[test]
    fn nonces_are_fresh() {
        let key = MasterKey::generate().unwrap();
        assert_ne!(key.seal(b"", b"x").unwrap(), key.seal(b"", b"x").unwrap());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_eq!(a.blob_id(b"page"), a.blob_id(b"page"));
        assert_ne!(a.blob_id(b"page"), b.blob_id(b"page"));
        assert_ne!(
            a.blob_id(b"page").as_bytes(),
            blake3::hash(b"page").as_bytes()
        );
    }

    #[test]
    fn kdf_bounds() {
        assert!(KdfParams::DEFAULT.validate().is_ok());
        assert!(KdfParams::TEST_ONLY_INSECURE.validate().is_ok());
        let absurd = KdfParams {
            memory_kib: u32::MAX,
            ..KdfParams::DEFAULT
        };
        assert!(absurd.validate().unwrap_err().contains("memory"));
        let zero = KdfParams {
            iterations: 0,
            ..KdfParams::DEFAULT
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn wrap_unwrap() {
        let kek = KdfParams::TEST_ONLY_INSECURE
            .derive(b"pw", &[7u8; 32])
            .unwrap();
        let w = wrap(&kek, b"hdr", &[1u8; 32]).unwrap();
        assert_eq!(&**unwrap(&kek, b"hdr", &w).unwrap(), &[1u8; 32]);
        let wrong = KdfParams::TEST_ONLY_INSECURE
            .derive(b"pw2", &[7u8; 32])
            .unwrap();
        assert!(unwrap(&wrong, b"hdr", &w).is_none());
    }

    proptest! {
        #[test]
        fn open_inverts_seal(data in proptest::collection::vec(any::<u8>(), 0..4096), aad in proptest::collection::vec(any::<u8>(), 0..16)) {
            let key = MasterKey::from_secret(&[3u8; 32]);
            let sealed = key.seal(&aad, &data).unwrap();
            prop_assert_eq!(key.open(&aad, &sealed).unwrap(), data);
        }

        #[test]
        fn open_in_place_agrees_with_open(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            flip in any::<prop::sample::Index>(),
        ) {
            let key = MasterKey::from_secret(&[3u8; 32]);
            let sealed = key.seal(b"aad", &data).unwrap();
            let mut copy = sealed.clone();
            prop_assert_eq!(key.open_in_place(b"aad", &mut copy), Some(&data[..]));
            let mut copy = sealed.clone();
            prop_assert!(key.open_in_place(b"other", &mut copy).is_none());
            let mut copy = sealed.clone();
            copy[flip.index(sealed.len())] ^= 1;
            prop_assert!(key.open_in_place(b"aad", &mut copy).is_none());
            let mut short = sealed[..SEAL_OVERHEAD - 1].to_vec();
            prop_assert!(key.open_in_place(b"aad", &mut short).is_none());
        }
    }
}
