//! A lock's pid means a process only in the boot and pid namespace that
//! took it: a prune in another container (or on another machine of the
//! same name) does not take a live backup's lock for stale. A backup
//! whose lock was removed, or whose packs were deleted, while it ran
//! fails and writes no snapshot.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use litevault::backend::FileType;
use litevault::{LockKind, LockRecord, Repository};

use crate::backup::make_db;
use crate::util::{Env, Run, PASSWORD};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut c: Command = env.command(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pid no process of this namespace has.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Writes a lock `r` into the repository directly.
fn plant(env: &Env, r: &LockRecord) {
    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let (id, bytes) = r.encode(repo.key(), repo.config().version).unwrap();
    repo.backend()
        .write(FileType::Lock, &id.to_hex(), &bytes)
        .unwrap();
}

#[test]
fn a_prune_in_another_pid_namespace_does_not_take_a_live_lock_for_stale() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 5);
    env.run(&["backup", s(&db)]).ok();
    let repo = Repository::open_local(&env.repo, PASSWORD.as_bytes()).unwrap();
    let held = repo.lock(LockKind::Shared, "backup").unwrap();
    // The same binary, same host name, in a new pid namespace with its own
    // /proc: there, this process's pid is not alive.
    let mut c = env.bare();
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(c.get_program())
        .args([
            "--repo",
            s(&env.repo),
            "--password-file",
            s(&env.password_file),
            "prune",
        ])
        .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(env.dir.path())
        .stdin(Stdio::null());
    c = unshare;
    let out = crate::util::run(c);
    out.fails(11, &["locked (shared)", "`backup`"]);
    drop(held);
    // Once released, the same prune runs.
    env.run(&["prune"]).ok();
}

#[test]
fn a_dead_pid_makes_a_lock_stale_only_in_its_own_boot_and_namespace() {
    let env = Env::new();
    env.init();
    let here = LockRecord::new(LockKind::Shared, "backup");
    let dead = dead_pid();
    let cases = [
        // (lock, stale?)
        (
            LockRecord {
                pid: dead,
                ..here.clone()
            },
            true,
        ),
        (
            LockRecord {
                pid: dead,
                pid_ns: here.pid_ns.map(|n| n + 1),
                ..here.clone()
            },
            false,
        ),
        (
            LockRecord {
                pid: dead,
                boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
                ..here.clone()
            },
            false,
        ),
        (
            LockRecord {
                pid: dead,
                boot_id: None,
                pid_ns: None,
                start: None,
                ..here.clone()
            },
            false,
        ),
        // Our own pid, but the lock says another process started then.
        (
            LockRecord {
                pid: std::process::id(),
                start: here.start.map(|t| t + 1),
                ..here.clone()
            },
            true,
        ),
    ];
    for (lock, stale) in cases {
        plant(&env, &lock);
        let out = env.run(&["prune"]);
        if stale {
            out.ok();
        } else {
            out.fails(11, &["locked (shared)"]);
        }
        // `unlock` judges the same way.
        let unlocked = env.run(&["unlock", "--json"]);
        let removed: serde_json::Value = serde_json::from_str(unlocked.ok()).unwrap();
        assert_eq!(
            removed["removed"].as_array().unwrap().len(),
            usize::from(stale),
            "{lock:?}: {removed}"
        );
        env.run(&["unlock", "--remove-all"]).ok();
    }
}

/// Waits for the first file in `dir` (recursively) whose name `pick`
/// accepts, and returns it.
fn first_file(dir: &std::path::Path, pick: impl Fn(&str) -> bool) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
            if e.file_type().is_file() && pick(&e.file_name().to_string_lossy()) {
                return e.path().to_path_buf();
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_backup_whose_lock_or_packs_vanish_fails_and_writes_no_snapshot() {
    for victim in ["lock", "pack"] {
        let env = Env::new();
        env.run(&["init", "--pack-size", "1"]).ok();
        let db = make_db(&env, "big.db", 48, 9);
        let backup = spawn(&env, &["backup", s(&db)]);
        let removed = match victim {
            "lock" => first_file(&env.repo.join("locks"), |n| !n.starts_with('.')),
            _ => first_file(&env.repo.join("data"), |n| !n.starts_with('.')),
        };
        std::fs::remove_file(&removed).unwrap();
        let out = finish(backup);
        out.fails(11, &["another process", "without writing a snapshot"]);
        assert!(
            crate::util::names(&env.repo.join("snapshots")).is_empty(),
            "{victim}: a snapshot was written"
        );
        // What is left is consistent once the index forgets the pack that
        // is gone: no snapshot names missing data.
        env.run(&["repair", "index"]).ok();
        let check = env.run(&["check"]);
        assert!(check.ok().contains("0 error(s)"), "{victim}: {check:?}");
    }
}
