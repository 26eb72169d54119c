//! `litevault key add|list|remove|passwd`.

use crate::util::{run, tree, Env};

fn key_ids(env: &Env) -> Vec<String> {
    crate::util::names(&env.repo.join("keys"))
}

fn list_with(env: &Env, password_file: &std::path::Path) -> crate::util::Run {
    let mut c = env.bare();
    c.args(["key", "list", "--json", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(password_file);
    run(c)
}

#[test]
fn key_add_then_open_with_either_password() {
    let env = Env::new();
    env.init();
    let second = env.password("second", "second password\n");
    let out = env.run(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ]);
    assert!(out.ok().starts_with("added key"), "{out:?}");
    assert_eq!(key_ids(&env).len(), 2);

    let json: serde_json::Value = serde_json::from_str(list_with(&env, &second).ok()).unwrap();
    let keys = json.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    assert!(keys
        .iter()
        .all(|k| k["host"].is_string() && k["kdf"]["memory_kib"] == 8));
    list_with(&env, &env.password_file).ok();
}

#[test]
fn new_password_from_environment() {
    let env = Env::new();
    env.init();
    let mut c = env.bare();
    c.args(["key", "add", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.password_file)
        .env("LITEVAULT_NEW_PASSWORD", "from env");
    run(c).ok();
    let p = env.password("p", "from env");
    list_with(&env, &p).ok();
    // No new password anywhere, and no terminal to ask on.
    env.run(&["key", "add"])
        .fails(1, &["no new password given"]);
}

#[test]
fn removing_the_last_key_is_refused() {
    let env = Env::new();
    env.init();
    let id = key_ids(&env).remove(0);
    let before = tree(&env.repo);
    env.run(&["key", "remove", &id[..8]])
        .fails(1, &["last key"]);
    assert_eq!(tree(&env.repo), before);
    env.run(&["key", "list"]).ok();
}

#[test]
fn remove_another_key_but_not_the_one_in_use() {
    let env = Env::new();
    env.init();
    let first = key_ids(&env).remove(0);
    let second = env.password("second", "second password");
    env.run(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ])
    .ok();
    let added = key_ids(&env).into_iter().find(|k| *k != first).unwrap();

    env.run(&["key", "remove", &first])
        .fails(1, &["opened the repository with", "key passwd"]);
    env.run(&["key", "remove", "zz"])
        .fails(1, &["not a key id"]);
    env.run(&["key", "remove", "0000000000"])
        .fails(1, &["no key"]);

    let out = env.run(&["key", "remove", &added[..10]]);
    assert!(out.ok().contains(&added[..8]), "{out:?}");
    assert_eq!(key_ids(&env), [first]);
    list_with(&env, &second).fails(12, &["wrong password"]);
}

#[test]
fn passwd_replaces_the_key_in_use() {
    let env = Env::new();
    env.init();
    let old = key_ids(&env);
    let new = env.password("new", "brand new password");
    env.run(&[
        "key",
        "passwd",
        "--new-password-file",
        new.to_str().unwrap(),
    ])
    .ok();
    let now = key_ids(&env);
    assert_eq!(now.len(), 1);
    assert_ne!(now, old);
    list_with(&env, &new).ok();
    env.run(&["key", "list"]).fails(12, &["wrong password"]);
}
