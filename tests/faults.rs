//! A backend that fails or tears the Nth write, at every N of a workload:
//! no object is ever partial under its final name, the repository stays
//! openable, and the next run succeeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use litevault::backend::faulty::{Fault, FaultPlan, FaultyBackend};
use litevault::backend::local::LocalBackend;
use litevault::format::index::IndexFile;
use litevault::format::pack::{BlobType, PackWriter};
use litevault::testing;
use litevault::{Backend, FileType, InitOptions, KdfParams, LockKind, Repository};

const PW: &[u8] = b"fault test password";

/// init, add a key, take a lock, write two packs, an index, a snapshot.
fn workload(backend: Arc<dyn Backend>) -> litevault::Result<()> {
    let opts = InitOptions {
        kdf: KdfParams::TEST_ONLY_INSECURE,
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, PW, &opts)?;
    litevault::commands::key::add_key(
        &repo,
        b"second",
        KdfParams::TEST_ONLY_INSECURE,
        litevault::commands::key::KeyKind::Full,
    )?;
    write_data(&repo, 0)
}

fn write_data(repo: &Repository, seed: u8) -> litevault::Result<()> {
    let _lock = repo.lock(LockKind::Shared, "backup")?;
    let key = repo.key();
    let mut packs = Vec::new();
    let mut last = None;
    for p in 0..2u8 {
        let mut w = PackWriter::new();
        for i in 0..20u8 {
            let data = vec![seed ^ p ^ i; 2000 + usize::from(i) * 10];
            last = Some(key.blob_id(&data));
            w.add(key, BlobType::Data, key.blob_id(&data), &data, Some(3))?;
        }
        packs.push(testing::save_pack(repo, w)?);
    }
    testing::save_index(
        repo,
        &IndexFile {
            supersedes: vec![],
            packs,
        },
    )?;
    testing::save_manifest(repo, &crate::corruption::manifest(repo, last.unwrap()))?;
    Ok(())
}

/// Every object under its final name is whole (listing it, and, for a
/// directory, walking it: a temporary file is never under a final name);
/// the repository, if it exists, opens and reads back.
fn verify(backend: &Arc<dyn Backend>, dir: Option<&Path>) -> Option<Repository> {
    for ty in FileType::ALL {
        if ty == FileType::Config {
            continue;
        }
        for f in backend.list(ty).unwrap() {
            let bytes = backend.read(ty, &f.name).unwrap();
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                f.name,
                "{ty:?} {} is partial or wrong under its final name",
                f.name
            );
        }
    }
    if let Some(path) = dir {
        for entry in walkdir::WalkDir::new(path).into_iter().map(|e| e.unwrap()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_file()
                && name != "config"
                && name != ".reserve"
                && !name.starts_with(".tmp-")
            {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert_eq!(blake3::hash(&bytes).to_hex().as_str(), name);
            }
        }
    }
    if backend.list(FileType::Config).unwrap().is_empty() {
        assert!(matches!(
            Repository::open(backend.clone(), PW),
            Err(litevault::Error::NotARepository { .. }
                | litevault::Error::RepositoryNotFound { .. })
        ));
        return None;
    }
    let repo = Repository::open(backend.clone(), PW).expect("a repository with a config opens");
    let index = repo.index().expect("index loads");
    for id in index.files() {
        for p in repo.load_index_file(id).unwrap().packs {
            repo.read_pack(&p.id).expect("indexed pack reads");
        }
    }
    Some(repo)
}

/// Fresh storage for one run: a backend, a directory's path (to walk), and
/// what keeps it alive.
pub struct Storage {
    pub backend: Arc<dyn Backend>,
    pub dir: Option<PathBuf>,
    pub _guard: Option<tempfile::TempDir>,
}

/// Runs the workload with each fault at each of its writes, on fresh
/// storage from `fresh`; the storage must stay consistent and the next run
/// must succeed.
pub fn every_fault_at_every_write(fresh: &dyn Fn() -> Storage) {
    let mut faulted = 0;
    for fault in [
        Fault::FailBeforeWrite,
        Fault::Torn { keep: 17 },
        Fault::FailBeforeRename,
        Fault::FailAfterRename,
    ] {
        for nth in 1..=12 {
            let fresh = fresh();
            let (storage, dir) = (&fresh.backend, fresh.dir.as_deref());
            let backend: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
                storage.clone(),
                FaultPlan {
                    nth_write: nth,
                    fault,
                },
            ));
            if workload(backend).is_err() {
                faulted += 1;
            }
            if let Some(repo) = verify(storage, dir) {
                // The next run (no fault) succeeds on what the crash left.
                write_data(&repo, 1)
                    .unwrap_or_else(|e| panic!("{fault:?} at write {nth}: next run failed: {e}"));
                verify(storage, dir).unwrap();
            }
        }
    }
    // The workload makes 9 writes (2 keys, config, 2 locks, 2 packs, index,
    // snapshot): each of them failed once in each of the 4 ways.
    assert_eq!(faulted, 36, "runs that hit their fault");
}

#[test]
fn every_fault_at_every_write_leaves_a_consistent_repository() {
    every_fault_at_every_write(&|| {
        let guard = tempfile::tempdir().unwrap();
        let path = guard.path().join("repo");
        Storage {
            backend: Arc::new(LocalBackend::new(&path)),
            dir: Some(path),
            _guard: Some(guard),
        }
    });
}
