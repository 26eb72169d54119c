//! The habits restic, borg, sqlite3 and Litestream users bring: shell
//! completions and man pages, `--password-command`, restore by time
//! (`--before`), restore only on first boot (`--if-missing`), many
//! databases in one backup (`backup A B`, `--find DIR`).

use std::path::Path;

use crate::util::{self, Env};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A database with one row per backup, backed up at the given times.
fn history(env: &Env, times: &[&str]) -> std::path::PathBuf {
    let db = env.dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t(v TEXT);").unwrap();
    for t in times {
        c.execute("INSERT INTO t VALUES (?1)", [t]).unwrap();
        env.run(&["backup", s(&db), "--time", t]).ok();
    }
    db
}

fn rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn completions_parse_and_man_pages_render() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = env.run(&["generate", "--completions", shell]);
        let text = out.ok();
        assert!(
            text.contains("snapshots") && text.contains("restore"),
            "{shell}"
        );
        if shell == "bash" {
            let f = env.dir.path().join("litevault.bash");
            std::fs::write(&f, text).unwrap();
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&f)
                .output()
                .unwrap();
            assert!(check.status.success(), "bash -n: {check:?}");
            // Sourced, it registers the completion function.
            let sourced = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("source {} && complete -p litevault", f.display()))
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&sourced.stdout).contains("litevault"),
                "{sourced:?}"
            );
        }
    }
    env.run(&["generate", "--completions", "tcsh"])
        .usage(&["tcsh", "bash"]);
    env.run(&["generate"]).usage(&["--completions", "--man"]);

    let man = env.dir.path().join("man/man1");
    env.run(&["generate", "--man", s(&man)]).ok();
    for page in [
        "litevault.1",
        "litevault-backup.1",
        "litevault-restore.1",
        "litevault-run.1",
    ] {
        assert!(man.join(page).is_file(), "{page}");
    }
    let rendered = std::process::Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(man.join("litevault-restore.1"))
        .env("MANWIDTH", "100")
        .output()
        .expect("man (apt install man-db)");
    assert!(rendered.status.success(), "{rendered:?}");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        text.contains("--target") && text.contains("--before"),
        "{text}"
    );
    // A directory that cannot be made: one line, exit 1.
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    env.run(&["generate", "--man", s(&file.join("sub"))])
        .fails(1, &["man page directory", "a-file"]);
}

#[test]
fn password_command_opens_the_repository() {
    let env = Env::new();
    env.init();
    let mut c = env.bare();
    c.arg("--repo").arg(&env.repo).args([
        "--password-command",
        &format!("cat {}", env.password_file.display()),
        "snapshots",
    ]);
    util::run(c).ok();
    // From the environment too.
    let mut c = env.bare();
    c.arg("--repo").arg(&env.repo).arg("snapshots").env(
        "LITEVAULT_PASSWORD_COMMAND",
        format!("cat {}", env.password_file.display()),
    );
    util::run(c).ok();
    // A failing command, a wrong password, one printing nothing.
    for (cmd, code, needle) in [
        ("exit 3", 1, "the password command failed"),
        ("echo wrong", 12, "password"),
        ("true", 1, "printed nothing"),
    ] {
        let mut c = env.bare();
        c.arg("--repo")
            .arg(&env.repo)
            .args(["--password-command", cmd, "snapshots"]);
        util::run(c).fails(code, &[needle]);
    }
    // With --password-file it is a usage error.
    env.run(&["--password-command", "true", "snapshots"])
        .usage(&["--password-command", "--password-file"]);
}

#[test]
fn restore_before_picks_the_newest_snapshot_at_or_before_a_time() {
    let env = Env::new();
    env.init();
    history(
        &env,
        &[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-03T12:00:00Z",
        ],
    );
    let target = env.dir.path().join("restored.db");
    for (before, want) in [
        ("2026-01-02T00:00:00Z", 2),
        ("2026-01-02 23:59:59", 2),
        ("2026-01-03", 2),
        ("2026-01-04", 3),
        ("2026-01-01T00:00:00Z", 1),
    ] {
        let _ = std::fs::remove_file(&target);
        env.run(&[
            "restore",
            "latest",
            "--before",
            before,
            "--target",
            s(&target),
        ])
        .ok();
        assert_eq!(rows(&target), want, "{before}");
    }
    // dump takes it too.
    let out = env.dir.path().join("dumped.db");
    env.run(&[
        "dump",
        "latest",
        "--before",
        "2026-01-01T12:00:00Z",
        "--output",
        s(&out),
    ])
    .ok();
    assert_eq!(rows(&out), 1);
    // A duration ago: every snapshot here is older than an hour ago.
    let _ = std::fs::remove_file(&target);
    env.run(&[
        "restore",
        "latest",
        "--before",
        "1h",
        "--target",
        s(&target),
    ])
    .ok();
    assert_eq!(rows(&target), 3);
    // Nothing that early; bad times.
    env.run(&[
        "restore",
        "latest",
        "--before",
        "2025-12-31",
        "--target",
        s(&target),
    ])
    .fails(1, &["no snapshot"]);
    for bad in ["yesterday", "2026-13-01", "5 hours", ""] {
        env.run(&["restore", "latest", "--before", bad, "--target", s(&target)])
            .fails(1, &["--before"]);
    }
}

#[test]
fn restore_if_missing_touches_nothing_when_the_target_exists() {
    let env = Env::new();
    env.init();
    history(&env, &["2026-01-01T00:00:00Z"]);
    let target = env.dir.path().join("fresh.db");
    // Missing: restored.
    env.run(&["restore", "latest", "--if-missing", "--target", s(&target)])
        .ok();
    assert_eq!(rows(&target), 1);
    // Present (changed since): untouched, exit 0, no pre-restore snapshot.
    rusqlite::Connection::open(&target)
        .unwrap()
        .execute("INSERT INTO t VALUES ('local')", [])
        .unwrap();
    let before = std::fs::read(&target).unwrap();
    let out = env.run(&["restore", "latest", "--if-missing", "--target", s(&target)]);
    assert!(out.ok().contains("nothing restored"), "{out:?}");
    assert_eq!(std::fs::read(&target).unwrap(), before);
    let snaps = env.run(&["snapshots", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(snaps.ok())
            .unwrap()
            .len(),
        1
    );
    // Even a dangling symlink counts as present; -q prints nothing.
    let link = env.dir.path().join("link.db");
    std::os::unix::fs::symlink("/nonexistent/x.db", &link).unwrap();
    let out = env.run(&[
        "-q",
        "restore",
        "latest",
        "--if-missing",
        "--target",
        s(&link),
    ]);
    assert!(out.ok().is_empty() && out.stderr.is_empty(), "{out:?}");
}

/// `--if-exists` (Litestream's -if-replica-exists): a repository with no
/// snapshot to restore, or none matching the filters, is success with
/// nothing written; any other failure still fails; with a snapshot it
/// restores. With `--if-missing`, one line serves every boot.
#[test]
fn restore_if_exists_makes_nothing_to_restore_a_success() {
    let env = Env::new();
    env.init();
    let target = env.dir.path().join("data/app.db");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let boot = |env: &Env| {
        env.run(&[
            "restore",
            "latest",
            "--if-missing",
            "--if-exists",
            "--target",
            s(&target),
        ])
    };
    // First boot, before any backup.
    let out = boot(&env);
    assert!(
        out.ok().contains("no snapshots yet: nothing restored"),
        "{out:?}"
    );
    assert!(!target.exists());
    // Without the flag it is an error (exit 1); with Litestream's name, not.
    env.run(&["restore", "latest", "--target", s(&target)])
        .fails(1, &["no snapshots yet"]);
    env.run(&[
        "restore",
        "latest",
        "--if-replica-exists",
        "--target",
        s(&target),
    ])
    .ok();
    // Filters that match nothing, a time before everything.
    history(&env, &["2026-01-01T00:00:00Z"]);
    for args in [
        &["--tag", "nope"][..],
        &["--db", "other.db"][..],
        &["--before", "2020-01-01"][..],
    ] {
        let mut a = vec!["restore", "latest", "--if-exists", "--target", s(&target)];
        a.extend_from_slice(args);
        let out = env.run(&a);
        assert!(out.ok().contains("nothing restored"), "{args:?}: {out:?}");
        assert!(!target.exists());
    }
    // Other failures are failures: a wrong password, an id that is not there.
    let wrong = env.password("wrong", "not the password");
    let mut c = env.bare();
    c.arg("--repo")
        .arg(env.location())
        .arg("--password-file")
        .arg(&wrong)
        .args(["restore", "latest", "--if-exists", "--target", s(&target)]);
    assert_ne!(util::run(c).code, 0);
    let r = env.run(&["restore", "deadbeef", "--if-exists", "--target", s(&target)]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!target.exists());
    // A snapshot: restored; the next boot leaves it.
    boot(&env).ok();
    assert_eq!(rows(&target), 1);
    assert!(boot(&env).ok().contains("exists: nothing restored"));
}

fn small_db(path: &Path, rows: i64) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE t(v TEXT);").unwrap();
    for i in 0..rows {
        c.execute("INSERT INTO t VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
}

/// Databases that share a file name (`/srv/app/app.db`, `/srv/demo/app.db`)
/// are listed by the shortest ending of their paths that tells them apart
/// (`app/app.db`, `demo/app.db`), in the table, `--compact` and `--json`
/// (`label`), the same whatever the filters; `--db` takes that ending;
/// `latest` of the shared name alone is refused as ambiguous, naming both.
/// A database whose name no other has keeps its name.
#[test]
fn databases_sharing_a_file_name_are_told_apart_by_their_paths() {
    let env = Env::new();
    env.init();
    let root = env.dir.path();
    let app = root.join("srv/app/app.db");
    let demo = root.join("srv/demo/app.db");
    let other = root.join("srv/demo/other.db");
    small_db(&app, 3);
    small_db(&demo, 5);
    small_db(&other, 1);
    for db in [&app, &demo, &other] {
        env.run(&["backup", s(db)]).ok();
    }
    let listed = env.run(&["snapshots"]);
    let table = listed.ok();
    for label in ["app/app.db", "demo/app.db", "other.db"] {
        assert!(table.contains(&format!(" {label} ")), "{label} in {table}");
    }
    let compact = env.run(&["snapshots", "--compact"]);
    assert!(compact.ok().contains("demo/app.db"), "{compact:?}");
    let json: Vec<serde_json::Value> =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let mut labels: Vec<&str> = json.iter().map(|v| v["label"].as_str().unwrap()).collect();
    labels.sort_unstable();
    assert_eq!(labels, ["app/app.db", "demo/app.db", "other.db"]);
    // The label does not change with the filters, and names one database.
    for (given, path) in [
        ("demo/app.db", &demo),
        ("app/app.db", &app),
        ("srv/app/app.db", &app),
    ] {
        let json: Vec<serde_json::Value> =
            serde_json::from_str(env.run(&["snapshots", "--json", "--db", given]).ok()).unwrap();
        assert_eq!(json.len(), 1, "--db {given}: {json:?}");
        assert_eq!(json[0]["database"]["path"], s(path), "--db {given}");
        let target = root.join(format!("restored-{}.db", given.replace('/', "-")));
        env.run(&["restore", "--db", given, "--target", s(&target), "latest"])
            .ok();
        assert_eq!(rows(&target), rows(path), "--db {given}");
    }
    let only = env.run(&["snapshots", "--db", "demo/app.db"]);
    assert!(only.ok().contains(" demo/app.db "), "{only:?}");
    // An ending that is not whole components names nothing.
    let none: Vec<serde_json::Value> =
        serde_json::from_str(env.run(&["snapshots", "--json", "--db", "mo/app.db"]).ok()).unwrap();
    assert!(none.is_empty(), "{none:?}");
    // The shared name alone is ambiguous.
    let line = env
        .run(&[
            "restore",
            "--db",
            "app.db",
            "--target",
            s(&root.join("x.db")),
            "latest",
        ])
        .fails(
            1,
            &[
                "2 databases",
                s(&app),
                s(&demo),
                "the ending `snapshots` shows",
            ],
        );
    assert!(!root.join("x.db").exists(), "{line}");
}

fn snapshot_names(env: &Env) -> Vec<String> {
    let out = env.run(&["snapshots", "--json"]);
    let mut v: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(out.ok())
        .unwrap()
        .iter()
        .map(|s| s["database"]["path"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
#[allow(clippy::too_many_lines, clippy::many_single_char_names)] // one scenario, in order
fn backup_of_several_databases_and_of_a_directory_tree() {
    let env = Env::new();
    env.init();
    let root = env.dir.path().join("data");
    let a = root.join("a.db");
    let b = root.join("sub/b.sqlite");
    let c = root.join("sub/deeper/c");
    let tmp = root.join("sub/scratch.tmp.db");
    let old = root.join("archive/old.db");
    for (p, n) in [(&a, 3), (&b, 4), (&c, 5), (&tmp, 1), (&old, 2)] {
        small_db(p, n);
    }
    // A WAL database with its side files present.
    let w = root.join("wal.db");
    let conn = rusqlite::Connection::open(&w).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(root.join("wal.db-wal").exists() && root.join("wal.db-shm").exists());
    // Not databases: text, an empty file, a journal; a symlink to a
    // database and a symlink loop, neither followed.
    std::fs::write(root.join("notes.txt"), "SQLite is nice").unwrap();
    std::fs::write(root.join("empty.db"), "").unwrap();
    std::fs::write(
        root.join("x.db-journal"),
        b"SQLite format 3\0 but a journal",
    )
    .unwrap();
    std::os::unix::fs::symlink(&a, root.join("link-to-a.db")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
    // Another litevault's temporary copies (a clone, a restore's copy).
    for what in ["clone", "restore"] {
        std::fs::copy(
            &a,
            root.join(format!(".a.db.litevault-{what}-4242-0123456789abcdef")),
        )
        .unwrap();
    }

    // Two named databases: two snapshots, one JSON object per line.
    let out = env.run(&["backup", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    let lines: Vec<serde_json::Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["snapshot"].is_string()));
    assert_eq!(snapshot_names(&env).len(), 2);

    // The tree, minus the excluded: a, b, c, wal (a and b unchanged, so
    // stored again only as "unchanged").
    let out = env.run(&[
        "backup",
        "--find",
        root.to_str().unwrap(),
        "--exclude",
        "*.tmp.db",
        "--exclude",
        "archive",
        "--tag",
        "fleet",
    ]);
    let text = out.ok();
    assert_eq!(
        text.matches("snapshot ").count() + text.matches("unchanged since").count(),
        4,
        "{text}"
    );
    let names = snapshot_names(&env);
    for p in [&c, &w] {
        assert!(
            names.contains(&p.canonicalize().unwrap().display().to_string())
                || names.contains(&p.display().to_string()),
            "{p:?} in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("scratch")
            || n.contains("old.db")
            || n.contains("link-to")
            || n.contains("loop")
            || n.contains("litevault-")),
        "{names:?}"
    );

    // One database fails: reported by path, the others stored, exit 18.
    let bad = root.join("notes.txt");
    small_db(&root.join("d.db"), 1);
    let r = env.run(&[
        "backup",
        a.to_str().unwrap(),
        bad.to_str().unwrap(),
        root.join("d.db").to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(r.code, 18, "{r:?}");
    assert!(
        r.stderr.contains("notes.txt") && r.stderr.contains("1 of 3 databases failed"),
        "{r:?}"
    );
    assert!(snapshot_names(&env).iter().any(|n| n.ends_with("d.db")));

    // Bad input: --name with several, a bad glob, --find on a file, on a
    // missing directory, an empty tree.
    env.run(&[
        "backup",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--name",
        "x",
    ])
    .fails(1, &["--name"]);
    env.run(&[
        "backup",
        "--find",
        root.to_str().unwrap(),
        "--exclude",
        "[z-a",
    ])
    .fails(1, &["[z-a"]);
    env.run(&["backup", "--find", a.to_str().unwrap()])
        .fails(1, &["not a directory"]);
    env.run(&["backup", "--find", "/nonexistent/dir"])
        .fails(1, &["/nonexistent/dir"]);
    let empty = env.dir.path().join("nothing-here");
    std::fs::create_dir(&empty).unwrap();
    let r = env.run(&["backup", "--find", empty.to_str().unwrap()]);
    assert!(
        r.ok().is_empty() && r.stderr.contains("no SQLite database"),
        "{r:?}"
    );
    env.run(&["backup", "--exclude", "*.db", a.to_str().unwrap()])
        .usage(&["--find"]);
}

#[test]
#[allow(clippy::many_single_char_names)]
fn snapshots_list_in_local_time_grouped_compact_and_as_one_json_line() {
    let env = Env::new();
    env.init();
    let a = env.dir.path().join("a.db");
    let b = env.dir.path().join("b.db");
    small_db(&a, 1);
    small_db(&b, 2);
    // No USER or LOGNAME (a daemon, a container): the name from passwd.
    let mut c = env.command(&[
        "backup",
        a.to_str().unwrap(),
        "--time",
        "2026-01-15T12:00:00Z",
        "--tag",
        "x",
    ]);
    c.env_remove("USER").env_remove("LOGNAME");
    util::run(c).ok();
    env.run(&[
        "backup",
        b.to_str().unwrap(),
        "--time",
        "2026-07-15T12:00:00Z",
    ])
    .ok();
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();

    let json = env.run(&["snapshots", "--json"]);
    let text = json.ok();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    let v: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    assert_eq!(v[0]["username"], me.as_str());

    // Local time with its zone (winter and summer), or UTC.
    let mut c = env.command(&["snapshots"]);
    c.env("TZ", "Europe/Berlin");
    let out = util::run(c);
    let t = out.ok();
    assert!(
        t.contains("2026-01-15 13:00:00 CET") && t.contains("2026-07-15 14:00:00 CEST"),
        "{t}"
    );
    let mut c = env.command(&["snapshots", "--utc"]);
    c.env("TZ", "Europe/Berlin");
    let out = util::run(c);
    assert!(out.ok().contains("2026-01-15 12:00:00 UTC"), "{out:?}");

    // Groups, and the compact form.
    let out = env.run(&["snapshots", "--group-by", "db", "--utc"]);
    let t = out.ok();
    assert_eq!(t.matches("snapshots of database").count(), 2, "{t}");
    assert!(t.contains("2 snapshot(s) in 2 group(s)"), "{t}");
    let out = env.run(&["snapshots", "--group-by", "tags", "--compact", "--utc"]);
    let t = out.ok();
    assert!(t.contains("tags [x]") && t.contains("tags []"), "{t}");
    assert!(!t.contains("SIZE"), "{t}");
    env.run(&["snapshots", "--group-by", "colour"])
        .fails(1, &["colour", "host, db and tags"]);
}

/// sqldiff's `--summary`: table -> (changes, inserts, deletes, unchanged).
fn sqldiff(a: &Path, b: &Path) -> std::collections::BTreeMap<String, [u64; 4]> {
    let out = std::process::Command::new("sqldiff")
        .arg("--summary")
        .arg(a)
        .arg(b)
        .output()
        .expect("sqldiff (apt install sqlite3-tools)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (name, rest) = l.split_once(": ").unwrap();
            let n: Vec<u64> = rest
                .split(", ")
                .map(|p| p.split(' ').next().unwrap().parse().unwrap())
                .collect();
            (name.to_string(), [n[0], n[1], n[2], n[3]])
        })
        .collect()
}

#[test]
fn diff_counts_rows_like_sqldiff_and_compares_with_a_live_database() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    crate::util::workload::create(&db, 6, 7);
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    env.run(&["backup", s(&db)]).ok();
    for step in 1..=3 {
        crate::util::workload::mutate(&db, step, 7);
        env.run(&["backup", s(&db)]).ok();
    }
    let ids: Vec<String> =
        serde_json::from_str::<Vec<serde_json::Value>>(env.run(&["snapshots", "--json"]).ok())
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(ids.len(), 4);
    let file = |id: &str| {
        let p = env.dir.path().join(format!("{}.db", &id[..8]));
        if !p.exists() {
            env.run(&["dump", id, "--output", s(&p)]).ok();
        }
        p
    };
    for (x, y) in [(0, 1), (1, 2), (2, 3), (0, 3), (3, 0)] {
        let out = env.run(&["diff", &ids[x], &ids[y], "--json", "--temp-dir", s(&tmp)]);
        let d: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let want = sqldiff(&file(&ids[x]), &file(&ids[y]));
        assert!(!want.is_empty());
        for t in d["tables"].as_array().unwrap() {
            let name = t["table"].as_str().unwrap();
            let got = [
                t["updated"].as_u64().unwrap(),
                t["inserted"].as_u64().unwrap(),
                t["deleted"].as_u64().unwrap(),
                t["unchanged"].as_u64().unwrap(),
            ];
            assert_eq!(Some(&got), want.get(name), "{x}->{y} {name}");
        }
        assert_eq!(d["same_database"], true);
        assert!(d["pages"]["changed"].as_u64().unwrap() > 0);
        assert!(d["to"]["added_bytes"].as_u64().unwrap() > 0);
        // The temporary copies are gone.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
    // The latest snapshot against the live database: nothing, then what
    // a restore would undo.
    let out = env.run(&["diff", "latest", "--target", s(&db), "--json"]);
    let d: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert!(
        d["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["inserted"] == 0 && t["deleted"] == 0 && t["updated"] == 0),
        "{d}"
    );
    assert_eq!(d["pages"]["changed"], 0);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE audit(x); DELETE FROM users WHERE id <= 3; UPDATE users SET name = 'x' WHERE id = 10;")
        .unwrap();
    let out = env.run(&["diff", "latest", "--target", s(&db)]);
    let t = out.ok();
    assert!(t.contains("+ table audit"), "{t}");
    let users = t.lines().find(|l| l.starts_with("users")).unwrap();
    let cols: Vec<&str> = users.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["0", "3", "1"], "{t}");
    // Two different databases: allowed, and said.
    let other = env.dir.path().join("other.db");
    crate::util::workload::create(&other, 1, 8);
    env.run(&["backup", s(&other)]).ok();
    let out = env.run(&["diff", &ids[0], "latest", "--db", s(&other)]);
    assert!(out.ok().contains("two different databases"), "{out:?}");
    // Bad input.
    env.run(&["diff", "ffffffff", &ids[0]])
        .fails(1, &["ffffffff"]);
    env.run(&["diff", &ids[0], "--target", "/nonexistent/x.db"])
        .fails(3, &["/nonexistent/x.db"]);
    env.run(&["diff", &ids[0], &ids[1], "--target", s(&db)])
        .usage(&["--target"]);
}

#[test]
fn forget_named_snapshots_with_prune() {
    let env = Env::new();
    env.init();
    history(
        &env,
        &[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ],
    );
    let ids = || -> Vec<String> {
        serde_json::from_str::<Vec<serde_json::Value>>(env.run(&["snapshots", "--json"]).ok())
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = ids();
    // By prefix, two at once, with --prune; JSON on one line.
    let out = env.run(&["forget", &all[0][..8], &all[2], "--prune", "--json"]);
    let text = out.ok();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["removed"], 2);
    assert!(v["prune"].is_object());
    assert_eq!(ids(), [all[1].clone()]);
    // The last one of its group too: named, so meant.
    env.run(&["forget", &all[1]]).ok();
    assert!(ids().is_empty());
    env.run(&["check", "--read-data"]).ok();
    // Unknown ids, ids with a policy, latest.
    env.run(&["forget", "abcdef12"]).fails(1, &["abcdef12"]);
    env.run(&["forget", "abcdef12", "--keep-last", "1"])
        .fails(2, &["ids or a policy"]);
    env.run(&["forget", "latest"]).fails(1, &["by id"]);
}

#[test]
fn quiet_prints_nothing_on_success() {
    let env = Env::new();
    let q = |args: &[&str]| {
        let mut all = vec!["-q"];
        all.extend_from_slice(args);
        let r = env.run(&all);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        let noise: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| !l.contains("LITEVAULT_TEST_ONLY_INSECURE_KDF"))
            .collect();
        assert!(
            r.stdout.is_empty() && noise.is_empty(),
            "{args:?} printed: {r:?}"
        );
    };
    q(&["init"]);
    let db = env.dir.path().join("app.db");
    small_db(&db, 3);
    let target = env.dir.path().join("restored.db");
    let dumped = env.dir.path().join("dumped.db");
    let pw2 = env.password("second", "another password");
    q(&["backup", s(&db)]);
    q(&["backup", s(&db)]);
    q(&["backup", s(&db), "--force", "--tag", "t"]);
    q(&["restore", "latest", "--target", s(&target)]);
    q(&["dump", "latest", "--output", s(&dumped)]);
    q(&["tag", "latest", "--add", "kept"]);
    q(&["key", "add", "--new-password-file", s(&pw2)]);
    q(&["forget", "--keep-last", "1"]);
    q(&["prune"]);
    q(&["check"]);
    q(&["unlock"]);
    q(&["generate", "--man", s(&env.dir.path().join("man"))]);
}

#[test]
fn show_lists_a_snapshot_s_tables_and_row_counts() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT);
         CREATE INDEX users_email ON users(email);
         CREATE VIEW v AS SELECT * FROM users;
         CREATE VIRTUAL TABLE docs USING fts5(body);
         INSERT INTO users(email) VALUES ('a@x'), ('b@x'), ('c@x');
         INSERT INTO docs VALUES ('hello');",
    )
    .unwrap();
    env.run(&["backup", s(&db), "--tag", "env_demo"]).ok();
    c.execute("DELETE FROM users WHERE id = 1", []).unwrap();
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = env.run(&["show", "latest", "--utc", "--temp-dir", s(&tmp)]);
    let t = out.ok();
    for want in [
        "snapshot ",
        "env_demo",
        "pages strategy",
        "1 index(es), 1 view(s)",
        "UTC",
    ] {
        assert!(t.contains(want), "{want} not in {t}");
    }
    let users = t
        .lines()
        .find(|l| l.trim_start().starts_with("users "))
        .unwrap();
    assert!(users.trim_end().ends_with(" 3"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.contains("docs") && l.contains("(virtual)")),
        "{t}"
    );
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["show", "latest", "--json"]).ok()).unwrap();
    let tables = v["tables"].as_array().unwrap();
    assert!(tables
        .iter()
        .any(|x| x["name"] == "users" && x["rows"] == 3));
    assert!(tables
        .iter()
        .any(|x| x["name"] == "docs_data" && x["rows"].as_u64().is_some()));
    assert_eq!(v["manifest"]["tags"][0], "env_demo");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    env.run(&["show", "ffffffff"]).fails(1, &["ffffffff"]);
}

#[test]
fn every_json_output_is_one_object_per_line() {
    let env = Env::new();
    let json = |args: &[&str]| -> serde_json::Value {
        let r = env.run(args);
        let text = r.ok();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {text}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    };
    let v = json(&["init", "--json"]);
    assert!(
        v["id"].is_string() && v["key"].is_string() && v["location"].is_string(),
        "{v}"
    );
    let db = env.dir.path().join("app.db");
    small_db(&db, 3);
    let v = json(&["backup", s(&db), "--json"]);
    let snap = v["snapshot"].as_str().unwrap().to_string();
    assert!(json(&["snapshots", "--json"]).is_array());
    let v = json(&["tag", &snap, "--add", "x", "--json"]);
    assert_eq!(v["changed"], true);
    assert_eq!(v["tags"][0], "x");
    let out = env.dir.path().join("out.db");
    let v = json(&["dump", "latest", "--output", s(&out), "--json"]);
    assert_eq!(v["output"], s(&out));
    assert!(v["bytes"].as_u64().unwrap() > 0);
    env.run(&["dump", "latest", "--json"])
        .fails(1, &["--output FILE"]);
    let target = env.dir.path().join("r.db");
    assert!(json(&["restore", "latest", "--target", s(&target), "--json"])["snapshot"].is_string());
    assert!(json(&["show", "latest", "--json"])["tables"].is_array());
    assert!(json(&["stats", "--json"]).is_object());
    assert!(json(&["check", "--json"])["findings"].is_array());
    let pw2 = env.password("second", "another password");
    let added = json(&["key", "add", "--new-password-file", s(&pw2), "--json"]);
    let key = added["added"].as_str().unwrap().to_string();
    assert!(json(&["key", "list", "--json"]).is_array());
    assert_eq!(
        json(&["key", "remove", &key, "--json"])["removed"],
        key.as_str()
    );
    let pw3 = env.password("third", "a third password");
    let mut c = env.command(&["key", "passwd", "--new-password-file", s(&pw3), "--json"]);
    let r = util::run(&mut c);
    let v: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
    assert!(v["replaced"].is_string() && v["key"].is_string(), "{v}");
    std::fs::write(&env.password_file, "a third password").unwrap();
    let v = json(&["unlock", "--json"]);
    assert!(v["removed"].is_array() && v["still_held"].is_array(), "{v}");
    assert!(json(&["forget", "--keep-last", "1", "--json"])["groups"].is_array());
    assert!(json(&["prune", "--json"]).is_object());
    let v = json(&["diff", "latest", "--target", s(&db), "--json"]);
    assert!(v["tables"].is_array());
}

#[test]
fn verbose_prints_each_phase_with_its_time_bytes_and_requests() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    let target = env.dir.path().join("restored.db");
    small_db(&db, 500);
    let phase = |stderr: &str, name: &str| -> String {
        stderr
            .lines()
            .find(|l| l.starts_with(&format!("litevault: phase {name} ")))
            .unwrap_or_else(|| panic!("no phase {name:?} in {stderr}"))
            .to_string()
    };
    let r = env.run(&["backup", s(&db), "-v"]);
    r.ok();
    for name in [
        "locking",
        "loading index",
        "opening source",
        "saving snapshot",
    ] {
        let line = phase(&r.stderr, name);
        assert!(line.contains(" s"), "{line}");
    }
    // The image phase names its bytes and the puts that stored them.
    let line = phase(&r.stderr, "reading image");
    assert!(line.contains("KiB at ") && line.contains("puts)"), "{line}");
    let total = r
        .stderr
        .lines()
        .find(|l| l.starts_with("litevault: repository "))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        total.contains("requests (") && total.contains("sent"),
        "{total}"
    );
    assert!(r.stderr.contains("litevault: total "), "{r:?}");

    let r = env.run(&["restore", "latest", "--target", s(&target), "-v"]);
    r.ok();
    for name in ["locking", "reading tree", "fetching chunks", "swapping"] {
        phase(&r.stderr, name);
    }
    let line = phase(&r.stderr, "verifying (integrity_check)");
    assert!(line.contains(" s"), "{line}");
    assert!(
        phase(&r.stderr, "fetching chunks").contains(" get"),
        "{r:?}"
    );

    // With --json the data stays one line on stdout, the phases on stderr.
    let r = env.run(&["backup", s(&db), "--force", "-v", "--json"]);
    assert_eq!(r.ok().trim_end().lines().count(), 1, "{r:?}");
    serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap();
    phase(&r.stderr, "reading image");

    // A command without phases still says what it cost.
    let r = env.run(&["snapshots", "--verbose"]);
    r.ok();
    assert!(r.stderr.contains("lists"), "{r:?}");
    env.run(&["snapshots", "-v", "-q"])
        .usage(&["--quiet", "--verbose"]);
}

#[test]
fn times_show_in_local_time_with_the_zone_in_every_listing() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    small_db(&db, 3);
    for t in ["2026-01-15T12:00:00Z", "2026-07-15T12:00:00Z"] {
        env.run(&["backup", s(&db), "--time", t, "--force"]).ok();
    }
    let berlin = |args: &[&str]| -> String {
        let mut c = env.command(args);
        c.env("TZ", "Europe/Berlin");
        util::run(c).ok().to_string()
    };
    let target = env.dir.path().join("restored.db");
    let t = berlin(&["restore", "latest", "--target", s(&target)]);
    assert!(t.contains("2026-07-15 14:00:00 CEST"), "{t}");
    let t = berlin(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(
        t.contains("2026-07-15 14:00:00 CEST") && t.contains("2026-01-15 13:00:00 CET"),
        "{t}"
    );
    let t = berlin(&["key", "list"]);
    assert!(t.contains(" CET ") || t.contains(" CEST "), "{t}");
    let t = berlin(&["forget", "--keep-last", "1", "--dry-run", "--utc"]);
    assert!(t.contains("2026-01-15 12:00:00 UTC"), "{t}");
    let t = berlin(&["key", "list", "--utc"]);
    assert!(t.contains(" UTC "), "{t}");
    // Import names each file's time the same way.
    let copy = env.dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let t = berlin(&[
        "import",
        s(&copy),
        "--db",
        "imported",
        "--time",
        "2026-02-01T00:00:00Z",
    ]);
    assert!(t.contains("2026-02-01 01:00:00 CET"), "{t}");
}

#[test]
fn the_progress_bar_names_every_phase_on_a_terminal() {
    // `script` (util-linux) gives the command a terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("util-linux's script is needed for this test");
    }
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
         INSERT INTO t SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    drop(c);
    env.run(&["backup", s(&db)]).ok();
    let target = env.dir.path().join("restored.db");
    let restore = env.command(&["restore", "latest", "--target", s(&target)]);
    let line = std::iter::once(restore.get_program())
        .chain(restore.get_args())
        .map(|a| format!("'{}'", a.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::null());
    for (k, v) in restore.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let r = util::run(c);
    let out = r.ok();
    assert!(out.contains("fetching chunks"), "{out}");
    assert!(out.contains("restored snapshot"), "{out}");
    assert_eq!(rows(&target), 20000);
}
