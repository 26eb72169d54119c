//! `litevault backup`: real databases from the workload generator
//! (`tests/util/workload.rs`), the real binary, real repositories.

use std::path::{Path, PathBuf};

use litevault::Repository;

use crate::util::{run, Env};

/// Runs the workload generator with `workload.py`'s arguments:
/// `create DB --size-mb N --seed S` or `mutate DB --step K --seed S`.
pub fn workload(args: &[&str]) {
    let flag = |name: &str| -> u64 {
        let i = args
            .iter()
            .position(|a| *a == name)
            .unwrap_or_else(|| panic!("{name} in {args:?}"));
        args[i + 1].parse().unwrap()
    };
    let db = Path::new(args[1]);
    match args[0] {
        "create" => crate::util::workload::create(db, flag("--size-mb"), flag("--seed")),
        "mutate" => crate::util::workload::mutate(db, flag("--step"), flag("--seed")),
        other => panic!("unknown workload command {other}"),
    }
}

/// A workload database of about `mb` MiB.
pub fn make_db(env: &Env, name: &str, mb: u32, seed: u32) -> PathBuf {
    let p = env.dir.path().join(name);
    workload(&[
        "create",
        p.to_str().unwrap(),
        "--size-mb",
        &mb.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    p
}

/// Runs `backup --json` and returns the parsed summary.
pub fn backup_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["backup", "--json"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    serde_json::from_str(out.ok().trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

pub fn open(env: &Env) -> Repository {
    env.open_repo()
}

/// Every snapshot's image, reassembled and verified against its manifest.
pub fn images(env: &Env) -> Vec<(litevault::Manifest, Vec<u8>)> {
    let repo = open(env);
    repo.snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, m)| {
            let mut img = Vec::new();
            litevault::dump_image(&repo, &id, &mut img).unwrap();
            (m, img)
        })
        .collect()
}

#[test]
fn second_backup_after_a_day_of_churn_adds_a_small_fraction() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 8, 42);
    // Byte-for-byte images below: free pages kept as they are.
    let first = backup_json(
        &env,
        &[
            db.to_str().unwrap(),
            "--keep-free-pages",
            "--tag",
            "env_production,db_app",
        ],
    );
    assert_eq!(first["skipped"], false);
    let first_image = std::fs::read(&db).unwrap();
    workload(&[
        "mutate",
        db.to_str().unwrap(),
        "--step",
        "1",
        "--seed",
        "42",
    ]);
    let second = backup_json(
        &env,
        &[
            db.to_str().unwrap(),
            "--keep-free-pages",
            "--tag",
            "env_production",
            "--tag",
            "db_app",
        ],
    );
    let (a1, a2) = (
        first["added_bytes"].as_u64().unwrap(),
        second["added_bytes"].as_u64().unwrap(),
    );
    // Cut points follow the repository's random chunker key, so the share
    // varies from one repository to the next: 7.5% to 11% in 20 runs.
    assert!(a2 * 7 < a1, "second backup added {a2} bytes, first {a1}");
    assert!(second["reused_chunks"].as_u64().unwrap() > 0);

    let imgs = images(&env);
    assert_eq!(imgs.len(), 2);
    assert_eq!(
        imgs[0].1, first_image,
        "first snapshot reassembles to the day-0 file"
    );
    assert_eq!(
        imgs[1].1,
        std::fs::read(&db).unwrap(),
        "second snapshot reassembles to the day-1 file"
    );
    for (m, img) in &imgs {
        assert_eq!(m.tags, ["db_app", "env_production"]);
        assert_eq!(m.image.bytes, img.len() as u64);
        assert_eq!(m.image.journal_mode, "wal");
        assert_eq!(m.database.name, "app.db");
        assert!(Path::new(&m.database.path).is_absolute());
    }
}

#[test]
fn unchanged_database_is_skipped_unless_forced() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 2, 1);
    backup_json(&env, &[db.to_str().unwrap()]);
    let again = backup_json(&env, &[db.to_str().unwrap()]);
    assert_eq!(again["skipped"], true, "{again}");
    assert_eq!(again["added_bytes"], 0);
    let human = env.run(&["backup", db.to_str().unwrap()]);
    assert!(human.ok().contains("unchanged since snapshot"), "{human:?}");
    assert_eq!(open(&env).snapshots().unwrap().len(), 1);

    let forced = backup_json(&env, &[db.to_str().unwrap(), "--force"]);
    assert_eq!(forced["skipped"], false);
    assert_eq!(forced["manifest"]["stats"]["new_chunks"], 0);
    assert!(
        forced["added_bytes"].as_u64().unwrap() < 64 * 1024,
        "{forced}"
    );
    // Other tags are another series: not skipped.
    let tagged = backup_json(&env, &[db.to_str().unwrap(), "--tag", "x"]);
    assert_eq!(tagged["skipped"], false);
    assert_eq!(open(&env).snapshots().unwrap().len(), 3);
}

/// Waits until files written before now count as settled (a stamp is kept
/// only for files last written 2 s before the read began).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(2100));
}

/// Backs `db` up and says whether it was read: (read, stored a snapshot).
fn backed_up(env: &Env, db: &Path, extra: &[&str]) -> (bool, bool) {
    let mut args = vec![db.to_str().unwrap()];
    args.extend_from_slice(extra);
    let s = backup_json(env, &args);
    (s["not_read"] == false, s["skipped"] == false)
}

/// The newest snapshot's manifest of the database at `db`.
fn newest(env: &Env, db: &Path) -> litevault::Manifest {
    let path = std::fs::canonicalize(db).unwrap();
    open(env)
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| Path::new(&m.database.path) == path)
        .max_by_key(litevault::Manifest::timestamp)
        .unwrap()
}

#[test]
fn unchanged_file_is_not_read_until_anything_writes_it() {
    let env = Env::new();
    env.init();
    let wal = make_db(&env, "app.db", 2, 1);
    let journal = env.dir.path().join("journal.db");
    {
        let c = rusqlite::Connection::open(&journal).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=delete; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(100000));",
        )
        .unwrap();
    }
    // Written just now: the stamp is not kept, so the next backup reads.
    assert_eq!(backed_up(&env, &journal, &[]), (true, true));
    assert_eq!(newest(&env, &journal).image.file, None);
    assert_eq!(backed_up(&env, &journal, &[]), (true, false));

    settle();
    for db in [&wal, &journal] {
        assert_eq!(backed_up(&env, db, &["--force"]), (true, true), "{db:?}");
        assert!(newest(&env, db).image.file.is_some(), "{db:?}");
        assert_eq!(backed_up(&env, db, &[]), (false, false), "{db:?}");
        let human = env.run(&["backup", db.to_str().unwrap()]);
        assert!(
            human.ok().contains("not written since (not read)"),
            "{human:?}"
        );
        // What needs the read gets it.
        for flags in [
            &["--verify-source"][..],
            &["--keep-free-pages"],
            &["--strategy", "vacuum"],
        ] {
            assert!(backed_up(&env, db, flags).0, "{db:?} {flags:?}");
        }
        // Another series (other tags) has no stamp yet.
        assert_eq!(backed_up(&env, db, &["--tag", "other"]), (true, true));
    }

    // Every kind of write is seen, each on a settled, stamped file.
    type Write<'a> = (&'a str, &'a Path, Box<dyn Fn() + 'a>);
    let writes: Vec<Write> = vec![
        (
            "a commit into the WAL, the writer still open",
            &wal,
            Box::new(|| {
                let c = rusqlite::Connection::open(&wal).unwrap();
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS extra(x); INSERT INTO extra VALUES (1);",
                )
                .unwrap();
                // Kept open: the WAL is not checkpointed into the file.
                std::mem::forget(c);
            }),
        ),
        (
            "a commit in rollback-journal mode",
            &journal,
            Box::new(|| {
                let c = rusqlite::Connection::open(&journal).unwrap();
                c.execute("UPDATE t SET x = randomblob(100000)", [])
                    .unwrap();
            }),
        ),
        (
            "bytes written in place, the modification time put back",
            &journal,
            Box::new(|| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&journal)
                    .unwrap();
                let mtime = f.metadata().unwrap().modified().unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, b"\x7f\x7f\x7f\x7f", 24).unwrap();
                f.set_modified(mtime).unwrap();
            }),
        ),
        (
            "another file of the same size and times renamed over it",
            &journal,
            Box::new(|| {
                let other = env.dir.path().join("other.db");
                let bytes = std::fs::read(&journal).unwrap();
                let mut changed = bytes.clone();
                changed[24..28].copy_from_slice(b"\x01\x02\x03\x04");
                std::fs::write(&other, changed).unwrap();
                let times = std::fs::metadata(&journal).unwrap().modified().unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(&other)
                    .unwrap()
                    .set_modified(times)
                    .unwrap();
                std::fs::rename(&other, &journal).unwrap();
            }),
        ),
    ];
    for (what, db, write) in &writes {
        settle();
        assert_eq!(backed_up(&env, db, &["--force"]), (true, true), "{what}");
        assert_eq!(backed_up(&env, db, &[]), (false, false), "{what}");
        write();
        assert_eq!(backed_up(&env, db, &[]), (true, true), "after {what}");
        // Written just now: no stamp, and the next backup reads again.
        assert_eq!(newest(&env, db).image.file, None, "after {what}");
        assert_eq!(backed_up(&env, db, &[]), (true, false), "after {what}");
    }
    // Each stored snapshot restores to what was read.
    let check = env.run(&["check", "--read-data"]);
    check.ok();
}

#[test]
fn vacuum_strategy_stores_a_compacted_export() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 4, 7);
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let s = backup_json(
        &env,
        &[
            db.to_str().unwrap(),
            "--strategy",
            "vacuum",
            "--temp-dir",
            tmp.to_str().unwrap(),
            "--verify-source",
        ],
    );
    assert_eq!(s["manifest"]["image"]["strategy"], "vacuum");
    assert_eq!(s["manifest"]["image"]["quick_check"], "ok");
    assert!(
        crate::util::names(&tmp).is_empty(),
        "the export was not deleted"
    );
    let (_, img) = images(&env).pop().unwrap();
    let restored = env.dir.path().join("restored.db");
    std::fs::write(&restored, img).unwrap();
    assert_eq!(dump(&restored), dump(&db));
}

/// `sqlite3 DB .dump` through rusqlite: every table's rows in order.
pub fn dump(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", db.display());
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let vals: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push(format!("{t}: {}", vals.join("|")));
        }
    }
    out
}

#[test]
fn two_databases_in_one_repository_dedup() {
    let env = Env::new();
    env.init();
    let prod = make_db(&env, "prod.db", 4, 3);
    let demo = env.dir.path().join("demo.db");
    std::fs::copy(&prod, &demo).unwrap();
    let a = backup_json(&env, &[prod.to_str().unwrap(), "--tag", "env_production"]);
    let b = backup_json(&env, &[demo.to_str().unwrap(), "--tag", "env_demo"]);
    assert!(a["manifest"]["stats"]["new_chunks"].as_u64().unwrap() > 10);
    assert_eq!(b["manifest"]["stats"]["new_chunks"], 0, "{b}");
    assert!(b["added_bytes"].as_u64().unwrap() < 64 * 1024, "{b}");
}

#[test]
fn bad_input_is_one_line_and_leaves_the_repository_consistent() {
    let env = Env::new();
    env.init();
    let missing = env.dir.path().join("missing.db");
    env.run(&["backup", missing.to_str().unwrap()])
        .fails(3, &["does not exist"]);
    env.run(&["backup", env.dir.path().to_str().unwrap()])
        .fails(3, &["is a directory"]);
    let text = env.dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, not a database at all").unwrap();
    env.run(&["backup", text.to_str().unwrap()])
        .fails(3, &["not an SQLite database"]);

    let db = make_db(&env, "app.db", 1, 5);
    let corrupt = env.dir.path().join("corrupt.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xa5;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    env.run(&["backup", corrupt.to_str().unwrap()])
        .fails(3, &["corrupt", "integrity_check"]);
    // Damage deep in a table passes a raw page read; --verify-source finds it.
    let deep = env.dir.path().join("deep.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 4096 + 8..n - 2048] {
        *b = 0xa5;
    }
    std::fs::write(&deep, &bytes).unwrap();
    env.run(&["backup", deep.to_str().unwrap(), "--verify-source"])
        .fails(3, &["failed PRAGMA quick_check"]);

    env.run(&["backup", db.to_str().unwrap(), "--tag", "has space"])
        .fails(1, &["invalid tag"]);
    env.run(&["backup", db.to_str().unwrap(), "--lock-timeout", "soon"])
        .fails(1, &["invalid duration"]);
    env.run(&["backup", db.to_str().unwrap(), "--time", "yesterday"])
        .fails(1, &["invalid time"]);
    env.run(&["backup", db.to_str().unwrap(), "--strategy", "tar"])
        .usage(&["tar", "[possible values: pages, vacuum]"]);

    assert!(open(&env).snapshots().unwrap().is_empty());
    // A later backup works.
    backup_json(&env, &[db.to_str().unwrap()]);
    assert_eq!(images(&env).len(), 1);
}

#[test]
fn database_locked_beyond_the_timeout() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("rollback.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);")
        .unwrap();
    let started = std::time::Instant::now();
    env.run(&["backup", db.to_str().unwrap(), "--lock-timeout", "300ms"])
        .fails(3, &["locked", "--lock-timeout"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    conn.execute_batch("COMMIT").unwrap();
    let s = backup_json(&env, &[db.to_str().unwrap()]);
    assert_eq!(s["manifest"]["image"]["journal_mode"], "delete");
}

#[test]
fn time_host_and_name_overrides_are_recorded() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "jobs.db", 1, 9);
    let s = backup_json(
        &env,
        &[
            db.to_str().unwrap(),
            "--time",
            "2026-01-02 03:04:05",
            "--host",
            "db1",
            "--name",
            "jobs",
        ],
    );
    let m = &s["manifest"];
    assert_eq!(m["time"], "2026-01-02T03:04:05Z");
    assert_eq!(m["host"], "db1");
    assert_eq!(m["database"]["name"], "jobs");
}

#[test]
fn empty_database_file_is_a_valid_backup() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    let s = backup_json(&env, &[db.to_str().unwrap()]);
    assert_eq!(s["manifest"]["image"]["bytes"], 0);
    assert!(images(&env)[0].1.is_empty());
    let mut c = env.bare();
    c.args(["--version"]);
    assert!(run(c).ok().contains("litevault"));
}

#[test]
fn database_over_one_gib_round_trips_through_the_lock_byte_page() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("big.db");
    // 1.15 GiB of repetitive rows: the lock-byte page (byte 2^30) is inside,
    // and repeated content keeps the test fast through dedup.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 290000)
         INSERT INTO t(x) SELECT printf('%.3900c', char(65 + i % 26)) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size > (1 << 30) + (64 << 20), "{size}");
    let s = backup_json(&env, &[db.to_str().unwrap()]);
    assert_eq!(s["manifest"]["image"]["bytes"], size);
    let restored = env.dir.path().join("restored.db");
    env.run(&["dump", "latest", "--output", restored.to_str().unwrap()])
        .ok();
    assert!(
        std::fs::read(&restored).unwrap() == std::fs::read(&db).unwrap(),
        "restored image differs"
    );
    let c = rusqlite::Connection::open(&restored).unwrap();
    assert_eq!(
        c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
}

#[test]
fn dump_as_sql_replays_into_an_equal_database() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 2, 21);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE odd(\"we\"\"ird\" TEXT, r REAL, b BLOB, n, g INTEGER GENERATED ALWAYS AS (length(\"we\"\"ird\")) VIRTUAL);
             INSERT INTO odd VALUES ('it''s', 1.5, x'00ff', NULL), ('line
break', -0.1, x'', 9007199254740993), ('', 1e300, NULL, 'text');
             CREATE VIEW v AS SELECT count(*) FROM odd;
             CREATE TRIGGER tr AFTER INSERT ON odd BEGIN SELECT 1; END;",
        )
        .unwrap();
    }
    backup_json(&env, &[db.to_str().unwrap()]);
    let sql = env.dir.path().join("dump.sql");
    env.run(&[
        "dump",
        "latest",
        "--format",
        "sql",
        "--output",
        sql.to_str().unwrap(),
    ])
    .ok();
    let replayed = env.dir.path().join("replayed.db");
    let c = rusqlite::Connection::open(&replayed).unwrap();
    c.execute_batch(&std::fs::read_to_string(&sql).unwrap())
        .unwrap();
    drop(c);
    assert_eq!(dump(&replayed), dump(&db));
    // To standard output too.
    let out = env.run(&["dump", "latest", "--format", "sql"]);
    assert!(
        out.ok().starts_with("PRAGMA foreign_keys=OFF;"),
        "{}",
        &out.stdout[..100.min(out.stdout.len())]
    );
    env.run(&["dump", "ffffffff"])
        .fails(1, &["no snapshot with id ffffffff"]);
    env.run(&["dump", "latest", "--tag", "nope"])
        .fails(1, &["no snapshot matches"]);
}
