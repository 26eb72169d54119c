//! An open repository: creating and opening it, its config and master key,
//! and the cache of what this process listed and read.
//!
//! A [`Repository`] is opened once per command (a CLI run, a scheduled job,
//! an HTTP request). Snapshot manifests and index files are immutable and
//! named by their hash, so what it lists and reads once is kept for its
//! life, and what it writes or deletes through this layer updates the cache
//! too: a command reads each manifest and each index file at most once.
//! [`Repository::refresh`] forgets the listings (a long-running daemon calls
//! it before each job). The persistent cache across processes
//! ([`OpenOptions::cache_root`]) is a backend wrapper around the storage,
//! below this layer ([`crate::backend::cache`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::index::Index;
use crate::backend::cache::{CacheInfo, CachedBackend};
use crate::backend::counting::CountingBackend;
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, FileInfo, FileType, IoStats};
use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, CompressionParams, Config, DeltaParams};
use crate::format::crypto::{self, KdfParams, MasterKey};
use crate::format::index::IndexFile;
use crate::format::key::{self, KeyMeta, Unlocked};
use crate::format::manifest::Manifest;
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, IndexId, KeyId, RepositoryId, SnapshotId};

/// Options of [`Repository::init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Argon2id parameters of the first key.
    pub kdf: KdfParams,
    /// Chunker parameters (fixed for the repository's life); `None`: the
    /// format's default.
    pub chunker: Option<ChunkerParams>,
    /// Compression of blobs.
    pub compression: CompressionParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Repository format: 2 (delta blobs), or 1 for litevault releases
    /// older than format 2.
    pub version: u8,
    /// Longest delta chain backups write (format 2; 0 writes none).
    pub max_delta_depth: u16,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            version: format::REPOSITORY_VERSION,
            max_delta_depth: DeltaParams::DEFAULT.max_depth,
            kdf: KdfParams::DEFAULT,
            chunker: None,
            compression: CompressionParams::DEFAULT,
            pack_size: Config::DEFAULT_PACK_SIZE,
        }
    }
}

/// Options of [`Repository::open_with`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Root of the local cache of key files, index files and snapshot
    /// manifests (see [`crate::backend::cache`]); `None` for no cache. Each
    /// repository gets `<root>/<repository id>/`.
    pub cache_root: Option<PathBuf>,
}

/// The least space a repository sets aside for `forget` and `prune` to
/// run when its storage is full (see [`Backend::reserve`]); prune sizes
/// it to the index plus this.
pub const RESERVE_MIN: u64 = 1 << 20;

/// What a repository noted for its caller (warnings that did not stop a
/// command); clones share them.
#[derive(Clone, Debug, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn push(&self, note: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(note);
    }

    /// Takes the notes recorded so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Whether commands that only read take a lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockPolicy {
    /// Always: a repository that cannot be written cannot be read.
    #[default]
    Always,
    /// When the repository can be written; a read-only one is read without
    /// a lock (after checking that no exclusive lock is held), and a note
    /// says so.
    IfWritable,
    /// Never (the caller knows nothing prunes meanwhile).
    Never,
}

/// How long taking a lock waits for a conflicting one to go (restic's
/// `--retry-lock`), and what it says meanwhile.
#[derive(Clone)]
pub struct LockWait {
    /// The longest wait; then the lock's holder is the error.
    pub up_to: std::time::Duration,
    /// Told "the repository is locked ... by ...; waiting ..." when the
    /// wait begins and whenever the holder changes.
    pub say: Arc<dyn Fn(&str) + Send + Sync>,
    /// Stops the wait (SIGINT, SIGTERM).
    pub cancel: crate::progress::Cancel,
}

impl std::fmt::Debug for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWait")
            .field("up_to", &self.up_to)
            .finish_non_exhaustive()
    }
}

/// What this process listed and read (see the module docs).
#[derive(Default)]
pub(crate) struct Cache {
    /// The snapshot ids last listed, kept up to date with our own writes.
    pub snapshot_ids: Option<Vec<SnapshotId>>,
    /// Manifests read or written, by id.
    pub manifests: HashMap<SnapshotId, Manifest>,
    /// The index, once loaded.
    pub index: Option<Arc<Index>>,
    /// Index files written since the index was loaded, merged into it on
    /// the next [`Repository::index`] (not while a backup still holds it).
    pub pending_index: Vec<(IndexId, IndexFile)>,
    /// The index files and snapshots listed together with the locks when
    /// the lock was taken (see `lock`), used by the next index load and
    /// snapshot listing instead of listing again.
    pub listed: Listed,
    /// Index files left out of the index because they are damaged, with
    /// why (see [`Repository::damaged_index_files`]).
    pub damaged_index: Vec<(IndexId, String)>,
    /// Snapshots left out of listings because their manifests are damaged.
    pub damaged_snapshots: Vec<(SnapshotId, String)>,
    /// Snapshots read that a write-only key's session sealed.
    pub session_snapshots: std::collections::HashSet<SnapshotId>,
}

/// Listings made under a lock, for the command that holds it.
#[derive(Debug, Default)]
pub(crate) struct Listed {
    /// `index/`, unless already used.
    pub index: Option<Vec<FileInfo>>,
    /// `snapshots/`, unless already used.
    pub snapshots: Option<Vec<FileInfo>>,
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Arc<MasterKey>,
    key_id: KeyId,
    config: Config,
    cache_dir: Option<PathBuf>,
    /// False when the key came from the local cache and the repository has
    /// not yet been seen to list its key file (see `confirm_key`).
    key_confirmed: AtomicBool,
    cache: Mutex<Cache>,
    lock_policy: Mutex<LockPolicy>,
    lock_wait: Mutex<Option<LockWait>>,
    notes: Notes,
    /// What the storage had counted when this handle was made.
    io_base: IoStats,
    /// The storage was full and its reserve was given back, so that this
    /// command could free space (see `lock`).
    reserve_used: AtomicBool,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

/// The config a key opens: a full key decrypts it; a write-only key,
/// which cannot, takes the copy its capability carries once the stored
/// config's hash matches it (SPEC.md 21.2).
fn config_of(unlocked: &Unlocked, config_bytes: &[u8]) -> Result<Config> {
    let json = match &unlocked.capability {
        None => format::open_object(&unlocked.key, ObjectType::Config, config_bytes, "config")?,
        Some(cap) => {
            if storage_hash(config_bytes) != cap.config_hash {
                return Err(Error::damaged(
                    "config",
                    "it is not the config the write-only key was made for (the repository was replaced, or its config changed)",
                ));
            }
            cap.config_json.clone()
        }
    };
    Config::from_json(&json, config_bytes[4])
}

pub(crate) fn check_password(password: &[u8]) -> Result<()> {
    if password.is_empty() {
        return Err(Error::Password(
            "the password is empty: choose a non-empty password".into(),
        ));
    }
    Ok(())
}

impl Repository {
    fn new(backend: Arc<dyn Backend>, key: MasterKey, key_id: KeyId, config: Config) -> Self {
        Self {
            backend,
            key: Arc::new(key),
            key_id,
            config,
            cache_dir: None,
            key_confirmed: AtomicBool::new(true),
            cache: Mutex::new(Cache::default()),
            lock_policy: Mutex::new(LockPolicy::default()),
            lock_wait: Mutex::new(None),
            notes: Notes::default(),
            io_base: IoStats::default(),
            reserve_used: AtomicBool::new(false),
        }
    }

    /// Creates a new repository in `backend` with one key for `password`.
    ///
    /// Writes the layout, then the key file, then the config: a repository
    /// exists once its config does.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: &InitOptions) -> Result<Self> {
        Self::init_with_object_lock(backend, password, opts, None)
    }

    /// [`Repository::init`] in an S3 bucket whose default Object Lock
    /// retention is set to `object_lock` first (once the location is known
    /// to hold no repository), so that every object the repository ever
    /// writes is kept that long (SPEC.md 11.2).
    pub fn init_with_object_lock(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &InitOptions,
        object_lock: Option<crate::backend::object_lock::Retention>,
    ) -> Result<Self> {
        check_password(password)?;
        opts.kdf.validate().map_err(|m| Error::option("kdf", m))?;
        let mut repo_id = [0u8; 32];
        crypto::random_bytes(&mut repo_id)?;
        let id = RepositoryId::from_bytes(repo_id);
        let format_default = match opts.version {
            1 => Config::new_v1(id),
            _ => Config::new(id),
        };
        let config = Config {
            chunker: opts.chunker.unwrap_or(format_default.chunker),
            compression: opts.compression,
            pack_size: opts.pack_size,
            ..match opts.version {
                1 => Config::new_v1(id),
                v @ (2..=4) => Config {
                    version: v,
                    delta: Some(DeltaParams {
                        max_depth: opts.max_delta_depth,
                    }),
                    ..Config::new(id)
                },
                v => {
                    return Err(Error::option(
                        "repository_version",
                        format!("repository format {v} is not 1, 2, 3 or 4"),
                    ))
                }
            }
        };
        config
            .chunker
            .validate()
            .map_err(|m| Error::option("chunker", m))?;
        if !(0..=22).contains(&config.compression.zstd_level) {
            return Err(Error::option(
                "compression_level",
                format!(
                    "zstd level {} is outside 0..=22",
                    config.compression.zstd_level
                ),
            ));
        }
        if config.max_delta_depth() > crate::format::pack::MAX_DELTA_DEPTH {
            return Err(Error::option(
                "max_delta_depth",
                format!(
                    "delta depth {} exceeds the {} a chain may have",
                    config.max_delta_depth(),
                    crate::format::pack::MAX_DELTA_DEPTH
                ),
            ));
        }
        if !Config::PACK_SIZE_RANGE.contains(&config.pack_size) {
            return Err(Error::option(
                "pack_size",
                format!(
                    "pack size {} bytes is outside {}..={} bytes",
                    config.pack_size,
                    Config::PACK_SIZE_RANGE.start(),
                    Config::PACK_SIZE_RANGE.end()
                ),
            ));
        }
        if let Some(r) = object_lock {
            if r.days == 0 {
                return Err(Error::option(
                    "object_lock",
                    "a retention of 0 days keeps nothing: give at least 1",
                ));
            }
            backend.set_object_lock(r)?;
        }
        backend.create()?;
        let key = MasterKey::generate()?;
        let key_bytes = key::encode(&key, password, opts.kdf, &KeyMeta::now())?;
        let key_id = KeyId::from_bytes(storage_hash(&key_bytes));
        backend.write(FileType::Key, &key_id.to_hex(), &key_bytes)?;
        let config_bytes = config.seal(&key)?;
        backend.write(FileType::Config, "config", &config_bytes)?;
        // Room for a full repository's forget and prune (best effort).
        let _ = backend.reserve(RESERVE_MIN);
        Ok(Self::new(backend, key, key_id, config))
    }

    /// Creates a repository in a local directory.
    pub fn init_local(path: impl AsRef<Path>, password: &[u8], opts: &InitOptions) -> Result<Self> {
        let local = Arc::new(LocalBackend::new(path.as_ref()));
        Self::init(Arc::new(CountingBackend::new(local)), password, opts)
    }

    /// Opens the repository in `backend` with `password`. Writes nothing.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self> {
        Self::open_with(backend, password, &OpenOptions::default())
    }

    /// Opens the repository in `backend` with `password` and `opts`.
    /// Writes nothing to the storage.
    ///
    /// With a cache, the key files are served from it when this config was
    /// seen before (the cache remembers which repository a config object
    /// belongs to), so an unchanged repository costs one listing of `keys/`
    /// and one read of `config` to open.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &OpenOptions,
    ) -> Result<Self> {
        if let Some(root) = &opts.cache_root {
            if let Some(repo) = Self::open_cached(&backend, root, password) {
                return Ok(repo);
            }
        }
        let config_bytes = match backend.read(FileType::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotARepository {
                    location: backend.location(),
                    reason: "it has no `config` file".into(),
                })
            }
            Err(e) => return Err(e),
        };
        format::check_header(&config_bytes, ObjectType::Config, "config")?;
        let remembered = opts.cache_root.as_deref().and_then(|root| {
            let id = CachedBackend::repository_for_config(root, &config_bytes)?;
            let cached: Arc<dyn Backend> =
                Arc::new(CachedBackend::new(backend.clone(), root.join(&id)));
            Some((id, cached))
        });
        let unlocking = remembered.as_ref().map_or(&backend, |(_, b)| b);
        let (unlocked, key_id, key_bytes) = Self::unlock_key(unlocking.as_ref(), password)?;
        let config = config_of(&unlocked, &config_bytes)?;
        let key = unlocked.key;
        let Some(root) = &opts.cache_root else {
            return Ok(Self::new(backend, key, key_id, config));
        };
        let id = config.id.to_hex();
        CachedBackend::remember_location(root, &backend.location(), &id, &config_bytes);
        let backend = match remembered {
            Some((known, cached)) if known == id => cached,
            _ => {
                CachedBackend::remember_config(root, &config_bytes, &id);
                let cached = CachedBackend::new(backend, root.join(&id));
                // The key file just read, so the next open needs no GET.
                cached.insert(FileType::Key, &key_id.to_hex(), &key_bytes);
                Arc::new(cached)
            }
        };
        let mut repo = Self::new(backend, key, key_id, config);
        repo.cache_dir = Some(root.join(id));
        Ok(repo)
    }

    /// Opens the repository from what the cache under `root` holds for its
    /// location (its config and a key file this password opens), making no
    /// request; `None` when the cache cannot. The key is confirmed by the
    /// next listing (see `confirm_key`): until then the repository may have
    /// removed that key file, or been replaced.
    fn open_cached(backend: &Arc<dyn Backend>, root: &Path, password: &[u8]) -> Option<Self> {
        let location = backend.location();
        let (id, config_bytes) = CachedBackend::location_config(root, &location)?;
        let dir = root.join(&id);
        let keys = std::fs::read_dir(dir.join(FileType::Key.dir())).ok()?;
        for e in keys.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let object = FileType::Key.describe(&name);
            let opened = format::verify_name(&bytes, &name, &object)
                .and_then(|()| key::parse(&bytes, &object)?.open(password));
            let Ok(Some(unlocked)) = opened else {
                continue;
            };
            let (Ok(config), Ok(key_id)) = (config_of(&unlocked, &config_bytes), name.parse())
            else {
                continue;
            };
            let key = unlocked.key;
            if config.id.to_hex() != id {
                continue;
            }
            let cached: Arc<dyn Backend> =
                Arc::new(CachedBackend::new(backend.clone(), dir.clone()));
            let mut repo = Self::new(cached, key, key_id, config);
            repo.cache_dir = Some(dir);
            repo.key_confirmed = AtomicBool::new(false);
            return Some(repo);
        }
        None
    }

    /// True once the key file this repository was opened with has been
    /// seen listed in the repository.
    pub(crate) fn key_confirmed(&self) -> bool {
        self.key_confirmed.load(Ordering::Relaxed)
    }

    /// Checks a listing of `keys/` for the key this repository was opened
    /// with. A key opened from the local cache that the repository no
    /// longer lists (it was removed, or the repository replaced) is an
    /// error, and the cache forgets it and the location.
    pub(crate) fn check_key_listed(&self, keys: &[FileInfo]) -> Result<()> {
        let name = self.key_id.to_hex();
        if keys.iter().any(|f| f.name == name) {
            self.key_confirmed.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(dir) = &self.cache_dir {
            let _ = std::fs::remove_file(dir.join(FileType::Key.dir()).join(&name));
            if let Some(root) = dir.parent() {
                CachedBackend::forget_location(root, &self.location());
            }
        }
        Err(Error::KeyGone {
            location: self.location(),
            key: self.key_id.short(),
        })
    }

    /// Lists `ty`, confirming the key first if the cache opened it (in the
    /// same request where the storage can list two types at once).
    pub(crate) fn list_confirmed(&self, ty: FileType) -> Result<Vec<FileInfo>> {
        if self.key_confirmed() || ty == FileType::Key {
            let listed = self.backend.list(ty)?;
            if ty == FileType::Key && !self.key_confirmed() {
                self.check_key_listed(&listed)?;
            }
            return Ok(listed);
        }
        if self.backend.lists_together() {
            let mut lists = self.backend.list_many(&[FileType::Key, ty])?;
            self.check_key_listed(&lists[0])?;
            return Ok(lists.pop().expect("two listings"));
        }
        self.confirm_key()?;
        self.backend.list(ty)
    }

    /// Confirms the key by listing `keys/`, if the cache opened it.
    pub(crate) fn confirm_key(&self) -> Result<()> {
        if self.key_confirmed() {
            return Ok(());
        }
        self.check_key_listed(&self.backend.list(FileType::Key)?)
    }

    /// Opens a repository in a local directory.
    pub fn open_local(path: impl AsRef<Path>, password: &[u8]) -> Result<Self> {
        let local = Arc::new(LocalBackend::open(path.as_ref())?);
        Self::open(Arc::new(CountingBackend::new(local)), password)
    }

    /// Tries every key file with the password; returns the master key, the
    /// key file's id and its bytes.
    fn unlock_key(backend: &dyn Backend, password: &[u8]) -> Result<(Unlocked, KeyId, Vec<u8>)> {
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
                format::verify_name(&bytes, &f.name, &object)?;
                let key = key::parse(&bytes, &object)?.open(password)?;
                Ok(key.map(|k| (k, bytes)))
            });
            match attempt {
                Ok(Some((k, bytes))) => return Ok((k, f.name.parse()?, bytes)),
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

    /// The master key, shared (for threads that outlive a borrow).
    pub(crate) fn key_arc(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// The key file this repository was opened with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub(crate) fn set_key_id(&mut self, id: KeyId) {
        self.key_id = id;
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The location, for messages (never holds secrets).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Requests made to the storage since this repository was opened
    /// (opening included; for a [`Repository::fresh`] handle, since it was
    /// made), and reads the local cache answered; zero for a backend that
    /// does not count.
    pub fn io_stats(&self) -> IoStats {
        self.backend
            .io_stats()
            .unwrap_or_default()
            .since(&self.io_base)
    }

    /// The cached sealed blobs, when there is a local cache.
    pub(crate) fn blob_cache(&self) -> Option<super::blob_cache::BlobCache> {
        self.cache_dir
            .as_deref()
            .map(super::blob_cache::BlobCache::new)
    }

    /// What the local cache holds, when there is one.
    pub fn cache_info(&self) -> Option<CacheInfo> {
        self.cache_dir.as_deref().map(CachedBackend::info)
    }

    /// Another handle on this open repository for a new command: the same
    /// storage and unlocked key (no password, no key derivation), nothing
    /// listed yet, no notes. A long-running process (the service) unlocks
    /// each repository once and starts every operation from one of these.
    #[must_use]
    pub fn fresh(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            key: Arc::clone(&self.key),
            key_id: self.key_id,
            config: self.config.clone(),
            cache_dir: self.cache_dir.clone(),
            key_confirmed: AtomicBool::new(self.key_confirmed()),
            cache: Mutex::new(Cache::default()),
            lock_policy: Mutex::new(self.lock_policy()),
            lock_wait: Mutex::new(self.lock_wait()),
            notes: Notes::default(),
            io_base: self.backend.io_stats().unwrap_or_default(),
            reserve_used: AtomicBool::new(false),
        }
    }

    /// Forgets what was listed, so the next listing sees other processes'
    /// changes. Decoded objects are kept: they are immutable.
    pub fn refresh(&self) {
        let mut c = self.cache();
        c.snapshot_ids = None;
        c.index = None;
        c.pending_index.clear();
        c.listed = Listed::default();
    }

    /// True once this command gave the storage's reserve back to write
    /// its exclusive lock (the storage was full).
    pub fn reserve_used(&self) -> bool {
        self.reserve_used.load(Ordering::Relaxed)
    }

    pub(crate) fn set_reserve_used(&self) {
        self.reserve_used.store(true, Ordering::Relaxed);
    }

    /// Whether commands that only read take a lock.
    pub fn set_lock_policy(&self, policy: LockPolicy) {
        *self
            .lock_policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    /// Whether taking a lock waits for a conflicting one to go, and how
    /// long (see [`LockWait`]); none by default.
    pub fn set_lock_wait(&self, wait: Option<LockWait>) {
        *self
            .lock_wait
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = wait;
    }

    /// The lock wait set, if any.
    pub fn lock_wait(&self) -> Option<LockWait> {
        self.lock_wait
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The lock policy (see [`LockPolicy`]).
    pub fn lock_policy(&self) -> LockPolicy {
        *self
            .lock_policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records something a caller should be told (a warning that did not
    /// stop the command).
    pub(crate) fn note(&self, note: String) {
        self.notes.push(note);
    }

    /// Takes the notes recorded so far.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes.take()
    }

    /// A handle on this repository's notes that outlives it (a caller
    /// that reports them once its command is done).
    pub fn notes(&self) -> Notes {
        self.notes.clone()
    }

    pub(crate) fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        repo.write_key(b"pw2", KdfParams::TEST_ONLY_INSECURE)
            .unwrap();
        let secret = *repo.key().secret().unwrap();
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
