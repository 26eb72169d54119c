//! Key management: adding a key for a new password, removing one, changing
//! the password of the key in use. A repository never loses its last key,
//! nor the key a running command opened it with.

use crate::error::{Error, Result};
use crate::format::crypto::KdfParams;
use crate::format::lock::LockKind;
use crate::id::KeyId;
use crate::repo::Repository;

/// What kind of key `key add` makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyKind {
    /// Reads and writes everything, as the key that made it.
    #[default]
    Full,
    /// Can back up, but read and delete nothing (SPEC.md 21).
    WriteOnly,
}

/// Adds a key file for `password`; the repository then opens with it too.
/// Only a full key adds keys.
pub fn add_key(repo: &Repository, password: &[u8], kdf: KdfParams, kind: KeyKind) -> Result<KeyId> {
    repo.require_full_key("key add")?;
    let _lock = repo.lock(LockKind::Shared, "key add")?;
    match kind {
        KeyKind::Full => repo.write_key(password, kdf),
        KeyKind::WriteOnly => repo.write_write_only_key(password, kdf),
    }
}

/// Removes a key file. Refuses to remove the last key, and the key the
/// repository was opened with (change its password instead).
pub fn remove_key(repo: &Repository, id: &KeyId) -> Result<()> {
    repo.require_full_key("key remove")?;
    let _lock = repo.lock(LockKind::Exclusive, "key remove")?;
    let keys = repo.key_ids()?;
    if !keys.contains(&id.to_hex()) {
        return Err(Error::NotFound {
            what: "key",
            id: id.to_hex(),
        });
    }
    if keys.len() <= 1 {
        return Err(Error::LastKey);
    }
    if *id == repo.key_id() {
        return Err(Error::KeyInUse { id: id.short() });
    }
    repo.remove_key_file(id)
}

/// Replaces the current key by one for `password`: writes the new key
/// file, then deletes the old one.
pub fn change_password(repo: &mut Repository, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
    repo.require_full_key("key passwd")?;
    let lock = repo.lock(LockKind::Exclusive, "key passwd")?;
    let new = repo.write_key(password, kdf)?;
    repo.remove_key_file(&repo.key_id())?;
    drop(lock);
    repo.set_key_id(new);
    Ok(new)
}
