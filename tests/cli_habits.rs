//! The habits restic, borg, sqlite3 and Litestream users bring: shell
//! completions and man pages, `--password-command`, restore by time
//! (`--before`), restore only on first boot (`--if-missing`).

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
