//! Locks as the command line sees them: a held lock names its holder,
//! `unlock` removes only what is stale unless told otherwise.

use litevault::{LockKind, Repository};

use crate::util::{Env, PASSWORD};

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
