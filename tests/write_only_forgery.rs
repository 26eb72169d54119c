//! What a compromised production host holding a write-only key can forge
//! (SPEC.md 21.4): index files, packs whose headers list blobs it never
//! stored, snapshots dated anywhere. None of it may make the trusted host,
//! with the full key, lose data or take a forgery for its own.

use crate::backup::dump as content;
use crate::util::{workload, Env};
use crate::write_only::{add_write_only, as_key};

/// The repository opened in this process with a write-only key, as a
/// compromised host would.
fn as_host(env: &Env, password: &[u8]) -> litevault::Repository {
    let location = litevault::Location::parse(env.repo.to_str().unwrap()).unwrap();
    let backend = location
        .open(&litevault::BackendOptions::default())
        .unwrap();
    litevault::Repository::open(backend, password).unwrap()
}

/// Restores every snapshot the full key lists; returns each content.
fn restore_all(env: &Env) -> Vec<Vec<String>> {
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let mut restored = Vec::new();
    for snap in json.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        let out = env.dir.path().join(format!("{}.db", &id[..8]));
        env.run(&["restore", id, "--target", out.to_str().unwrap()])
            .ok();
        restored.push(content(&out));
    }
    restored
}

#[test]
fn index_files_a_write_only_key_forges_never_make_a_full_key_lose_data() {
    use litevault::format::index::{IndexFile, IndexPack};
    use litevault::repo::testing;
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    workload::create(&db, 2, 6);
    env.run(&["backup", db.to_str().unwrap()]).ok();
    let full_state = content(&db);
    let wo = add_write_only(&env, "wo", "wo password\n");
    workload::mutate(&db, 1, 6);
    let stored_by_host: serde_json::Value =
        serde_json::from_str(as_key(&env, &wo, &["backup", "--json", db.to_str().unwrap()]).ok())
            .unwrap();
    let wo_state = content(&db);

    // A compromised host opens the repository with its write-only key and
    // writes index files: one retiring every index file there is, one
    // listing blobs of the write-only pack at wrong places in the full
    // key's pack, one in a pack that does not exist.
    let host = as_host(&env, b"wo password");
    let index = host.index().unwrap();
    let full_pack = index.packs().iter().find(|p| p.trusted).unwrap().clone();
    let wo_pack = index.packs().iter().find(|p| !p.trusted).unwrap().clone();
    testing::save_index(
        &host,
        &IndexFile {
            supersedes: index.files().to_vec(),
            packs: Vec::new(),
        },
    )
    .unwrap();
    let mut shadow = wo_pack.blobs.clone();
    for (b, at) in shadow.iter_mut().zip(&full_pack.blobs) {
        b.offset = at.offset;
    }
    testing::save_index(
        &host,
        &IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: full_pack.id,
                sealed_by: full_pack.sealed_by,
                blobs: shadow,
            }],
        },
    )
    .unwrap();
    // And one placing the write-only pack's blobs in a pack that does not
    // exist.
    testing::save_index(
        &host,
        &IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: litevault::id::PackId::from_bytes([0x5c; 32]),
                sealed_by: wo_pack.sealed_by,
                blobs: wo_pack.blobs.clone(),
            }],
        },
    )
    .unwrap();
    drop(host);

    // The full key ignores the retirement, and a backup of its own does
    // not take the write-only host's word that a chunk is stored.
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    let s: serde_json::Value = serde_json::from_str(
        env.run(&[
            "backup",
            "--json",
            "--host",
            "trusted",
            db.to_str().unwrap(),
        ])
        .ok(),
    )
    .unwrap();
    let new_chunks = |v: &serde_json::Value| v["manifest"]["stats"]["new_chunks"].as_u64().unwrap();
    assert!(new_chunks(&stored_by_host) > 0);
    assert_eq!(
        new_chunks(&s),
        new_chunks(&stored_by_host),
        "a full key stores again what only a write-only host listed: {s}"
    );
    assert!(s["reused_chunks"].as_u64().unwrap() > 0, "{s}");
    // Prune reads the write-only pack's own header before it plans: the
    // forged places are dropped, nothing stored is lost.
    env.run(&["prune", "--max-unused", "0%"]).ok();
    env.run(&["check", "--read-data"]).ok();
    let restored = restore_all(&env);
    assert_eq!(restored.len(), 3);
    assert!(restored.contains(&full_state) && restored.contains(&wo_state));
}

#[test]
fn a_pack_whose_header_lists_blobs_it_never_stored_is_read_before_it_is_believed() {
    use litevault::format::index::IndexFile;
    use litevault::format::pack::{BlobType, PackWriter};
    use litevault::repo::testing;
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    workload::create(&db, 2, 6);
    env.run(&["backup", db.to_str().unwrap()]).ok();
    workload::mutate(&db, 1, 6);
    env.run(&["backup", db.to_str().unwrap()]).ok();
    let second = content(&db);
    add_write_only(&env, "wo", "wo password\n");

    // The compromised host seals, to its own session, a pack whose header
    // lists every blob the full key stored, with garbage in place of each
    // (it holds the session key, so the header authenticates), and an
    // index file listing it.
    let host = as_host(&env, b"wo password");
    let index = host.index().unwrap();
    let mut pack = PackWriter::new();
    for p in index.packs() {
        for b in &p.blobs {
            let garbage = vec![0x5a; b.entry.raw_len as usize];
            pack.add(host.key(), b.entry.ty, b.entry.id, &garbage, None)
                .unwrap();
        }
    }
    // And one honest blob, which the full key keeps.
    let honest = b"a blob the host really stored".to_vec();
    pack.add(
        host.key(),
        BlobType::Data,
        host.key().blob_id(&honest),
        &honest,
        None,
    )
    .unwrap();
    let forged = testing::save_pack(&host, pack).unwrap();
    testing::save_index(
        &host,
        &IndexFile {
            supersedes: Vec::new(),
            packs: vec![forged.clone()],
        },
    )
    .unwrap();
    drop(host);

    // The trusted host forgets the first snapshot and prunes everything
    // it can: the full key's packs are repacked, and the forged pack's
    // copies must not become the places of its blobs.
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let oldest = json[0]["id"].as_str().unwrap().to_string();
    env.run(&["forget", &oldest]).ok();
    let out = env.run(&["prune", "--max-unused", "0%"]);
    env.run(&["check", "--read-data"]).ok();
    assert_eq!(restore_all(&env), vec![second]);
    assert!(out.ok().contains("read and verify 1 pack(s)"), "{out:?}");
    assert!(
        out.stderr.contains("written with a write-only key")
            && out.stderr.contains("left out of the index"),
        "{out:?}"
    );
    // It really held one blob, which no snapshot uses: it is gone.
    let name = forged.id.to_hex();
    assert!(
        crate::util::tree(&env.repo)
            .iter()
            .all(|(p, _)| !p.ends_with(&name)),
        "{name} is still stored"
    );
    let again = env.run(&["prune", "--max-unused", "0%"]);
    again.ok();
    assert!(again.stderr.contains("nothing to prune"), "{again:?}");
}

#[test]
fn snapshots_a_write_only_key_forges_do_not_steer_forget_or_a_full_key_backup() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    workload::create(&db, 2, 7);
    let wo = add_write_only(&env, "wo", "wo password\n");
    // Real backups of the trusted host's group, now.
    env.run(&["backup", "--host", "h", db.to_str().unwrap()])
        .ok();
    let first = content(&db);
    workload::mutate(&db, 1, 7);
    env.run(&["backup", "--host", "h", db.to_str().unwrap()])
        .ok();
    let second = content(&db);

    // The host forges snapshots of that group dated a year ahead.
    for t in ["2027-12-01T00:00:00Z", "2027-12-02T00:00:00Z"] {
        as_key(
            &env,
            &wo,
            &["backup", "--host", "h", "--time", t, db.to_str().unwrap()],
        )
        .ok();
    }
    // --keep-within counts from the newest snapshot not dated in the
    // future: both real ones stay, and so do the forged ones (forget
    // them by id).
    let plan = env.run(&["forget", "--keep-within", "7d", "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(plan.ok()).unwrap();
    let group = &plan["groups"][0];
    assert_eq!(group["keep"].as_array().unwrap().len(), 4, "{plan}");
    assert!(group["remove"].as_array().unwrap().is_empty(), "{plan}");
    // A count can be crowded out by forgeries: forget says so.
    let out = env.run(&["forget", "--keep-last", "1", "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert!(
        out.stderr
            .contains("2 of these snapshots were written with write-only keys"),
        "{out:?}"
    );
    let group = &plan["groups"][0];
    assert_eq!(group["keep"].as_array().unwrap().len(), 3, "{plan}");
    assert_eq!(group["remove"].as_array().unwrap().len(), 1, "{plan}");
    env.run(&["forget", "--keep-within", "7d"]).ok();
    let mut all = restore_all(&env);
    all.sort();
    let mut expected = vec![first, second.clone(), second.clone(), second];
    expected.sort();
    assert_eq!(all, expected);

    // A full key's backup takes no forged snapshot as its parent or as
    // "unchanged since": the host backs up the file first, in a group of
    // its own, then the trusted host does.
    workload::mutate(&db, 2, 7);
    let args = [
        "backup",
        "--json",
        "--host",
        "h",
        "--tag",
        "x",
        db.to_str().unwrap(),
    ];
    let by = |r: crate::util::Run| -> serde_json::Value { serde_json::from_str(r.ok()).unwrap() };
    let forged = by(as_key(&env, &wo, &args));
    assert_eq!(forged["skipped"], false, "{forged}");
    let trusted = by(env.run(&args));
    assert_eq!(trusted["skipped"], false, "{trusted}");
    assert!(trusted["unchanged_since"].is_null(), "{trusted}");
    // Its own snapshot is, the next time.
    let again = by(env.run(&args));
    assert_eq!(again["skipped"], true, "{again}");
    assert_eq!(again["unchanged_since"], trusted["snapshot"], "{again}");
}
