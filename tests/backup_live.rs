//! Backups of databases that are being written to, and backups that are
//! interrupted: by a failing backend, and by SIGKILL of the real binary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litevault::backend::faulty::{Fault, FaultPlan, FaultyBackend};
use litevault::backend::local::LocalBackend;
use litevault::{BackupOptions, InitOptions, KdfParams, Repository};

use crate::backup::{backup_json, images, make_db, open};
use crate::util::{Env, PASSWORD};

/// A ledger database: every transaction inserts a row and updates the
/// totals, so any committed state satisfies count = rows and sum = total.
fn ledger(path: &std::path::Path, wal: bool) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode={};
         CREATE TABLE rows(id INTEGER PRIMARY KEY, val INTEGER, pad BLOB);
         CREATE TABLE totals(n INTEGER, total INTEGER);
         INSERT INTO totals VALUES (0, 0);",
        if wal { "WAL" } else { "DELETE" }
    ))
    .unwrap();
    c.execute_batch("BEGIN").unwrap();
    for i in 0..20_000i64 {
        c.execute(
            "INSERT INTO rows(val, pad) VALUES (?1, randomblob(300))",
            [i],
        )
        .unwrap();
    }
    c.execute_batch("UPDATE totals SET n = (SELECT count(*) FROM rows), total = (SELECT sum(val) FROM rows); COMMIT")
        .unwrap();
}

fn check_ledger(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let (n, total): (i64, i64) = c
        .query_row("SELECT n, total FROM totals", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let (cnt, sum): (i64, i64) = c
        .query_row(
            "SELECT count(*), coalesce(sum(val), 0) FROM rows",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, total), (cnt, sum), "the image is not a committed state");
    n
}

/// Three backups of a ledger while a writer commits without pause; each
/// snapshot must be a committed state. `dir`: where the database lives
/// (default: the test's directory). Returns the backups' summaries.
fn backup_while_writing(wal: bool, dir: Option<&std::path::Path>) -> Vec<litevault::BackupSummary> {
    let env = Env::new();
    env.init();
    let db = dir.unwrap_or(env.dir.path()).join("ledger.db");
    ledger(&db, wal);
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, commits) = (db.clone(), Arc::clone(&stop), Arc::clone(&commits));
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            // In rollback mode the writer waits while a backup reads: let it.
            c.busy_timeout(Duration::from_secs(120)).unwrap();
            let mut i = 1_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                c.execute_batch(&format!(
                    "BEGIN IMMEDIATE; INSERT INTO rows(val, pad) VALUES ({i}, randomblob(300));
                     UPDATE totals SET n = n + 1, total = total + {i}; COMMIT;"
                ))
                .unwrap();
                i += 1;
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while commits.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let before = commits.load(Ordering::Relaxed);
    let mut summaries = Vec::new();
    for _ in 0..3 {
        let mut opts = BackupOptions::new(&db);
        opts.force = true;
        opts.lock_timeout = Duration::from_secs(60);
        summaries.push(litevault::backup(&repo, &opts).unwrap());
    }
    let snaps = summaries.len();
    let during = commits.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        during > 0,
        "the writer made no commit during {snaps} backups"
    );
    let imgs = images(&env);
    assert_eq!(imgs.len(), 3);
    for (i, (_, img)) in imgs.iter().enumerate() {
        let p = env.dir.path().join(format!("restored{i}.db"));
        std::fs::write(&p, img).unwrap();
        let n = check_ledger(&p);
        assert!(n >= 20_000, "{n}");
    }
    summaries
}

#[test]
fn backup_during_continuous_commits_in_wal_mode_is_a_committed_state() {
    for s in backup_while_writing(true, None) {
        assert!(!s.cloned, "a WAL database needs no clone");
    }
}

#[test]
fn backup_during_continuous_commits_in_rollback_mode_is_a_committed_state() {
    // The test directory's filesystem (ext4, tmpfs) cannot clone a file:
    // the pages are read under the lock.
    for s in backup_while_writing(false, None) {
        assert!(!s.cloned && s.read_lock_ms > 0, "{s:?}");
    }
}

/// Where no clone can be made (this test's filesystem), the pages are
/// read under the lock: a writer in another process cannot commit while
/// they are read. (Trying a clone opens the database file; closing that
/// descriptor before the read ends would drop SQLite's POSIX lock, and a
/// writer in this process would not notice: SQLite tracks its own.)
#[test]
fn rollback_mode_read_without_a_clone_keeps_writers_out_until_it_ends() {
    struct TryWrite {
        db: std::path::PathBuf,
        tried: AtomicBool,
        outcome: std::sync::Mutex<Option<std::process::Output>>,
    }
    impl litevault::Progress for TryWrite {
        fn start(&self, _: u64) {}
        fn advance(&self, _: u64) {
            // The first chunk: the read transaction is open.
            if self.tried.swap(true, Ordering::SeqCst) {
                return;
            }
            let out = std::process::Command::new("sqlite3")
                .arg(&self.db)
                .arg(
                    "BEGIN IMMEDIATE; INSERT INTO rows(val, pad) VALUES (7, x'');
                     UPDATE totals SET n = n + 1, total = total + 7; COMMIT;",
                )
                .output()
                .expect("the sqlite3 command-line tool");
            *self.outcome.lock().unwrap() = Some(out);
        }
    }
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("ledger.db");
    ledger(&db, false);
    let probe = Arc::new(TryWrite {
        db: db.clone(),
        tried: AtomicBool::new(false),
        outcome: std::sync::Mutex::new(None),
    });
    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let mut opts = BackupOptions::new(&db);
    opts.progress = Some(probe.clone());
    let s = litevault::backup(&repo, &opts).unwrap();
    assert!(!s.cloned, "{s:?}");
    let out = probe.outcome.lock().unwrap().take().expect("the probe ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("locked"),
        "a writer committed during the read: {out:?}"
    );
    // Once the backup is done, the same write commits.
    let again = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("BEGIN IMMEDIATE; INSERT INTO rows(val, pad) VALUES (7, x''); UPDATE totals SET n = n + 1, total = total + 7; COMMIT;")
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
}

/// On a filesystem with reflinks a rollback-journal backup clones the
/// file under the lock and reads the clone after releasing it: the lock
/// is held for the clone only, the snapshot is still one committed state,
/// and no clone is left behind.
#[test]
fn rollback_mode_backup_on_a_reflink_filesystem_reads_a_clone_made_under_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = crate::util::XfsFs::mount(tmp.path()) else {
        eprintln!("mkfs.xfs or loop mounts are not available here; skipped");
        return;
    };
    for s in backup_while_writing(false, Some(fs.path())) {
        assert!(s.cloned, "{s:?}");
        assert!(
            s.read_lock_ms * 2 < s.manifest.stats.duration_ms.max(2),
            "the lock was held for {} ms of {} ms",
            s.read_lock_ms,
            s.manifest.stats.duration_ms
        );
    }
    let left: Vec<_> = crate::util::names(fs.path())
        .into_iter()
        .filter(|n| n.contains("litevault"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn failed_write_leaves_no_snapshot_and_the_next_backup_reuses_indexed_packs() {
    let env = Env::new();
    let db = make_db(&env, "app.db", 8, 11);
    let opts = InitOptions {
        kdf: KdfParams::TEST_ONLY_INSECURE,
        pack_size: 256 << 10,
        ..InitOptions::default()
    };
    Repository::init_local(&env.repo, PASSWORD.as_bytes(), &opts).unwrap();
    for (nth, fault) in [
        (14, Fault::FailBeforeRename),
        (4, Fault::Torn { keep: 1000 }),
    ] {
        let backend = Arc::new(FaultyBackend::new(
            Arc::new(LocalBackend::open(&env.repo).unwrap()),
            FaultPlan {
                nth_write: nth,
                fault,
            },
        ));
        let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
        let err = litevault::backup(&repo, &BackupOptions::new(&db)).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        assert!(
            open(&env).snapshots().unwrap().is_empty(),
            "a failed backup left a snapshot"
        );
    }
    let repo = open(&env);
    assert!(
        !repo.index().unwrap().is_empty(),
        "index files were written before the failure"
    );
    let s = litevault::backup(&repo, &BackupOptions::new(&db)).unwrap();
    assert!(s.reused_chunks > 0, "nothing reused");
    assert!(s.manifest.stats.new_chunks < s.manifest.stats.chunks);
    let (_, img) = images(&env).pop().unwrap();
    assert_eq!(img, std::fs::read(&db).unwrap());
}

#[test]
fn sigkill_during_backup_leaves_no_snapshot_and_a_stale_lock_that_unlock_removes() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "big.db", 48, 13);
    let mut child = env
        .bare()
        .args(["backup", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.password_file)
        .arg(&db)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let packs = |env: &Env| {
        walkdir::WalkDir::new(env.repo.join("data"))
            .into_iter()
            .filter(|e| e.as_ref().unwrap().file_type().is_file())
            .count()
    };
    while packs(&env) < 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "no packs appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        open(&env).snapshots().unwrap().is_empty(),
        "a killed backup left a snapshot"
    );
    assert_eq!(
        crate::util::names(&env.repo.join("locks")).len(),
        1,
        "the killed backup's lock remains"
    );
    let out = env.run(&["unlock"]);
    assert!(out.ok().contains("is gone"), "{out:?}");
    assert!(crate::util::names(&env.repo.join("locks")).is_empty());

    let s = backup_json(&env, &[db.to_str().unwrap()]);
    assert!(
        s["reused_chunks"].as_u64().unwrap() > 0,
        "the next backup reused nothing: {s}"
    );
    let (_, img) = images(&env).pop().unwrap();
    assert_eq!(img, std::fs::read(&db).unwrap());
}

#[test]
fn full_repository_fails_cleanly() {
    let env = Env::new();
    let mnt = env.dir.path().join("small");
    let Some(_fs) = crate::util::SmallFs::mount(&mnt, "3m") else {
        eprintln!("full_repository_fails_cleanly: cannot mount a small tmpfs here; not run");
        return;
    };
    let repo = mnt.join("repo");
    let db = make_db(&env, "app.db", 8, 17);
    let run = |args: &[&str]| crate::util::run(env.command_for(&repo, args));
    run(&["init"]).ok();
    let line = run(&["backup", db.to_str().unwrap()])
        .fails(16, &["No space left on device", "free space"]);
    assert!(line.contains("data/") || line.contains("index/"), "{line}");
    let r = Repository::open_local(&repo, PASSWORD.as_bytes()).unwrap();
    assert!(r.snapshots().unwrap().is_empty());
    r.index()
        .expect("the index is consistent after the failure");
}

#[test]
fn read_only_repository_fails_cleanly_and_works_once_writable() {
    let env = Env::new();
    let mnt = env.dir.path().join("ro");
    let Some(_fs) = crate::util::SmallFs::mount(&mnt, "64m") else {
        eprintln!("read_only_repository_fails_cleanly_and_works_once_writable: cannot mount a tmpfs here; not run");
        return;
    };
    let repo = mnt.join("repo");
    let db = make_db(&env, "app.db", 1, 19);
    let run = |args: &[&str]| crate::util::run(env.command_for(&repo, args));
    run(&["init"]).ok();
    let remount = |mode: &str| {
        assert!(std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&mnt)
            .status()
            .unwrap()
            .success());
    };
    remount("ro");
    run(&["backup", db.to_str().unwrap()])
        .fails(16, &["Read-only file system", "mounted read-only"]);
    run(&["snapshots"]).ok();
    remount("rw");
    run(&["backup", db.to_str().unwrap()]).ok();
    run(&["check"]).ok();
}
