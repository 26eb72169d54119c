//! Repository formats: format 2's delta blobs (SPEC.md 9.4) against real
//! databases, and format 1 repositories, made by the release before format
//! 2, still opening, backing up and restoring.

use std::path::{Path, PathBuf};

use litevault::format::pack::BlobEntry;

use crate::backup::{backup_json, dump, make_db, open, workload};
use crate::util::Env;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mutate(db: &Path, step: u32, seed: u32) {
    workload(&[
        "mutate",
        s(db),
        "--step",
        &step.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
}

/// Every blob entry of the repository's index.
fn entries(env: &Env) -> Vec<BlobEntry> {
    let repo = open(env);
    let index = repo.index().unwrap();
    index
        .packs()
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.entry))
        .collect()
}

fn config_version(env: &Env) -> u8 {
    std::fs::read(env.repo.join("config")).unwrap()[4]
}

fn restore_to(env: &Env, snapshot: &str, target: &Path) {
    env.run(&[
        "restore",
        snapshot,
        "--target",
        s(target),
        "--no-pre-restore",
    ])
    .ok();
}

/// A copy of `tests/fixtures/v1-repo`, made by litevault at c9bc56c (the
/// release before format 2) from `workload.py create --size-mb 1 --seed 5`
/// (snapshot 1) and then `mutate --step 1 --seed 5` (snapshot 2), with
/// [`crate::util::PASSWORD`].
fn v1_fixture(env: &Env) {
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-repo");
    for e in walkdir::WalkDir::new(&from) {
        let e = e.unwrap();
        let to = env.repo.join(e.path().strip_prefix(&from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    // Git keeps no empty directories: `init` made locks/ and data/00..ff.
    std::fs::create_dir_all(env.repo.join("locks")).unwrap();
    for i in 0..=255u8 {
        std::fs::create_dir_all(env.repo.join("data").join(format!("{i:02x}"))).unwrap();
    }
}

/// BLAKE3 of the database's rows as [`dump`] lists them.
fn content_hash(db: &Path) -> String {
    blake3::hash(dump(db).join("\n").as_bytes())
        .to_hex()
        .to_string()
}

/// [`content_hash`] of the database the fixture's latest snapshot holds.
const V1_FIXTURE_LATEST: &str = "155bab36315e9f9d17df6adc982e56f45cc375b83e933cb28ce19ee65c1e0cc6";

#[test]
fn a_format_1_repository_made_by_the_previous_release_opens_backs_up_and_restores() {
    let env = Env::new();
    v1_fixture(&env);
    assert_eq!(config_version(&env), 1);
    let snaps: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    env.run(&["check", "--read-data"]).ok();

    // Its latest snapshot is the database the fixture was made from: its
    // content hash was recorded then.
    let db = env.dir.path().join("app.db");
    restore_to(&env, "latest", &db);
    assert_eq!(content_hash(&db), V1_FIXTURE_LATEST);

    // This release backs up into it as format 1: no delta blobs, the
    // config untouched, and the new snapshot restores.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE users SET name = name || ' (edited)' WHERE id % 7 = 0;
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO notes(body) SELECT printf('note %d', i) FROM n;",
    )
    .unwrap();
    drop(conn);
    let out = backup_json(&env, &[s(&db), "--host", "now"]);
    assert!(
        out["manifest"]["stats"]["new_chunks"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert_eq!(config_version(&env), 1);
    assert!(entries(&env).iter().all(|e| e.base.is_none()));
    let again = env.dir.path().join("again.db");
    let id = out["snapshot"].as_str().unwrap();
    restore_to(&env, id, &again);
    assert_eq!(dump(&again), dump(&db));
    env.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    env.run(&["check", "--read-data"]).ok();
    let pruned = env.dir.path().join("after-prune.db");
    restore_to(&env, id, &pruned);
    assert_eq!(dump(&pruned), dump(&db));
}

#[test]
fn init_with_repository_version_1_writes_no_deltas() {
    let env = Env::new();
    env.run(&["init", "--repository-version", "1"]).ok();
    assert_eq!(config_version(&env), 1);
    let db = make_db(&env, "app.db", 2, 9);
    backup_json(&env, &[s(&db)]);
    mutate(&db, 1, 9);
    backup_json(&env, &[s(&db)]);
    assert!(entries(&env).iter().all(|e| e.base.is_none()));
    env.run(&["init", "--repository-version", "5"])
        .usage(&["--repository-version"]);
}

/// Five days of churn in a format-2 repository: changed chunks and tree
/// blobs are stored as deltas no deeper than the configured bound, every
/// snapshot restores to that day's database, and after `forget --prune`
/// the kept snapshot still restores (its bases were kept).
#[test]
fn deltas_restore_every_day_and_survive_forget_and_prune() {
    let env = Env::new();
    env.run(&[
        "init",
        "--max-delta-depth",
        "2",
        "--repository-version",
        "2",
    ])
    .ok();
    assert_eq!(config_version(&env), 2);
    let db = make_db(&env, "app.db", 2, 21);
    let mut days = Vec::new();
    for day in 0..5u32 {
        if day > 0 {
            mutate(&db, day, 21);
        }
        let out = backup_json(&env, &[s(&db)]);
        days.push((out["snapshot"].as_str().unwrap().to_string(), dump(&db)));
    }
    let all = entries(&env);
    let deltas: Vec<_> = all
        .iter()
        .filter_map(|e| e.base.map(|b| (e.ty, b)))
        .collect();
    assert!(
        deltas
            .iter()
            .any(|(t, _)| *t == litevault::format::pack::BlobType::Data),
        "no data blob was stored as a delta"
    );
    assert!(
        deltas
            .iter()
            .any(|(t, _)| *t == litevault::format::pack::BlobType::Tree),
        "no tree blob was stored as a delta"
    );
    assert!(
        deltas.iter().all(|(_, b)| (1..=2).contains(&b.depth)),
        "{deltas:?}"
    );
    assert!(
        deltas.iter().any(|(_, b)| b.depth == 2),
        "chains never reached the bound"
    );
    for (i, (id, expected)) in days.iter().enumerate() {
        let target = env.dir.path().join(format!("day{i}.db"));
        restore_to(&env, id, &target);
        assert_eq!(&dump(&target), expected, "day {i}");
    }
    // dump streams the image through the same chains.
    let image = env.dir.path().join("image.db");
    env.run(&["dump", "latest", "--output", s(&image)]).ok();
    assert_eq!(dump(&image), days[4].1);
    env.run(&["check", "--read-data"]).ok();

    env.run(&["forget", "--keep-last", "1", "--prune", "--max-unused", "0"])
        .ok();
    env.run(&["check", "--read-data"]).ok();
    let target = env.dir.path().join("kept.db");
    restore_to(&env, "latest", &target);
    assert_eq!(dump(&target), days[4].1);
    // Every delta left has its base.
    let left = entries(&env);
    for e in &left {
        if let Some(b) = e.base {
            assert!(left.iter().any(|x| x.id == b.id), "base {} pruned", b.id);
        }
    }
}

/// The same churn stored in a format-1 and a format-2 repository: format 2
/// adds well under half of what format 1 does each day.
#[test]
fn a_day_of_churn_costs_far_less_as_deltas() {
    let added = |args: &[&str]| -> u64 {
        let env = Env::new();
        let mut init = vec!["init"];
        init.extend_from_slice(args);
        env.run(&init).ok();
        let db = make_db(&env, "app.db", 8, 33);
        backup_json(&env, &[s(&db)]);
        (1..=2)
            .map(|day| {
                mutate(&db, day, 33);
                backup_json(&env, &[s(&db)])["added_bytes"]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    let v1 = added(&["--repository-version", "1"]);
    let v2 = added(&[]);
    assert!(
        v2 * 2 < v1,
        "format 2 added {v2} bytes over two days, format 1 {v1}"
    );
}

#[test]
fn init_chunker_params_and_delta_depth_are_kept_and_checked() {
    let env = Env::new();
    for bad in ["1,2", "4,2,64", "0,1,2", "a,b,c", "1,2,5000"] {
        env.run(&["init", "--chunker-params", bad])
            .usage(&["--chunker-params"]);
    }
    env.run(&["init", "--max-delta-depth", "65"])
        .usage(&["--max-delta-depth"]);
    env.run(&[
        "init",
        "--chunker-params",
        "2,4,32",
        "--max-delta-depth",
        "0",
    ])
    .ok();
    let config = open(&env).config().clone();
    assert_eq!(
        (
            config.chunker.min_pages,
            config.chunker.avg_pages,
            config.chunker.max_pages
        ),
        (2, 4, 32)
    );
    assert_eq!(config.max_delta_depth(), 0);
    // Depth 0: format 2, but every changed chunk is stored whole.
    let db = make_db(&env, "app.db", 2, 3);
    backup_json(&env, &[s(&db)]);
    mutate(&db, 1, 3);
    backup_json(&env, &[s(&db)]);
    assert!(entries(&env).iter().all(|e| e.base.is_none()));
}

/// After a `VACUUM` of the live database every page has moved: the backup
/// stops trying deltas after a sample (each costs a base read) and stores
/// no more than a first backup of the vacuumed database would.
#[test]
fn a_backup_after_vacuum_stops_trying_deltas_and_stays_below_a_first_backup() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 16, 8);
    backup_json(&env, &[s(&db)]);
    mutate(&db, 1, 8);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("VACUUM").unwrap();
    drop(conn);
    let out = backup_json(&env, &[s(&db)]);
    let new_chunks = out["manifest"]["stats"]["new_chunks"].as_u64().unwrap();
    let gets = out["io"]["gets"].as_u64().unwrap();
    // The index files, the manifest and the config are read too (no cache
    // for a local repository); the bases tried are at most a sample of 64
    // plus those already queued to the workers when it was judged.
    assert!(new_chunks > 200, "{out}");
    assert!(
        gets < 64 + 64,
        "{gets} reads for {new_chunks} new chunks: {out}"
    );

    let fresh = Env::new();
    fresh.init();
    let first = backup_json(&fresh, &[s(&db)]);
    assert!(
        out["added_bytes"].as_u64().unwrap() <= first["added_bytes"].as_u64().unwrap(),
        "after VACUUM {out}, first backup {first}"
    );
}
