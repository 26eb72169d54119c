//! A backup never writes into the database it backs up: when it holds the
//! last connection, closing it neither checkpoints the WAL nor deletes it
//! (an application with `wal_autocheckpoint=0`, or another tool reading
//! the WAL, finds it as it left it). The same holds for `diff` against a
//! live database.

use std::path::Path;
use std::process::Command;

use crate::util::Env;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A WAL database whose last writer committed with autocheckpoints off
/// and then died, so its WAL holds committed frames and nobody has it open.
fn wal_left_by_a_dead_writer(db: &Path) {
    let script = format!(
        r#"
import os, signal, sqlite3
c = sqlite3.connect({db:?}, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
for i in range(2000):
    c.execute("INSERT INTO t(v) VALUES (?)", ("row %d " % i * 10,))
os.kill(os.getpid(), signal.SIGKILL)
"#,
        db = s(db)
    );
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(!status.success(), "the writer was to die");
}

fn read(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

#[test]
fn a_backup_leaves_the_wal_of_a_database_nobody_has_open_as_it_was() {
    for strategy in ["pages", "vacuum"] {
        let env = Env::new();
        env.init();
        let db = env.dir.path().join("app.db");
        wal_left_by_a_dead_writer(&db);
        let wal = env.dir.path().join("app.db-wal");
        let (db_before, wal_before) = (read(&db).unwrap(), read(&wal).unwrap());
        assert!(wal_before.len() > 100_000, "the WAL holds the rows");
        env.run(&["backup", s(&db), "--strategy", strategy]).ok();
        env.run(&["diff", "latest", "--target", s(&db)]).ok();
        assert_eq!(
            read(&db).unwrap(),
            db_before,
            "{strategy}: the database file changed"
        );
        assert_eq!(
            read(&wal).as_deref(),
            Some(&wal_before[..]),
            "{strategy}: the WAL was checkpointed or removed"
        );
        // The snapshot holds what the WAL committed.
        let out = env.dir.path().join("restored.db");
        env.run(&["restore", "latest", "--target", s(&out)]).ok();
        let n: i64 = rusqlite::Connection::open(&out)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2000, "{strategy}");
    }
}

#[test]
fn a_backup_of_a_rollback_database_writes_nothing_beside_it() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let before = read(&db).unwrap();
    let names = crate::util::names(env.dir.path());
    env.run(&["backup", s(&db)]).ok();
    assert_eq!(read(&db).unwrap(), before);
    let after: Vec<String> = crate::util::names(env.dir.path())
        .into_iter()
        .filter(|n| n != "repo" && n != "cache")
        .collect();
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| n != "repo" && n != "cache")
        .collect();
    assert_eq!(after, names, "a file appeared beside the database");
}
