//! Flipping any byte of any stored object is detected when it is read, and
//! the error names the object.

use std::path::{Path, PathBuf};

use litevault::format::index::IndexFile;
use litevault::format::manifest::{BackupStats, DatabaseInfo, ImageInfo, Manifest, Strategy};
use litevault::format::pack::{BlobType, PackWriter};
use litevault::format::tree::{TreeEntry, TreeNode, TreeRoot};
use litevault::testing;
use litevault::{InitOptions, KdfParams, LockKind, PackId, Repository, SnapshotId};

pub const PW: &[u8] = b"flip test password";

pub struct Built {
    pub path: PathBuf,
    pub pack: PackId,
    pub snapshot: SnapshotId,
}

/// A small but complete repository: config, key, one pack with data and
/// tree blobs, an index, a snapshot.
pub fn build(dir: &Path) -> Built {
    let path = dir.join("repo");
    let opts = InitOptions {
        kdf: KdfParams::TEST_ONLY_INSECURE,
        ..InitOptions::default()
    };
    let repo = Repository::init_local(&path, PW, &opts).unwrap();
    let key = repo.key();
    let page: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut w = PackWriter::new();
    let mut entries = Vec::new();
    for d in [&page, &noise] {
        let id = key.blob_id(d);
        w.add(key, BlobType::Data, id, d, Some(3)).unwrap();
        entries.push(TreeEntry {
            id,
            len: d.len() as u64,
        });
    }
    let tree = TreeNode { level: 0, entries }.encode();
    let tree_id = key.blob_id(&tree);
    w.add(key, BlobType::Tree, tree_id, &tree, Some(3)).unwrap();
    let ip = testing::save_pack(&repo, w).unwrap();
    let pack = ip.id;
    testing::save_index(
        &repo,
        &IndexFile {
            supersedes: vec![],
            packs: vec![ip],
        },
    )
    .unwrap();
    let snapshot = testing::save_manifest(&repo, &manifest(&repo, tree_id)).unwrap();
    Built {
        path,
        pack,
        snapshot,
    }
}

pub fn manifest(repo: &Repository, tree: litevault::BlobId) -> Manifest {
    Manifest {
        time: "2026-11-21T10:00:00Z".into(),
        host: "test".into(),
        username: "tester".into(),
        database: DatabaseInfo {
            name: "app.db".into(),
            path: "/srv/app.db".into(),
            path_bytes: None,
            mode: None,
        },
        tags: vec!["env_production".into()],
        image: ImageInfo {
            strategy: Strategy::Pages,
            page_size: 4096,
            page_count: 1,
            bytes: 4096,
            hash: repo.key().blob_id(b"image"),
            schema_hash: repo.key().blob_id(b"schema"),
            journal_mode: "wal".into(),
            sqlite_version: "3".into(),
            quick_check: None,
            change_counter: 1,
            zeroed_free_pages: 0,
            file: None,
        },
        stats: BackupStats::default(),
        tree: TreeRoot { id: tree, level: 0 },
        continuous: None,
    }
}

fn only_file(dir: &Path) -> (PathBuf, String) {
    let entry = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file())
        .expect("one file");
    (
        entry.path().to_path_buf(),
        entry.file_name().to_string_lossy().into_owned(),
    )
}

/// Flips each byte of `file` in turn and checks `read` reports damage that
/// names `object`.
fn flip_every_byte<T>(file: &Path, object: &str, read: impl Fn() -> litevault::Result<T>) {
    let good = std::fs::read(file).unwrap();
    assert!(read().is_ok(), "{object} reads before any flip");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(file, &bad).unwrap();
        match read() {
            Ok(_) => panic!("flipping byte {i} of {object} went unnoticed"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(object),
                    "flip at byte {i}: error {msg:?} does not name {object}"
                );
                assert!(!msg.contains('\n'), "{msg}");
            }
        }
    }
    std::fs::write(file, &good).unwrap();
    assert!(read().is_ok(), "{object} reads again once restored");
}

#[test]
fn flipped_config_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    flip_every_byte(&b.path.join("config"), "config", || {
        Repository::open_local(&b.path, PW)
    });
}

#[test]
fn flipped_key_file_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let (file, name) = only_file(&b.path.join("keys"));
    flip_every_byte(&file, &format!("keys/{name}"), || {
        Repository::open_local(&b.path, PW)
    });
}

#[test]
fn flipped_index_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let (file, name) = only_file(&b.path.join("index"));
    // A fresh process each time: one command reads an index file once.
    // The damaged file is left out of the index (the rest of the
    // repository stays usable) and named.
    flip_every_byte(&file, &format!("index/{name}"), || {
        let r = Repository::open_local(&b.path, PW)?;
        r.index()?;
        match r.damaged_index_files().pop() {
            Some((id, reason)) => Err(litevault::Error::Damaged {
                object: format!("index/{}", id.to_hex()),
                reason,
            }),
            None => Ok(()),
        }
    });
}

#[test]
fn flipped_snapshot_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let (file, name) = only_file(&b.path.join("snapshots"));
    // A fresh process each time: one command reads a manifest once.
    flip_every_byte(&file, &format!("snapshots/{name}"), || {
        Repository::open_local(&b.path, PW).and_then(|r| r.load_manifest(&b.snapshot))
    });
}

#[test]
fn flipped_pack_byte_is_detected_reading_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let repo = Repository::open_local(&b.path, PW).unwrap();
    let name = b.pack.to_hex();
    let file = b.path.join("data").join(&name[..2]).join(&name);
    flip_every_byte(&file, &format!("data/{}/{name}", &name[..2]), || {
        repo.read_pack(&b.pack)
    });
}

#[test]
fn flipped_pack_header_or_blob_byte_is_detected_by_range_reads() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let repo = Repository::open_local(&b.path, PW).unwrap();
    let name = b.pack.to_hex();
    let object = format!("data/{}/{name}", &name[..2]);
    let file = b.path.join("data").join(&name[..2]).join(&name);
    let good = std::fs::read(&file).unwrap();
    let (blobs, _) = repo.read_pack_header(&b.pack).unwrap();
    let header_start = blobs
        .iter()
        .map(|b| b.offset + b.entry.stored_len)
        .max()
        .unwrap() as usize;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        std::fs::write(&file, &bad).unwrap();
        let err = if i < 6 || i >= header_start {
            repo.read_pack_header(&b.pack).map(|_| ()).unwrap_err()
        } else {
            let blob = blobs
                .iter()
                .find(|b| {
                    (b.offset as usize..(b.offset + b.entry.stored_len) as usize).contains(&i)
                })
                .unwrap();
            repo.read_blob(&blob.entry.id).map(|_| ()).unwrap_err()
        };
        assert!(err.to_string().contains(&object), "byte {i}: {err}");
    }
    std::fs::write(&file, &good).unwrap();
}

#[test]
fn garbage_lock_is_reported_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(dir.path());
    let repo = Repository::open_local(&b.path, PW).unwrap();
    let guard = repo.lock(LockKind::Shared, "test").unwrap();
    let (file, _) = only_file(&b.path.join("locks"));
    let good = std::fs::read(&file).unwrap();
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&file, &bad).unwrap();
        let locks = repo.locks().unwrap();
        assert!(locks[0].record.is_none(), "flip at {i} unnoticed");
        assert!(locks[0].stale.as_deref().unwrap().contains("unreadable"));
    }
    std::fs::write(&file, &good).unwrap();
    drop(guard);
}
