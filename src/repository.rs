//! An open repository: creating, opening, keys, locks, and reading and
//! writing the sealed objects everything else is built from.
//!
//! Every object but `config` is named by the BLAKE3 hash of its bytes; every
//! read checks that hash first, so a changed byte is reported as damage to
//! that named object before anything else looks at it.

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, FileType, LocalBackend};
use crate::config::{ChunkerParams, CompressionParams, Config};
use crate::crypto::{self, KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, BlobId, IndexId, KeyId, PackId, RepositoryId, SnapshotId};
use crate::index::{Index, IndexFile, IndexPack};
use crate::key::{self, KeyMeta};
use crate::lock::{self, LockGuard, LockInfo, LockKind};
use crate::pack::{self, PackWriter, PackedBlob};
use crate::snapshot::Manifest;

/// Options for [`Repository::init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Argon2id parameters of the first key.
    pub kdf: KdfParams,
    /// Chunker parameters (fixed for the repository's life).
    pub chunker: ChunkerParams,
    /// Compression of blobs.
    pub compression: CompressionParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::DEFAULT,
            chunker: ChunkerParams::DEFAULT,
            compression: CompressionParams::DEFAULT,
            pack_size: Config::DEFAULT_PACK_SIZE,
        }
    }
}

/// One key file, as `litevault key list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
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

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Arc<MasterKey>,
    key_id: KeyId,
    config: Config,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

/// The index files of a repository (see [`Repository::index_files`]).
pub struct IndexFiles {
    /// Index files in force.
    pub live: Vec<(IndexId, IndexFile)>,
    /// Index files superseded by another one.
    pub superseded: Vec<IndexId>,
}

/// Checks that `bytes` hash to `name` (content-addressed objects).
pub(crate) fn verify_name(bytes: &[u8], name: &str, object: &str) -> Result<()> {
    if hex::encode(storage_hash(bytes)) != name {
        return Err(Error::damaged(
            object,
            "its content does not match its name (the stored bytes were changed or truncated)",
        ));
    }
    Ok(())
}

fn check_password(password: &[u8]) -> Result<()> {
    if password.is_empty() {
        return Err(Error::Password(
            "the password is empty: choose a non-empty password".into(),
        ));
    }
    Ok(())
}

impl Repository {
    /// Creates a new repository in `backend` with one key for `password`.
    ///
    /// Writes the layout, then the key file, then the config: a repository
    /// exists once its config does.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: &InitOptions) -> Result<Self> {
        check_password(password)?;
        opts.kdf.validate().map_err(Error::InvalidInput)?;
        let mut repo_id = [0u8; 32];
        crypto::random_bytes(&mut repo_id)?;
        let config = Config {
            chunker: opts.chunker,
            compression: opts.compression,
            pack_size: opts.pack_size,
            ..Config::new(RepositoryId::from_bytes(repo_id))
        };
        config.validate().map_err(Error::InvalidInput)?;
        backend.create()?;
        let key = MasterKey::generate()?;
        let key_bytes = key::encode(&key, password, opts.kdf, &KeyMeta::now())?;
        let key_id = KeyId::from_bytes(storage_hash(&key_bytes));
        backend.write(FileType::Key, &key_id.to_hex(), &key_bytes)?;
        let config_bytes = format::seal_object(&key, ObjectType::Config, &config.to_json(), None)?;
        backend.write(FileType::Config, "config", &config_bytes)?;
        Ok(Self {
            backend,
            key: Arc::new(key),
            key_id,
            config,
        })
    }

    /// Creates a repository in a local directory.
    pub fn init_local(path: impl AsRef<Path>, password: &[u8], opts: &InitOptions) -> Result<Self> {
        Self::init(Arc::new(LocalBackend::new(path.as_ref())), password, opts)
    }

    /// Opens the repository in `backend` with `password`. Writes nothing.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self> {
        let config_bytes = match backend.read(FileType::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotARepository {
                    path: backend.location().into(),
                    reason: "it has no `config` file (create a repository with `litevault init`)"
                        .into(),
                })
            }
            Err(e) => return Err(e),
        };
        format::check_header(&config_bytes, ObjectType::Config, "config")?;
        let (key, key_id) = Self::unlock_key(backend.as_ref(), password)?;
        let json = format::open_object(&key, ObjectType::Config, &config_bytes, "config")?;
        let config = Config::from_json(&json)?;
        Ok(Self {
            backend,
            key: Arc::new(key),
            key_id,
            config,
        })
    }

    /// Opens a repository in a local directory.
    pub fn open_local(path: impl AsRef<Path>, password: &[u8]) -> Result<Self> {
        Self::open(Arc::new(LocalBackend::open(path.as_ref())?), password)
    }

    /// Tries every key file with the password.
    fn unlock_key(backend: &dyn Backend, password: &[u8]) -> Result<(MasterKey, KeyId)> {
        let keys = backend.list(FileType::Key)?;
        if keys.is_empty() {
            return Err(Error::damaged(
                "keys/",
                "the repository has no key files, so nothing can open it",
            ));
        }
        let mut damage: Option<Error> = None;
        for f in &keys {
            let object = FileType::Key.describe(&f.name);
            let attempt = backend.read(FileType::Key, &f.name).and_then(|bytes| {
                verify_name(&bytes, &f.name, &object)?;
                key::parse(&bytes, &object)?.open(password)
            });
            match attempt {
                Ok(Some(k)) => return Ok((k, f.name.parse()?)),
                Ok(None) => {}
                Err(e @ Error::NewerFormat { .. }) => return Err(e),
                Err(e) => damage = damage.or(Some(e)),
            }
        }
        match damage {
            Some(Error::Damaged { object, reason }) => Err(Error::Damaged {
                object,
                reason: format!("{reason}; no other key file opens with this password"),
            }),
            Some(e) => Err(e),
            None => Err(Error::WrongPassword { keys: keys.len() }),
        }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The key file this repository was opened with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    // ---- keys ---------------------------------------------------------

    /// Lists the key files.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for f in self.backend.list(FileType::Key)? {
            let object = FileType::Key.describe(&f.name);
            let bytes = self.backend.read(FileType::Key, &f.name)?;
            verify_name(&bytes, &f.name, &object)?;
            let kf = key::parse(&bytes, &object)?;
            let id: KeyId = f.name.parse()?;
            out.push(KeyInfo {
                id,
                current: id == self.key_id,
                meta: kf.meta(&self.key, &object)?,
                kdf: kf.kdf,
            });
        }
        out.sort_by(|a, b| a.meta.created.cmp(&b.meta.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Adds a key file for `password`; the repository then opens with it too.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        check_password(password)?;
        let _lock = self.lock(LockKind::Shared, "key add")?;
        self.write_key(password, kdf)
    }

    fn write_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        kdf.validate().map_err(Error::InvalidInput)?;
        let bytes = key::encode(&self.key, password, kdf, &KeyMeta::now())?;
        let id = KeyId::from_bytes(storage_hash(&bytes));
        self.backend.write(FileType::Key, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Finds the key whose id starts with `prefix`.
    pub fn find_key(&self, prefix: &str) -> Result<KeyId> {
        let names: Vec<String> = self
            .backend
            .list(FileType::Key)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        let found = unique_prefix(&names, prefix, "key")?;
        found.parse()
    }

    /// Removes a key file. Refuses to remove the last key, and the key this
    /// repository was opened with (use [`Repository::change_password`]).
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        let _lock = self.lock(LockKind::Exclusive, "key remove")?;
        let keys = self.backend.list(FileType::Key)?;
        if !keys.iter().any(|f| f.name == id.to_hex()) {
            return Err(Error::NotFound(format!(
                "no key {id} in the repository (see `litevault key list`)"
            )));
        }
        if keys.len() <= 1 {
            return Err(Error::KeyRefused(
                "refusing to remove the last key: the repository could never be opened again (add another key first with `litevault key add`)".into(),
            ));
        }
        if *id == self.key_id {
            return Err(Error::KeyRefused(format!(
                "refusing to remove key {}, which this command opened the repository with: open with another key's password, or change this key's password with `litevault key passwd`",
                id.short()
            )));
        }
        self.backend.remove(FileType::Key, &id.to_hex())
    }

    /// Replaces the current key by one for `password`: writes the new key
    /// file, then deletes the old one.
    pub fn change_password(&mut self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        check_password(password)?;
        let _lock = self.lock(LockKind::Exclusive, "key passwd")?;
        let new = self.write_key(password, kdf)?;
        self.backend.remove(FileType::Key, &self.key_id.to_hex())?;
        self.key_id = new;
        Ok(new)
    }

    // ---- locks --------------------------------------------------------

    /// Takes a lock; it is held until the guard is dropped.
    pub fn lock(&self, kind: LockKind, command: &str) -> Result<LockGuard> {
        lock::acquire(&self.backend, &self.key, kind, command)
    }

    /// Every lock in the repository, with staleness.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        lock::list(self.backend.as_ref(), &self.key)
    }

    /// Removes stale and unreadable locks (all locks with `all`); returns
    /// what was removed.
    pub fn unlock(&self, all: bool) -> Result<Vec<LockInfo>> {
        let mut removed = Vec::new();
        for l in self.locks()? {
            if all || l.stale.is_some() {
                self.backend.remove(FileType::Lock, &l.id.to_hex())?;
                removed.push(l);
            }
        }
        Ok(removed)
    }

    // ---- objects ------------------------------------------------------

    /// Seals and stores a whole object; returns its id (= its name) and
    /// stored size.
    pub(crate) fn save_object(
        &self,
        ty: FileType,
        obj: ObjectType,
        payload: &[u8],
    ) -> Result<([u8; 32], u64)> {
        let bytes = format::seal_object(&self.key, obj, payload, Some(3))?;
        let id = storage_hash(&bytes);
        self.backend.write(ty, &hex::encode(id), &bytes)?;
        Ok((id, bytes.len() as u64))
    }

    /// Reads, verifies and opens a whole object.
    pub(crate) fn load_object(&self, ty: FileType, obj: ObjectType, name: &str) -> Result<Vec<u8>> {
        let object = ty.describe(name);
        let bytes = self.backend.read(ty, name).map_err(|e| match e {
            e if e.is_not_found() => Error::NotFound(format!("{object} does not exist")),
            e => e,
        })?;
        verify_name(&bytes, name, &object)?;
        format::open_object(&self.key, obj, &bytes, &object)
    }

    /// Stores an index file.
    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        self.save_index_sized(file).map(|(id, _)| id)
    }

    /// Stores an index file; returns its id and size.
    pub fn save_index_sized(&self, file: &IndexFile) -> Result<(IndexId, u64)> {
        self.save_object(FileType::Index, ObjectType::Index, &file.encode())
            .map(|(id, len)| (IndexId::from_bytes(id), len))
    }

    /// The ids of every indexed blob (what a backup dedups against): only
    /// the ids are kept, 32 bytes each plus the set's overhead.
    pub fn load_blob_ids(&self) -> Result<std::collections::HashSet<BlobId>> {
        let mut ids = std::collections::HashSet::new();
        for (_, file) in &self.index_files()?.live {
            for p in &file.packs {
                ids.extend(p.blobs.iter().map(|b| b.entry.id));
            }
        }
        Ok(ids)
    }

    /// Reads one index file.
    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let name = id.to_hex();
        let payload = self.load_object(FileType::Index, ObjectType::Index, &name)?;
        IndexFile::decode(&payload, &FileType::Index.describe(&name))
    }

    /// The stored packs: name to size.
    pub(crate) fn pack_sizes(&self) -> Result<std::collections::HashMap<String, u64>> {
        Ok(self
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|f| (f.name, f.size))
            .collect())
    }

    /// Every index file, split into the live ones and those another index
    /// file supersedes (left by an interrupted prune, ignored by readers).
    pub fn index_files(&self) -> Result<IndexFiles> {
        let mut all = Vec::new();
        for f in self.backend.list(FileType::Index)? {
            let id: IndexId = f.name.parse()?;
            all.push((id, self.load_index_file(&id)?));
        }
        let superseded: std::collections::HashSet<IndexId> = all
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        let (gone, live): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(id, _)| superseded.contains(id));
        Ok(IndexFiles {
            live,
            superseded: gone.into_iter().map(|(id, _)| id).collect(),
        })
    }

    /// Reads the live index files into one in-memory index.
    pub fn load_index(&self) -> Result<Index> {
        let mut index = Index::default();
        for (id, f) in &self.index_files()?.live {
            index.add_file(*id, f);
        }
        Ok(index)
    }

    /// Stores a finished pack; returns what an index needs to know of it.
    pub fn save_pack(&self, pack: PackWriter) -> Result<IndexPack> {
        let (id, bytes, blobs) = pack.finish(&self.key)?;
        self.backend.write(FileType::Pack, &id.to_hex(), &bytes)?;
        Ok(IndexPack { id, blobs })
    }

    /// Reads a whole pack, verifying its name, header and every blob.
    pub fn read_pack(&self, id: &PackId) -> Result<Vec<(PackedBlob, Vec<u8>)>> {
        let name = id.to_hex();
        let object = FileType::Pack.describe(&name);
        let bytes = self.backend.read(FileType::Pack, &name)?;
        verify_name(&bytes, &name, &object)?;
        let blobs = pack::parse_header(&self.key, &bytes, &object)?;
        blobs
            .into_iter()
            .map(|b| {
                let start = b.offset as usize;
                let sealed = &bytes[start..start + b.entry.stored_len as usize];
                let raw = pack::open_blob(
                    &self.key,
                    &b.entry,
                    sealed,
                    &format!("blob {} in {object}", b.entry.id.short()),
                )?;
                Ok((b, raw))
            })
            .collect()
    }

    /// Reads one blob with a single range read, through the index.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| {
            Error::damaged(
                format!("blob {id}"),
                "no index lists it (the data is missing)",
            )
        })?;
        let name = loc.pack.to_hex();
        let object = format!("blob {} in {}", id.short(), FileType::Pack.describe(&name));
        let sealed = self
            .backend
            .read_range(
                FileType::Pack,
                &name,
                u64::from(loc.blob.offset),
                u64::from(loc.blob.entry.stored_len),
            )
            .map_err(|e| match e {
                e if e.is_not_found() => Error::damaged(&object, "its pack is missing"),
                e => e,
            })?;
        pack::open_blob(&self.key, &loc.blob.entry, &sealed, &object)
    }

    /// Reads and decodes one tree blob of a snapshot's chunk list; the index
    /// must list it as a tree blob.
    pub fn read_tree(&self, index: &Index, id: &BlobId) -> Result<crate::snapshot::TreeNode> {
        let object = format!("tree blob {}", id.short());
        if index
            .get(id)
            .is_some_and(|l| l.blob.entry.ty != crate::pack::BlobType::Tree)
        {
            return Err(Error::damaged(object, "the index lists it as a data blob"));
        }
        crate::snapshot::TreeNode::decode(&self.read_blob(index, id)?, &object)
    }

    /// Stores a snapshot manifest (after its data and index).
    pub fn save_manifest(&self, manifest: &Manifest) -> Result<SnapshotId> {
        self.save_manifest_sized(manifest).map(|(id, _)| id)
    }

    /// Stores a snapshot manifest; returns its id and size.
    pub fn save_manifest_sized(&self, manifest: &Manifest) -> Result<(SnapshotId, u64)> {
        self.save_object(FileType::Snapshot, ObjectType::Snapshot, &manifest.encode())
            .map(|(id, len)| (SnapshotId::from_bytes(id), len))
    }

    /// Every snapshot with its manifest, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Manifest)>> {
        let mut out = Vec::new();
        for f in self.backend.list(FileType::Snapshot)? {
            let id: SnapshotId = f.name.parse()?;
            match self.load_manifest(&id) {
                Ok(m) => out.push((id, m)),
                // Deleted between list and read (forget running): skip it.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Reads one snapshot manifest.
    pub fn load_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        let name = id.to_hex();
        let payload = self.load_object(FileType::Snapshot, ObjectType::Snapshot, &name)?;
        Manifest::decode(&payload, &FileType::Snapshot.describe(&name))
    }
}

impl Repository {
    /// Resolves a snapshot argument: a full id, a unique id prefix, or
    /// `latest`: the newest snapshot passing `filter`, leaving out the
    /// `pre-restore` snapshots a restore makes unless the filter asks for
    /// that tag (so `restore latest` twice does not undo itself).
    pub fn find_snapshot(
        &self,
        spec: &str,
        filter: &crate::snapshot::SnapshotFilter,
    ) -> Result<(SnapshotId, Manifest)> {
        if spec == "latest" {
            return self
                .snapshots()?
                .into_iter()
                .rev()
                .find(|(_, m)| {
                    filter.matches(m)
                        && (!m.tags.iter().any(|t| t == crate::restore::PRE_RESTORE_TAG)
                            || filter.tags.iter().flatten().any(|t| t == crate::restore::PRE_RESTORE_TAG))
                })
                .ok_or_else(|| {
                    Error::NotFound(if filter.is_empty() {
                        "the repository has no snapshots yet (make one with `litevault backup`)".into()
                    } else {
                        "no snapshot matches the given --tag/--host/--db filters (see `litevault snapshots`)".into()
                    })
                });
        }
        let names: Vec<String> = self
            .backend
            .list(FileType::Snapshot)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        let name = unique_prefix(&names, spec, "snapshot")?;
        let id: SnapshotId = name.parse()?;
        Ok((id, self.load_manifest(&id)?))
    }
}

/// The one name in `names` starting with `prefix` (at least 4 hex digits
/// unless it is the whole name).
pub(crate) fn unique_prefix<'a>(names: &'a [String], prefix: &str, what: &str) -> Result<&'a str> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{prefix:?} is not a {what} id: expected hex digits"
        )));
    }
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
    match matches.as_slice() {
        [one] => Ok(one.as_str()),
        [] => Err(Error::NotFound(format!(
            "no {what} with id {prefix} in the repository"
        ))),
        many => Err(Error::InvalidInput(format!(
            "{what} id prefix {prefix} is ambiguous: it matches {} {what}s (give more digits)",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_key_is_never_written_unwrapped() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            kdf: KdfParams::TEST_ONLY_INSECURE,
            ..InitOptions::default()
        };
        let repo = Repository::init_local(dir.path().join("r"), b"pw", &opts).unwrap();
        repo.add_key(b"pw2", KdfParams::TEST_ONLY_INSECURE).unwrap();
        let secret = *repo.key().secret();
        let enc = blake3::derive_key("litevault 2026-11 v1 object encryption key", &secret);
        for e in walkdir::WalkDir::new(dir.path())
            .into_iter()
            .map(std::result::Result::unwrap)
        {
            if e.file_type().is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                for needle in [&secret[..], &enc[..]] {
                    assert!(
                        !bytes.windows(32).any(|w| w == needle),
                        "key material in {}",
                        e.path().display()
                    );
                }
            }
        }
    }
}
