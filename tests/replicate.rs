//! Continuous capture against real SQLite writers and the real binary:
//! every commit is captured from the WAL while the application commits,
//! checkpoints in every mode, alters its schema and vacuums; `replicate`
//! is killed and restarted; restores at moments between commits give
//! exactly the state after the last commit before them.

// Each test is one scenario, told in order.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::util::{run, Env, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A WAL-mode database with a table the writer fills.
pub fn wal_db(path: &Path, page_size: u32) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, at INTEGER);"
    ))
    .unwrap();
}

/// The start of every capture test: `env`'s repository initialised, a WAL
/// database `app.db` of `page_size` beside it, and the directory for the
/// replicator's state.
pub fn wal_setup(env: &Env, page_size: u32) -> (PathBuf, PathBuf) {
    env.init();
    let db = env.dir.path().join("app.db");
    wal_db(&db, page_size);
    (db, env.dir.path().join("st"))
}

/// What the database holds, to compare: rows and a digest of them.
pub fn state_of(path: &Path) -> (i64, String) {
    let c = Connection::open(path).unwrap();
    c.query_row(
        "SELECT count(*), coalesce(sum(id * 7 + length(v)), 0) || '/' || coalesce(max(id), 0) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// `litevault replicate` in the background.
pub struct Replicator {
    pub child: Child,
}

impl Replicator {
    pub fn start(env: &Env, state: &Path, dbs: &[&Path], extra: &[&str]) -> Self {
        let mut c = env.command(&["replicate", "--state-dir", s(state), "--interval", "500ms"]);
        c.args(extra);
        for d in dbs {
            c.arg(d);
        }
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Stops it with `signal` (TERM flushes; KILL does not); returns its
    /// output.
    pub fn stop(self, signal: &str) -> Run {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        let out = self.child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// One commit the writer made: when `COMMIT` returned, and the state
/// after it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at_ns: i64,
    pub state: (i64, String),
}

/// Commits `n` transactions, 10 ms apart, each inserting a row (and every
/// fifth updating an old one); logs each.
pub fn burst(c: &Connection, n: usize, log: &mut Vec<Logged>, path: &Path) {
    for i in 0..n {
        commit_one(c, i % 5 == 0);
        log.push(Logged {
            at_ns: now_ns(),
            state: state_of(path),
        });
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One transaction: a row inserted, and with `update` an old one changed.
pub fn commit_one(c: &Connection, update: bool) {
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c.execute(
        "INSERT INTO t(v, at) VALUES (randomblob(200 + abs(random()) % 900), ?1)",
        [now_ns()],
    )
    .unwrap();
    if update {
        c.execute(
            "UPDATE t SET v = randomblob(300) WHERE id = (SELECT max(id) / 2 FROM t)",
            [],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

pub fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .unwrap()
        .to_string()
}

/// Restores `db` as it was at `at_ns` into a fresh file; its state.
pub fn restore_at(env: &Env, db: &Path, at: &str, name: &str) -> Result<(i64, String), Run> {
    let target = env.dir.path().join(name);
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", target.display()));
    }
    let r = run(env.command(&[
        "restore",
        "--db",
        s(db),
        "--at",
        at,
        "--target",
        s(&target),
        "--no-pre-restore",
    ]));
    if r.code != 0 {
        return Err(r);
    }
    Ok(state_of(&target))
}

/// The state the log says the database had at `at_ns`.
pub fn expected_at(log: &[Logged], at_ns: i64) -> (i64, String) {
    log.iter()
        .rev()
        .find(|l| l.at_ns <= at_ns)
        .map_or((0, "0/0".into()), |l| l.state.clone())
}

/// A quiet moment between bursts, well clear of commits, recorded.
pub fn pause(quiet: &mut Vec<i64>) {
    std::thread::sleep(Duration::from_millis(200));
    quiet.push(now_ns());
    std::thread::sleep(Duration::from_millis(200));
}

/// An application's scenario against a running `replicate`.
pub struct Scenario<'a> {
    pub env: &'a Env,
    pub state: &'a Path,
    pub db: &'a Path,
    pub c: &'a Connection,
    pub log: &'a mut Vec<Logged>,
    /// Quiet moments (between bursts) to restore to.
    pub quiet: &'a mut Vec<i64>,
}

impl Scenario<'_> {
    /// For each step, a burst of `n` commits, then the step: "" nothing,
    /// "kill" a sudden death of `rep` (restarted at once, it goes on), else
    /// SQL the application runs; then a quiet moment. The replicator
    /// running at the end.
    pub fn steps(&mut self, mut rep: Replicator, n: usize, steps: &[&str]) -> Replicator {
        for step in steps {
            burst(self.c, n, self.log, self.db);
            match *step {
                "kill" => {
                    let out = rep.stop("KILL");
                    assert_eq!(out.code, -1, "{out:?}");
                    rep = Replicator::start(self.env, self.state, &[self.db], &[]);
                }
                "" => {}
                sql => {
                    self.c.execute_batch(sql).unwrap();
                    self.log.push(Logged {
                        at_ns: now_ns(),
                        state: state_of(self.db),
                    });
                }
            }
            pause(self.quiet);
        }
        rep
    }
}

/// Every quiet moment restores to the state after the last commit before
/// it; at most `inexact` of them (inside a gap the capture bridged) to an
/// older state the database really had, never a newer or made-up one.
pub fn moments_restore(env: &Env, db: &Path, log: &[Logged], quiet: &[i64], inexact: usize) {
    let mut exact = 0;
    for (i, at) in quiet.iter().enumerate() {
        let want = expected_at(log, *at);
        let got = restore_at(env, db, &rfc3339(*at), &format!("at-{i}.db")).unwrap();
        if got == want {
            exact += 1;
        } else {
            assert!(got.0 < want.0, "moment {i}: {got:?}, want {want:?}");
            assert!(
                log.iter().any(|l| l.state == got),
                "moment {i}: {got:?} is no state the database had"
            );
        }
    }
    assert!(exact + inexact >= quiet.len(), "{exact} of {}", quiet.len());
}

#[test]
fn every_commit_is_captured_and_any_moment_restores_exactly() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    let c = Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut log: Vec<Logged> = Vec::new();
    let mut quiet: Vec<i64> = Vec::new();
    let steps = [
        "",
        "PRAGMA wal_checkpoint(PASSIVE)",
        "PRAGMA wal_checkpoint(FULL)",
        "PRAGMA wal_checkpoint(RESTART)",
        "ALTER TABLE t ADD COLUMN note TEXT",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "VACUUM",
        "kill",
        "",
    ];
    let mut run = Scenario {
        env: &env,
        state: &state,
        db: &db,
        c: &c,
        log: &mut log,
        quiet: &mut quiet,
    };
    let rep = run.steps(rep, 25, &steps);
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("commits in"), "{out:?}");

    // The latest state is the database's.
    let latest = restore_at(&env, &db, "latest", "latest.db").unwrap();
    assert_eq!(latest, state_of(&db));
    // A TRUNCATE checkpoint that overtook the capture is bridged by a
    // snapshot: moments inside it may restore an older state.
    moments_restore(&env, &db, &log, &quiet, 2);
    // Before anything was captured: no snapshot.
    let r = restore_at(&env, &db, "2000-01-01T00:00:00Z", "early.db").unwrap_err();
    r.fails(1, &["no snapshot"]);
}

#[test]
fn a_rollback_journal_database_is_refused_with_what_to_do() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("old.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let state = env.dir.path().join("st");
    let r = env.run(&["replicate", "--state-dir", s(&state), s(&db)]);
    r.fails(
        3,
        &["rollback-journal mode", "journal_mode=WAL", "schedule"],
    );
    // Missing, and not SQLite at all.
    let r = env.run(&["replicate", "--state-dir", s(&state), "nope.db"]);
    assert_ne!(r.code, 0);
    r.fails(r.code, &["nope.db"]);
    let junk = env.dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    env.run(&["replicate", "--state-dir", s(&state), s(&junk)])
        .fails(3, &["not an SQLite database"]);
    // A format-2 repository cannot hold changes.
    let old_repo = env.dir.path().join("v2");
    run(env.command_for(&old_repo, &["init", "--repository-version", "2"])).ok();
    let wal = env.dir.path().join("w.db");
    wal_db(&wal, 4096);
    run(env.command_for(&old_repo, &["replicate", "--state-dir", s(&state), s(&wal)]))
        .fails(1, &["format 2", "format 3"]);
}

#[test]
fn a_restart_goes_on_from_its_record_without_a_new_snapshot() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let c = Connection::open(&db).unwrap();
    // The application keeps its WAL (no checkpoints while it is down).
    c.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    let mut log = Vec::new();
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    burst(&c, 20, &mut log, &db);
    std::thread::sleep(Duration::from_millis(1500));
    rep.stop("TERM").ok();
    let snapshots = |env: &Env| -> usize {
        let v: serde_json::Value =
            serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(snapshots(&env), 1, "the stream's first snapshot");
    // Committed while nothing captured; then captured on restart.
    burst(&c, 20, &mut log, &db);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    burst(&c, 10, &mut log, &db);
    std::thread::sleep(Duration::from_millis(1500));
    let out = rep.stop("TERM");
    assert!(!out.stderr.contains("bridging"), "{out:?}");
    assert_eq!(snapshots(&env), 1, "no snapshot again after a restart");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
    // And after a restart that salvages a WAL restarted meanwhile.
    c.execute_batch("PRAGMA wal_autocheckpoint=1000").unwrap();
    burst(&c, 5, &mut log, &db);
    c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
    burst(&c, 5, &mut log, &db);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    rep.stop("TERM").ok();
    assert_eq!(
        restore_at(&env, &db, "latest", "latest2.db").unwrap(),
        state_of(&db)
    );
}

/// Whether the stream's state under `state` records a bridge: stored
/// (`done`), or begun and not yet stored.
fn bridged(state: &Path, done: bool) -> bool {
    let wanted = format!("\"bridged\": {done}");
    walkdir::WalkDir::new(state)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&wanted)))
}

/// Killed after its first snapshot and before any commit after it was
/// sealed, a restart goes on from the snapshot's WAL position: the commits
/// the snapshot holds are not handed over again (they would not apply to
/// its image) and the ones after it are all captured, without a new
/// snapshot.
#[test]
fn a_restart_right_after_the_first_snapshot_goes_on_from_its_position() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let c = Connection::open(&db).unwrap();
    // The WAL keeps every frame (no checkpoint while litevault is down).
    c.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    let mut log = Vec::new();
    burst(&c, 15, &mut log, &db);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    let t = Instant::now();
    while !bridged(&state, true) {
        assert!(t.elapsed() < Duration::from_secs(60), "no first snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = rep.stop("KILL");
    assert_eq!(out.code, -1, "{out:?}");
    burst(&c, 15, &mut log, &db);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    wait_restorable(&env, &db);
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("bridging"), "{out:?}");
    assert!(out.stdout.contains("15 commits"), "{out:?}");
    // The WAL's position unknown (a state from before it was recorded):
    // the restart bridges again rather than guess.
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    rep.stop("TERM").ok();
    for e in walkdir::WalkDir::new(&state).into_iter().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            v["sealed"]["mark"] = serde_json::Value::Null;
            std::fs::write(e.path(), v.to_string()).unwrap();
        }
    }
    burst(&c, 5, &mut log, &db);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    wait_restorable(&env, &db);
    let out = rep.stop("TERM");
    assert!(out.stderr.contains("where the stream stood"), "{out:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
}

/// Stopped right after a commit it stored, while the application then
/// checkpoints and goes on in a restarted WAL (shorter than the old
/// generation, so the capture can tell nothing of the old one was left
/// unread): the restart takes the new generation's first commit as the
/// next one and captures every commit after, without a new snapshot.
#[test]
fn a_restart_goes_on_into_a_wal_restarted_right_after_its_record() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    let mut log = Vec::new();
    for (i, restart) in ["PASSIVE", "RESTART", "FULL"].iter().enumerate() {
        let rep = Replicator::start(&env, &state, &[&db], &[]);
        burst(&c, 30, &mut log, &db);
        wait_restorable(&env, &db);
        let out = rep.stop("TERM");
        assert_eq!(out.code, 0, "{out:?}");
        // Every frame copied back: the next commit restarts the WAL.
        let (busy, _, _): (i64, i64, i64) = c
            .query_row(&format!("PRAGMA wal_checkpoint({restart})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
        // Fewer frames than the old generation had past the new one's
        // end: the capture can tell none of it was left unread.
        burst(&c, 5, &mut log, &db);
        let rep = Replicator::start(&env, &state, &[&db], &[]);
        wait_restorable(&env, &db);
        let out = rep.stop("TERM");
        assert!(!out.stderr.contains("bridging"), "round {i}: {out:?}");
        assert!(out.stdout.contains(" 5 commits"), "round {i}: {out:?}");
    }
}

/// A stop while a bridge snapshot is being written waits for it, so the
/// commits after the bridge are stored too (a stop that cancelled it would
/// leave the repository without them, or without any snapshot at first).
#[test]
fn a_stop_during_a_bridge_waits_for_it_and_keeps_the_commits_after_it() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    wal_db(&db, 4096);
    let c = Connection::open(&db).unwrap();
    // Big enough that its first snapshot takes a while.
    c.execute_batch(
        "CREATE TABLE big(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
         INSERT INTO big SELECT randomblob(100000) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    let state = env.dir.path().join("st");
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    let t = Instant::now();
    let bridging = |state: &Path| bridged(state, false);
    while !bridging(&state) {
        assert!(t.elapsed() < Duration::from_secs(60), "no bridge began");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut log = Vec::new();
    burst(&c, 10, &mut log, &db);
    assert!(
        bridging(&state),
        "the bridge ended before the stop: a bigger database is needed"
    );
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("waiting for it"), "{out:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
}

#[test]
fn page_sizes_from_512_to_65536_are_captured() {
    for ps in [512, 65536] {
        let env = Env::new();
        let (db, state) = wal_setup(&env, ps);
        let rep = Replicator::start(&env, &state, &[&db], &[]);
        let c = Connection::open(&db).unwrap();
        let mut log = Vec::new();
        burst(&c, 30, &mut log, &db);
        c.execute_batch("PRAGMA wal_checkpoint(RESTART)").unwrap();
        burst(&c, 30, &mut log, &db);
        std::thread::sleep(Duration::from_millis(1500));
        rep.stop("TERM").ok();
        assert_eq!(
            restore_at(&env, &db, "latest", "latest.db").unwrap(),
            state_of(&db),
            "page size {ps}"
        );
        let mid = log[40].at_ns + 4_000_000;
        assert_eq!(
            restore_at(&env, &db, &rfc3339(mid), "mid.db").unwrap(),
            expected_at(&log, mid),
            "page size {ps}"
        );
        // `dump --at` writes the same database, and its SQL replays to it.
        let dumped = env.dir.path().join("dumped.db");
        env.run(&[
            "dump",
            "--db",
            s(&db),
            "--at",
            &rfc3339(mid),
            "--output",
            s(&dumped),
        ])
        .ok();
        assert_eq!(state_of(&dumped), expected_at(&log, mid), "page size {ps}");
        let sql = env.dir.path().join("dumped.sql");
        env.run(&[
            "dump",
            "--db",
            s(&db),
            "--at",
            "latest",
            "--format",
            "sql",
            "--output",
            s(&sql),
        ])
        .ok();
        let replayed = env.dir.path().join("replayed.db");
        let c = Connection::open(&replayed).unwrap();
        c.execute_batch(&std::fs::read_to_string(&sql).unwrap())
            .unwrap();
        drop(c);
        assert_eq!(state_of(&replayed), state_of(&db), "page size {ps}");
    }
}

/// Waits until the capture runs and has stored its first commits: a
/// loaded machine may take longer than a burst to start `replicate`.
fn wait_stored(env: &Env) {
    let t = Instant::now();
    while std::fs::read_dir(env.repo.join("changes")).map_or(true, |mut d| d.next().is_none()) {
        assert!(t.elapsed() < Duration::from_secs(120), "nothing was stored");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `latest` restores the database's present state.
pub fn wait_restorable(env: &Env, db: &Path) {
    let t = Instant::now();
    let want = state_of(db);
    loop {
        let got = restore_at(env, db, "latest", "probe.db");
        if got.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "never stored: {want:?}, restored {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Paths of the change objects stored.
fn changes(env: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(env.repo.join("changes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_removed_duplicated_swapped_or_foreign_change_object_is_named_not_skipped() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    let other = env.dir.path().join("other.db");
    wal_db(&db, 4096);
    wal_db(&other, 4096);
    let state = env.dir.path().join("st");
    let rep = Replicator::start(&env, &state, &[&db, &other], &[]);
    let c = Connection::open(&db).unwrap();
    let o = Connection::open(&other).unwrap();
    let mut log = Vec::new();
    let mut olog = Vec::new();
    // A few intervals each: fewer than a bundle's 16.
    for _ in 0..4 {
        burst(&c, 8, &mut log, &db);
        burst(&o, 2, &mut olog, &other);
        std::thread::sleep(Duration::from_millis(600));
    }
    std::thread::sleep(Duration::from_secs(1));
    rep.stop("TERM").ok();
    let all = changes(&env);
    assert!(all.len() >= 6, "{all:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "ok.db").unwrap(),
        state_of(&db)
    );
    // `check` reads every stream's objects and finds nothing wrong.
    let clean: serde_json::Value =
        serde_json::from_str(env.run(&["check", "--json"]).ok()).unwrap();
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
    assert!(
        clean["changes"].as_u64().unwrap() >= all.len() as u64,
        "{clean}"
    );
    // Which objects are the first database's: restore after removing each
    // in turn tells (a removed one with later ones stored is named).
    let backup = env.dir.path().join("changes-backup");
    crate::util::copy_dir(&env.repo.join("changes"), &backup);
    let reset = || {
        std::fs::remove_dir_all(env.repo.join("changes")).unwrap();
        crate::util::copy_dir(&backup, &env.repo.join("changes"));
    };
    let mut named = 0;
    for victim in &all {
        let bytes = std::fs::read(victim).unwrap();
        std::fs::remove_file(victim).unwrap();
        let r = restore_at(&env, &db, "latest", "cut.db");
        let checked = env.run(&["check"]);
        reset();
        match r {
            Err(r) => {
                let name = victim.file_name().unwrap().to_str().unwrap();
                r.fails(13, &[&name[..8], "missing", "later ones are stored"]);
                // `check` names it too.
                checked.fails(1, &["check found 1 error"]);
                assert!(
                    checked.stdout.contains(&name[..8])
                        && checked.stdout.contains("later ones are stored"),
                    "{checked:?}"
                );
                named += 1;
                // The same object under another's name: refused, named.
                for other_victim in all.iter().filter(|p| *p != victim) {
                    std::fs::write(other_victim, &bytes).unwrap();
                    let r = restore_at(&env, &db, "latest", "swapped.db");
                    let checked = env.run(&["check"]);
                    reset();
                    // Whichever stream the overwritten object was, check
                    // reads it and refuses it.
                    checked.fails(1, &["check found"]);
                    assert!(checked.stdout.contains("belongs"), "{checked:?}");
                    if let Err(r) = r {
                        assert_eq!(r.code, 13, "{r:?}");
                        assert!(r.stderr.contains("belongs"), "{r:?}");
                    }
                }
            }
            // The last object of a stream: the stream ends earlier, as a
            // truncated history would (no later object to tell).
            Ok(state) => assert!(log.iter().any(|l| l.state == state) || state.0 <= 0),
        }
    }
    assert!(named >= 1, "no removed object was named");
    // A flipped byte: authentication fails, named.
    let mut bytes = std::fs::read(&all[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&all[0], &bytes).unwrap();
    let a = restore_at(&env, &db, "latest", "flip.db");
    let b = restore_at(&env, &other, "latest", "flip2.db");
    let failed: Vec<Run> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(failed.len(), 1, "exactly one stream holds it");
    failed[0].fails(13, &["failed authentication"]);
    let checked = env.run(&["check"]);
    checked.fails(1, &["check found 1 error"]);
    assert!(
        checked.stdout.contains("failed authentication"),
        "{checked:?}"
    );
    reset();
    env.run(&["check"]).ok();
}

#[test]
fn the_spool_holds_commits_while_the_repository_is_unreachable() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    let c = Connection::open(&db).unwrap();
    let mut log = Vec::new();
    burst(&c, 10, &mut log, &db);
    wait_stored(&env);
    // The storage goes away: the writer never waits, the WAL stays its own
    // size, commits wait in the spool.
    let away = env.dir.path().join("repo-away");
    std::fs::rename(&env.repo, &away).unwrap();
    let started = Instant::now();
    burst(&c, 40, &mut log, &db);
    c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
    burst(&c, 20, &mut log, &db);
    assert!(started.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let spooled: u64 = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
        .count() as u64;
    assert!(spooled >= 2, "{spooled} objects spooled");
    // Back: what waited is stored, in order; nothing is lost.
    std::fs::rename(&away, &env.repo).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
    let mid = log[30].at_ns + 4_000_000;
    assert_eq!(
        restore_at(&env, &db, &rfc3339(mid), "mid.db").unwrap(),
        expected_at(&log, mid)
    );
}

#[test]
fn a_database_replaced_while_captured_is_bridged() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    {
        let c = Connection::open(&db).unwrap();
        let mut log = Vec::new();
        burst(&c, 10, &mut log, &db);
        // Every commit read before the last connection closes (which
        // checkpoints and deletes the WAL): the only gap is the rename.
        wait_restorable(&env, &db);
    }
    // Another database renamed over it (as a restore does).
    let new = env.dir.path().join("new.db");
    wal_db(&new, 4096);
    Connection::open(&new)
        .unwrap()
        .execute_batch("INSERT INTO t(v, at) VALUES (x'01', 1), (x'02', 2);")
        .unwrap();
    std::fs::rename(&new, &db).unwrap();
    let c = Connection::open(&db).unwrap();
    let mut log = Vec::new();
    burst(&c, 10, &mut log, &db);
    std::thread::sleep(Duration::from_secs(3));
    let out = rep.stop("TERM");
    // The gap is reported and bridged. Its first cause is the replacement,
    // or, when the capture reads the new file's WAL before it looks at the
    // file again (a busy machine), that WAL not continuing the old one.
    assert!(
        out.stderr.contains("bridging with a snapshot")
            && (out.stderr.contains("replaced")
                || out.stderr.contains("the WAL no longer continues")),
        "{out:?}"
    );
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
}

#[test]
fn folds_make_snapshots_and_retention_keeps_what_restores_need() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &["--fold-every", "3s"]);
    let c = Connection::open(&db).unwrap();
    let mut log = Vec::new();
    for _ in 0..4 {
        burst(&c, 20, &mut log, &db);
        std::thread::sleep(Duration::from_millis(1500));
    }
    std::thread::sleep(Duration::from_secs(4));
    burst(&c, 10, &mut log, &db);
    std::thread::sleep(Duration::from_secs(1));
    rep.stop("TERM").ok();
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let kinds: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["continuous"]["kind"]
                .as_str()
                .unwrap_or("none")
                .to_string()
        })
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "fold").count() >= 2,
        "{kinds:?}"
    );
    // A fold is an ordinary snapshot: it restores by itself, and a restore
    // to a moment goes through folds.
    let fold = listed
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["continuous"]["kind"] == "fold")
        .unwrap();
    let fold_at = fold["continuous"]["time_ns"].as_i64().unwrap();
    let target = env.dir.path().join("fold.db");
    env.run(&[
        "restore",
        fold["id"].as_str().unwrap(),
        "--target",
        s(&target),
    ])
    .ok();
    // (Its moment is when the capture read its last commit, which may be
    // a little before that COMMIT returned to the writer.)
    let got = state_of(&target);
    assert!(
        got == expected_at(&log, fold_at) || got == expected_at(&log, fold_at + 50_000_000),
        "{got:?}"
    );
    let early = log[10].at_ns + 4_000_000;
    assert_eq!(
        restore_at(&env, &db, &rfc3339(early), "early.db").unwrap(),
        expected_at(&log, early)
    );
    // Listings say what moments restore.
    let listing = env.run(&["snapshots"]);
    assert!(
        listing.ok().contains("continuous: app.db")
            && listing.stdout.contains("restores to any commit from"),
        "{listing:?}"
    );
    let shown = env.run(&["show", fold["id"].as_str().unwrap()]);
    assert!(shown.ok().contains("fold after change object"), "{shown:?}");
    assert!(
        shown.stdout.contains("restores   any commit from"),
        "{shown:?}"
    );
    // Retention: with no window, the changes before the newest fold go;
    // the latest state and the folds stay whole.
    let before = changes(&env).len();
    let out = env.run(&["prune", "--keep-changes", "0s", "--json"]);
    let done: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let deleted = done["stats"]["changes_deleted"].as_u64().unwrap();
    assert!(deleted > 0, "{done}");
    assert_eq!(changes(&env).len() as u64, before as u64 - deleted);
    assert_eq!(
        restore_at(&env, &db, "latest", "after-prune.db").unwrap(),
        state_of(&db)
    );
    // A moment whose changes are gone restores to the snapshot before it,
    // and says so; no error.
    let r = run(env.command(&[
        "restore",
        "--db",
        s(&db),
        "--at",
        &rfc3339(early),
        "--target",
        s(&env.dir.path().join("pruned.db")),
    ]));
    assert!(r.ok().contains("retention removed"), "{r:?}");
    env.run(&["check"]).ok();
    // Forgetting every snapshot of the stream: its objects are orphans,
    // deleted once a day old.
    let all: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let mut forget = vec!["forget".to_string()];
    forget.extend(
        all.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string()),
    );
    let forget: Vec<&str> = forget.iter().map(String::as_str).collect();
    env.run(&forget).ok();
    let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
    for p in changes(&env) {
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    env.run(&["prune"]).ok();
    assert!(changes(&env).is_empty(), "{:?}", changes(&env));
}
