//! Which host keys an SFTP repository trusts and which ssh configuration it
//! reads, chosen per repository (`sftp.known-hosts`,
//! `sftp.known-hosts-file`, `sftp.ssh-config`), with the system's own
//! `ssh` (no test wrapper on PATH) against the tests' real sshd.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::backup::make_db;
use crate::util::servers::{self, Sshd};
use crate::util::{Env, Run};

/// PATH without the tests' `ssh` wrapper: the system's ssh, which reads
/// only what litevault tells it (and the user's own ~/.ssh/config).
fn plain_path(sshd: &Sshd) -> Vec<(String, OsString)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).filter(|d| d != &sshd.bin);
    vec![("PATH".into(), std::env::join_paths(dirs).unwrap())]
}

/// The user's own known hosts file, which ssh finds through the home
/// directory.
fn users_known_hosts() -> PathBuf {
    Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".ssh/known_hosts")
}

/// Runs `args` on `env` with the user key and `opts` (`key=value`).
fn with(env: &Env, sshd: &Sshd, opts: &[String], args: &[&str]) -> Run {
    let key = format!("sftp.key={}", sshd.dir.join("id_ed25519").display());
    let mut all: Vec<&str> = vec!["-o", &key, "-o", "timeout=10s", "-o", "retries=0"];
    for o in opts {
        all.extend(["-o", o.as_str()]);
    }
    all.extend(args);
    env.run(&all)
}

fn file_opt(path: &Path) -> String {
    format!("sftp.known-hosts-file={}", path.display())
}

fn snapshot_count(r: &Run) -> usize {
    let v: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
    v.as_array().unwrap().len()
}

/// An SFTP repository holding one snapshot, reached with the known hosts
/// file that knows the server (the whole cycle works with it), and its
/// location.
fn repository_with_a_snapshot(
    sshd: &Sshd,
    scratch: &Env,
    vars: &[(String, OsString)],
) -> (Env, String) {
    let good = file_opt(&sshd.dir.join("known_hosts"));
    let location = sshd.location("hosts-file");
    let env = Env::remote(location.clone(), vars.to_vec());
    with(&env, sshd, std::slice::from_ref(&good), &["init"]).ok();
    let db = make_db(scratch, "app.db", 1, 7);
    with(
        &env,
        sshd,
        std::slice::from_ref(&good),
        &["backup", db.to_str().unwrap()],
    )
    .ok();
    let listed = with(&env, sshd, &[good], &["snapshots", "--json"]);
    assert_eq!(snapshot_count(&listed), 1);
    (env, location)
}

#[test]
fn known_hosts_files_are_read_where_told_and_accept_records_nothing() {
    let sshd = servers::sshd();
    let scratch = Env::new();
    let vars = plain_path(sshd);
    let users = users_known_hosts();
    let users_before = std::fs::read(&users).ok();
    let host = format!("[127.0.0.1]:{}", sshd.port);

    // The file that knows the server's key: the whole cycle works.
    let good = sshd.dir.join("known_hosts");
    let location = sshd.location("hosts-file");
    let env = Env::remote(location.clone(), vars.clone());
    with(&env, sshd, &[file_opt(&good)], &["init"]).ok();
    let db = make_db(&scratch, "app.db", 1, 7);
    with(
        &env,
        sshd,
        &[file_opt(&good)],
        &["backup", db.to_str().unwrap()],
    )
    .ok();
    let listed = with(&env, sshd, &[file_opt(&good)], &["snapshots", "--json"]);
    assert_eq!(snapshot_count(&listed), 1);

    // A file with no key for the server: unknown, with the line that
    // records it in that file.
    let empty = scratch.dir.path().join("hosts empty");
    std::fs::write(&empty, "").unwrap();
    let r = with(&env, sshd, &[file_opt(&empty)], &["snapshots"]);
    r.fails(
        16,
        &[
            "host key is unknown",
            &format!(
                "ssh-keyscan -p {} 127.0.0.1 >> {}",
                sshd.port,
                empty.display()
            ),
            "sftp.known-hosts=add",
        ],
    );

    // A file with another key for it: changed, whatever the policy, and
    // nothing is written into the file.
    let wrong = scratch.dir.path().join("hosts_wrong");
    std::fs::copy(sshd.dir.join("known_hosts_wrong"), &wrong).unwrap();
    let wrong_before = std::fs::read(&wrong).unwrap();
    for policy in ["strict", "accept", "add"] {
        let r = with(
            &env,
            sshd,
            &[file_opt(&wrong), format!("sftp.known-hosts={policy}")],
            &["snapshots"],
        );
        r.fails(16, &["host key changed", &wrong.display().to_string()]);
        assert_eq!(std::fs::read(&wrong).unwrap(), wrong_before, "{policy}");
    }

    // accept trusts an unknown server for this run and records it nowhere.
    let accept = vec![file_opt(&empty), "sftp.known-hosts=accept".to_string()];
    let listed = with(&env, sshd, &accept, &["snapshots", "--json"]);
    assert_eq!(snapshot_count(&listed), 1);
    assert_eq!(std::fs::read(&empty).unwrap(), b"", "accept wrote the file");
    if !users_before
        .as_ref()
        .is_some_and(|b| String::from_utf8_lossy(b).contains(&host))
    {
        // Without a file: checked against the user's, still recorded nowhere.
        let listed = with(
            &env,
            sshd,
            &["sftp.known-hosts=accept".to_string()],
            &["snapshots", "--json"],
        );
        assert_eq!(snapshot_count(&listed), 1);
    }
    assert_eq!(
        std::fs::read(&users).ok(),
        users_before,
        "accept wrote the user's known hosts"
    );

    // add records the key in the file given, and strict then trusts it.
    let added = scratch.dir.path().join("hosts_added");
    std::fs::write(&added, "").unwrap();
    let add = vec![file_opt(&added), "sftp.known-hosts=add".to_string()];
    with(&env, sshd, &add, &["snapshots"]).ok();
    let recorded = std::fs::read_to_string(&added).unwrap();
    let host_key = std::fs::read_to_string(sshd.dir.join("known_hosts")).unwrap();
    let key_field = host_key.split_whitespace().nth(2).unwrap();
    assert!(
        recorded.contains(key_field),
        "add did not record the server's key: {recorded:?}"
    );
    with(&env, sshd, &[file_opt(&added)], &["snapshots"]).ok();
    assert_eq!(std::fs::read(&users).ok(), users_before);
}

#[test]
fn an_ssh_config_file_is_read_when_given_and_unusable_files_are_refused() {
    let sshd = servers::sshd();
    let scratch = Env::new();
    let vars = plain_path(sshd);
    let (env, location) = repository_with_a_snapshot(sshd, &scratch, &vars);
    let good = sshd.dir.join("known_hosts");

    // An ssh configuration file: a host alias only it defines reaches the
    // same repository, with its user, port, key and known hosts.
    let config = scratch.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host lv-test-alias\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            sshd.port,
            servers::whoami(),
            sshd.dir.join("id_ed25519").display(),
            good.display()
        ),
    )
    .unwrap();
    let path = location.rsplit_once(':').unwrap().1;
    let aliased = Env::remote(format!("sftp:lv-test-alias:{path}"), vars.clone());
    let config_opt = format!("sftp.ssh-config={}", config.display());
    let r = aliased.run(&["-o", &config_opt, "snapshots", "--json"]);
    assert_eq!(snapshot_count(&r), 1);
    // Without it the alias means nothing.
    let r = aliased.run(&["-o", "timeout=5s", "-o", "retries=0", "snapshots"]);
    r.fails(16, &["lv-test-alias"]);

    // Files that cannot be used are refused before ssh runs, naming the
    // option.
    let missing = scratch.dir.path().join("no_such_config");
    for (opt, needle) in [
        (
            format!("sftp.ssh-config={}", missing.display()),
            "sftp.ssh-config",
        ),
        (
            "sftp.known-hosts-file=a\"b".to_string(),
            "sftp.known-hosts-file",
        ),
        ("sftp.known-hosts=trust".to_string(), "sftp.known-hosts"),
    ] {
        let r = env.run(&["-o", &opt, "snapshots"]);
        assert!(r.code != 0 && r.code != 16, "{r:?}");
        r.fails(r.code, &[needle]);
    }
}
