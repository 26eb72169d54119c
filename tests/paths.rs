//! Paths that are not UTF-8 are recorded byte-exact: two databases whose
//! names differ only in bytes that are not UTF-8 are two databases (their
//! own groups, retention, `latest`), listed escaped (`caf\xe9.db`), and
//! named back either way with `--db`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::util::{run, Env};

/// A small database at `path` holding `marker`.
fn db_with(path: &Path, marker: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
        .unwrap();
    c.execute("INSERT INTO t VALUES (?1)", [marker]).unwrap();
}

fn marker_of(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT x FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn paths_that_are_not_utf8_stay_apart_and_can_be_named_back() {
    let env = Env::new();
    env.init();
    let dir = env.dir.path().join("dbs");
    std::fs::create_dir(&dir).unwrap();
    let names: [&[u8]; 3] = [b"caf\xe9.db", b"caf\xff.db", b"caf\\xe9.db"];
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(OsStr::from_bytes(n)))
        .collect();
    for (i, p) in paths.iter().enumerate() {
        db_with(p, &format!("marker-{i}"));
        let mut c = env.command(&["backup"]);
        c.arg(p);
        run(c).ok();
    }
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let mut shown: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["database"]["name"].as_str().unwrap().to_string())
        .collect();
    shown.sort();
    assert_eq!(shown, ["caf\\\\xe9.db", "caf\\xe9.db", "caf\\xff.db"]);
    let with_bytes = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["database"]["path_bytes"].is_string())
        .count();
    assert_eq!(
        with_bytes, 2,
        "only paths that are not UTF-8 carry their bytes"
    );

    // Three groups: keeping the last of each removes nothing.
    let out = env.run(&["forget", "--keep-last", "1", "--json"]);
    let done: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(done["removed"], 0, "{done}");
    assert_eq!(done["groups"].as_array().unwrap().len(), 3, "{done}");

    // Named back, as given (raw bytes) or as listed (escaped), or by name.
    let restore = |i: usize, how: &str, db_arg: &OsStr| {
        let target = env.dir.path().join(format!("restored-{i}-{how}.db"));
        let mut c = env.command(&["restore", "latest", "--target"]);
        c.arg(&target).arg("--db").arg(db_arg);
        (run(c), target)
    };
    for (i, p) in paths.iter().enumerate() {
        let shown_path = litevault::sys::escape_path(p.as_os_str().as_bytes());
        let name = litevault::sys::escape_path(names[i]);
        let mut ways = vec![("name", std::ffi::OsString::from(&name))];
        // (Unless it is also another database's path as typed: below.)
        if !paths
            .iter()
            .any(|q| q != p && q.to_str() == Some(shown_path.as_str()))
        {
            ways.push(("escaped", std::ffi::OsString::from(&shown_path)));
        }
        if p.to_str().is_none() {
            ways.push(("raw", p.as_os_str().to_owned()));
        }
        for (how, db_arg) in ways {
            let (out, target) = restore(i, how, &db_arg);
            out.ok();
            assert_eq!(
                marker_of(&target),
                format!("marker-{i}"),
                "{how} {shown_path}"
            );
        }
    }
    // The one text that is both a path as typed (a literal backslash) and
    // another's path as listed is refused as ambiguous, naming both; each
    // has another way to be named (above).
    let (out, _) = restore(9, "ambiguous", paths[2].as_os_str());
    out.fails(
        1,
        &[
            "matches snapshots of 2 databases",
            "caf\\xe9.db",
            "caf\\\\xe9.db",
        ],
    );
}

/// A target reached through a symlinked directory (a volume, `/var/run`)
/// is restored in place, over the existing database, plainly and live:
/// only a symlink at the target itself is refused by the later opens.
#[test]
fn a_target_under_a_symlinked_directory_is_restored() {
    let env = Env::new();
    env.init();
    let real = env.dir.path().join("data");
    std::fs::create_dir(&real).unwrap();
    let volume = env.dir.path().join("volume");
    std::os::unix::fs::symlink(&real, &volume).unwrap();
    let db = volume.join("app.db");
    db_with(&db, "one");
    let mut c = env.command(&["backup"]);
    c.arg(&db);
    run(c).ok();
    let set = |marker: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("UPDATE t SET x = ?1", [marker])
            .unwrap();
    };
    for live in [false, true] {
        set("two");
        let mut c = env.command(&["restore", "latest", "--target"]);
        c.arg(&db);
        if live {
            c.arg("--live");
        }
        run(c).ok();
        assert_eq!(marker_of(&real.join("app.db")), "one", "live: {live}");
    }
    // The pre-restore snapshots of the replaced database were taken.
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let pre = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "pre-restore")
        })
        .count();
    assert_eq!(pre, 2, "{listed}");
}
