//! Restores and dumps into a directory every user can write (`/tmp`):
//! a name another user planted there (a symlink to one of ours, a file of
//! theirs, a `-wal` beside the target) is refused, never followed or
//! handed the data.

use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::backup::make_db;
use crate::util::Env;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A sticky world-writable directory, like /tmp.
fn shared_dir(env: &Env) -> PathBuf {
    let d = env.dir.path().join("tmp");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// Gives `p` (not following a symlink) to user and group `nobody`.
fn give_away(p: &Path) {
    lchown(p, Some(65534), Some(65534)).unwrap();
}

#[test]
fn names_planted_by_another_user_are_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to plant files as another user");
        return;
    }
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 1, 3);
    env.run(&["backup", s(&db)]).ok();
    let shared = shared_dir(&env);
    // Root's own file, which a planted symlink points at.
    let victim = env.dir.path().join("important.db");
    std::fs::write(&victim, b"root's data").unwrap();

    let link = shared.join("then.db");
    symlink(&victim, &link).unwrap();
    give_away(&link);
    let theirs = shared.join("theirs.db");
    std::fs::write(&theirs, b"").unwrap();
    give_away(&theirs);
    let innocent = shared.join("innocent.db");
    let wal = shared.join("innocent.db-wal");
    symlink(&victim, &wal).unwrap();
    give_away(&wal);
    let dir_link = shared.join("subdir");
    symlink(env.dir.path(), &dir_link).unwrap();
    give_away(&dir_link);

    for target in [
        link.clone(),
        theirs.clone(),
        innocent.clone(),
        dir_link.join("via-dir.db"),
    ] {
        env.run(&["restore", "latest", "--target", s(&target)])
            .fails(1, &["uid 65534", "planted", "only you can write"]);
        env.run(&["dump", "latest", "--output", s(&target)])
            .fails(1, &["uid 65534", "planted"]);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's data");
    assert_eq!(std::fs::metadata(&theirs).unwrap().len(), 0);
    assert!(!innocent.exists());
    assert!(!env.dir.path().join("via-dir.db").exists());

    // A symlink of the caller's own is followed, as before: the database
    // it points to is restored.
    let mine = shared.join("mine.db");
    let pointee = env.dir.path().join("pointee.db");
    symlink(&pointee, &mine).unwrap();
    std::fs::write(&pointee, b"").unwrap();
    env.run(&[
        "restore",
        "latest",
        "--target",
        s(&mine),
        "--no-pre-restore",
        "--force",
    ])
    .ok();
    assert!(std::fs::symlink_metadata(&mine)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::metadata(&pointee).unwrap().uid(), 0);
    assert!(std::fs::metadata(&pointee).unwrap().len() > 4096);
}
