//! Hostile repositories: every command meets damaged, forged, truncated,
//! empty, absurd or looping objects with a clear error or a report, never
//! a panic, a hang or an unbounded allocation. One test per case.

use std::path::{Path, PathBuf};

use litevault::testing;

use crate::backup::{backup_json, make_db};
use crate::util::{self, Env, Run};

/// A repository with two snapshots of a small database.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 2, 77);
    backup_json(&env, &[db.to_str().unwrap(), "--tag", "a"]);
    crate::backup::workload(&[
        "mutate",
        db.to_str().unwrap(),
        "--step",
        "1",
        "--seed",
        "77",
    ]);
    backup_json(&env, &[db.to_str().unwrap(), "--tag", "a"]);
    (env, db)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    v.sort();
    v
}

fn first(env: &Env, sub: &str) -> PathBuf {
    files(&env.repo.join(sub)).remove(0)
}

/// No panic, at most one error line, an exit code from the documented set.
fn sane(r: &Run) {
    assert!(!r.stderr.contains("panicked"), "panic: {r:?}");
    assert!(
        [0, 1, 3, 10, 11, 12, 13, 14, 16].contains(&r.code),
        "unexpected exit code: {r:?}"
    );
    let errors = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("litevault: error:"))
        .count();
    assert!(errors <= 1, "{r:?}");
}

/// Runs the commands that read everything; each must be sane; returns
/// (restore, check) results.
fn survey(env: &Env) -> (Run, Run) {
    let target = env.dir.path().join("restored.db");
    for args in [
        vec!["snapshots"],
        vec!["stats"],
        vec!["dump", "latest", "--output", "/dev/null"],
        vec!["prune", "--dry-run"],
        vec!["forget", "--keep-last", "1", "--dry-run"],
        vec!["key", "list"],
    ] {
        sane(&env.run(&args));
    }
    let restore = env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--no-pre-restore",
    ]);
    sane(&restore);
    let check = env.run(&["check", "--read-data"]);
    sane(&check);
    (restore, check)
}

/// The command succeeded, warning of a damaged object in one line that
/// names every one of `needles` (the rest of the repository served).
fn warns(r: &Run, needles: &[&str]) {
    r.ok();
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("litevault: warning:") && needles.iter().all(|n| l.contains(n))),
        "no warning with {needles:?}: {r:?}"
    );
}

fn rename_to_hash(path: &Path) -> PathBuf {
    let bytes = std::fs::read(path).unwrap();
    let to = path.with_file_name(blake3::hash(&bytes).to_hex().as_str());
    std::fs::rename(path, &to).unwrap();
    to
}

/// `check` must report the damage; a restore of the latest snapshot must
/// fail, unless the damage spared every blob it needs (restore reads only
/// those, by range), and then its result must be the right database.
fn damaged(env: &Env) {
    let (restore, check) = survey(env);
    assert_eq!(check.code, 1, "check missed the damage: {check:?}");
    if restore.code == 0 {
        let restored = crate::backup::dump(&env.dir.path().join("restored.db"));
        let source = crate::backup::dump(&env.dir.path().join("app.db"));
        assert_eq!(restored, source, "restore succeeded with wrong data");
    }
}

#[test]
fn truncated_pack() {
    let (env, _) = setup();
    let p = first(&env, "data");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    damaged(&env);
}

#[test]
fn pack_truncated_to_its_last_bytes() {
    let (env, _) = setup();
    let p = first(&env, "data");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[b.len() - 10..]).unwrap();
    damaged(&env);
}

#[test]
fn empty_pack() {
    let (env, _) = setup();
    std::fs::write(first(&env, "data"), b"").unwrap();
    damaged(&env);
}

#[test]
fn pack_stored_under_another_packs_id() {
    let (env, _) = setup();
    let packs = files(&env.repo.join("data"));
    assert!(packs.len() >= 2);
    std::fs::copy(&packs[1], &packs[0]).unwrap();
    damaged(&env);
}

#[test]
fn pack_replaced_by_a_directory() {
    let (env, _) = setup();
    let p = first(&env, "data");
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    damaged(&env);
}

#[test]
fn pack_header_length_points_past_the_start() {
    let (env, _) = setup();
    let p = first(&env, "data");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    // Restore reads blobs by range through the index, never this header:
    // it may succeed, and then with the right content; check must see it.
    let (restore, check) = survey(&env);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stdout.contains("implausible header length"),
        "{check:?}"
    );
    if restore.code == 0 {
        let db = env.dir.path().join("app.db");
        assert_eq!(
            crate::backup::dump(&env.dir.path().join("restored.db")),
            crate::backup::dump(&db)
        );
    }
}

#[test]
fn flipped_byte_in_the_middle_of_every_pack() {
    let (env, _) = setup();
    for p in files(&env.repo.join("data")) {
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&p, &b).unwrap();
    }
    damaged(&env);
}

#[test]
fn missing_pack() {
    let (env, _) = setup();
    std::fs::remove_file(first(&env, "data")).unwrap();
    damaged(&env);
}

#[test]
fn empty_index_file() {
    let (env, _) = setup();
    std::fs::write(first(&env, "index"), b"").unwrap();
    damaged(&env);
}

#[test]
fn garbage_index_file_under_its_own_hash() {
    let (env, _) = setup();
    let p = first(&env, "index");
    std::fs::write(&p, b"LVLT\x01\x03 not a sealed index at all").unwrap();
    rename_to_hash(&p);
    damaged(&env);
}

#[test]
fn index_from_a_newer_format() {
    let (env, _) = setup();
    let p = first(&env, "index");
    let mut b = std::fs::read(&p).unwrap();
    b[4] = 9;
    std::fs::write(&p, &b).unwrap();
    let p = rename_to_hash(&p);
    let r = env.run(&["snapshots"]);
    sane(&r);
    let r = env.run(&["dump", "latest", "--output", "/dev/null"]);
    r.fails(
        14,
        &[
            "newer litevault (format 9)",
            &p.file_name().unwrap().to_string_lossy(),
        ],
    );
}

#[test]
fn index_pointing_blobs_at_the_wrong_pack() {
    use litevault::format::index::IndexFile;
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let packs: Vec<litevault::PackId> = files(&env.repo.join("data"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().parse().unwrap())
        .collect();
    let mut moved = IndexFile::default();
    for f in files(&env.repo.join("index")) {
        let id = f.file_name().unwrap().to_string_lossy().parse().unwrap();
        let mut file = repo.load_index_file(&id).unwrap();
        for p in &mut file.packs {
            p.id = if p.id == packs[0] { packs[1] } else { packs[0] };
        }
        moved.packs.extend(file.packs);
        std::fs::remove_file(&f).unwrap();
    }
    testing::save_index(&repo, &moved).unwrap();
    damaged(&env);
}

#[test]
fn index_pointing_blobs_at_the_wrong_offset() {
    use litevault::format::index::IndexFile;
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let mut shifted = IndexFile::default();
    for f in files(&env.repo.join("index")) {
        let id = f.file_name().unwrap().to_string_lossy().parse().unwrap();
        let mut file = repo.load_index_file(&id).unwrap();
        for p in &mut file.packs {
            for b in &mut p.blobs {
                b.offset += 7;
            }
        }
        shifted.packs.extend(file.packs);
        std::fs::remove_file(&f).unwrap();
    }
    testing::save_index(&repo, &shifted).unwrap();
    damaged(&env);
}

/// A validly sealed blob under another blob's id (a writer's bug, or a
/// key holder's tampering): authentication passes, the content is wrong.
/// A restore, which leaves ids to its whole-image check, must still fail
/// naming the blob, and replace nothing.
#[test]
fn index_swapping_the_ids_of_two_blobs_of_equal_size() {
    use litevault::format::index::IndexFile;
    // One snapshot: every data blob is part of the image a restore needs.
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 2, 77);
    backup_json(&env, &[db.to_str().unwrap()]);
    let repo = crate::backup::open(&env);
    let mut files_seen = Vec::new();
    let mut all = IndexFile::default();
    for f in files(&env.repo.join("index")) {
        let id = f.file_name().unwrap().to_string_lossy().parse().unwrap();
        all.packs.extend(repo.load_index_file(&id).unwrap().packs);
        files_seen.push(f);
    }
    // Two data blobs of the same plaintext length, anywhere.
    let mut places = Vec::new();
    for (p, pack) in all.packs.iter().enumerate() {
        for (b, blob) in pack.blobs.iter().enumerate() {
            if blob.entry.ty == litevault::format::pack::BlobType::Data {
                places.push((p, b, blob.entry.raw_len));
            }
        }
    }
    let (a, b) = places
        .iter()
        .enumerate()
        .find_map(|(i, x)| {
            places[i + 1..]
                .iter()
                .find(|y| y.2 == x.2)
                .map(|y| (*x, *y))
        })
        .expect("two data blobs of one length");
    let id_a = all.packs[a.0].blobs[a.1].entry.id;
    let id_b = all.packs[b.0].blobs[b.1].entry.id;
    all.packs[a.0].blobs[a.1].entry.id = id_b;
    all.packs[b.0].blobs[b.1].entry.id = id_a;
    for f in files_seen {
        std::fs::remove_file(f).unwrap();
    }
    testing::save_index(&repo, &all).unwrap();
    drop(repo);

    let target = env.dir.path().join("restored.db");
    let (restore, check) = survey(&env);
    assert_eq!(check.code, 1, "check missed the swap: {check:?}");
    assert_ne!(restore.code, 0, "restore used swapped blobs: {restore:?}");
    assert!(
        restore.stderr.contains("does not match its id"),
        "the blob at fault is not named: {restore:?}"
    );
    assert!(!target.exists(), "a failed restore left {target:?}");
    let leftovers: Vec<_> = util::names(env.dir.path())
        .into_iter()
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(
        leftovers.iter().all(|n| n == "restored.db"),
        "{leftovers:?}"
    );
}

#[test]
fn index_with_absurd_counts_is_refused_before_allocating() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    // A sealed index whose payload claims 4 billion packs.
    let mut payload = vec![0u8; 4];
    payload.extend_from_slice(&u32::MAX.to_le_bytes());
    let bytes = litevault::format::seal_object(
        repo.key(),
        litevault::format::ObjectType::Index,
        &payload,
        None,
    )
    .unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(env.repo.join("index").join(&name), &bytes).unwrap();
    // Refused as it loads; the rest of the index serves, with a warning.
    let r = env.run(&["dump", "latest", "--output", "/dev/null"]);
    r.ok();
    warns(&r, &[&name, "exceeds"]);
    env.run(&["prune"]).fails(13, &[&name, "repair index"]);
    survey(&env);
}

#[test]
fn snapshot_listing_a_missing_blob() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let (_, mut m) = repo.snapshots().unwrap().pop().unwrap();
    m.tree.id = repo.key().blob_id(b"a tree that was never stored");
    m.time = "2030-01-01T00:00:00Z".into();
    testing::save_manifest(&repo, &m).unwrap();
    let (restore, check) = survey(&env);
    restore.fails(13, &["no index lists it"]);
    assert_eq!(check.code, 1);
}

#[test]
fn manifest_with_absurd_sizes() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let (_, mut m) = repo.snapshots().unwrap().pop().unwrap();
    m.image.page_count = 1 << 40;
    m.image.bytes = u64::from(m.image.page_size) << 40;
    m.time = "2030-01-01T00:00:00Z".into();
    testing::save_manifest(&repo, &m).unwrap();
    let (restore, _) = survey(&env);
    restore.fails(16, &["not enough free space"]);
    env.run(&["dump", "latest", "--output", "/dev/null"])
        .fails(13, &["chunks add up to"]);
}

#[test]
fn manifest_with_inconsistent_sizes() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let (_, mut m) = repo.snapshots().unwrap().pop().unwrap();
    m.image.bytes += 1;
    let id = testing::save_manifest(&repo, &m).unwrap();
    sane(&env.run(&["snapshots"]));
    env.run(&["dump", &id.to_hex(), "--output", "/dev/null"])
        .fails(13, &["page size times page count"]);
}

#[test]
fn manifest_with_absurd_tree_level() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let (_, m) = repo.snapshots().unwrap().pop().unwrap();
    let mut json = serde_json::to_value(&m).unwrap();
    json["tree"]["level"] = serde_json::json!(200);
    let bytes = litevault::format::seal_object(
        repo.key(),
        litevault::format::ObjectType::Snapshot,
        &serde_json::to_vec(&json).unwrap(),
        None,
    )
    .unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(env.repo.join("snapshots").join(&name), &bytes).unwrap();
    warns(&env.run(&["snapshots"]), &[&name, "tree level 200"]);
    env.run(&["prune"]).fails(13, &[&name, "repair snapshots"]);
}

#[test]
fn empty_snapshot_file() {
    let (env, _) = setup();
    std::fs::write(first(&env, "snapshots"), b"").unwrap();
    let r = env.run(&["snapshots"]);
    warns(&r, &["snapshots/", "damaged"]);
    let c = env.run(&["check"]);
    sane(&c);
    assert_eq!(c.code, 1);
}

#[test]
fn snapshot_file_that_is_an_index() {
    let (env, _) = setup();
    let idx = first(&env, "index");
    let to = env.repo.join("snapshots").join(idx.file_name().unwrap());
    std::fs::copy(&idx, &to).unwrap();
    warns(
        &env.run(&["snapshots"]),
        &["holds a index where a snapshot belongs"],
    );
}

#[test]
fn empty_config() {
    let (env, _) = setup();
    std::fs::write(env.repo.join("config"), b"").unwrap();
    env.run(&["snapshots"])
        .fails(13, &["config is damaged", "empty"]);
}

/// Configs sealed with the repository's own key whose format and fields
/// disagree: each is refused as damaged, naming what is wrong, by every
/// command that opens the repository, and nothing is written.
#[test]
fn config_whose_format_and_fields_disagree() {
    use litevault::format::{seal_object_version, ObjectType};
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let key = repo.key();
    let mut good = repo.config().clone();
    let mut v4_without_delta = good.clone();
    v4_without_delta.delta = None;
    let mut v3_without_delta = v4_without_delta.clone();
    v3_without_delta.version = 3;
    good.version = 2;
    let json = |c: &litevault::format::config::Config| serde_json::to_vec(c).unwrap();
    let mut v1_with_delta = good.clone();
    v1_with_delta.version = 1;
    let mut v2_without_delta = good.clone();
    v2_without_delta.delta = None;
    let mut too_deep = good.clone();
    too_deep.delta.as_mut().unwrap().max_depth = 65;
    let mut unknown = serde_json::to_value(&good).unwrap();
    unknown["dictionary"] = serde_json::json!("abc");
    let cases: Vec<(&str, u8, Vec<u8>, &str)> = vec![
        (
            "format 1 with delta parameters",
            1,
            json(&v1_with_delta),
            "no delta parameters",
        ),
        (
            "format 2 without them",
            2,
            json(&v2_without_delta),
            "needs its delta parameters",
        ),
        (
            "format 3 without them",
            3,
            json(&v3_without_delta),
            "needs its delta parameters",
        ),
        (
            "format 4 without them",
            4,
            json(&v4_without_delta),
            "needs its delta parameters",
        ),
        (
            "a body of format 2 under a header of format 1",
            1,
            json(&good),
            "header says 1",
        ),
        (
            "a chain depth past the format's bound",
            2,
            json(&too_deep),
            "65",
        ),
        (
            "a field no format has",
            2,
            serde_json::to_vec(&unknown).unwrap(),
            "dictionary",
        ),
    ];
    let original = std::fs::read(env.repo.join("config")).unwrap();
    for (what, header, body, needle) in cases {
        let sealed = seal_object_version(key, ObjectType::Config, header, &body, None).unwrap();
        std::fs::write(env.repo.join("config"), &sealed).unwrap();
        let before = crate::util::tree(&env.repo);
        // (`check` says it could not run with its own code, 2.)
        for (args, code) in [(&["snapshots"][..], 13), (&["check"], 2), (&["prune"], 13)] {
            let line = env
                .run(args)
                .fails(code, &["config is damaged", needle, "put back"]);
            assert_eq!(line.lines().count(), 1, "{what}: {line}");
            assert!(!line.contains("litevault check"), "{what}: {line}");
        }
        assert!(
            crate::util::tree(&env.repo) == before,
            "{what}: the repository changed"
        );
    }
    // A format this litevault does not know is not damage: exit 14.
    let mut newer = good.clone();
    newer.version = 5;
    let sealed = seal_object_version(key, ObjectType::Config, 5, &json(&newer), None).unwrap();
    std::fs::write(env.repo.join("config"), &sealed).unwrap();
    env.run(&["snapshots"])
        .fails(14, &["newer litevault", "format 5", "upgrade"]);
    std::fs::write(env.repo.join("config"), original).unwrap();
    env.run(&["check"]).ok();
}

#[test]
fn config_from_another_repository() {
    let (env, _) = setup();
    let other = Env::new();
    other.init();
    std::fs::copy(other.repo.join("config"), env.repo.join("config")).unwrap();
    env.run(&["snapshots"])
        .fails(13, &["config is damaged", "authentication"]);
}

#[test]
fn empty_key_file() {
    let (env, _) = setup();
    std::fs::write(first(&env, "keys"), b"").unwrap();
    env.run(&["snapshots"]).fails(13, &["keys/", "damaged"]);
}

#[test]
fn key_file_with_terabytes_of_argon2_memory() {
    let (env, _) = setup();
    let k = first(&env, "keys");
    let mut b = std::fs::read(&k).unwrap();
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&k, &b).unwrap();
    let k = rename_to_hash(&k);
    let started = std::time::Instant::now();
    env.run(&["snapshots"]).fails(
        13,
        &[&k.file_name().unwrap().to_string_lossy(), "argon2 memory"],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn no_key_files() {
    let (env, _) = setup();
    std::fs::remove_file(first(&env, "keys")).unwrap();
    env.run(&["snapshots"]).fails(13, &["no key files"]);
}

#[test]
fn empty_lock_file_is_reported_and_removable() {
    let (env, _) = setup();
    std::fs::write(env.repo.join("locks").join("ab".repeat(32)), b"").unwrap();
    env.run(&["prune"]).fails(11, &["unreadable lock file"]);
    env.run(&["unlock"]).ok();
    env.run(&["prune"]).ok();
}

#[test]
fn symlink_loops_in_the_repository() {
    let (env, _) = setup();
    std::os::unix::fs::symlink("loop", env.repo.join("data").join("00").join("loop")).unwrap();
    std::os::unix::fs::symlink(env.repo.join("index"), env.repo.join("index").join("self"))
        .unwrap();
    std::os::unix::fs::symlink(
        env.repo.join("snapshots").join("x"),
        env.repo.join("snapshots").join("x"),
    )
    .unwrap();
    let (restore, check) = survey(&env);
    restore.ok();
    check.ok();
}

#[test]
fn stray_files_are_ignored() {
    let (env, _) = setup();
    std::fs::write(env.repo.join("data").join("00").join("README"), b"hello").unwrap();
    std::fs::write(env.repo.join("index").join("notes.txt"), b"hello").unwrap();
    std::fs::write(env.repo.join("snapshots").join(".tmp-x"), b"partial").unwrap();
    let (restore, check) = survey(&env);
    restore.ok();
    check.ok();
}

#[test]
fn duplicated_index_file_under_a_false_name() {
    let (env, _) = setup();
    let idx = first(&env, "index");
    std::fs::copy(&idx, env.repo.join("index").join("cd".repeat(32))).unwrap();
    let r = env.run(&["dump", "latest", "--output", "/dev/null"]);
    warns(&r, &["cdcdcdcd", "does not match its name"]);
}

#[test]
fn tree_blob_swapped_for_a_data_blob() {
    let (env, _) = setup();
    let repo = crate::backup::open(&env);
    let (_, mut m) = repo.snapshots().unwrap().pop().unwrap();
    // Point the root at a data chunk: its id is indexed, its type is not a tree.
    let index = repo.index().unwrap();
    let (data_id, _) = index
        .blobs_of(litevault::format::pack::BlobType::Data)
        .next()
        .unwrap();
    m.tree.id = data_id;
    m.time = "2030-01-01T00:00:00Z".into();
    testing::save_manifest(&repo, &m).unwrap();
    let (restore, check) = survey(&env);
    assert_eq!(restore.code, 13, "{restore:?}");
    assert_eq!(check.code, 1);
}

// ---- Delta blobs (format 2): chains that are missing, looping, damaged,
// absurdly long, or of the wrong kind. The index is what a restore follows,
// so each case forges it (check also finds the index disagreeing with the
// pack headers).

/// Every index file merged into one, the old files removed, `f` applied,
/// the result stored; `setup`'s second snapshot must have made deltas.
fn forge_index(env: &Env, f: impl FnOnce(&mut litevault::format::index::IndexFile)) {
    use litevault::format::index::IndexFile;
    let repo = crate::backup::open(env);
    let mut all = IndexFile::default();
    let old = files(&env.repo.join("index"));
    for p in &old {
        let id = p.file_name().unwrap().to_string_lossy().parse().unwrap();
        all.packs.extend(repo.load_index_file(&id).unwrap().packs);
    }
    let deltas = all
        .packs
        .iter()
        .flat_map(|p| &p.blobs)
        .filter(|b| b.entry.base.is_some())
        .count();
    assert!(deltas > 0, "the second backup stored no delta blob");
    f(&mut all);
    for p in old {
        std::fs::remove_file(p).unwrap();
    }
    testing::save_index(&repo, &all).unwrap();
}

/// `setup`'s database a day later.
fn next_day(db: &Path) {
    crate::backup::workload(&[
        "mutate",
        db.to_str().unwrap(),
        "--step",
        "2",
        "--seed",
        "77",
    ]);
}

/// Positions (pack, blob) of the delta blobs of the forged index.
fn delta_positions(all: &litevault::format::index::IndexFile) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for (p, pack) in all.packs.iter().enumerate() {
        for (b, blob) in pack.blobs.iter().enumerate() {
            if blob.entry.base.is_some() {
                v.push((p, b));
            }
        }
    }
    v
}

/// The latest snapshot's restore fails with a one-line damage error naming
/// `needle`, leaves nothing behind, and check reports the damage.
fn restore_refuses(env: &Env, needle: &str) {
    let target = env.dir.path().join("restored.db");
    let (restore, check) = survey(env);
    assert_eq!(check.code, 1, "check missed the damage: {check:?}");
    restore.fails(13, &[needle]);
    assert!(
        !target.exists(),
        "a failed restore left {}",
        target.display()
    );
}

#[test]
fn delta_whose_base_is_missing() {
    let (env, _) = setup();
    forge_index(&env, |all| {
        for (p, b) in delta_positions(all) {
            let e = &mut all.packs[p].blobs[b].entry;
            e.base.as_mut().unwrap().id = litevault::BlobId::from_bytes([0xab; 32]);
        }
    });
    restore_refuses(&env, "the base is missing");
    prune_refuses(&env, "the base is missing");
}

/// Prune refuses, with a one-line damage error naming `needle`, and
/// deletes nothing.
fn prune_refuses(env: &Env, needle: &str) {
    let before = crate::util::tree(&env.repo.join("data"));
    env.run(&["prune", "--max-unused", "0%"])
        .fails(13, &[needle]);
    assert!(
        crate::util::tree(&env.repo.join("data")) == before,
        "prune changed data/"
    );
}

#[test]
fn delta_chain_that_loops() {
    let (env, db) = setup();
    forge_index(&env, |all| {
        // Data deltas only: the trees stay sound, so a backup reads the
        // previous snapshot's layout and walks the looping chains.
        let d: Vec<_> = delta_positions(all)
            .into_iter()
            .filter(|&(p, b)| {
                all.packs[p].blobs[b].entry.ty == litevault::format::pack::BlobType::Data
            })
            .collect();
        // Every delta's base becomes the next delta, the last the first: a
        // cycle, whatever depths they claim.
        let ids: Vec<_> = d
            .iter()
            .map(|&(p, b)| all.packs[p].blobs[b].entry.id)
            .collect();
        for (i, &(p, b)) in d.iter().enumerate() {
            let next = ids[(i + 1) % ids.len()];
            let e = &mut all.packs[p].blobs[b].entry;
            if next == e.id {
                // A single delta: it claims a chain deeper than its base's.
                e.base.as_mut().unwrap().depth = 5;
            } else {
                e.base.as_mut().unwrap().id = next;
            }
            // As deep as a writer goes: a backup choosing a base walks
            // down such a chain, and must stop.
            e.base.as_mut().unwrap().depth = 4;
        }
    });
    restore_refuses(&env, "delta chain");
    prune_refuses(&env, "depth");
    // A backup over the forged index ends (the walk is bounded) and stores
    // the changed chunks whole or against a sound base.
    next_day(&db);
    let mut c = env.command(&["backup", db.to_str().unwrap(), "--tag", "a"]);
    let mut child = c.stdout(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("a backup over a looping delta chain did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn delta_chain_of_absurd_length() {
    let (env, _) = setup();
    // Deeper than any reader follows: the index is refused as it loads.
    forge_index(&env, |all| {
        for (p, b) in delta_positions(all) {
            all.packs[p].blobs[b].entry.base.as_mut().unwrap().depth = u16::MAX;
        }
    });
    restore_refuses(&env, "exceeds the 64");
}

#[test]
fn delta_claiming_a_deeper_chain_than_it_has() {
    let (env, _) = setup();
    // 64 is within the format's bound, but the chain below is shorter.
    forge_index(&env, |all| {
        for (p, b) in delta_positions(all) {
            all.packs[p].blobs[b].entry.base.as_mut().unwrap().depth = 64;
        }
    });
    restore_refuses(&env, "depth");
    prune_refuses(&env, "depth");
}

#[test]
fn delta_whose_base_is_a_tree_blob() {
    let (env, _) = setup();
    forge_index(&env, |all| {
        let tree = all
            .packs
            .iter()
            .flat_map(|p| &p.blobs)
            .find(|b| {
                b.entry.ty == litevault::format::pack::BlobType::Tree && b.entry.base.is_none()
            })
            .unwrap()
            .entry
            .id;
        for (p, b) in delta_positions(all) {
            let e = &mut all.packs[p].blobs[b].entry;
            if e.ty == litevault::format::pack::BlobType::Data {
                *e.base.as_mut().unwrap() =
                    litevault::format::pack::DeltaBase { id: tree, depth: 1 };
            }
        }
    });
    restore_refuses(&env, "Tree blob");
    prune_refuses(&env, "Tree blob");
}

#[test]
fn delta_against_the_wrong_base_of_a_valid_chain() {
    let (env, _) = setup();
    // A full data blob of the same length stands in for the real base: the
    // chain looks whole, the decoded bytes are wrong, and the id check
    // catches them.
    forge_index(&env, |all| {
        let fulls: Vec<_> = all
            .packs
            .iter()
            .flat_map(|p| &p.blobs)
            .filter(|b| {
                b.entry.ty == litevault::format::pack::BlobType::Data && b.entry.base.is_none()
            })
            .map(|b| b.entry.id)
            .collect();
        for (p, b) in delta_positions(all) {
            let e = &mut all.packs[p].blobs[b].entry;
            let real = e.base.unwrap().id;
            if e.ty == litevault::format::pack::BlobType::Data && e.base.unwrap().depth == 1 {
                let other = *fulls.iter().find(|f| **f != real).unwrap();
                e.base.as_mut().unwrap().id = other;
            }
        }
    });
    let (restore, check) = survey(&env);
    assert_eq!(check.code, 1, "check missed the damage: {check:?}");
    assert_ne!(
        restore.code, 0,
        "restore used a delta against the wrong base: {restore:?}"
    );
    assert!(!env.dir.path().join("restored.db").exists());
}

#[test]
fn damaged_base_breaks_only_its_chain_and_is_reported() {
    let (env, db) = setup();
    // Flip one byte inside a base blob where it lies in its pack.
    let repo = crate::backup::open(&env);
    let index = repo.index().unwrap();
    let base = index
        .packs()
        .iter()
        .flat_map(|p| &p.blobs)
        .find_map(|b| b.entry.base)
        .expect("a delta blob")
        .id;
    let loc = index.get(&base).unwrap();
    let name = loc.pack.to_hex();
    let path = env.repo.join("data").join(&name[..2]).join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(loc.blob.offset + loc.blob.entry.stored_len / 2) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    drop(repo);
    let (restore, check) = survey(&env);
    assert_eq!(check.code, 1, "check missed the damaged base: {check:?}");
    assert!(
        check.stdout.contains(&base.short()) || check.stderr.contains(&base.short()),
        "{check:?}"
    );
    restore.fails(13, &["failed authentication"]);
    // A backup after the damage still works: a base that cannot be read
    // only costs a full blob.
    next_day(&db);
    backup_json(&env, &[db.to_str().unwrap(), "--tag", "a"]);
}
