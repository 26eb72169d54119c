//! Key files: listing them, writing a new one for a password, deleting one.
//! The rules that protect a repository from losing its last key live in
//! `commands::key`.

use serde::Serialize;

use super::repository::Repository;
use super::snapshots::unique_prefix;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format;
use crate::format::crypto::KdfParams;
use crate::format::key::{self, KeyMeta};
use crate::id::{storage_hash, KeyId};

/// One key file, as `key list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    /// The key file's id.
    pub id: KeyId,
    /// True for the key this repository was opened with.
    pub current: bool,
    /// Who made it and when.
    #[serde(flatten)]
    pub meta: KeyMeta,
    /// Its Argon2id parameters.
    pub kdf: KdfParams,
}

impl Repository {
    /// Lists the key files, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for f in self.list_confirmed(FileType::Key)? {
            let object = FileType::Key.describe(&f.name);
            let bytes = self.backend().read(FileType::Key, &f.name)?;
            format::verify_name(&bytes, &f.name, &object)?;
            let kf = key::parse(&bytes, &object)?;
            let id: KeyId = f.name.parse()?;
            out.push(KeyInfo {
                id,
                current: id == self.key_id(),
                meta: kf.meta(self.key(), &object)?,
                kdf: kf.kdf,
            });
        }
        out.sort_by(|a, b| a.meta.created.cmp(&b.meta.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Writes a new key file wrapping the master key under `password`.
    pub(crate) fn write_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        super::repository::check_password(password)?;
        kdf.validate().map_err(|m| Error::option("kdf", m))?;
        let bytes = key::encode(self.key(), password, kdf, &KeyMeta::now())?;
        let id = KeyId::from_bytes(storage_hash(&bytes));
        self.backend().write(FileType::Key, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// The ids of the key files.
    pub(crate) fn key_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .backend()
            .list(FileType::Key)?
            .into_iter()
            .map(|f| f.name)
            .collect())
    }

    /// Finds the key whose id starts with `prefix`.
    pub fn find_key(&self, prefix: &str) -> Result<KeyId> {
        let names = self.key_ids()?;
        unique_prefix(&names, prefix, "key")?.parse()
    }

    /// Deletes a key file.
    pub(crate) fn remove_key_file(&self, id: &KeyId) -> Result<()> {
        self.backend().remove(FileType::Key, &id.to_hex())
    }
}
