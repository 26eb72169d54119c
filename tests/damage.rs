//! One damaged object does not block a whole repository: the work of other
//! databases goes on with a warning naming it, commands that delete refuse
//! with the remedy, and `repair index` / `repair snapshots` (or `forget
//! ID`) are the way back.

use std::path::{Path, PathBuf};

use crate::backup::make_db;
use crate::util::{names, Env, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Flips one byte in the middle of a file.
fn flip(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// Names in `dir` that were not in `before`.
fn new_names(dir: &Path, before: &[String]) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect()
}

fn warned(r: &Run, needles: &[&str]) {
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("litevault: warning:"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| needles.iter().all(|n| w.contains(n))),
        "no warning with {needles:?}: {r:?}"
    );
}

/// Two databases backed up by two runs: each has its own index file and
/// manifest. Returns (a, b, a's index file, a's manifest).
fn two_databases(env: &Env) -> (PathBuf, PathBuf, String, String) {
    env.init();
    let a = make_db(env, "a.db", 2, 31);
    let b = make_db(env, "b.db", 2, 32);
    let index0 = names(&env.repo.join("index"));
    let snaps0 = names(&env.repo.join("snapshots"));
    env.run(&["backup", s(&a)]).ok();
    let a_index = new_names(&env.repo.join("index"), &index0);
    let a_snap = new_names(&env.repo.join("snapshots"), &snaps0);
    assert_eq!((a_index.len(), a_snap.len()), (1, 1));
    env.run(&["backup", s(&b)]).ok();
    (a, b, a_index[0].clone(), a_snap[0].clone())
}

#[test]
fn a_damaged_index_file_blocks_only_what_it_alone_lists() {
    let env = Env::new();
    let (a, b, a_index, _) = two_databases(&env);
    flip(&env.repo.join("index").join(&a_index));
    let short = &a_index[..8];

    // The other database restores, with a warning naming the damage.
    let target = env.dir.path().join("b-restored.db");
    let r = env.run(&["restore", "latest", "--db", s(&b), "--target", s(&target)]);
    r.ok();
    warned(&r, &[short, "damaged", "repair index"]);
    // The damaged one fails, naming the way back.
    let target_a = env.dir.path().join("a-restored.db");
    env.run(&["restore", "latest", "--db", s(&a), "--target", s(&target_a)])
        .fails(13, &[short, "in no readable index file", "repair index"]);
    // Backups of both go on (what only the damaged file listed is stored
    // again).
    crate::util::workload::mutate(&a, 1, 31);
    env.run(&["backup", s(&a)]).ok();
    env.run(&["backup", s(&b), "--force"]).ok();
    // Nothing deletes while the index is damaged.
    env.run(&["prune"])
        .fails(13, &[short, "prune deletes nothing", "repair index"]);
    let check = env.run(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stdout.contains(short) && check.stdout.contains("litevault repair index"),
        "{check:?}"
    );
    // The snapshots whose blobs only the damaged file lists are healthy:
    // the way back is repairing the index, never forgetting them.
    assert!(!check.stdout.contains("litevault forget"), "{check:?}");
    let json = env.run(&["check", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let snapshots: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["object"].as_str().unwrap().starts_with("snapshots/"))
        .collect();
    assert!(!snapshots.is_empty(), "{report}");
    assert!(
        snapshots.iter().all(|f| f["remedy"] == "repair_index"),
        "{report}"
    );

    // The way back.
    let dry = env.run(&["repair", "index", "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(dry.ok()).unwrap();
    assert_eq!(plan["damaged_index_files"].as_array().unwrap().len(), 1);
    assert_eq!(plan["index_files_written"], 0);
    let done = env.run(&["repair", "index", "--json"]);
    let done: serde_json::Value = serde_json::from_str(done.ok()).unwrap();
    assert!(done["headers_read"].as_u64().unwrap() >= 1, "{done}");
    assert!(!names(&env.repo.join("index")).contains(&a_index));
    // Everything restores again, the first snapshot of a included.
    let first = crate::backup::open(&env).snapshots().unwrap()[0].0;
    env.run(&[
        "restore",
        &first.to_hex(),
        "--target",
        s(&env.dir.path().join("a-first.db")),
    ])
    .ok();
    env.run(&["prune"]).ok();
    let check = env.run(&["check", "--read-data"]);
    assert!(check.ok().contains("0 error(s)"), "{check:?}");
    // A sound index is left alone.
    let again = env.run(&["repair", "index"]);
    assert!(again.ok().contains("nothing to repair"), "{again:?}");
}

#[test]
fn a_damaged_manifest_blocks_only_its_snapshot() {
    for way_back in ["repair", "forget"] {
        let env = Env::new();
        let (a, b, _, a_snap) = two_databases(&env);
        flip(&env.repo.join("snapshots").join(&a_snap));
        let short = &a_snap[..8];

        let listed = env.run(&["snapshots", "--json"]);
        let json: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
        warned(&listed, &[short, "damaged", "repair snapshots"]);
        let target = env.dir.path().join("b-restored.db");
        // Stored after b's snapshot was begun (within the clocks' margin),
        // the damaged one may be b's newest: `latest` is not known.
        let latest_b = ["restore", "latest", "--db", s(&b), "--target", s(&target)];
        env.run(&latest_b)
            .fails(13, &[short, "`latest` is not known", "repair snapshots"]);
        let b_id = json[0]["id"].as_str().unwrap().to_string();
        env.run(&["restore", &b_id, "--target", s(&target)]).ok();
        std::fs::remove_file(&target).unwrap();
        // Stored well before: not the newest, `latest` goes on.
        std::fs::File::options()
            .write(true)
            .open(env.repo.join("snapshots").join(&a_snap))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
        let r = env.run(&latest_b);
        r.ok();
        warned(&r, &[short, "damaged"]);
        env.run(&["backup", s(&a)]).ok();
        env.run(&["forget", "--keep-last", "1"]).ok();
        env.run(&["prune"])
            .fails(13, &[short, "prune deletes nothing", "repair snapshots"]);
        let check = env.run(&["check"]);
        assert_eq!(check.code, 1);
        assert!(
            check.stdout.contains("litevault repair snapshots"),
            "{check:?}"
        );
        if way_back == "repair" {
            let save = env.dir.path().join("saved");
            let out = env.run(&["repair", "snapshots", "--save-dir", s(&save), "--json"]);
            let done: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
            assert_eq!(done["removed"], 1, "{done}");
            // Its bytes are kept, privately.
            let kept = save.join(format!("snapshot-{a_snap}"));
            assert!(kept.is_file());
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        } else {
            env.run(&["forget", short]).ok();
        }
        assert!(!names(&env.repo.join("snapshots")).contains(&a_snap));
        let listed = env.run(&["snapshots"]);
        assert!(!listed.stderr.contains("warning"), "{listed:?}");
        env.run(&["prune"]).ok();
        let check = env.run(&["check", "--read-data"]);
        assert!(check.ok().contains("0 error(s)"), "{way_back}: {check:?}");
    }
}

#[test]
fn temporary_files_of_killed_writes_are_reported_and_pruned() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "a.db", 1, 33);
    env.run(&["backup", s(&db)]).ok();
    let hex = "ab".repeat(32);
    let plant = |rel: &str, age_secs: i64| -> PathBuf {
        let p = env.repo.join(rel);
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let when = if age_secs >= 0 {
            std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs as u64)
        } else {
            std::time::SystemTime::now() + std::time::Duration::from_secs((-age_secs) as u64)
        };
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
        p
    };
    let old_pack = plant(&format!("data/ab/.tmp-{hex}-0123456789abcdef"), 7200);
    let old_index = plant(&format!("index/.tmp-{hex}-fedcba9876543210"), 3 * 3600);
    // Written after the prune below takes its lock, or just before (within
    // the clocks' margin): a live writer's.
    let live = plant(&format!("data/ab/.tmp-{hex}-00000000000000ff"), -3600);
    let recent = plant(&format!("data/ab/.tmp-{hex}-00000000000000fe"), 30);
    // A lock being taken by a process that holds none yet.
    let taking = plant(&format!("locks/.tmp-{hex}-00000000000000fd"), 600);
    let check = env.run(&["check", "--json"]);
    let report: serde_json::Value = serde_json::from_str(check.ok()).unwrap();
    let temporaries: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["message"].as_str().unwrap().contains("interrupted write"))
        .collect();
    assert_eq!(temporaries.len(), 2, "{report}");
    assert!(temporaries
        .iter()
        .all(|f| f["remedy"] == "prune" && f["severity"] == "warning"));
    let pruned = env.run(&["prune"]);
    assert!(
        pruned.ok().contains("delete 2 temporary file(s)"),
        "{pruned:?}"
    );
    assert!(!old_pack.exists() && !old_index.exists());
    for p in [&live, &recent, &taking] {
        assert!(
            p.exists(),
            "{}: a file a live writer may be writing was removed",
            p.display()
        );
    }
}
