//! The edges a user meets: files read with a bound (a `/dev/zero` script
//! is refused at once), a full repository that forget and prune can still
//! free, a full temporary directory named as storage, names too long for
//! SQLite's side files, a private state directory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backup::make_db;
use crate::util::{run, Env, SmallFs};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn endless_inputs_are_read_with_a_bound() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 1);
    env.run(&["backup", s(&db)]).ok();
    let target = env.dir.path().join("t.db");
    let start = Instant::now();
    env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--post-sql",
        "/dev/zero",
    ])
    .fails(1, &["--post-sql file", "/dev/zero", "more than"]);
    let mut c = env.bare();
    c.args([
        "--repo",
        s(&env.repo),
        "--password-file",
        "/dev/zero",
        "snapshots",
    ]);
    run(c).fails(1, &["password file", "more than"]);
    let mut c = env.bare();
    c.args([
        "--repo",
        s(&env.repo),
        "--password-command",
        "yes",
        "snapshots",
    ]);
    run(c).fails(1, &["password command", "more than"]);
    let mut c = env.bare();
    c.args(["config", "check", "/dev/zero"]);
    run(c).fails(17, &["/dev/zero", "more than"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "reading took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_full_repository_can_still_be_forgotten_and_pruned() {
    let env = Env::new();
    let mnt = env.dir.path().join("full");
    let Some(_fs) = SmallFs::mount(&mnt, "6m") else {
        eprintln!("skipped: cannot mount a small filesystem here");
        return;
    };
    let repo = mnt.join("repo");
    run(env.command_for(&repo, &["init", "--pack-size", "1"])).ok();
    assert!(repo.join(".reserve").is_file(), "init sets space aside");
    let mut full = None;
    for i in 0..40 {
        let db = make_db(&env, &format!("db{i}.db"), 1, 100 + i);
        let out = run(env.command_for(&repo, &["backup", s(&db)]));
        if out.code != 0 {
            full = Some(out);
            break;
        }
    }
    let full = full.expect("the repository never filled up");
    full.fails(16, &["No space left", "prune"]);
    // Whatever room the failed write left, something else takes: not even
    // a lock file fits now.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
        while filler.write_all(&[0u8; 4096]).is_ok() {}
        let _ = filler.sync_all();
    }
    let db0 = env.dir.path().join("db0.db");
    run(env.command_for(&repo, &["backup", s(&db0), "--force"])).fails(16, &["No space left"]);
    // Reading still works (without a lock, which cannot be written).
    let dumped = run(env.command_for(
        &repo,
        &["dump", "latest", "--db", s(&db0), "--output", "/dev/null"],
    ));
    dumped.ok();
    assert!(dumped.stderr.contains("without a lock"), "{dumped:?}");
    let free_before = rustix::fs::statvfs(&mnt).unwrap().f_bavail;
    let out = run(env.command_for(
        &repo,
        &["forget", "--keep-last", "1", "--group-by", "", "--prune"],
    ));
    out.ok();
    assert!(out.stderr.contains("reserve"), "{out:?}");
    let free_after = rustix::fs::statvfs(&mnt).unwrap().f_bavail;
    assert!(free_after > free_before, "nothing was freed");
    // Backups work again, and the reserve is back for next time.
    let db = make_db(&env, "again.db", 1, 999);
    run(env.command_for(&repo, &["backup", s(&db)])).ok();
    assert!(repo.join(".reserve").is_file());
    let check = run(env.command_for(&repo, &["check", "--read-data"]));
    assert!(check.ok().contains("0 error(s)"), "{check:?}");
}

#[test]
fn a_full_temporary_directory_is_a_storage_failure() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 4, 2);
    let tmp = env.dir.path().join("small-tmp");
    let Some(_fs) = SmallFs::mount(&tmp, "1m") else {
        eprintln!("skipped: cannot mount a small filesystem here");
        return;
    };
    env.run(&[
        "backup",
        s(&db),
        "--strategy",
        "vacuum",
        "--temp-dir",
        s(&tmp),
    ])
    .fails(16, &["not enough free space", s(&tmp), "--temp-dir"]);
}

#[test]
fn names_too_long_for_sqlites_side_files_say_so() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 4);
    env.run(&["backup", s(&db)]).ok();
    // A WAL database renamed to a name with no room for `-wal`.
    let long = env.dir.path().join(format!("{}.db", "w".repeat(249)));
    std::fs::copy(&db, &long).unwrap();
    env.run(&["backup", s(&long)])
        .fails(3, &["252 bytes", "-journal", "at most 247"]);
    // A restore target the same.
    let target = env.dir.path().join(format!("{}.db", "t".repeat(245)));
    env.run(&["restore", "latest", "--db", s(&db), "--target", s(&target)])
        .fails(1, &["248 bytes", "at most 247"]);
    assert!(!target.exists());
    // 247 bytes is fine.
    let ok = env.dir.path().join(format!("{}.db", "k".repeat(244)));
    env.run(&["restore", "latest", "--db", s(&db), "--target", s(&ok)])
        .ok();
}

#[test]
fn the_services_state_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 5);
    let state = env.dir.path().join("new/state/dir/state.db");
    let config = env.dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"{}\"\n[repositories.r]\nlocation = \"{}\"\npassword = {{ file = \"{}\" }}\n[databases.d]\npath = \"{}\"\n[jobs.j]\ndatabases = [\"d\"]\nrepositories = [\"r\"]\nschedule = \"1h\"\n",
            state.display(),
            env.repo.display(),
            env.password_file.display(),
            db.display()
        ),
    )
    .unwrap();
    let mut c = env.bare();
    c.args(["run", "--once", "--config", s(&config)]);
    run(c).ok();
    for d in [
        state.parent().unwrap(),
        state.parent().unwrap().parent().unwrap(),
    ] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
