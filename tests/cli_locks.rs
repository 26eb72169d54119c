//! Locks as the command line sees them: a held lock names its holder,
//! `unlock` removes only what is stale unless told otherwise.

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use litevault::{LockKind, Repository};

use crate::util::{Env, PASSWORD};

/// A small WAL database at `name` in the test's directory.
fn small_db(env: &Env, name: &str) -> std::path::PathBuf {
    let db = env.dir.path().join(name);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    )
    .unwrap();
    db
}

/// A command started in the background, its stderr read line by line.
struct Waiting {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Waiting {
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut child = env
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stderr line containing every one of `needles`.
    fn line_with(&self, needles: &[&str]) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("a line on stderr within 60 s");
            if needles.iter().all(|n| l.contains(n)) {
                return l;
            }
        }
    }

    /// Waits for the exit; its code and the rest of stderr.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap()
        });
        (code, rest.join("\n"))
    }
}

/// `--retry-lock DURATION` (restic's flag): without it a held lock fails
/// the command at once, and the error names the flag; with it the command
/// waits, says who holds the lock, and goes on once it is released, or
/// fails with exit 11 saying how long it waited; SIGINT ends the wait.
/// Shared commands wait for an exclusive lock and exclusive ones for a
/// shared lock, whatever the command.
#[test]
fn retry_lock_waits_for_the_holder_and_says_who_it_is() {
    let env = Env::new();
    env.init();
    let db = small_db(&env, "app.db");
    let db = db.to_str().unwrap();
    env.run(&["backup", db]).ok();
    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let pid = std::process::id().to_string();

    let guard = repo.lock(LockKind::Exclusive, "prune").unwrap();
    env.run(&["backup", db])
        .fails(11, &["locked exclusively", "`prune`", "--retry-lock"]);
    // Too short a wait: the holder is the error, after the wait.
    for args in [
        &["--retry-lock", "2s", "backup", db][..],
        &["--retry-lock", "2s", "dump", "--format", "sql", "latest"],
        &[
            "restore",
            "--db",
            "app.db",
            "--target",
            "x.db",
            "latest",
            "--retry-lock",
            "2s",
        ],
    ] {
        let t = Instant::now();
        let r = env.run(args);
        let line = r.fails(
            11,
            &[
                "locked exclusively",
                &format!("pid {pid}"),
                "after waiting 2s",
            ],
        );
        assert!(t.elapsed() >= Duration::from_secs(2), "{line}");
        assert!(
            r.stderr
                .contains("note: the repository is locked exclusively"),
            "{r:?}"
        );
    }
    assert!(!env.dir.path().join("x.db").exists());
    // A wait the holder ends: the command goes on.
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch("INSERT INTO t VALUES (3)")
        .unwrap();
    let w = Waiting::start(&env, &["--retry-lock", "5m", "backup", db]);
    let line = w.line_with(&["locked exclusively", "waiting for it"]);
    assert!(line.contains(&format!("pid {pid}")), "{line}");
    drop(guard);
    let (code, rest) = w.finish();
    assert_eq!(code, 0, "{rest}");
    assert_eq!(
        crate::util::names(&env.repo.join("snapshots")).len(),
        2,
        "the waiting backup stored its snapshot"
    );

    // An exclusive command waits for a shared lock too.
    let guard = repo.lock(LockKind::Shared, "backup").unwrap();
    let w = Waiting::start(&env, &["--retry-lock", "5m", "forget", "--keep-last", "1"]);
    w.line_with(&["locked (shared)", "`backup`", "waiting"]);
    drop(guard);
    let (code, rest) = w.finish();
    assert_eq!(code, 0, "{rest}");
    assert_eq!(crate::util::names(&env.repo.join("snapshots")).len(), 1);

    // SIGINT ends a wait at once, leaving no lock of its own.
    let guard = repo.lock(LockKind::Exclusive, "prune").unwrap();
    let w = Waiting::start(&env, &["--retry-lock", "1h", "backup", db]);
    w.line_with(&["waiting for it"]);
    let t = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, rest) = w.finish();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the wait ended at SIGINT"
    );
    assert!(code == 130, "exit {code}: {rest}");
    assert_eq!(crate::util::names(&env.repo.join("locks")).len(), 1);
    drop(guard);
    assert!(crate::util::names(&env.repo.join("locks")).is_empty());
    // A bad duration is a usage error naming the flag.
    env.run(&["--retry-lock", "soon", "snapshots"])
        .usage(&["--retry-lock", "soon"]);
}

#[test]
fn held_lock_blocks_exclusive_commands_and_names_the_holder() {
    let env = Env::new();
    env.init();
    let second = env.password("second", "second");
    env.run(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ])
    .ok();
    let other = crate::util::names(&env.repo.join("keys"));

    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let guard = repo.lock(LockKind::Shared, "backup").unwrap();
    let pid = std::process::id().to_string();

    // Key removal needs the exclusive lock.
    let line = env.run(&["key", "remove", &other[0]]).fails(
        11,
        &[
            "locked",
            &format!("pid {pid}"),
            "`backup`",
            "litevault unlock",
        ],
    );
    assert!(!line.contains("exclusively"), "{line}");
    assert_eq!(
        crate::util::names(&env.repo.join("keys")).len(),
        2,
        "nothing removed"
    );
    // Shared operations go on.
    env.run(&["key", "list"]).ok();

    // The holder is alive: plain unlock keeps its lock.
    let out = env.run(&["unlock"]);
    out.ok();
    assert!(out.stderr.contains("still held"), "{out:?}");
    assert_eq!(crate::util::names(&env.repo.join("locks")).len(), 1);

    // --remove-all removes it.
    let out = env.run(&["unlock", "--remove-all"]);
    assert!(out.ok().contains("removed lock"), "{out:?}");
    assert!(crate::util::names(&env.repo.join("locks")).is_empty());
    drop(guard);
}

#[test]
fn garbage_lock_file_is_reported_and_removed_by_unlock() {
    let env = Env::new();
    env.init();
    let name = "ab".repeat(32);
    std::fs::write(env.repo.join("locks").join(&name), b"this is not a lock").unwrap();
    let keys = crate::util::names(&env.repo.join("keys"));
    env.run(&["key", "remove", &keys[0]])
        .fails(11, &["unreadable lock file", &name]);
    let out = env.run(&["unlock"]);
    assert!(out.ok().contains("unreadable"), "{out:?}");
    assert!(crate::util::names(&env.repo.join("locks")).is_empty());
}
