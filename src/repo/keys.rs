//! Key files: listing them, writing a new one for a password, deleting one.
//! The rules that protect a repository from losing its last key live in
//! `commands::key`.

use serde::Serialize;

use super::repository::Repository;
use super::snapshots::unique_prefix;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::crypto::KdfParams;
use crate::format::key::{self, KeyMeta};
use crate::format::recipient::Capability;
use crate::format::{self, ObjectType};
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
    /// True for a write-only key (SPEC.md 21).
    pub write_only: bool,
}

impl Repository {
    /// Lists the key files, oldest first. A write-only key cannot: the
    /// metadata of full keys is sealed with `K_enc`.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        self.require_full_key("key list")?;
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
                write_only: kf.write_only,
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

    /// Writes a write-only key file for `password` (SPEC.md 21.2): it
    /// wraps what backing up needs, never `K_enc` nor the recipient's
    /// secret. Format 4 only.
    pub(crate) fn write_write_only_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        super::repository::check_password(password)?;
        kdf.validate().map_err(|m| Error::option("kdf", m))?;
        if self.config().version < 4 {
            return Err(Error::option(
                "write-only",
                format!(
                    "{} is a format-{} repository, and write-only keys need format 4: make a new repository with `litevault init` and `litevault copy` the snapshots into it",
                    self.location(),
                    self.config().version
                ),
            ));
        }
        let config_bytes = self.backend().read(FileType::Config, "config")?;
        let config_json =
            format::open_object(self.key(), ObjectType::Config, &config_bytes, "config")?;
        let capability = Capability {
            config_hash: storage_hash(&config_bytes),
            config_json,
        };
        let bytes =
            key::encode_write_only(self.key(), password, kdf, &KeyMeta::now(), &capability)?;
        let id = KeyId::from_bytes(storage_hash(&bytes));
        self.backend().write(FileType::Key, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Refuses `what` unless the repository was opened with a full key.
    pub fn require_full_key(&self, what: &str) -> Result<()> {
        if self.key().is_write_only() {
            return Err(Error::write_only(what));
        }
        Ok(())
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
