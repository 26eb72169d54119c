//! A production host that backs up through an append-only SFTP account
//! (SPEC.md 11.1, README "A host that cannot destroy its backups"): the
//! server lets its key create files and nothing else, litevault writes
//! under `sftp.append-only=true`, and neither litevault nor an attacker
//! holding that key can delete, rename, overwrite or truncate what is
//! stored. A trusted host with full rights checks, restores and prunes.

// The test is one scenario, told in order.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::replicate::{state_of, wal_db, Replicator};
use crate::util::servers::{self, unique, Sshd, APPEND_ONLY_USER};
use crate::util::{Env, Run};

/// A directory the append-only account owns, where its repository goes.
fn account_dir(sshd: &Sshd) -> PathBuf {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, APPEND_ONLY_USER])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the account {APPEND_ONLY_USER} is missing: scripts/install-test-servers.sh makes it (as root)"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let dir = sshd.dir.join(unique("append"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(id("-u")), Some(id("-g"))).unwrap();
    dir
}

/// Every file of the repository but its locks, with its bytes.
fn files(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, root, out);
            } else if !rel.starts_with("locks/") {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(repo, repo, &mut out);
    out
}

/// One `sftp` batch command with the append-only key; true if it worked.
fn sftp_as_attacker(sshd: &Sshd, repo: &Path, command: &str) -> bool {
    let batch = sshd.dir.join(unique("batch"));
    std::fs::write(&batch, format!("{command}\n")).unwrap();
    let ok = Command::new("sftp")
        .arg("-F")
        .arg(&sshd.append_only_config)
        .args(["-P", &sshd.port.to_string(), "-b"])
        .arg(&batch)
        .arg(format!("{APPEND_ONLY_USER}@127.0.0.1:{}", repo.display()))
        .output()
        .unwrap()
        .status
        .success();
    std::fs::remove_file(&batch).unwrap();
    ok
}

/// With the append-only key and the `sftp` client, an attacker removes,
/// renames, overwrites, truncates, relinks and re-modes nothing of what is
/// stored (`before`): only a new file can be made.
fn attacker_can_only_add(sshd: &Sshd, repo: &Path, before: &BTreeMap<String, Vec<u8>>) {
    let snapshot = before
        .keys()
        .find(|k| k.starts_with("snapshots/"))
        .unwrap()
        .clone();
    let pack = before
        .keys()
        .find(|k| k.starts_with("data/"))
        .unwrap()
        .clone();
    let junk = sshd.dir.join(unique("junk"));
    std::fs::write(&junk, b"not a snapshot").unwrap();
    let junk = junk.display();
    for cmd in [
        format!("rm {snapshot}"),
        format!("rm {pack}"),
        format!("rename {snapshot} snapshots/moved"),
        format!("put {junk} {snapshot}"),
        format!("reput {junk} {pack}"),
        format!("chmod 644 {snapshot}"),
        "rmdir changes".to_string(),
        format!("ln -s {snapshot} snapshots/link"),
        format!("put {junk} snapshots/junk"),
        format!("rename snapshots/junk {snapshot}"),
        format!("posix-rename snapshots/junk {snapshot}"),
        "mkdir data/zz".to_string(),
    ] {
        let worked = sftp_as_attacker(sshd, repo, &cmd);
        // New files can be made: that is what appending is.
        assert_eq!(
            worked,
            cmd.starts_with("put") && cmd.ends_with("junk"),
            "{cmd}"
        );
    }
    let mut after = files(repo);
    assert!(after.remove("snapshots/junk").is_some());
    assert_eq!(&after, before, "every stored byte is as it was");
}

#[test]
fn an_append_only_account_backs_up_and_nothing_stored_can_be_removed_or_changed() {
    let sshd = servers::sshd();
    let dir = account_dir(sshd);
    let repo = dir.join("repo");
    let location = format!(
        "sftp:{APPEND_ONLY_USER}@127.0.0.1:{}:{}",
        sshd.port,
        repo.display()
    );
    let vars: Vec<(String, OsString)> = vec![("PATH".into(), Sshd::path_with(&sshd.bin))];
    let env = Env::remote(location, vars);
    let full_key = format!("sftp.key={}", sshd.dir.join("id_ed25519").display());
    let append_key = format!("sftp.key={}", sshd.append_only_key.display());
    let full = |args: &[&str]| -> Run {
        let mut all = vec!["-o", full_key.as_str()];
        all.extend(args);
        env.run(&all)
    };
    let append = |args: &[&str]| -> Run {
        let mut all = vec!["-o", append_key.as_str(), "-o", "sftp.append-only=true"];
        all.extend(args);
        env.run(&all)
    };

    // The trusted side makes the repository (every directory included).
    full(&["init"]).ok();
    let db = env.dir.path().join("app.db");
    wal_db(&db, 4096);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t(v, at) SELECT randomblob(1000), i FROM n",
        )
        .unwrap();

    // Without the option, the refused rename says what to add.
    let r = env.run(&["-o", &append_key, "backup", db.to_str().unwrap()]);
    r.fails(16, &["refuses to rename", "sftp.append-only=true"]);

    // The production host backs up, twice, and replicates.
    append(&["backup", db.to_str().unwrap()]).ok();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE t SET v = randomblob(300) WHERE id % 9 = 0", [])
        .unwrap();
    append(&["backup", db.to_str().unwrap()]).ok();
    let state = env.dir.path().join("st");
    let rep = Replicator::start(
        &env,
        &state,
        &[&db],
        &["-o", &append_key, "-o", "sftp.append-only=true"],
    );
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..5 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("UPDATE t SET v = randomblob(200) WHERE id % 13 = 0", [])
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("commits in"), "{out:?}");
    let want = state_of(&db);

    // It cannot delete: every command that would is refused before it
    // writes anything, with one line that says where to run it.
    let before = files(&repo);
    let locks = std::fs::read_dir(repo.join("locks")).unwrap().count();
    let password = env.password_file.to_str().unwrap();
    for args in [
        &["forget", "--keep-last", "1"][..],
        &["forget", "--keep-last", "1", "--prune"],
        &["prune"],
        &["tag", "latest", "--add", "kept"],
        &["repair", "snapshots"],
        &["key", "passwd", "--new-password-file", password],
        &["unlock"],
        &["unlock", "--remove-all"],
    ] {
        append(args).fails(16, &["deletes", "append-only", "full rights"]);
    }
    assert_eq!(
        std::fs::read_dir(repo.join("locks")).unwrap().count(),
        locks,
        "no lock was even written"
    );
    assert_eq!(files(&repo), before, "nothing stored changed");

    // Nor can an attacker with the key and the sftp client.
    attacker_can_only_add(sshd, &repo, &before);

    // The trusted host reads everything, restores, and cleans up.
    full(&["check", "--read-data"]).ok();
    let target = env.dir.path().join("restored.db");
    full(&[
        "restore",
        "--db",
        db.to_str().unwrap(),
        "--at",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(state_of(&target), want);
    full(&["forget", "--keep-last", "1", "--prune"]).ok();
    full(&["unlock", "--remove-all"]).ok();
    // (A lock's temporary file, left by the refused rename above, goes
    // once it is older than a lock can live.)
    let locks: Vec<_> = std::fs::read_dir(repo.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    assert!(locks.is_empty(), "{locks:?}");
    full(&["check"]).ok();
}
