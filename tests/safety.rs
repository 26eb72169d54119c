//! Restore, dump and files on disk as a new user and an attacker try them:
//! nothing lost, nothing exposed, every signal and bad input handled. One
//! test per class of failure, each with several cases of its class, on real
//! files, the real binary and real SQLite processes holding databases.

#![allow(clippy::too_many_lines)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backup::{backup_json, dump, make_db};
use crate::util::{run, Env, Run, SmallFs};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `sqlite3` shell process holding a database open, killed when dropped.
struct Holder(Child);

impl Holder {
    /// Opens `path` in the sqlite3 shell (as `uid`, if given) and waits
    /// until it has read the schema, so the file is open (and, in WAL mode,
    /// its `-shm` locked).
    fn open(path: &Path, uid: Option<u32>) -> Self {
        let mut c = match uid {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--clear-groups",
                    "sqlite3",
                ]);
                c
            }
            None => Command::new("sqlite3"),
        };
        let mut child = c
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sqlite3");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b".timeout 2000\nSELECT 'ready', count(*) FROM sqlite_schema;\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready"), "sqlite3 said {line:?}");
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bind mount of `from` at `to` for the life of the value.
struct Bind(PathBuf);

impl Bind {
    fn mount(from: &Path, to: &Path) -> Option<Self> {
        std::fs::create_dir_all(to).unwrap();
        Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .is_ok_and(|s| s.success())
            .then(|| Self(to.to_path_buf()))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A small database in `mode` (`wal` or `delete`) with a marker row.
fn small_db(path: &Path, mode: &str, marker: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode={mode}; CREATE TABLE IF NOT EXISTS t(x TEXT); DELETE FROM t; INSERT INTO t VALUES ('{marker}');"
    ))
    .unwrap();
}

fn marker(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT x FROM t", [], |r| r.get(0))
        .unwrap()
}

fn restore(env: &Env, args: &[&str]) -> Run {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    env.run(&a)
}

/// Files in `dir` whose names say litevault made them as temporaries.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".litevault-"))
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Asserts a temporary copy is private: a directory of its own, mode 0700,
/// whose files (the copy, SQLite's side files) are mode 0600.
fn assert_private(p: &Path) {
    assert_eq!(mode(p), 0o700, "{}", p.display());
    for f in std::fs::read_dir(p).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[test]
fn a_target_held_through_another_path_is_refused_in_both_journal_modes() {
    for journal in ["wal", "delete"] {
        let env = Env::new();
        env.init();
        let dir = env.dir.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("app.db");
        small_db(&target, journal, "snapshot");
        backup_json(&env, &[s(&target)]);
        small_db(&target, journal, "live");
        // The same file through a hard link, a symlinked directory and a
        // bind mount (a container volume's view).
        let link = env.dir.path().join("alias.db");
        std::fs::hard_link(&target, &link).unwrap();
        let symdir = env.dir.path().join("symdir");
        std::os::unix::fs::symlink(&dir, &symdir).unwrap();
        let bound = env.dir.path().join("mnt");
        let bind = Bind::mount(&dir, &bound);
        let mut paths = vec![
            ("hard link", link.clone()),
            ("symlinked directory", symdir.join("app.db")),
        ];
        if bind.is_some() {
            paths.push(("bind mount", bound.join("app.db")));
        } else {
            eprintln!("bind mounts are not allowed here; that case is skipped");
        }
        for (kind, path) in &paths {
            let holder = Holder::open(path, None);
            let refusal = restore(&env, &["latest", "--db", "app.db", "--target", s(&target)])
                .fails(
                    1,
                    &[
                        "is open by pid",
                        &holder.pid().to_string(),
                        "--live",
                        "--force",
                    ],
                );
            assert_eq!(
                marker(&target),
                "live",
                "{journal}, {kind}: the target changed: {refusal}"
            );
            assert!(temporaries(&dir).is_empty(), "{journal}, {kind}");
            drop(holder);
        }
        // Nobody holds it: the restore goes through.
        restore(&env, &["latest", "--db", "app.db", "--target", s(&target)]).ok();
        assert_eq!(marker(&target), "snapshot", "{journal}");
        drop(bind);
    }
}

#[test]
fn holders_that_cannot_be_ruled_out_are_refused() {
    // litevault runs as one unprivileged user, the application as another:
    // the application's open files cannot be listed.
    for journal in ["delete", "wal"] {
        let env = Env::new();
        let open = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        open(env.dir.path(), 0o777);
        open(&env.password_file, 0o644);
        let target = env.dir.path().join("app.db");
        small_db(&target, journal, "snapshot");
        open(&target, 0o666);
        let as_nobody = |args: &[&str]| {
            let mut wrapped = Command::new("setpriv");
            wrapped
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_litevault"))
                .arg("--repo")
                .arg(&env.repo)
                .arg("--password-file")
                .arg(&env.password_file)
                .args(args)
                .current_dir(env.dir.path())
                .env_clear()
                .env("LITEVAULT_TEST_ONLY_INSECURE_KDF", "1")
                .stdin(Stdio::null());
            run(wrapped)
        };
        as_nobody(&["init"]).ok();
        as_nobody(&["backup", s(&target)]).ok();
        let holder = Holder::open(&target, Some(65533));
        let r = as_nobody(&["restore", "latest", "--target", s(&target)]);
        if journal == "wal" {
            // Its lock on the -shm file shows, whoever it belongs to.
            r.fails(1, &["is open by pid", &holder.pid().to_string()]);
        } else {
            r.fails(
                1,
                &[
                    "cannot tell whether another process has target",
                    "cannot be read",
                    "--force",
                ],
            );
        }
        assert_eq!(marker(&target), "snapshot");
        drop(holder);
    }
}

#[test]
fn latest_refuses_to_pick_between_databases() {
    let env = Env::new();
    env.init();
    let app = env.dir.path().join("app.db");
    let billing = env.dir.path().join("billing.db");
    small_db(&app, "wal", "app");
    small_db(&billing, "wal", "billing");
    backup_json(&env, &[s(&app), "--tag", "env_production"]);
    backup_json(&env, &[s(&billing)]);
    let target = env.dir.path().join("srv1-app.db");
    // Several databases match: refused, each named.
    restore(&env, &["latest", "--target", s(&target)]).fails(
        1,
        &[
            "matches snapshots of 2 databases",
            "app.db",
            "billing.db",
            "--db",
        ],
    );
    env.run(&["dump", "latest", "--output", "/dev/null"])
        .fails(1, &["matches snapshots of 2 databases"]);
    assert!(!target.exists());
    // The same name on two hosts is two databases too.
    backup_json(
        &env,
        &[s(&app), "--host", "srv2", "--tag", "env_production"],
    );
    restore(&env, &["latest", "--db", "app.db", "--target", s(&target)])
        .fails(1, &["2 databases", "srv2"]);
    // Filters that select one database work: by path and host, by tag.
    let host = litevault::sys::hostname();
    restore(
        &env,
        &[
            "latest",
            "--db",
            s(&app),
            "--host",
            &host,
            "--target",
            s(&target),
        ],
    )
    .ok();
    assert_eq!(marker(&target), "app");
    restore(
        &env,
        &[
            "latest",
            "--db",
            "billing.db",
            "--target",
            s(&target),
            "--no-pre-restore",
        ],
    )
    .ok();
    assert_eq!(marker(&target), "billing");
    // Cloning production into demo: the tag selects one database... on one host.
    restore(
        &env,
        &[
            "latest",
            "--tag",
            "env_production",
            "--host",
            &host,
            "--target",
            s(&target),
            "--no-pre-restore",
        ],
    )
    .ok();
    assert_eq!(marker(&target), "app");
}

#[test]
fn a_scrub_that_leaves_a_transaction_open_is_refused() {
    for journal in ["wal", "delete"] {
        let env = Env::new();
        env.init();
        let prod = env.dir.path().join("prod.db");
        let c = rusqlite::Connection::open(&prod).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode={journal}; CREATE TABLE users(email TEXT); INSERT INTO users VALUES ('alice@real.example');"
        ))
        .unwrap();
        drop(c);
        backup_json(&env, &[s(&prod)]);
        let demo = env.dir.path().join("demo.db");
        small_db(&demo, journal, "demo");
        let before = std::fs::read(&demo).unwrap();
        for (i, script) in [
            "BEGIN; UPDATE users SET email = 'x@example.invalid';",
            "BEGIN IMMEDIATE; UPDATE users SET email = 'x@example.invalid';",
            "SAVEPOINT scrub; UPDATE users SET email = 'x@example.invalid';",
            "BEGIN; UPDATE users SET email = 'x@example.invalid'; SAVEPOINT a; RELEASE a;",
        ]
        .iter()
        .enumerate()
        {
            let f = env.dir.path().join(format!("scrub{i}.sql"));
            std::fs::write(&f, script).unwrap();
            restore(&env, &["latest", "--target", s(&demo), "--post-sql", s(&f)]).fails(
                1,
                &[
                    "--post-sql failed",
                    "transaction open",
                    "COMMIT",
                    "not touched",
                ],
            );
            assert_eq!(std::fs::read(&demo).unwrap(), before, "{journal}: {script}");
            assert!(temporaries(env.dir.path()).is_empty());
        }
        // Committed, it goes through and the clone is scrubbed.
        let f = env.dir.path().join("good.sql");
        std::fs::write(
            &f,
            "BEGIN; UPDATE users SET email = 'x@example.invalid'; COMMIT;",
        )
        .unwrap();
        restore(&env, &["latest", "--target", s(&demo), "--post-sql", s(&f)]).ok();
        let email: String = rusqlite::Connection::open(&demo)
            .unwrap()
            .query_row("SELECT email FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(email, "x@example.invalid", "{journal}");
    }
}

#[test]
fn dump_to_a_file_never_leaves_it_half_written() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 4, 3);
    backup_json(&env, &[s(&db)]);
    let out = env.dir.path().join("out.db");

    // Replacing a file: written beside it, renamed at the end, same mode.
    std::fs::write(&out, b"previous content").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.run(&["dump", "latest", "--output", s(&out)]).ok();
    assert_eq!(dump(&out), dump(&db));
    assert_eq!(mode(&out), 0o640);

    // A dump that fails midway (a damaged pack) leaves the file as it was.
    std::fs::write(&out, b"previous content").unwrap();
    let pack = walkdir::WalkDir::new(env.repo.join("data"))
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .last()
        .unwrap()
        .into_path();
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&pack, &bad).unwrap();
    for format in ["sqlite", "sql"] {
        env.run(&["dump", "latest", "--format", format, "--output", s(&out)])
            .fails(13, &["damaged"]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"previous content",
            "{format}"
        );
        assert!(temporaries(env.dir.path()).is_empty(), "{format}");
    }
    std::fs::write(&pack, &good).unwrap();

    // A database another process has open is not overwritten.
    let live = env.dir.path().join("live.db");
    small_db(&live, "wal", "in use");
    let holder = Holder::open(&live, None);
    env.run(&["dump", "latest", "--output", s(&live)])
        .fails(1, &["live.db", "open by pid"]);
    drop(holder);
    assert_eq!(marker(&live), "in use");

    // Not a regular file: written straight (a FIFO, /dev/null).
    env.run(&["dump", "latest", "--output", "/dev/null"]).ok();

    // A database image is not written to a terminal; SQL text is.
    let mut c = Command::new("script");
    c.arg("-qec")
        .arg(format!(
            "{} --repo {} --password-file {} dump latest",
            env!("CARGO_BIN_EXE_litevault"),
            env.repo.display(),
            env.password_file.display()
        ))
        .arg("/dev/null")
        .env("LITEVAULT_TEST_ONLY_INSECURE_KDF", "1")
        .stdin(Stdio::null());
    let r = run(c);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("refusing to write a database image to a terminal"),
        "{r:?}"
    );
}

#[test]
fn a_signal_during_a_dump_removes_its_temporary_files_and_leaves_the_output() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 48, 4);
    backup_json(&env, &[s(&db)]);
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = env.dir.path().join("out.sql");
    std::fs::write(&out, b"previous").unwrap();
    for signal in ["TERM", "INT"] {
        let mut child = env
            .command(&[
                "dump",
                "latest",
                "--format",
                "sql",
                "--temp-dir",
                s(&tmp),
                "--output",
                s(&out),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while temporaries(&tmp).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = temporaries(&tmp);
        assert!(!seen.is_empty(), "no temporary copy appeared");
        // The plaintext copy is private.
        assert_private(&tmp.join(&seen[0]));
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{signal}");
        assert!(
            temporaries(&tmp).is_empty(),
            "{signal}: {:?}",
            temporaries(&tmp)
        );
        assert!(temporaries(env.dir.path()).is_empty(), "{signal}");
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{signal}");
    }
}

#[test]
fn leftovers_of_killed_runs_are_private_and_removed_by_the_next_run() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 16, 5);
    backup_json(&env, &[s(&db)]);
    let target = env.dir.path().join("restored.db");
    // A restore killed while its scrub runs: its copy stays, private.
    let forever = env.dir.path().join("forever.sql");
    std::fs::write(
        &forever,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;",
    )
    .unwrap();
    let mut child = env
        .command(&[
            "restore",
            "latest",
            "--target",
            s(&target),
            "--post-sql",
            s(&forever),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporaries(env.dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = temporaries(env.dir.path());
    assert!(!left.is_empty(), "a killed restore left nothing to clean");
    for f in &left {
        assert_private(&env.dir.path().join(f));
    }
    // The next restore removes what the dead process left.
    restore(&env, &["latest", "--target", s(&target)]).ok();
    assert!(
        temporaries(env.dir.path()).is_empty(),
        "{:?}",
        temporaries(env.dir.path())
    );

    // A vacuum backup killed during its export.
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = env
        .command(&[
            "backup",
            s(&db),
            "--strategy",
            "vacuum",
            "--temp-dir",
            s(&tmp),
            "--force",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporaries(&tmp).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for f in temporaries(&tmp) {
        assert_private(&tmp.join(&f));
    }
    env.run(&[
        "backup",
        s(&db),
        "--strategy",
        "vacuum",
        "--temp-dir",
        s(&tmp),
        "--force",
    ])
    .ok();
    assert!(temporaries(&tmp).is_empty(), "{:?}", temporaries(&tmp));
}

#[test]
fn signals_stop_every_wait() {
    let env = Env::new();
    env.init();
    // A lock wait: a rollback-journal database held by a writer.
    let db = env.dir.path().join("locked.db");
    small_db(&db, "delete", "x");
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES ('y');")
        .unwrap();
    // A long scrub.
    let other = env.dir.path().join("other.db");
    small_db(&other, "wal", "snapshot");
    backup_json(&env, &[s(&other)]);
    let forever = env.dir.path().join("forever.sql");
    std::fs::write(
        &forever,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;",
    )
    .unwrap();
    let target = env.dir.path().join("target.db");
    for (what, args, signal) in [
        (
            "lock wait",
            vec!["backup", s(&db), "--lock-timeout", "10m"],
            "INT",
        ),
        (
            "lock wait",
            vec!["backup", s(&db), "--lock-timeout", "10m"],
            "TERM",
        ),
        (
            "post-sql",
            vec![
                "restore",
                "latest",
                "--target",
                s(&target),
                "--post-sql",
                s(&forever),
            ],
            "TERM",
        ),
        (
            "post-sql",
            vec![
                "restore",
                "latest",
                "--target",
                s(&target),
                "--post-sql",
                s(&forever),
            ],
            "INT",
        ),
    ] {
        let mut child = env
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let sent = Instant::now();
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{what}: {signal} took {:?}",
            sent.elapsed()
        );
        assert_eq!(status.code(), Some(130), "{what} {signal}");
        assert!(!target.exists());
        assert!(temporaries(env.dir.path()).is_empty(), "{what}");
    }
    writer.execute_batch("COMMIT").unwrap();
}

#[test]
fn files_that_are_not_databases_are_refused_up_front() {
    let env = Env::new();
    env.init();
    let fifo = env.dir.path().join("fifo.db");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let sock_dir = env.dir.path().join("sock");
    std::fs::create_dir(&sock_dir).unwrap();
    let socket = sock_dir.join("s.db");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for (what, path) in [
        ("a FIFO", fifo.as_path()),
        ("a character device", Path::new("/dev/null")),
        ("a socket", socket.as_path()),
    ] {
        let started = Instant::now();
        env.run(&["backup", s(path)])
            .fails(3, &["not a regular file"]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} blocked"
        );
    }
    env.run(&["backup", s(env.dir.path())])
        .fails(3, &["is a directory"]);
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "x");
    backup_json(&env, &[s(&db)]);
    for path in [fifo.as_path(), socket.as_path()] {
        restore(&env, &["latest", "--target", s(path)]).fails(1, &["not a regular file"]);
    }
}

#[test]
fn restored_files_keep_owner_group_mode_and_journal_mode() {
    let env = Env::new();
    env.init();
    for (i, (strategy, journal)) in [
        ("pages", "wal"),
        ("vacuum", "wal"),
        ("vacuum", "delete"),
        ("pages", "delete"),
    ]
    .iter()
    .enumerate()
    {
        let db = env.dir.path().join(format!("src{i}.db"));
        small_db(&db, journal, "snapshot");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
        let b = backup_json(&env, &[s(&db), "--strategy", strategy]);
        let id = b["snapshot"].as_str().unwrap().to_string();
        // A new target: the source's mode at backup time; the journal
        // mode the snapshot recorded (a VACUUM INTO image is in rollback
        // mode whatever its source was).
        let fresh = env.dir.path().join(format!("fresh{i}.db"));
        restore(&env, &[&id, "--target", s(&fresh)]).ok();
        assert_eq!(mode(&fresh), 0o640, "{strategy} {journal}");
        let header = std::fs::read(&fresh).unwrap();
        let want = if *journal == "wal" { [2, 2] } else { [1, 1] };
        assert_eq!(
            header[18..20],
            want,
            "{strategy} {journal}: header bytes 18-19"
        );
        let jm: String = rusqlite::Connection::open(&fresh)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(jm, *journal, "{strategy}");
        // An existing target keeps its owner, group and mode.
        for (uid, gid, m) in [(65534, 65534, 0o600), (0, 65533, 0o660), (65533, 0, 0o644)] {
            let target = env.dir.path().join(format!("owned{i}-{m:o}.db"));
            small_db(&target, journal, "old");
            std::os::unix::fs::chown(&target, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(m)).unwrap();
            restore(&env, &[&id, "--target", s(&target)]).ok();
            let meta = std::fs::metadata(&target).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), mode(&target)),
                (uid, gid, m),
                "{strategy}"
            );
            assert_eq!(marker(&target), "snapshot");
        }
    }
}

#[test]
fn repository_files_are_private_unless_the_directory_is_shared() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "x");
    backup_json(&env, &[s(&db)]);
    for e in walkdir::WalkDir::new(&env.repo)
        .into_iter()
        .map(Result::unwrap)
    {
        let want = if e.file_type().is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(e.path()), want, "{}", e.path().display());
    }
    // A directory prepared for a group: kept, said, and followed.
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2750)).unwrap();
    let r = run(env.command_for(&shared, &["init"]));
    assert!(r.ok().contains("created"), "{r:?}");
    assert!(r.stderr.contains("keeps its permissions"), "{r:?}");
    assert_eq!(mode(&shared), 0o2750);
    assert_eq!(mode(&shared.join("keys")), 0o750);
    let key = std::fs::read_dir(shared.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&key), 0o640);
}

#[test]
fn deleted_rows_do_not_survive_in_free_pages() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("secrets.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);")
        .unwrap();
    // Each row spills into overflow pages whose tail holds the marker;
    // deleting the rows frees those pages whole.
    for i in 0..40 {
        let mut body = vec![b'.'; 9000];
        body.extend_from_slice(format!("SECRET-MARKER-{i:03}").as_bytes());
        c.execute("INSERT INTO t VALUES (?, ?)", rusqlite::params![i, body])
            .unwrap();
    }
    c.execute_batch("DELETE FROM t WHERE id < 35; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(c);
    let count = |bytes: &[u8]| bytes.windows(14).filter(|w| w == b"SECRET-MARKER-").count();
    assert!(
        count(&std::fs::read(&db).unwrap()) >= 35,
        "the file keeps the deleted rows"
    );
    let zeroed = backup_json(&env, &[s(&db), "--tag", "default"]);
    assert!(
        zeroed["manifest"]["image"]["zeroed_free_pages"]
            .as_u64()
            .unwrap()
            > 0
    );
    let kept = backup_json(&env, &[s(&db), "--tag", "keep", "--keep-free-pages"]);
    assert!(kept["manifest"]["image"].get("zeroed_free_pages").is_none());
    for (tag, want) in [("default", 5), ("keep", 40)] {
        let out = env.dir.path().join(format!("{tag}.db"));
        restore(&env, &["latest", "--tag", tag, "--target", s(&out)]).ok();
        assert_eq!(count(&std::fs::read(&out).unwrap()), want, "{tag}");
        let ok: String = rusqlite::Connection::open(&out)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        assert_eq!(dump(&out), dump(&db), "{tag}: logically equal");
    }
}

#[test]
fn hostile_values_for_every_flag_never_panic() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "x");
    backup_json(&env, &[s(&db)]);
    let target = env.dir.path().join("t.db");
    let commands: &[(&str, &[&str])] = &[
        ("backup", &[s(&db)]),
        ("restore", &["latest", "--target", s(&target)]),
        ("dump", &["latest", "--output", "/dev/null"]),
        ("snapshots", &[]),
        ("tag", &["latest", "--add", "x"]),
        ("forget", &["--keep-last", "1", "--dry-run"]),
        ("prune", &["--dry-run"]),
        ("check", &[]),
        ("stats", &[]),
        ("init", &[]),
        ("unlock", &[]),
    ];
    let hostile: Vec<std::ffi::OsString> = [
        "",
        "-1",
        "0",
        "NaN",
        "inf",
        "1e20",
        "597h",
        "99999999999999999999999",
        "-9223372036854775808",
        "9999-12-31T23:59:59Z",
        "99999-01-01",
        "100000",
        "%",
        "150%",
        "0/0",
        "a,b,,",
        "\u{1b}[2J",
    ]
    .iter()
    .map(std::ffi::OsString::from)
    .chain(std::iter::once(std::os::unix::ffi::OsStringExt::from_vec(
        vec![0xff, 0xfe, b'x'],
    )))
    .chain(std::iter::once(std::ffi::OsString::from(
        "x".repeat(10_000),
    )))
    .collect();
    let mut runs = 0;
    for (cmd, base) in commands {
        let help = env.run(&[cmd, "--help"]);
        let flags: Vec<String> = help
            .ok()
            .lines()
            .filter_map(|l| {
                let at = l.find("--")?;
                let rest = &l[at..];
                let end = rest.find([' ', '='])?;
                rest[end..]
                    .trim_start()
                    .starts_with('<')
                    .then(|| rest[..end].to_string())
            })
            .filter(|f| f != "--repo" && f != "--password-file")
            .collect();
        assert!(
            !flags.is_empty()
                || *cmd == "unlock"
                || *cmd == "stats"
                || *cmd == "check"
                || *cmd == "snapshots",
            "{cmd}: {help:?}"
        );
        for flag in &flags {
            for value in &hostile {
                let repo = if *cmd == "init" {
                    env.dir.path().join("fresh")
                } else {
                    env.repo.clone()
                };
                let _ = std::fs::remove_dir_all(env.dir.path().join("fresh"));
                let mut c = env.command_for(&repo, &[cmd]);
                c.args(*base).arg(flag).arg(value);
                let r = run(c);
                runs += 1;
                assert!(
                    r.code != 101 && !r.stderr.contains("panicked"),
                    "{cmd} {flag} {value:?}: {r:?}"
                );
                let errors: Vec<&str> = r
                    .stderr
                    .lines()
                    .filter(|l| l.starts_with("litevault: error:"))
                    .collect();
                assert!(errors.len() <= 1, "{cmd} {flag} {value:?}: {r:?}");
            }
        }
    }
    assert!(runs > 200, "only {runs} runs");
    // The values that panicked before, one by one.
    env.run(&["backup", s(&db), "--lock-timeout", "597h"])
        .fails(1, &["--lock-timeout"]);
    env.run(&["backup", s(&db), "--lock-timeout", "1e20"])
        .fails(1, &["--lock-timeout"]);
    env.run(&["backup", s(&db), "--time", "99999-01-01T00:00:00Z"])
        .fails(1, &["invalid time"]);
    env.run(&["init", "--pack-size", "100000"])
        .fails(1, &["--pack-size", "100000", "MiB"]);
}

#[test]
fn advice_names_the_path_that_failed() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 4, 9);
    backup_json(&env, &[s(&db)]);
    let small = env.dir.path().join("small");
    let Some(fs) = SmallFs::mount(&small, "1m") else {
        eprintln!("mounting a tmpfs is not allowed here; skipped");
        return;
    };
    // The dump's output is on a full filesystem.
    let out = small.join("out.db");
    let line = env.run(&["dump", "latest", "--output", s(&out)]).fails(
        16,
        &[
            "No space left on device",
            "free space on the filesystem of",
            s(&small),
        ],
    );
    assert!(!line.contains("repository"), "{line}");
    assert!(!out.exists());
    // The SQL dump's temporary copy has no room.
    let line = env
        .run(&[
            "dump",
            "latest",
            "--format",
            "sql",
            "--temp-dir",
            s(&small),
            "--output",
            s(&env.dir.path().join("d.sql")),
        ])
        .fails(16, &["No space left on device", s(&small)]);
    assert!(!line.contains("repository"), "{line}");
    drop(fs);
    // The restore target's directory is read-only.
    let rodir = env.dir.path().join("ro");
    let Some(ro) = SmallFs::mount(&rodir, "64m") else {
        return;
    };
    assert!(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&rodir)
        .status()
        .unwrap()
        .success());
    let line = restore(&env, &["latest", "--target", s(&rodir.join("x.db"))]).fails(
        1,
        &["Read-only file system", "read-only filesystem", s(&rodir)],
    );
    assert!(!line.contains("repository"), "{line}");
    assert_eq!(
        line.matches("Read-only file system").count(),
        1,
        "the OS message once: {line}"
    );
    drop(ro);
}

/// Damage of three kinds in a database as it was backed up: the full
/// check of a restore finds each (exit 15, no target), and `--quick`
/// finds all but the index whose content is not its table's, which
/// `quick_check` does not compare (as documented).
#[test]
fn a_restore_check_finds_each_kind_of_damage_and_quick_all_but_index_content() {
    let env = Env::new();
    env.init();
    let make = |name: &str, sql: &str| -> PathBuf {
        let p = env.dir.path().join(name);
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(sql).unwrap();
        p
    };
    const ROWS: &str =
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 500)";
    // An index that does not hold its table's rows (quick_check does not
    // compare them).
    let index = make(
        "index.db",
        &format!(
            "CREATE TABLE other(x); INSERT INTO other VALUES (1);
             CREATE TABLE t(a, b); CREATE INDEX i ON t(a);
             INSERT INTO t {ROWS} SELECT v, v * 7 FROM n;
             PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = 'CREATE INDEX i ON t(b)' WHERE name = 'i';"
        ),
    );
    // A page no b-tree uses (the page accounting).
    let unused = make(
        "unused.db",
        &format!("CREATE TABLE t(a); INSERT INTO t {ROWS} SELECT randomblob(100) FROM n;"),
    );
    let mut bytes = std::fs::read(&unused).unwrap();
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let pages = u32::from_be_bytes(bytes[28..32].try_into().unwrap());
    bytes[28..32].copy_from_slice(&(pages + 1).to_be_bytes());
    bytes.resize(bytes.len() + page_size, 0);
    std::fs::write(&unused, &bytes).unwrap();
    // A CHECK constraint a row breaks.
    let checked = make(
        "checked.db",
        &format!(
            "CREATE TABLE t(a CHECK (a < 1000)); INSERT INTO t {ROWS} SELECT v FROM n;
             PRAGMA ignore_check_constraints = ON; INSERT INTO t VALUES (5000);"
        ),
    );
    for (db, problem, quick_sees_it) in [
        (&index, "missing from index i", false),
        (&unused, "never used", true),
        (&checked, "CHECK constraint failed", true),
    ] {
        backup_json(&env, &[s(db)]);
        let target = env.dir.path().join("restored.db");
        let group = ["--db", s(db)];
        let line = restore(
            &env,
            &["latest", group[0], group[1], "--target", s(&target)],
        )
        .fails(15, &["already corrupt when it was backed up", problem]);
        assert!(!target.exists(), "{line}");
        let quick = restore(
            &env,
            &[
                "latest",
                group[0],
                group[1],
                "--target",
                s(&target),
                "--quick",
            ],
        );
        if quick_sees_it {
            quick.fails(15, &[problem]);
            assert!(!target.exists());
        } else {
            quick.ok();
            std::fs::remove_file(&target).unwrap();
        }
    }
}

#[test]
fn a_database_corrupt_when_backed_up_is_told_apart_from_damage() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 2, 13);
    let corrupt = env.dir.path().join("corrupt.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 4096 + 8..n - 2048] {
        *b = 0xa5;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    // A raw page read cannot see it; the snapshot keeps the file as it is.
    let b = backup_json(&env, &[s(&corrupt)]);
    let time = b["manifest"]["time"].as_str().unwrap().to_string();
    let target = env.dir.path().join("restored.db");
    let line = restore(&env, &["latest", "--target", s(&target)]).fails(
        15,
        &[
            "already corrupt when it was backed up",
            &time,
            "litevault dump",
            "earlier snapshot",
        ],
    );
    assert!(!line.contains("litevault check"), "{line}");
    assert!(!target.exists());
    // The repository is intact: check finds nothing.
    let check = env.run(&["check", "--read-data"]);
    assert!(check.ok().contains("0 error(s)"), "{check:?}");
    // The image can be salvaged.
    let out = env.dir.path().join("salvage.db");
    env.run(&["dump", "latest", "--output", s(&out)]).ok();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // --verify-source refuses it at backup time.
    env.run(&["backup", s(&corrupt), "--verify-source", "--force"])
        .fails(3, &["quick_check"]);
}

#[test]
fn a_target_whose_header_is_destroyed_is_kept_aside_not_refused() {
    for (kind, no_pre) in [
        ("zeroed header", false),
        ("garbage", true),
        ("truncated", false),
        ("text", true),
    ] {
        let env = Env::new();
        env.init();
        let src = env.dir.path().join("src.db");
        small_db(&src, "wal", "snapshot");
        backup_json(&env, &[s(&src)]);
        let target = env.dir.path().join("app.db");
        small_db(&target, "delete", "old");
        let mut bytes = std::fs::read(&target).unwrap();
        match kind {
            "zeroed header" => bytes[..100].fill(0),
            "garbage" => bytes
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i * 7) as u8),
            "truncated" => bytes.truncate(50),
            _ => bytes = b"not a database at all\n".repeat(100),
        }
        std::fs::write(&target, &bytes).unwrap();
        let mut args = vec!["latest", "--db", "src.db", "--target", s(&target)];
        if no_pre {
            args.push("--no-pre-restore");
        }
        let r = restore(&env, &args);
        r.ok();
        assert!(r.stderr.contains("its bytes are kept in"), "{kind}: {r:?}");
        assert_eq!(marker(&target), "snapshot", "{kind}");
        let kept: Vec<PathBuf> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("app.db.damaged-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kind}: {kept:?}");
        assert_eq!(
            std::fs::read(&kept[0]).unwrap(),
            bytes,
            "{kind}: the damaged bytes are kept"
        );
    }
}

#[test]
fn a_read_only_repository_can_be_read_and_restored_from() {
    let env = Env::new();
    let Some(fs) = SmallFs::mount(&env.repo, "64m") else {
        eprintln!("mounting a tmpfs is not allowed here; skipped");
        return;
    };
    env.init();
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "snapshot");
    backup_json(&env, &[s(&db)]);
    assert!(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&env.repo)
        .status()
        .unwrap()
        .success());
    for args in [
        vec!["snapshots"],
        vec!["stats"],
        vec!["check", "--read-data"],
        vec!["dump", "latest", "--output", "/dev/null"],
    ] {
        let r = env.run(&args);
        r.ok();
        if args[0] == "check" || args[0] == "dump" {
            assert!(
                r.stderr.contains("cannot be written") && r.stderr.contains("without a lock"),
                "{args:?}: {r:?}"
            );
        }
    }
    let fresh = env.dir.path().join("fresh.db");
    let r = restore(&env, &["latest", "--target", s(&fresh)]);
    r.ok();
    assert!(r.stderr.contains("without a lock"), "{r:?}");
    assert_eq!(marker(&fresh), "snapshot");
    // Replacing a database wants a pre-restore snapshot, which cannot be
    // written: refused with the way out, which works.
    small_db(&fresh, "wal", "newer");
    restore(&env, &["latest", "--target", s(&fresh)])
        .fails(1, &["--no-pre-restore", "cannot be written"]);
    assert_eq!(marker(&fresh), "newer");
    restore(&env, &["latest", "--target", s(&fresh), "--no-pre-restore"]).ok();
    assert_eq!(marker(&fresh), "snapshot");
    drop(fs);
}

#[test]
fn no_lock_reads_without_writing_a_lock() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "x");
    backup_json(&env, &[s(&db)]);
    let repo =
        litevault::Repository::open_local(&env.repo, crate::util::PASSWORD.as_bytes()).unwrap();
    let _held = repo.lock(litevault::LockKind::Exclusive, "prune").unwrap();
    // check's own code for "could not run" is 2.
    env.run(&["check"])
        .fails(2, &["locked exclusively", "litevault unlock"]);
    let r = env.run(&["--no-lock", "check"]);
    assert!(r.ok().contains("0 error(s)"), "{r:?}");
}

#[test]
fn small_holes_are_closed() {
    let env = Env::new();
    env.init();
    // Names with control characters cannot forge listing rows.
    let evil = env.dir.path().join("evil\nrow\u{1b}[31m.db");
    small_db(&evil, "wal", "x");
    backup_json(&env, &[s(&evil), "--tag", "a"]);
    let list = env.run(&["snapshots"]);
    assert_eq!(list.ok().lines().count(), 3, "{list:?}");
    assert!(!list.stdout.contains('\u{1b}'), "{list:?}");
    // A file named like a URI is a file.
    let uri = env.dir.path().join("file:x.db");
    small_db(&uri, "wal", "uri");
    let mut c = env.command(&["backup", "file:x.db"]);
    c.current_dir(env.dir.path());
    run(c).ok();
    assert!(!env.dir.path().join("x.db").exists());
    // A name at the edge of NAME_MAX restores in place.
    let long = env.dir.path().join(format!("{}.db", "n".repeat(230)));
    small_db(&long, "wal", "long");
    let b = backup_json(&env, &[s(&long)]);
    small_db(&long, "wal", "changed");
    restore(
        &env,
        &[b["snapshot"].as_str().unwrap(), "--target", s(&long)],
    )
    .ok();
    assert_eq!(marker(&long), "long");
    // Empty or oversized labels.
    let db = env.dir.path().join("app.db");
    small_db(&db, "wal", "x");
    env.run(&["backup", s(&db), "--host", ""])
        .fails(1, &["host", "--host"]);
    env.run(&["backup", s(&db), "--name", ""])
        .fails(1, &["name", "--name"]);
    env.run(&["backup", s(&db), "--tag", &"t".repeat(10_000)])
        .fails(1, &["invalid tag", "--tag"]);
    // Id prefixes shorter than four digits, when unique, are refused.
    let snaps = crate::backup::open(&env).snapshots().unwrap();
    let first = snaps[0].0.to_hex();
    let one = &first[..1];
    let r = restore(&env, &[one, "--target", s(&env.dir.path().join("p.db"))]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("too short") || r.stderr.contains("ambiguous"),
        "{r:?}"
    );
    restore(
        &env,
        &[&first[..4], "--target", s(&env.dir.path().join("p.db"))],
    )
    .ok();
    // -q: nothing on success.
    for args in [
        vec!["-q", "backup", s(&db), "--force"],
        vec![
            "-q",
            "restore",
            &first[..8],
            "--target",
            s(&env.dir.path().join("q.db")),
        ],
        vec!["-q", "tag", &first[..8], "--add", "quiet"],
        vec!["-q", "forget", "--keep-last", "10"],
        vec!["-q", "prune"],
        vec!["-q", "unlock"],
    ] {
        let r = env.run(&args);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "", ""),
            "{args:?}"
        );
    }
}

/// What SQLite (or the freelist walk) reports while backing up a damaged
/// database is said: a warning on stderr and in the JSON summary; the
/// snapshot keeps the file as it is, and the restore tells it apart.
#[test]
fn backup_warns_when_the_database_reports_damage_while_read() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 17);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DELETE FROM events WHERE rowid % 2 = 0;")
        .unwrap();
    drop(conn);
    let pages = std::fs::metadata(&db).unwrap().len() / 4096;
    // A freelist trunk pointer past the end of the file; another copy with
    // a free-page count the freelist cannot hold.
    let mut cases = Vec::new();
    for (name, offset, value) in [
        ("trunk.db", 32, u32::try_from(pages).unwrap() + 1000),
        ("count.db", 36, 0x7fff_ffff),
    ] {
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        let p = env.dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        cases.push(p);
    }
    for p in &cases {
        let r = env.run(&["backup", s(p), "--json"]);
        let json: serde_json::Value = serde_json::from_str(r.ok().trim()).unwrap();
        let warnings = json["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("{} {:?}", p.display(), r.stderr));
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("malformed freelist")),
            "{json}"
        );
        assert!(
            r.stderr.contains("warning") && r.stderr.contains("malformed freelist"),
            "{r:?}"
        );
        env.run(&["backup", s(p), "--verify-source", "--force"])
            .fails(3, &["quick_check"]);
    }
}
