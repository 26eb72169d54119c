//! Several processes at once: two backups into one repository, prune
//! while a backup runs.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::backup::{backup_json, images, make_db, open};
use crate::util::Env;

fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut c: Command = env.command(args);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

fn finish(child: Child) -> crate::util::Run {
    let out = child.wait_with_output().unwrap();
    crate::util::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn two_backups_at_once_both_succeed_and_dedup_holds() {
    let env = Env::new();
    env.init();
    let a = make_db(&env, "a.db", 8, 101);
    let b = env.dir.path().join("b.db");
    std::fs::copy(&a, &b).unwrap();
    let first = spawn(&env, &["backup", a.to_str().unwrap(), "--tag", "a"]);
    let second = spawn(&env, &["backup", b.to_str().unwrap(), "--tag", "b"]);
    finish(first).ok();
    finish(second).ok();
    let check = env.run(&["check", "--read-data"]);
    assert!(check.ok().contains("0 error(s)"), "{check:?}");
    let imgs = images(&env);
    assert_eq!(imgs.len(), 2);
    assert!(imgs
        .iter()
        .all(|(_, img)| *img == std::fs::read(&a).unwrap()));
    // Whatever the race stored twice, the next backup of either adds nothing new.
    let again = backup_json(&env, &[a.to_str().unwrap(), "--tag", "c"]);
    assert_eq!(again["manifest"]["stats"]["new_chunks"], 0, "{again}");
}

#[test]
fn prune_while_a_backup_runs_waits_its_turn_and_loses_nothing() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "big.db", 48, 102);
    let backup = spawn(&env, &["backup", db.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !crate::util::names(&env.repo.join("locks"))
        .iter()
        .any(|n| !n.starts_with('.'))
    {
        assert!(Instant::now() < deadline, "the backup never took its lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    let prune = env.run(&["prune"]);
    let backup = finish(backup);
    // Whoever loses the race fails with a lock message naming the other;
    // they never both run at once.
    match (backup.code, prune.code) {
        (0, 0) => eprintln!("prune ran after the backup had finished"),
        (0, _) => {
            prune.fails(11, &["locked (shared)", "`backup`"]);
        }
        (_, 0) => {
            backup.fails(11, &["locked exclusively", "`prune`"]);
        }
        _ => panic!("both failed: {backup:?} {prune:?}"),
    }
    env.run(&["prune"]).ok();
    let check = env.run(&["check", "--read-data"]);
    assert!(check.ok().contains("0 error(s)"), "{check:?}");
    if backup.code != 0 {
        env.run(&["backup", db.to_str().unwrap()]).ok();
    }
    assert_eq!(images(&env)[0].1, std::fs::read(&db).unwrap());
    assert_eq!(open(&env).snapshots().unwrap().len(), 1);
}
