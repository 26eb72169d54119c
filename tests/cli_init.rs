//! `litevault init` and opening a repository: the happy path and bad input.

use crate::util::{tree, Env};

#[test]
fn init_creates_the_layout_and_opens_with_the_password() {
    let env = Env::new();
    let out = env.run(&["init"]);
    assert!(
        out.ok().starts_with("created litevault repository"),
        "{out:?}"
    );
    for d in ["keys", "data", "index", "snapshots", "locks"] {
        assert!(env.repo.join(d).is_dir(), "{d}/ missing");
    }
    assert!(env.repo.join("data/00").is_dir() && env.repo.join("data/ff").is_dir());
    assert!(env.repo.join("config").is_file());
    let list = env.run(&["key", "list"]);
    assert_eq!(
        list.ok().lines().filter(|l| l.starts_with('*')).count(),
        1,
        "{list:?}"
    );
}

#[test]
fn wrong_password_fails_with_exit_12_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = tree(&env.repo);
    let wrong = env.password("wrong", "not the password");
    let mut c = env.bare();
    c.args(["key", "list", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&wrong);
    crate::util::run(c).fails(12, &["wrong password"]);
    assert_eq!(
        tree(&env.repo),
        before,
        "a failed open wrote to the repository"
    );
}

#[test]
fn password_from_environment_variables() {
    let env = Env::new();
    env.init();
    let mut c = env.bare();
    c.args(["key", "list"])
        .env("LITEVAULT_REPOSITORY", &env.repo)
        .env("LITEVAULT_PASSWORD", crate::util::PASSWORD);
    crate::util::run(c).ok();
    let mut c = env.bare();
    c.args(["key", "list"])
        .env("LITEVAULT_REPOSITORY", &env.repo)
        .env("LITEVAULT_PASSWORD_FILE", &env.password_file);
    crate::util::run(c).ok();
    let mut c = env.bare();
    c.args(["key", "list"])
        .env("LITEVAULT_REPOSITORY", &env.repo)
        .env("LITEVAULT_PASSWORD", "nope");
    crate::util::run(c).fails(12, &["wrong password"]);
}

#[test]
fn init_refuses_an_existing_repository_a_file_and_a_non_empty_directory() {
    let env = Env::new();
    env.init();
    let before = tree(&env.repo);
    env.run(&["init"]).fails(1, &["already exists"]);
    assert_eq!(tree(&env.repo), before);

    let file = env.dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let mut c = env.bare();
    c.arg("init")
        .arg("--repo")
        .arg(&file)
        .arg("--password-file")
        .arg(&env.password_file);
    crate::util::run(c).fails(1, &["is a file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    let full = env.dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let mut c = env.bare();
    c.arg("init")
        .arg("--repo")
        .arg(&full)
        .arg("--password-file")
        .arg(&env.password_file);
    crate::util::run(c).fails(1, &["not empty"]);
    assert_eq!(crate::util::names(&full), ["keep.txt"]);
}

#[test]
fn repository_path_that_is_a_file_missing_or_not_a_repository() {
    let env = Env::new();
    let file = env.dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let open = |path: &std::path::Path| {
        let mut c = env.bare();
        c.args(["key", "list", "--repo"])
            .arg(path)
            .arg("--password-file")
            .arg(&env.password_file);
        crate::util::run(c)
    };
    open(&file).fails(10, &["is not a litevault repository", "is a file"]);
    open(&env.dir.path().join("missing")).fails(10, &["does not exist", "litevault init"]);
    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    open(&empty).fails(10, &["not a litevault repository", "no `config`"]);
}

#[test]
fn repository_from_a_newer_format_is_named_as_such() {
    let env = Env::new();
    env.init();
    let config = env.repo.join("config");
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[4] = 5; // format version byte
    std::fs::write(&config, &bytes).unwrap();
    env.run(&["key", "list"])
        .fails(14, &["written by a newer litevault (format 5)", "upgrade"]);
}

#[test]
fn password_file_missing_or_empty_and_no_password_at_all() {
    let env = Env::new();
    env.init();
    let mut c = env.bare();
    c.args(["key", "list", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(env.dir.path().join("nope"));
    crate::util::run(c).fails(1, &["cannot read password file", "nope"]);

    let empty = env.password("empty", "\n");
    let mut c = env.bare();
    c.args(["key", "list", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&empty);
    crate::util::run(c).fails(1, &["is empty"]);

    let mut c = env.bare();
    c.args(["key", "list", "--repo"]).arg(&env.repo);
    crate::util::run(c).fails(1, &["no password given", "--password-file"]);

    let mut c = env.bare();
    c.args(["init", "--repo"])
        .arg(env.dir.path().join("new"))
        .arg("--password-file")
        .arg(&empty);
    crate::util::run(c).fails(1, &["is empty"]);
    assert!(
        !env.dir.path().join("new").exists(),
        "no repository without a password"
    );
}

#[test]
fn missing_repository_option_and_usage_errors_are_one_line() {
    let env = Env::new();
    let mut c = env.bare();
    c.args(["key", "list"]);
    crate::util::run(c).fails(1, &["no repository given", "LITEVAULT_REPOSITORY"]);
    env.run(&["init", "--no-such-flag"])
        .usage(&["--no-such-flag", "Usage: litevault init"]);
    env.run(&["frobnicate"]).usage(&["frobnicate"]);
}

#[test]
fn usage_errors_keep_clap_s_whole_message() {
    let env = Env::new();
    // What is missing is named, with the subcommand's usage line.
    env.run(&["restore", "latest"])
        .usage(&["--target <PATH>", "Usage: litevault restore"]);
    // Did you mean...
    env.run(&["snapshot"]).usage(&["snapshots"]);
    env.run(&["backup", "x.db", "--forse"]).usage(&["--force"]);
    // The possible values.
    env.run(&["backup", "x.db", "--strategy", "tar"])
        .usage(&["tar", "pages", "vacuum"]);
    env.run(&["dump", "latest", "--format", "csv"])
        .usage(&["sqlite", "sql"]);
    // Bare `litevault` shows the help, not the description as an error.
    let bare = crate::util::run(env.bare());
    assert_eq!(bare.code, 2, "{bare:?}");
    assert!(
        bare.stderr.contains("Commands:") && bare.stderr.contains("backup"),
        "{bare:?}"
    );
    assert!(!bare.stderr.contains("litevault: error"), "{bare:?}");
    // An argument that is not UTF-8: a usage error, not a panic.
    let mut c = env.bare();
    c.arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"snap\xffshots"));
    let r = crate::util::run(c);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    // --help and --version are not errors.
    let help = env.run(&["restore", "--help"]);
    assert!(help.ok().contains("--target"), "{help:?}");
    env.run(&["--version"]).ok();
}

#[test]
fn unreadable_key_files_are_named() {
    let env = Env::new();
    env.init();
    let keys = env.repo.join("keys");
    let name = crate::util::names(&keys).remove(0);
    let path = keys.join(&name);
    let good = std::fs::read(&path).unwrap();

    std::fs::write(&path, b"garbage").unwrap();
    env.run(&["key", "list"])
        .fails(13, &[&format!("keys/{name}"), "damaged"]);

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    env.run(&["key", "list"])
        .fails(13, &[&format!("keys/{name}"), "damaged"]);

    std::fs::write(&path, b"").unwrap();
    env.run(&["key", "list"])
        .fails(13, &[&format!("keys/{name}"), "damaged"]);

    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(env.dir.path().join("nowhere"), &path).unwrap();
    env.run(&["key", "list"]).fails(13, &["no key files"]);
    std::fs::remove_file(&path).unwrap();

    std::fs::write(&path, &good).unwrap();
    env.run(&["key", "list"]).ok();
}
