//! `litevault restore`: verified reassembly, safe swap, live restore,
//! production-to-demo cloning, bad input, crashes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backup::{backup_json, dump, make_db, open, workload};
use crate::util::{Env, PASSWORD};

fn restore(env: &Env, args: &[&str]) -> crate::util::Run {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    env.run(&a)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn both_strategies_restore_to_the_state_at_backup_time() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 4, 31);
    let at_backup = dump(&db);
    let pages = backup_json(&env, &[s(&db), "--tag", "p"]);
    let vacuum = backup_json(&env, &[s(&db), "--strategy", "vacuum", "--tag", "v"]);
    workload(&["mutate", s(&db), "--step", "1", "--seed", "31"]);
    assert_ne!(dump(&db), at_backup);
    for (snap, name) in [(&pages, "p.db"), (&vacuum, "v.db")] {
        let target = env.dir.path().join(name);
        let id = snap["snapshot"].as_str().unwrap();
        let out = restore(&env, &[&id[..12], "--target", s(&target), "--json"]);
        let r: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(
            r["pre_restore"],
            serde_json::Value::Null,
            "nothing to protect: the target was new"
        );
        assert_eq!(dump(&target), at_backup, "{name}");
    }
    // `latest` narrowed by tags.
    let t = env.dir.path().join("latest-p.db");
    restore(
        &env,
        &["latest", "--tag", "p", "--target", s(&t), "--quick"],
    )
    .ok();
    assert_eq!(dump(&t), at_backup);
}

#[test]
fn a_stale_wal_beside_the_target_is_never_applied_to_the_restored_file() {
    let env = Env::new();
    env.init();
    let src = make_db(&env, "src.db", 2, 41);
    let expected = dump(&src);
    backup_json(&env, &[s(&src)]);

    // The target: another database, with a WAL full of its own frames kept
    // aside while its connection was open.
    let target = env.dir.path().join("target.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE other(x); INSERT INTO other VALUES (1), (2);")
        .unwrap();
    let wal = PathBuf::from(format!("{}-wal", target.display()));
    let stale = std::fs::read(&wal).unwrap();
    assert!(stale.len() > 32, "the WAL has frames");
    drop(c);
    std::fs::write(&wal, &stale).unwrap();

    restore(
        &env,
        &["latest", "--target", s(&target), "--no-pre-restore"],
    )
    .ok();
    assert!(
        !wal.exists(),
        "the stale WAL is still beside the restored file"
    );
    assert_eq!(dump(&target), expected);
}

#[test]
fn restore_over_an_open_database_is_refused_without_live_and_seen_with_it() {
    let env = Env::new();
    env.init();
    let target = env.dir.path().join("app.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES ('snapshot');",
    )
    .unwrap();
    backup_json(&env, &[s(&target)]);
    c.execute("UPDATE t SET v = 'changed since'", []).unwrap();

    let line =
        restore(&env, &["latest", "--target", s(&target)]).fails(1, &["is open by pid", "--live"]);
    assert!(line.contains(&std::process::id().to_string()), "{line}");
    let v: String = c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "changed since", "the refused restore touched the target");

    let out = restore(&env, &["latest", "--target", s(&target), "--live"]);
    assert!(out.ok().contains("live"), "{out:?}");
    let v: String = c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(
        v, "snapshot",
        "the open connection does not see the restored content"
    );
    // The previous content was kept as a pre-restore snapshot.
    let snaps = open(&env).snapshots().unwrap();
    assert!(snaps
        .iter()
        .any(|(_, m)| m.tags.contains(&"pre-restore".to_string())));
}

#[test]
fn live_restore_into_a_wal_database_with_another_page_size_is_a_clear_error() {
    let env = Env::new();
    env.init();
    let src = env.dir.path().join("big-pages.db");
    let c = rusqlite::Connection::open(&src).unwrap();
    c.execute_batch("PRAGMA page_size=8192; CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    backup_json(&env, &[s(&src)]);
    let target = env.dir.path().join("wal.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(v);")
        .unwrap();
    restore(&env, &["latest", "--target", s(&target), "--live"])
        .fails(1, &["page size", "WAL", "without --live"]);
}

#[test]
fn production_is_cloned_into_demo_with_a_scrub_and_demo_can_be_undone() {
    let env = Env::new();
    env.init();
    let prod = make_db(&env, "prod.db", 2, 51);
    let demo = make_db(&env, "demo.db", 2, 52);
    let demo_before = dump(&demo);
    backup_json(&env, &[s(&prod), "--tag", "env_production,db_app"]);
    backup_json(&env, &[s(&demo), "--tag", "env_demo,db_app"]);
    let scrub = env.dir.path().join("scrub.sql");
    std::fs::write(
        &scrub,
        "UPDATE users SET email = 'user' || id || '@example.invalid', name = 'Anonymous';",
    )
    .unwrap();

    let out = restore(
        &env,
        &[
            "latest",
            "--tag",
            "env_production",
            "--target",
            s(&demo),
            "--post-sql",
            s(&scrub),
        ],
    );
    assert!(out.ok().contains("pre-restore"), "{out:?}");
    let c = rusqlite::Connection::open(&demo).unwrap();
    let leaked: i64 = c
        .query_row("SELECT count(*) FROM users WHERE email NOT LIKE '%@example.invalid' OR name <> 'Anonymous'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leaked, 0, "personal data survived the scrub");
    let prod_events: Vec<String> = dump(&prod)
        .into_iter()
        .filter(|l| l.starts_with("events:"))
        .collect();
    let demo_events: Vec<String> = dump(&demo)
        .into_iter()
        .filter(|l| l.starts_with("events:"))
        .collect();
    assert_eq!(prod_events, demo_events);
    drop(c);

    // Undo: the demo's previous content is its pre-restore snapshot.
    let snaps = open(&env).snapshots().unwrap();
    let (pre, m) = snaps
        .iter()
        .find(|(_, m)| m.tags.contains(&"pre-restore".to_string()))
        .unwrap();
    assert!(
        m.tags.contains(&"env_demo".to_string()),
        "pre-restore keeps the target's own tags: {:?}",
        m.tags
    );
    restore(
        &env,
        &[&pre.to_hex(), "--target", s(&demo), "--no-pre-restore"],
    )
    .ok();
    assert_eq!(dump(&demo), demo_before);
}

#[test]
fn a_failing_scrub_leaves_the_target_untouched() {
    let env = Env::new();
    env.init();
    let prod = make_db(&env, "prod.db", 1, 61);
    backup_json(&env, &[s(&prod)]);
    let demo = make_db(&env, "demo.db", 1, 62);
    let before = std::fs::read(&demo).unwrap();
    let scrub = env.dir.path().join("bad.sql");
    std::fs::write(&scrub, "UPDATE no_such_table SET x = 1;").unwrap();
    restore(
        &env,
        &["latest", "--target", s(&demo), "--post-sql", s(&scrub)],
    )
    .fails(1, &["--post-sql failed", "no_such_table"]);
    assert_eq!(std::fs::read(&demo).unwrap(), before);
    assert_eq!(leftovers(&env), Vec::<String>::new());
}

/// Temporary restore files left in the scratch directory.
fn leftovers(env: &Env) -> Vec<String> {
    crate::util::names(env.dir.path())
        .into_iter()
        .filter(|n| n.contains("litevault-restore"))
        .collect()
}

#[test]
fn bad_input_is_one_line_and_leaves_the_target_untouched() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 71);
    let target = make_db(&env, "target.db", 1, 72);
    let before = std::fs::read(&target).unwrap();
    restore(&env, &["latest", "--target", s(&target)]).fails(1, &["no snapshots yet"]);
    backup_json(&env, &[s(&db), "--tag", "a"]);
    restore(&env, &["deadbeef", "--target", s(&target)])
        .fails(1, &["no snapshot with id deadbeef"]);
    restore(&env, &["latest", "--tag", "b", "--target", s(&target)])
        .fails(1, &["no snapshot matches"]);
    restore(
        &env,
        &["latest", "--target", s(&env.dir.path().join("nope/x.db"))],
    )
    .fails(1, &["does not exist"]);
    restore(&env, &["latest", "--target", s(env.dir.path())]).fails(1, &["is a directory"]);
    restore(
        &env,
        &[
            "latest",
            "--target",
            s(&target),
            "--post-sql",
            "/nonexistent.sql",
        ],
    )
    .fails(1, &["--post-sql file"]);
    // Two snapshots whose ids share a first digit make a prefix ambiguous.
    let first_digits = |env: &Env| -> Vec<char> {
        open(env)
            .snapshots()
            .unwrap()
            .iter()
            .map(|(id, _)| id.to_hex().chars().next().unwrap())
            .collect()
    };
    while {
        let d = first_digits(&env);
        d.iter().all(|c| d.iter().filter(|x| *x == c).count() == 1)
    } {
        backup_json(&env, &[s(&db), "--tag", "a", "--force"]);
    }
    let d = first_digits(&env);
    let dup = d
        .iter()
        .find(|c| d.iter().filter(|x| x == c).count() > 1)
        .unwrap()
        .to_string();
    restore(&env, &[&dup, "--target", s(&target)]).fails(1, &["ambiguous"]);

    // Missing or damaged data: named, nothing written.
    let pack = walkdir::WalkDir::new(env.repo.join("data"))
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_type().is_file())
        .unwrap()
        .into_path();
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&pack, &bad).unwrap();
    restore(&env, &["latest", "--target", s(&target)]).fails(13, &["damaged", "data/"]);
    std::fs::remove_file(&pack).unwrap();
    restore(&env, &["latest", "--target", s(&target)]).fails(13, &["missing", "data/"]);
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert_eq!(leftovers(&env), Vec::<String>::new());
    std::fs::write(&pack, &good).unwrap();
    restore(
        &env,
        &["latest", "--target", s(&target), "--no-pre-restore"],
    )
    .ok();
    assert_eq!(dump(&target), dump(&db));
}

#[test]
fn not_enough_free_space_is_checked_before_writing() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 4, 81);
    backup_json(&env, &[s(&db)]);
    let mnt = env.dir.path().join("small");
    let Some(_fs) = crate::util::SmallFs::mount(&mnt, "1m") else {
        eprintln!("not_enough_free_space_is_checked_before_writing: cannot mount a small tmpfs here; not run");
        return;
    };
    restore(&env, &["latest", "--target", s(&mnt.join("app.db"))])
        .fails(16, &["not enough free space", "needs"]);
    assert!(crate::util::names(&mnt).is_empty());
}

#[test]
fn sigkill_at_many_points_leaves_the_target_old_or_new_and_openable() {
    let env = Env::new();
    env.init();
    let new = make_db(&env, "new.db", 8, 91);
    let new_dump = dump(&new);
    let snap = backup_json(&env, &[s(&new)]);
    let id = snap["snapshot"].as_str().unwrap().to_string();
    let target = make_db(&env, "target.db", 4, 92);
    let old_dump = dump(&target);
    // How long an uninterrupted restore takes, to spread the kills over it.
    let probe = env.dir.path().join("probe.db");
    let t = std::time::Instant::now();
    restore(&env, &["latest", "--target", s(&probe)]).ok();
    let full = t.elapsed();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut outcomes = (0, 0);
    // Kill times spread over twice the restore's length; if the machine is
    // slower or faster than the probe suggested, the span adapts so that
    // kills land both before and after the swap.
    let mut span = full.as_micros() as u64 * 2 + 1;
    for round in 0..40 {
        if round >= 12 && outcomes.0 > 0 && outcomes.1 > 0 {
            break;
        }
        if round >= 6 && outcomes.1 == 0 {
            span *= 2;
        }
        if round >= 6 && outcomes.0 == 0 {
            span = span / 2 + 1;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(rng % span);
        let mut child = env
            .bare()
            .args(["restore", &id, "--repo"])
            .arg(&env.repo)
            .arg("--password-file")
            .arg(&env.password_file)
            .arg("--target")
            .arg(&target)
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let now = dump(&target);
        if now == old_dump {
            outcomes.0 += 1;
        } else {
            assert_eq!(
                now, new_dump,
                "after a kill at {delay:?} ({status}) the target is neither old nor new"
            );
            outcomes.1 += 1;
            // Make it old again for the next round.
            std::fs::remove_file(&target).unwrap();
            workload(&["create", s(&target), "--size-mb", "4", "--seed", "92"]);
        }
        assert!(!PathBuf::from(format!("{}-wal", target.display())).exists() || now == old_dump);
        // Locks of killed restores are stale: the next run is not blocked.
    }
    eprintln!("sigkill outcomes: {} old, {} new", outcomes.0, outcomes.1);
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "the kills did not land both before and after the swap: {outcomes:?}"
    );
    // `latest` is the new snapshot, not one of the pre-restore snapshots
    // the interrupted runs made.
    restore(&env, &["latest", "--target", s(&target)]).ok();
    assert_eq!(dump(&target), new_dump);
}

#[test]
fn a_failing_pre_restore_backup_leaves_the_target_untouched() {
    use litevault::backend::faulty::{Fault, FaultPlan, FaultyBackend};
    use litevault::backend::local::LocalBackend;
    use litevault::{Repository, RestoreOptions};
    use std::sync::Arc;

    let env = Env::new();
    env.init();
    let src = make_db(&env, "src.db", 1, 93);
    backup_json(&env, &[s(&src)]);
    let target = make_db(&env, "target.db", 1, 94);
    let before = std::fs::read(&target).unwrap();
    let (id, _) = open(&env).snapshots().unwrap().pop().unwrap();
    for nth in 1..=4 {
        let backend = Arc::new(FaultyBackend::new(
            Arc::new(LocalBackend::open(&env.repo).unwrap()),
            FaultPlan {
                nth_write: nth,
                fault: Fault::FailBeforeRename,
            },
        ));
        let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
        let err = litevault::restore(&repo, &id, &RestoreOptions::new(&target)).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "write {nth} failed and the target changed"
        );
    }
    assert_eq!(leftovers(&env), Vec::<String>::new());
}

#[test]
fn an_image_with_repeated_chunks_restores_byte_for_byte() {
    // secure_delete zeroes freed pages: thousands of identical all-zero
    // pages, so the same chunk appears at many offsets of the image and is
    // fetched and decoded once but written at each of them.
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("holes.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA secure_delete = ON;
         CREATE TABLE keep(x); INSERT INTO keep VALUES ('before');
         CREATE TABLE gone(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO gone SELECT randomblob(3000) FROM n;
         DELETE FROM gone;
         INSERT INTO keep VALUES ('after');",
    )
    .unwrap();
    drop(c);
    let bytes = std::fs::read(&db).unwrap();
    let zero_pages = bytes
        .chunks(4096)
        .filter(|p| p.iter().all(|&b| b == 0))
        .count();
    assert!(zero_pages > 1000, "only {zero_pages} zero pages");
    backup_json(&env, &[s(&db)]);
    let target = env.dir.path().join("restored.db");
    restore(&env, &["latest", "--target", s(&target)]).ok();
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "not byte for byte"
    );
    assert_eq!(dump(&target), dump(&db));
}
