//! Golden vectors of format 4 (`repo-format/vectors-v4/`, SPEC.md 16 and
//! 21): a full key file, a config, a write-only key file, and what one
//! write-only session wrote: a pack, an index file listing it, a snapshot,
//! a change object and a lock. Made from documented inputs with seeded randomness; the
//! tests open them with the documented passwords, check what each key can
//! and cannot open, and re-encode them byte for byte.
//!
//! Regenerate (only for a deliberate, versioned format change):
//! `LITEVAULT_REGEN_VECTORS=1 cargo test --lib golden`.

use std::path::PathBuf;

use super::golden::{change_object, manifest_of, page, PASSWORD, SEED};
use crate::error::Error;
use crate::format::config::Config;
use crate::format::crypto::{deterministic, KdfParams, MasterKey, SealedBy};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::key::{self, KeyMeta};
use crate::format::lock::LockRecord;
use crate::format::manifest::Manifest;
use crate::format::pack::{self, BlobType, PackWriter};
use crate::format::recipient::Capability;
use crate::format::tree::{TreeEntry, TreeNode};
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, IndexId, RepositoryId};

/// The write-only key file's password.
const WRITE_ONLY_PASSWORD: &[u8] = b"litevault golden write-only password";

/// The lock record of the vectors.
const LOCK: &str = r#"{"host":"golden","pid":4242,"username":"vector","command":"backup","exclusive":false,"created":"2026-12-07T09:30:00Z","refreshed":"2026-12-07T09:30:00Z"}"#;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("repo-format/vectors-v4")
}

struct Vectors {
    secret: [u8; 32],
    files: Vec<(&'static str, Vec<u8>)>,
    blobs: Vec<(BlobType, Vec<u8>)>,
    index_payload: Vec<u8>,
    manifest: Manifest,
    config: Config,
}

#[allow(clippy::too_many_lines)]
fn make() -> Vectors {
    deterministic::with_seed(SEED, || {
        let master = MasterKey::generate().unwrap();
        let secret = *master.secret().unwrap();
        let meta = KeyMeta {
            created: "2026-12-07T00:00:00Z".into(),
            host: "golden".into(),
            username: "vector".into(),
        };
        let full_key =
            key::encode(&master, PASSWORD, KdfParams::TEST_ONLY_INSECURE, &meta).unwrap();
        let mut repo_id = [0u8; 32];
        crate::format::crypto::random_bytes(&mut repo_id).unwrap();
        let config = Config {
            version: 4,
            ..Config::new(RepositoryId::from_bytes(repo_id))
        };
        let config_bytes = config.seal(&master).unwrap();
        let capability = Capability {
            config_hash: storage_hash(&config_bytes),
            config_json: config.to_json(),
        };
        let write_only_key = key::encode_write_only(
            &master,
            WRITE_ONLY_PASSWORD,
            KdfParams::TEST_ONLY_INSECURE,
            &meta,
            &capability,
        )
        .unwrap();
        let cap = master
            .capability(&capability.config_hash, &capability.config_json)
            .unwrap();
        let (wo, _) = MasterKey::from_capability(&cap).unwrap().unwrap();

        let mut blobs = vec![
            (BlobType::Data, page(1)),
            (BlobType::Data, page(2)),
            (BlobType::Data, b"litevault\n".to_vec()),
        ];
        let mut w = PackWriter::new();
        let mut leaf = Vec::new();
        for (ty, data) in &blobs {
            let id = wo.blob_id(data);
            w.add(&wo, *ty, id, data, Some(3)).unwrap();
            leaf.push(TreeEntry {
                id,
                len: data.len() as u64,
            });
        }
        let tree = TreeNode {
            level: 0,
            entries: leaf,
        }
        .encode();
        let tree_id = wo.blob_id(&tree);
        w.add(&wo, BlobType::Tree, tree_id, &tree, Some(3)).unwrap();
        blobs.push((BlobType::Tree, tree));
        let (pack_id, pack, packed) = w.finish(&wo).unwrap();

        let index_payload = IndexFile {
            supersedes: vec![IndexId::from_bytes([0x11; 32])],
            packs: vec![IndexPack {
                id: pack_id,
                sealed_by: wo.sealed_by(),
                blobs: packed,
            }],
        }
        .encode_version(format::OBJECT_VERSION_4);
        // A write-only key's index file ends in 32 zero bytes where a full
        // key's has its tag.
        assert!(wo.index_tag(&index_payload).is_none());
        let mut index_payload = index_payload;
        index_payload.extend_from_slice(&[0; 32]);
        let index =
            format::seal_stored(&wo, ObjectType::Index, 4, &index_payload, Some(3)).unwrap();
        let manifest = manifest_of(&wo, &blobs, tree_id, 4);
        let snapshot =
            format::seal_stored(&wo, ObjectType::Snapshot, 4, &manifest.encode(), Some(3)).unwrap();
        let change = format::seal_stored(
            &wo,
            ObjectType::Change,
            4,
            &change_object(1).encode(),
            Some(3),
        )
        .unwrap();
        let lock: LockRecord = serde_json::from_str(LOCK).unwrap();
        let (_, lock) = lock.encode(&wo, 4).unwrap();
        Vectors {
            secret,
            files: vec![
                ("key", full_key),
                ("config", config_bytes),
                ("write-only-key", write_only_key),
                ("pack", pack),
                ("index", index),
                ("snapshot", snapshot),
                ("change", change),
                ("lock", lock),
            ],
            blobs,
            index_payload,
            manifest,
            config,
        }
    })
}

#[test]
fn golden_vectors_v4_are_reproduced_byte_for_byte() {
    let v = make();
    if std::env::var_os("LITEVAULT_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in &v.files {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
        std::fs::write(
            dir().join("master-secret.hex"),
            format!("{}\n", hex::encode(v.secret)),
        )
        .unwrap();
    }
    for (name, bytes) in &v.files {
        let stored = std::fs::read(dir().join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir().display()));
        assert!(
            &stored == bytes,
            "{}/{name} differs from what this build writes: the on-disk format changed. If deliberate, bump the format version and regenerate (see src/format/golden_v4.rs)",
            dir().display()
        );
    }
    let secret = std::fs::read_to_string(dir().join("master-secret.hex")).unwrap();
    assert_eq!(secret.trim(), hex::encode(v.secret));
}

#[test]
fn golden_vectors_v4_open_with_the_documented_passwords_and_only_where_they_should() {
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let expected = make();

    let full_bytes = read("key");
    let full = key::parse(&full_bytes, "key").unwrap();
    assert!(!full.write_only);
    let master = full.open(PASSWORD).unwrap().expect("opens").key;
    assert_eq!(master.secret(), Some(&expected.secret));

    let config_bytes = read("config");
    assert_eq!(config_bytes[4], 4, "the config's header is its format");
    let json = format::open_object(&master, ObjectType::Config, &config_bytes, "config").unwrap();
    assert_eq!(Config::from_json(&json, 4).unwrap(), expected.config);

    let wo_bytes = read("write-only-key");
    assert_eq!(&wo_bytes[..6], b"LVLT\x02\x02");
    let wo_file = key::parse(&wo_bytes, "write-only-key").unwrap();
    assert!(wo_file.write_only);
    assert!(wo_file.open(PASSWORD).unwrap().is_none());
    let opened = wo_file.open(WRITE_ONLY_PASSWORD).unwrap().expect("opens");
    let wo = opened.key;
    let cap = opened
        .capability
        .expect("a write-only key carries a capability");
    assert!(wo.is_write_only() && wo.secret().is_none());
    assert_eq!(cap.config_hash, storage_hash(&config_bytes));
    assert_eq!(cap.config_json, expected.config.to_json());
    assert_eq!(wo_file.meta(&master, "k").unwrap().host, "golden");
    assert_eq!(wo_file.meta(&wo, "k").unwrap().host, "golden");
    assert!(matches!(
        format::open_object(&wo, ObjectType::Config, &config_bytes, "config"),
        Err(Error::WriteOnly { .. })
    ));
    // Both keys name blobs alike: write-only backups deduplicate.
    assert_eq!(wo.blob_id(b"x"), master.blob_id(b"x"));
    assert_eq!(wo.chunker_key(), master.chunker_key());

    let pack_bytes = read("pack");
    assert_eq!(&pack_bytes[..6], b"LVLT\x02\x06");
    let (packed, by) = pack::parse_header(&master, &pack_bytes, "pack").unwrap();
    let SealedBy::Session(epk) = by else {
        panic!("a write-only session's pack")
    };
    assert_eq!(
        &pack_bytes[pack_bytes.len() - 36..pack_bytes.len() - 4],
        &epk
    );
    assert!(matches!(
        pack::parse_header(&wo, &pack_bytes, "pack"),
        Err(Error::WriteOnly { .. })
    ));
    assert_eq!(packed.len(), expected.blobs.len());
    for (p, (ty, data)) in packed.iter().zip(&expected.blobs) {
        assert_eq!(p.entry.ty, *ty);
        let sealed = &pack_bytes[p.offset as usize..(p.offset + p.entry.stored_len) as usize];
        assert_eq!(
            &pack::open_blob(&master, by, &p.entry, sealed, None, "blob").unwrap(),
            data
        );
        assert!(pack::open_blob(&master, SealedBy::Master, &p.entry, sealed, None, "b").is_err());
        assert!(pack::open_blob(&wo, by, &p.entry, sealed, None, "b").is_err());
    }

    for k in [&master, &wo] {
        let payload = format::open_object(k, ObjectType::Index, &read("index"), "index").unwrap();
        assert_eq!(payload, expected.index_payload);
        let (body, tag) = payload.split_at(payload.len() - 32);
        assert_eq!(tag, [0; 32], "written by a write-only key");
        assert_ne!(master.index_tag(body), Some([0; 32]));
        let index = IndexFile::decode_version(body, "index", 2).unwrap();
        assert_eq!(index.encode_version(2), body, "re-encodes");
        assert_eq!(index.packs[0].sealed_by, by);
        assert_eq!(index.packs[0].blobs, packed);
        assert_eq!(index.packs[0].id.as_bytes(), &storage_hash(&pack_bytes));
        let lock_bytes = read("lock");
        let name = hex::encode(storage_hash(&lock_bytes));
        let lock = LockRecord::decode(k, &lock_bytes, &name, "lock").unwrap();
        assert_eq!(serde_json::to_string(&lock).unwrap(), LOCK);
    }

    let snapshot = read("snapshot");
    assert_eq!(&snapshot[6..38], &epk, "the session that wrote it");
    let payload = format::open_object(&master, ObjectType::Snapshot, &snapshot, "s").unwrap();
    let manifest = Manifest::decode(&payload, "snapshot").unwrap();
    assert_eq!(manifest, expected.manifest);
    assert_eq!(manifest.encode(), payload, "re-encodes");
    assert!(matches!(
        format::open_object(&wo, ObjectType::Snapshot, &snapshot, "s"),
        Err(Error::WriteOnly { .. })
    ));

    let change = read("change");
    assert_eq!(&change[..6], b"LVLT\x02\x0a");
    assert_eq!(&change[6..38], &epk, "the session that wrote it");
    let payload = format::open_object(&master, ObjectType::Change, &change, "c").unwrap();
    let o = crate::format::change::ChangeObject::decode(&payload, "change").unwrap();
    assert_eq!(o, change_object(1));
    assert_eq!(o.encode(), payload, "re-encodes");
    assert!(matches!(
        format::open_object(&wo, ObjectType::Change, &change, "c"),
        Err(Error::WriteOnly { .. })
    ));
}
