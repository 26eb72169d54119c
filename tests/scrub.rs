//! A clone scrubbed by `--post-sql` holds no byte of what the script
//! deleted or overwrote (free pages, the unused space inside pages, the
//! WAL); the script reaches no other file; a script that breaks the
//! schema is caught on a fresh connection. Imports of hostile SQL dumps
//! are confined the same way.

// Each test is one scenario, told in order.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};

use crate::util::{Env, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A production database: users with unique markers in every column an
/// attacker could look for, an index over an expression (its values exist
/// only in the index), and a table of secrets.
fn production(env: &Env, journal: &str) -> PathBuf {
    let db = env.dir.path().join(format!("prod-{journal}.db"));
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode={journal};
         CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, name TEXT, bio TEXT);
         CREATE INDEX users_email ON users(email);
         CREATE INDEX users_upper ON users(upper(name));
         CREATE TABLE secrets(id INTEGER PRIMARY KEY, token TEXT);"
    ))
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..1500 {
        tx.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i,
                format!("prodmail{i:05}@production.example"),
                format!("prodname{i:05}"),
                format!("biography of customer {i:05} ").repeat(6)
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO secrets VALUES (?1, ?2)",
            rusqlite::params![i, format!("prodtoken{i:05}-{}", "k".repeat(40))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db
}

fn restore(env: &Env, args: &[&str]) -> Run {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    env.run(&a)
}

/// How many times `needle` occurs in `hay`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Every file beside `db` that starts with its name (`-wal`, `-shm`,
/// `-journal`, temporaries).
fn side_files(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n != name && n.contains(&name)
        })
        .collect()
}

#[test]
fn a_scrubbed_clone_holds_no_byte_of_what_the_script_removed() {
    // (script, markers that must be gone, markers that must stay)
    let cases: [(&str, &str, Vec<String>, Vec<String>); 4] = [
        (
            "update",
            "UPDATE users SET email = 'user' || id || '@example.invalid', name = 'Anonymous', bio = '';",
            (0..1500)
                .step_by(7)
                .flat_map(|i| {
                    [
                        format!("prodmail{i:05}@production.example"),
                        format!("prodname{i:05}"),
                        format!("PRODNAME{i:05}"),
                        format!("customer {i:05}"),
                    ]
                })
                .collect(),
            vec!["prodtoken00003".into()],
        ),
        (
            "delete",
            "DELETE FROM users WHERE id % 2 = 0;",
            (0..1500)
                .step_by(14)
                .flat_map(|i| {
                    [
                        format!("prodmail{i:05}@"),
                        format!("PRODNAME{i:05}"),
                        format!("customer {i:05}"),
                    ]
                })
                .collect(),
            vec!["prodmail00001@".into(), "PRODNAME00003".into()],
        ),
        (
            "drop table",
            "DROP TABLE secrets;",
            (0..1500)
                .step_by(7)
                .map(|i| format!("prodtoken{i:05}"))
                .collect(),
            vec!["prodmail00002@".into()],
        ),
        (
            "drop index",
            "DROP INDEX users_upper;",
            (0..1500)
                .step_by(7)
                .map(|i| format!("PRODNAME{i:05}"))
                .collect(),
            vec!["prodname00007".into()],
        ),
    ];
    for journal in ["wal", "delete"] {
        let env = Env::new();
        env.init();
        let prod = production(&env, journal);
        env.run(&["backup", s(&prod)]).ok();
        for (what, script, gone, kept) in &cases {
            let f = env.dir.path().join("scrub.sql");
            std::fs::write(&f, script).unwrap();
            let demo = env
                .dir
                .path()
                .join(format!("demo-{}.db", what.replace(' ', "-")));
            let out = restore(
                &env,
                &[
                    "latest",
                    "--target",
                    s(&demo),
                    "--post-sql",
                    s(&f),
                    "--json",
                ],
            );
            let summary: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
            assert_eq!(summary["scrub"]["vacuumed"], true, "{summary}");
            assert_eq!(summary["scrub"]["secure_delete"], true, "{summary}");
            let bytes = std::fs::read(&demo).unwrap();
            for m in gone {
                assert_eq!(
                    count(&bytes, m.as_bytes()),
                    0,
                    "{journal}, {what}: {m:?} survives in the clone's bytes"
                );
            }
            for m in kept {
                assert!(
                    count(&bytes, m.as_bytes()) > 0,
                    "{journal}, {what}: {m:?} should still be there"
                );
            }
            // No side file (a WAL of old pages, a journal) is left beside it.
            assert_eq!(
                side_files(&demo),
                Vec::<PathBuf>::new(),
                "{journal}, {what}"
            );
            let c = rusqlite::Connection::open(&demo).unwrap();
            let ok: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, journal, "the clone keeps the recorded journal mode");
        }
    }
}

#[test]
fn without_vacuum_the_clone_keeps_deleted_bytes_and_says_so() {
    let env = Env::new();
    env.init();
    let prod = production(&env, "delete");
    env.run(&["backup", s(&prod)]).ok();
    let f = env.dir.path().join("scrub.sql");
    std::fs::write(&f, "DROP INDEX users_upper;").unwrap();
    let demo = env.dir.path().join("demo.db");
    let out = restore(
        &env,
        &[
            "latest",
            "--target",
            s(&demo),
            "--post-sql",
            s(&f),
            "--no-vacuum",
        ],
    );
    assert!(out.ok().contains("not rebuilt (--no-vacuum)"), "{out:?}");
    // secure_delete alone zeroes the freed pages' content.
    let bytes = std::fs::read(&demo).unwrap();
    assert_eq!(count(&bytes, b"PRODNAME00007"), 0);
}

#[test]
fn post_sql_reaches_no_other_file() {
    let env = Env::new();
    env.init();
    let prod = production(&env, "wal");
    env.run(&["backup", s(&prod)]).ok();
    let other = env.dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE keep(x); INSERT INTO keep VALUES ('precious');")
        .unwrap();
    let other_before = std::fs::read(&other).unwrap();
    let into = env.dir.path().join("exfiltrated.db");
    let demo = env.dir.path().join("demo.db");
    for (script, what) in [
        (
            format!("ATTACH '{}' AS o; DELETE FROM o.keep;", s(&other)),
            "ATTACH",
        ),
        (
            format!(
                "UPDATE users SET email = 'x'; ATTACH 'file:{}?mode=rw' AS o; DELETE FROM o.keep;",
                s(&other)
            ),
            "ATTACH",
        ),
        (format!("VACUUM INTO '{}';", s(&into)), "VACUUM INTO"),
        (
            "SELECT load_extension('/tmp/nothing.so');".into(),
            "load_extension",
        ),
    ] {
        let f = env.dir.path().join("hostile.sql");
        std::fs::write(&f, &script).unwrap();
        let line = restore(&env, &["latest", "--target", s(&demo), "--post-sql", s(&f)]).fails(
            1,
            &[
                "--post-sql failed",
                "not allowed",
                "safe mode",
                "not touched",
            ],
        );
        assert!(line.contains(what), "{line}");
        assert!(!demo.exists(), "{script}: the target was made");
        assert!(!into.exists(), "{script}: VACUUM INTO wrote a file");
        assert_eq!(std::fs::read(&other).unwrap(), other_before, "{script}");
    }
}

#[test]
fn a_script_that_breaks_the_schema_is_caught_on_a_fresh_connection() {
    let env = Env::new();
    env.init();
    let prod = production(&env, "delete");
    env.run(&["backup", s(&prod)]).ok();
    let demo = env.dir.path().join("demo.db");
    std::fs::copy(&prod, &demo).unwrap();
    let before = std::fs::read(&demo).unwrap();
    for script in [
        // A schema SQLite cannot parse.
        "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = 'CREATE TABLE users(' WHERE name = 'users'; PRAGMA writable_schema = OFF;",
        // A table pointing at another table's pages.
        "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET rootpage = (SELECT rootpage FROM sqlite_schema WHERE name = 'secrets') WHERE name = 'users'; PRAGMA writable_schema = OFF;",
        // A table whose root page does not exist.
        "PRAGMA writable_schema = ON; INSERT INTO sqlite_schema VALUES ('table', 'ghost', 'ghost', 99999, 'CREATE TABLE ghost(x)'); PRAGMA writable_schema = OFF;",
    ] {
        let f = env.dir.path().join("breaks.sql");
        std::fs::write(&f, script).unwrap();
        // Without the rebuild, the check on a fresh connection catches it
        // (the script's own connection has the old schema cached).
        restore(
            &env,
            &[
                "latest",
                "--target",
                s(&demo),
                "--post-sql",
                s(&f),
                "--no-vacuum",
            ],
        )
        .fails(1, &["--post-sql failed", "not touched"]);
        assert_eq!(std::fs::read(&demo).unwrap(), before, "{script}");
        // With it, the rebuild fails, or rebuilds a database SQLite checks
        // whole (two tables sharing pages become two tables): either way
        // nothing broken is installed.
        let r = restore(
            &env,
            &[
                "latest",
                "--target",
                s(&demo),
                "--post-sql",
                s(&f),
                "--no-pre-restore",
            ],
        );
        if r.code == 0 {
            let ok: String = rusqlite::Connection::open(&demo)
                .unwrap()
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok", "{script}");
            std::fs::write(&demo, &before).unwrap();
        } else {
            r.fails(1, &["--post-sql failed", "not touched"]);
            assert_eq!(std::fs::read(&demo).unwrap(), before, "{script}");
        }
    }
}

#[test]
fn an_import_of_a_hostile_dump_reaches_no_other_file() {
    let env = Env::new();
    env.init();
    let other = env.dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE keep(x); INSERT INTO keep VALUES ('precious');")
        .unwrap();
    let before = std::fs::read(&other).unwrap();
    let into = env.dir.path().join("written.db");
    for (i, body) in [
        format!("ATTACH '{}' AS o;\nDELETE FROM o.keep;\n", s(&other)),
        format!("DETACH main;\nATTACH '{}' AS o;\n", s(&other)),
        format!("VACUUM INTO '{}';\n", s(&into)),
    ]
    .iter()
    .enumerate()
    {
        let dump = env.dir.path().join(format!("dump{i}.sql"));
        std::fs::write(
            &dump,
            format!("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(x);\nINSERT INTO t VALUES(1);\nCOMMIT;\n{body}"),
        )
        .unwrap();
        let out = env.run(&["import", s(&dump), "--db", "/srv/app.db"]);
        assert_eq!(out.code, 18, "{out:?}");
        assert!(
            out.stderr.contains("not allowed") && out.stderr.contains("line "),
            "{out:?}"
        );
        assert_eq!(std::fs::read(&other).unwrap(), before);
        assert!(!into.exists());
    }
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 0, "nothing was imported");
}
