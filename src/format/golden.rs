//! Golden vectors: `repo-format/vectors/` (format 1),
//! `repo-format/vectors-v2/` (format 2) and `repo-format/vectors-v3/`
//! (format 3) each hold a key file, a config, a pack, an index and a
//! snapshot made from documented inputs with seeded randomness; format 2's
//! pack adds a delta blob; format 3's snapshot is a stream's bridge, and it
//! adds a change object (`change`, two commits: a whole page and a page
//! XORed with its previous version) and a level-1 bundle of the stream's
//! first 16 change objects (`bundle`). These tests decode them with the
//! documented password and re-encode them byte for byte, so an accidental
//! format change fails here.
//!
//! Regenerate (only for a deliberate, versioned format change):
//! `LITEVAULT_REGEN_VECTORS=1 cargo test --lib golden`.

use std::path::PathBuf;

use crate::format::config::{ChunkerParams, CompressionParams, Config};
use crate::format::crypto::{deterministic, KdfParams, MasterKey};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::key::{self, KeyMeta};
use crate::format::manifest::{BackupStats, DatabaseInfo, ImageInfo, Manifest, Strategy};
use crate::format::pack::{self, BlobType, DeltaBase, PackWriter};
use crate::format::tree::{TreeEntry, TreeNode, TreeRoot};
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, BlobId, IndexId, RepositoryId};

pub(super) const SEED: &str = "litevault golden vectors, format 1";
pub(super) const PASSWORD: &[u8] = b"litevault golden vector password";

fn dir(version: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(match version {
        1 => "repo-format/vectors",
        2 => "repo-format/vectors-v2",
        _ => "repo-format/vectors-v3",
    })
}

/// A 4096-byte page as SQLite might store it: a header and repeated rows.
pub(super) fn page(n: u8) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0] = 0x0d;
    for (i, b) in p.iter_mut().enumerate().skip(8) {
        const ROW: &[u8] = b"row payload: the quick brown fox jumps";
        *b = if i % 64 < ROW.len() { ROW[i % 64] } else { n };
    }
    p
}

struct Vectors {
    secret: [u8; 32],
    key: Vec<u8>,
    config: Vec<u8>,
    pack: Vec<u8>,
    index: Vec<u8>,
    snapshot: Vec<u8>,
    blobs: Vec<(BlobType, Vec<u8>)>,
    index_payload: Vec<u8>,
    manifest: Manifest,
    config_value: Config,
    /// Format 3: change object 1 of the stream, and the bundle of 1..=16.
    change: Vec<u8>,
    bundle: Vec<u8>,
}

/// The stream of format 3's vectors.
const STREAM: [u8; 32] = [0x5a; 32];

/// Change object `seq` of the vectors' stream: two commits, the first
/// writing page 1 whole, the second page 1 again as its XOR with the
/// first's version and page 2 whole.
pub(super) fn change_object(seq: u64) -> crate::format::change::ChangeObject {
    use crate::format::change::{page_hash, ChangeObject, CommitRecord, Enc, PageEntry, WalMark};
    let one = page(1);
    let two = edited_page();
    let xor: Vec<u8> = one.iter().zip(&two).map(|(a, b)| a ^ b).collect();
    let mut o = ChangeObject {
        stream: STREAM,
        seq,
        page_size: 4096,
        digest_before: [0x11; 32],
        mark: WalMark {
            salts: (0x0102_0304, 0x0506_0708),
            checkpoint_seq: 2,
            frames: 3 * seq,
            checksum: (0x1111_2222, 0x3333_4444),
        },
        commits: vec![
            CommitRecord {
                time_ns: 1_796_000_000_000_000_000 + i64::try_from(seq).unwrap() * 1_000_000,
                db_pages: 1,
                pages: vec![PageEntry {
                    pgno: 1,
                    enc: Enc::Raw,
                    hash: page_hash(&one),
                    data: one.clone(),
                }],
            },
            CommitRecord {
                time_ns: 1_796_000_000_000_500_000 + i64::try_from(seq).unwrap() * 1_000_000,
                db_pages: 2,
                pages: vec![
                    PageEntry {
                        pgno: 1,
                        enc: Enc::Xor,
                        hash: page_hash(&two),
                        data: xor,
                    },
                    PageEntry {
                        pgno: 2,
                        enc: Enc::Raw,
                        hash: page_hash(&page(2)),
                        data: page(2),
                    },
                ],
            },
        ],
    };
    if seq > 1 {
        o.digest_before = change_object(seq - 1).digest_after();
    }
    o
}

/// Page 1 with one row changed: format 2 stores it as a delta against
/// page 1.
fn edited_page() -> Vec<u8> {
    let mut p = page(1);
    p[100..116].copy_from_slice(b"an edited row!!!");
    p
}

fn blobs(version: u8) -> Vec<(BlobType, Vec<u8>)> {
    let mut b = vec![
        (BlobType::Data, page(1)),
        (BlobType::Data, page(2)),
        (BlobType::Data, b"litevault\n".to_vec()),
    ];
    if version >= 2 {
        b.push((BlobType::Data, edited_page()));
    }
    b
}

#[allow(clippy::too_many_lines)]
fn make(version: u8) -> Vectors {
    deterministic::with_seed(SEED, || {
        let master = MasterKey::generate().unwrap();
        let secret = *master.secret().unwrap();
        let meta = KeyMeta {
            created: "2026-11-21T00:00:00Z".into(),
            host: "golden".into(),
            username: "vector".into(),
        };
        let key = key::encode(&master, PASSWORD, KdfParams::TEST_ONLY_INSECURE, &meta).unwrap();

        let mut repo_id = [0u8; 32];
        crate::format::crypto::random_bytes(&mut repo_id).unwrap();
        let repo_id = RepositoryId::from_bytes(repo_id);
        let config_value = Config {
            chunker: if version == 1 {
                ChunkerParams::FORMAT_1
            } else {
                ChunkerParams::DEFAULT
            },
            compression: CompressionParams::DEFAULT,
            ..if version == 1 {
                Config::new_v1(repo_id)
            } else {
                Config {
                    version,
                    ..Config::new(repo_id)
                }
            }
        };
        let config = config_value.seal(&master).unwrap();

        let mut blobs = blobs(version);
        let mut w = PackWriter::new();
        let mut leaf = Vec::new();
        for (i, (ty, data)) in blobs.iter().enumerate() {
            let id = master.blob_id(data);
            if i == 3 {
                let base = DeltaBase {
                    id: master.blob_id(&blobs[0].1),
                    depth: 1,
                };
                let b = pack::seal_blob_against(
                    &master,
                    *ty,
                    id,
                    data,
                    Some(3),
                    Some((base, &blobs[0].1)),
                )
                .unwrap();
                assert_eq!(b.base, Some(base), "the edited page is stored as a delta");
                w.add_sealed(*ty, id, b.compression, b.raw_len, b.base, &b.sealed)
                    .unwrap();
            } else {
                w.add(&master, *ty, id, data, Some(3)).unwrap();
            }
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
        let tree_id = master.blob_id(&tree);
        w.add(&master, BlobType::Tree, tree_id, &tree, Some(3))
            .unwrap();
        blobs.push((BlobType::Tree, tree));
        let (pack_id, pack, packed) = w.finish(&master).unwrap();

        let index_value = IndexFile {
            supersedes: vec![IndexId::from_bytes([0x11; 32])],
            packs: vec![IndexPack {
                id: pack_id,
                sealed_by: crate::format::crypto::SealedBy::Master,
                blobs: packed,
            }],
        };
        let index_payload = index_value.encode();
        let index =
            format::seal_object(&master, ObjectType::Index, &index_payload, Some(3)).unwrap();

        let manifest = manifest_of(&master, &blobs, tree_id, version);
        let snapshot =
            format::seal_object(&master, ObjectType::Snapshot, &manifest.encode(), Some(3))
                .unwrap();
        let seal = |o: &crate::format::change::ChangeObject| {
            format::seal_object(&master, ObjectType::Change, &o.encode(), Some(3)).unwrap()
        };
        let change = seal(&change_object(1));
        let members: Vec<Vec<u8>> = (1..=16).map(|s| seal(&change_object(s))).collect();
        let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
        let bundle = crate::format::change::bundle_bytes(1, 1, &refs);
        Vectors {
            secret,
            key,
            config,
            pack,
            index,
            snapshot,
            blobs,
            index_payload,
            manifest,
            config_value,
            change,
            bundle,
        }
    })
}

/// The manifest of the vectors: its tree root `tree_id` lists `blobs`.
pub(super) fn manifest_of(
    key: &MasterKey,
    blobs: &[(BlobType, Vec<u8>)],
    tree_id: BlobId,
    version: u8,
) -> Manifest {
    let leaf_count = blobs.iter().filter(|(ty, _)| *ty == BlobType::Data).count() as u64;
    let image_hash = {
        let mut h = key.blob_hasher();
        for (ty, d) in blobs {
            if *ty == BlobType::Data {
                h.update(d);
            }
        }
        BlobId::from_bytes(*h.finalize().as_bytes())
    };
    Manifest {
        time: "2026-11-21T09:30:00Z".into(),
        host: "golden".into(),
        username: "vector".into(),
        database: DatabaseInfo {
            name: "app.db".into(),
            path: "/srv/app/app.db".into(),
            path_bytes: None,
            mode: None,
        },
        tags: vec!["db_app".into(), "env_production".into()],
        image: ImageInfo {
            strategy: Strategy::Pages,
            page_size: 4096,
            page_count: 2,
            bytes: 8192,
            hash: image_hash,
            schema_hash: key.blob_id(b"CREATE TABLE t(x)"),
            journal_mode: "wal".into(),
            sqlite_version: "3.50.4".into(),
            quick_check: Some("ok".into()),
            change_counter: 7,
            zeroed_free_pages: 0,
            file: None,
        },
        stats: BackupStats {
            chunks: leaf_count,
            new_chunks: leaf_count,
            new_bytes: 8202,
            added_bytes: 1234,
            duration_ms: 5,
        },
        tree: TreeRoot {
            id: tree_id,
            level: 0,
        },
        continuous: (version >= 3).then(|| crate::format::manifest::Continuous {
            stream: hex::encode(STREAM),
            seq: 0,
            digest: hex::encode([0x11u8; 32]),
            kind: crate::format::manifest::ContinuousKind::Bridge,
            gap: Some("the stream starts".into()),
            wal: crate::format::manifest::WalPosition {
                salts: [0x0102_0304, 0x0506_0708],
                frames: 0,
                checksum: [0, 0],
            },
            time_ns: 1_795_999_999_000_000_000,
        }),
    }
}

fn files(v: &Vectors) -> Vec<(&'static str, &[u8])> {
    let mut out: Vec<(&'static str, &[u8])> = vec![
        ("key", &v.key),
        ("config", &v.config),
        ("pack", &v.pack),
        ("index", &v.index),
        ("snapshot", &v.snapshot),
    ];
    if v.config_value.version >= 3 {
        out.push(("change", &v.change));
        out.push(("bundle", &v.bundle));
    }
    out
}

#[test]
fn golden_vectors_are_reproduced_byte_for_byte() {
    for version in [1, 2, 3] {
        reproduced_byte_for_byte(version);
    }
}

#[test]
fn golden_vectors_decode_with_the_documented_password() {
    for version in [1, 2, 3] {
        decode_with_the_documented_password(version);
    }
}

fn reproduced_byte_for_byte(version: u8) {
    let dir = || dir(version);
    let v = make(version);
    if std::env::var_os("LITEVAULT_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in files(&v) {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
        std::fs::write(
            dir().join("master-secret.hex"),
            format!("{}\n", hex::encode(v.secret)),
        )
        .unwrap();
    }
    for (name, bytes) in files(&v) {
        let stored = std::fs::read(dir().join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir().display()));
        assert!(
            stored == bytes,
            "{}/{name} differs from what this build writes: the on-disk format changed. If deliberate, bump the format version and regenerate (see src/golden.rs)",
            dir().display()
        );
    }
    let secret = std::fs::read_to_string(dir().join("master-secret.hex")).unwrap();
    assert_eq!(secret.trim(), hex::encode(v.secret));
}

fn decode_with_the_documented_password(version: u8) {
    let read = |n: &str| std::fs::read(dir(version).join(n)).unwrap();
    let expected = make(version);

    let key_bytes = read("key");
    let kf = key::parse(&key_bytes, "key").unwrap();
    assert_eq!(kf.kdf, KdfParams::TEST_ONLY_INSECURE);
    let master = kf
        .open(PASSWORD)
        .unwrap()
        .expect("documented password opens the key")
        .key;
    assert_eq!(master.secret(), Some(&expected.secret));
    assert!(kf.open(b"not the password").unwrap().is_none());
    assert_eq!(kf.meta(&master, "key").unwrap().host, "golden");

    let config_bytes = read("config");
    assert_eq!(
        config_bytes[4], version,
        "the config's header is its format"
    );
    let config = Config::from_json(
        &format::open_object(&master, ObjectType::Config, &config_bytes, "config").unwrap(),
        version,
    )
    .unwrap();
    assert_eq!(config, expected.config_value);
    assert_eq!(config.to_json(), expected.config_value.to_json());

    let pack_bytes = read("pack");
    let (packed, by) = pack::parse_header(&master, &pack_bytes, "pack").unwrap();
    assert_eq!(by, crate::format::crypto::SealedBy::Master);
    assert_eq!(packed.len(), expected.blobs.len());
    for (i, (p, (ty, data))) in packed.iter().zip(&expected.blobs).enumerate() {
        assert_eq!(p.entry.ty, *ty);
        let sealed = &pack_bytes[p.offset as usize..(p.offset + p.entry.stored_len) as usize];
        let base = p.entry.base.map(|b| {
            assert_eq!(
                (i, b.id, b.depth),
                (3, master.blob_id(&expected.blobs[0].1), 1)
            );
            expected.blobs[0].1.as_slice()
        });
        assert_eq!(
            &pack::open_blob(&master, by, &p.entry, sealed, base, "blob").unwrap(),
            data
        );
        if base.is_some() {
            assert!(pack::open_blob(
                &master,
                by,
                &p.entry,
                sealed,
                Some(&expected.blobs[1].1),
                "blob"
            )
            .is_err());
        }
    }
    assert_eq!(
        packed.iter().filter(|p| p.entry.base.is_some()).count(),
        usize::from(version >= 2)
    );

    let index_payload =
        format::open_object(&master, ObjectType::Index, &read("index"), "index").unwrap();
    assert_eq!(index_payload, expected.index_payload);
    let index = IndexFile::decode(&index_payload, "index").unwrap();
    assert_eq!(
        index.encode(),
        index_payload,
        "index re-encodes to the same bytes"
    );
    assert_eq!(index.packs[0].id.as_bytes(), &storage_hash(&pack_bytes));
    assert_eq!(index.packs[0].blobs, packed);

    let snap_payload =
        format::open_object(&master, ObjectType::Snapshot, &read("snapshot"), "snapshot").unwrap();
    let manifest = Manifest::decode(&snap_payload, "snapshot").unwrap();
    assert_eq!(manifest, expected.manifest);
    assert_eq!(
        manifest.encode(),
        snap_payload,
        "manifest re-encodes to the same bytes"
    );
    let (_, tree) = expected.blobs.last().unwrap();
    assert_eq!(master.blob_id(tree), manifest.tree.id);
    if version >= 3 {
        decode_changes(&master, &read("change"), &read("bundle"));
    }
}

/// Format 3: the change object and the bundle open, hold what they were
/// made from, chain, and apply.
fn decode_changes(master: &MasterKey, change: &[u8], bundle: &[u8]) {
    use crate::format::change::{decode_bundle, ChangeObject};
    let payload = format::open_object(master, ObjectType::Change, change, "change").unwrap();
    let o = ChangeObject::decode(&payload, "change").unwrap();
    assert_eq!(o, change_object(1));
    assert_eq!(o.encode(), payload);
    let first = o.commits[1].pages[0].apply(Some(&page(1))).unwrap();
    assert_eq!(first, edited_page(), "the XOR page applies to its base");
    assert!(o.commits[1].pages[0].apply(Some(&page(2))).is_none());
    assert_eq!(&bundle[..4], format::MAGIC.as_slice());
    assert_eq!(bundle[5], ObjectType::ChangeBundle as u8);
    let members = decode_bundle(&bundle[format::HEADER_LEN..], 1, 1, "bundle").unwrap();
    let mut digest = [0x11u8; 32];
    for (i, m) in members.iter().enumerate() {
        let p = format::open_object(master, ObjectType::Change, m, "member").unwrap();
        let o = ChangeObject::decode(&p, "member").unwrap();
        assert_eq!(o.seq, i as u64 + 1);
        assert_eq!(o.digest_before, digest, "the members chain");
        digest = o.digest_after();
    }
    assert_eq!(
        crate::format::change::object_name(master, &STREAM, 0, 1).len(),
        64
    );
}
