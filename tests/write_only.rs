//! Write-only keys (SPEC.md 21): production hosts back up with keys that
//! can neither read nor delete what is stored, their own backups included;
//! a trusted host with the full key reads, checks, restores and prunes
//! everything they wrote.

use std::path::{Path, PathBuf};

use crate::backup::dump as content;
use crate::util::{run, tree, workload, Env, Run};

/// `litevault --repo REPO --password-file PW ARGS...`.
pub(crate) fn as_key(env: &Env, password: &Path, args: &[&str]) -> Run {
    let mut c = env.bare();
    c.arg("--repo")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(password)
        .args(args);
    run(c)
}

/// Asserts no file under `repo` holds any of `needles`.
fn in_the_clear_nowhere(repo: &Path, needles: &[&[u8]]) {
    for (path, bytes) in tree(repo) {
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == *needle),
                "{} holds {:?} in the clear",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Adds a write-only key with `password`; returns its password file.
pub(crate) fn add_write_only(env: &Env, name: &str, password: &str) -> PathBuf {
    let file = env.password(name, password);
    let out = env.run(&[
        "key",
        "add",
        "--write-only",
        "--new-password-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.ok().starts_with("added write-only key"), "{out:?}");
    file
}

/// The snapshot of `host`, from the full key's listing.
fn snapshot_of(env: &Env, host: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let found: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["host"] == host)
        .collect();
    assert_eq!(found.len(), 1, "{json}");
    found[0]["id"].as_str().unwrap().to_string()
}

/// Packs a write-only session sealed (header version byte 2).
fn session_packs(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            if std::fs::read(f.path()).unwrap()[..6] == *b"LVLT\x02\x06" {
                out.push(f.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Every command that reads or deletes, run with the write-only key
/// `password`: each refused with exit 19 and one line, and nothing written.
fn refuses_to_read_or_delete(env: &Env, password: &Path) {
    // A write-only key reads and deletes nothing, and writes nothing
    // while it is refused.
    let before = tree(&env.repo);
    let target = env.dir.path().join("stolen.db");
    let target = target.to_str().unwrap();
    let refused: &[&[&str]] = &[
        &["snapshots"],
        &["restore", "latest", "--target", target],
        &["dump", "latest"],
        &["diff", "latest", "latest"],
        &["show", "latest"],
        &["stats"],
        &["check"],
        &["check", "--read-data"],
        &["forget", "--keep-last", "1", "--prune"],
        &["prune"],
        &["tag", "latest", "--add", "x"],
        &["repair", "index"],
        &["key", "list"],
        &["key", "add", "--write-only"],
        &["key", "remove", "00"],
        &["key", "passwd"],
        &["unlock", "--remove-all"],
    ];
    for args in refused {
        let line = as_key(env, password, args).fails(19, &["needs a full key", "write-only key"]);
        assert!(line.contains("trusted host"), "{args:?}: {line}");
    }
    assert!(!Path::new(target).exists());
    assert_eq!(
        tree(&env.repo),
        before,
        "a refused command changed the repository"
    );
    // Plain unlock (stale locks only) is allowed.
    as_key(env, password, &["unlock"]).ok();
}

#[test]
fn write_only_hosts_back_up_and_read_nothing_and_the_full_key_restores_and_prunes_all() {
    let env = Env::new();
    env.init();
    let a = env.dir.path().join("orders_primary.db");
    let b = env.dir.path().join("billing_secondary.db");
    workload::create(&a, 4, 1);
    workload::create(&b, 3, 2);
    env.run(&["backup", a.to_str().unwrap()]).ok();
    let web1 = add_write_only(&env, "webhost-one", "web1 password\n");
    let web2 = add_write_only(&env, "webhost-two", "web2 password\n");
    let keys: serde_json::Value =
        serde_json::from_str(env.run(&["key", "list", "--json"]).ok()).unwrap();
    let kinds: Vec<bool> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["write_only"].as_bool().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|w| **w).count(), 2, "{keys}");

    // Two production hosts back up; the first deduplicates against what
    // the full key stored.
    workload::mutate(&a, 1, 1);
    let a1 = content(&a);
    let out = as_key(
        &env,
        &web1,
        &[
            "backup",
            "--json",
            "--host",
            "webhost-one",
            "--tag",
            "env_production",
            a.to_str().unwrap(),
        ],
    );
    let s: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert!(
        s["reused_chunks"].as_u64().unwrap() > 0,
        "a write-only backup deduplicates: {s}"
    );
    as_key(
        &env,
        &web2,
        &["backup", "--host", "webhost-two", b.to_str().unwrap()],
    )
    .ok();
    let b1 = content(&b);
    assert_eq!(session_packs(&env.repo).len(), 2);

    // Nothing stored names a database, host or tag in the clear.
    in_the_clear_nowhere(
        &env.repo,
        &[
            b"webhost-one",
            b"webhost-two",
            b"env_production",
            b"orders_primary",
            b"billing_secondary",
        ],
    );
    refuses_to_read_or_delete(&env, &web1);

    // The trusted host reads everything both hosts wrote.
    env.run(&["check", "--read-data"]).ok();
    for (host, want) in [("webhost-one", &a1), ("webhost-two", &b1)] {
        let id = snapshot_of(&env, host);
        let out = env.dir.path().join(format!("{host}.restored.db"));
        env.run(&["restore", &id, "--target", out.to_str().unwrap()])
            .ok();
        assert_eq!(&content(&out), want, "{host}");
    }

    // Nothing is unused yet: a write-only pack's framing is not waste.
    let plan = env.run(&["prune", "--dry-run"]);
    assert!(plan.ok().contains("(0 B unused)"), "{plan:?}");
    // web1 backs up again, sharing part of its first pack; once its first
    // snapshot is forgotten, prune moves the blobs still used into a pack
    // of its own, sealed with the master key, and every byte still checks.
    let first = s["snapshot"].as_str().unwrap().to_string();
    let web1_first = session_packs(&env.repo);
    workload::mutate(&a, 2, 1);
    let a2 = content(&a);
    as_key(
        &env,
        &web1,
        &["backup", "--host", "webhost-one", a.to_str().unwrap()],
    )
    .ok();
    env.run(&["forget", &first, "--prune", "--max-unused", "0%"])
        .ok();
    let left = session_packs(&env.repo);
    assert_eq!(left.len(), 2, "{web1_first:?} -> {left:?}");
    assert!(
        web1_first.iter().filter(|p| !left.contains(p)).count() == 1,
        "web1's first pack was repacked: {web1_first:?} -> {left:?}"
    );
    env.run(&["check", "--read-data"]).ok();
    let out = env.dir.path().join("web1-again.db");
    let id = snapshot_of(&env, "webhost-one");
    env.run(&["restore", &id, "--target", out.to_str().unwrap()])
        .ok();
    assert_eq!(content(&out), a2);
    // And web2's untouched session pack still restores.
    let out = env.dir.path().join("web2-again.db");
    let id = snapshot_of(&env, "webhost-two");
    env.run(&["restore", &id, "--target", out.to_str().unwrap()])
        .ok();
    assert_eq!(content(&out), b1);
}

#[test]
fn write_only_keys_need_format_4_and_the_config_they_were_made_for() {
    let old = Env::new();
    old.run(&["init", "--repository-version", "3"]).ok();
    let pw = old.password("wo", "wo password\n");
    old.run(&[
        "key",
        "add",
        "--write-only",
        "--new-password-file",
        pw.to_str().unwrap(),
    ])
    .fails(
        1,
        &[
            "format-3",
            "write-only keys need format 4",
            "litevault copy",
        ],
    );

    let env = Env::new();
    env.init();
    let wo = add_write_only(&env, "wo", "wo password\n");
    let db = env.dir.path().join("app.db");
    workload::create(&db, 1, 3);
    as_key(&env, &wo, &["backup", db.to_str().unwrap()]).ok();
    // Another repository's config put in its place: the write-only key
    // refuses it, since it cannot open it to tell.
    let other = Env::new();
    other.init();
    std::fs::copy(other.repo.join("config"), env.repo.join("config")).unwrap();
    as_key(&env, &wo, &["backup", db.to_str().unwrap()]).fails(
        13,
        &["config", "not the config the write-only key was made for"],
    );
}

#[test]
fn an_index_that_lies_about_who_sealed_a_pack_is_damage_not_a_wrong_restore() {
    use litevault::format::crypto::SealedBy;
    use litevault::format::index::{IndexFile, IndexPack};
    use litevault::repo::testing;
    let env = Env::new();
    env.init();
    let wo = add_write_only(&env, "wo", "wo password\n");
    let db = env.dir.path().join("app.db");
    workload::create(&db, 1, 4);
    as_key(&env, &wo, &["backup", db.to_str().unwrap()]).ok();
    let good = tree(&env.repo);
    let repo = env.open_repo();
    let index = repo.index().unwrap();
    let session = index
        .packs()
        .iter()
        .find(|p| matches!(p.sealed_by, SealedBy::Session(_)))
        .expect("the write-only backup's pack")
        .clone();
    let SealedBy::Session(epk) = session.sealed_by else {
        unreachable!()
    };
    let mut other = epk;
    other[0] ^= 1;
    for lie in [
        SealedBy::Master,
        SealedBy::Session(other),
        SealedBy::Session([0; 32]),
    ] {
        // A new index file naming the pack with the lie, superseding
        // every other: the repository now believes it.
        testing::save_index(
            &repo,
            &IndexFile {
                supersedes: index.files().to_vec(),
                packs: vec![IndexPack {
                    id: session.id,
                    sealed_by: lie,
                    blobs: session.blobs.clone(),
                }],
            },
        )
        .unwrap();
        let r = env.run(&["check"]);
        assert_eq!(r.code, 1, "{r:?}");
        let name = session.id.to_hex();
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(&name) && l.contains("disagree on who sealed it")),
            "{r:?}"
        );
        let target = env.dir.path().join("out.db");
        env.run(&["restore", "latest", "--target", target.to_str().unwrap()])
            .fails(13, &["failed authentication"]);
        assert!(!target.exists());
        // Back to the repository as it was.
        for (path, _) in tree(&env.repo) {
            if !good.contains_key(&path) {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
}

#[test]
fn a_write_only_key_replicates_every_commit_and_only_the_full_key_restores_them() {
    use crate::replicate::{burst, restore_at, state_of, wal_setup, Replicator};
    use std::time::Duration;
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let wo = add_write_only(&env, "wo", "wo password\n");
    let start = || {
        let mut c = env.bare();
        c.arg("--repo")
            .arg(&env.repo)
            .arg("--password-file")
            .arg(&wo)
            .args(["replicate", "--interval", "300ms", "--state-dir"])
            .arg(&state)
            .arg(&db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        Replicator {
            child: c.spawn().unwrap(),
        }
    };
    let con = rusqlite::Connection::open(&db).unwrap();
    let mut log = Vec::new();
    // Two runs of the write-only replicator: the second resumes from its
    // own local record, reading nothing back from the repository.
    for _ in 0..2 {
        let rep = start();
        std::thread::sleep(Duration::from_millis(800));
        burst(&con, 60, &mut log, &db);
        std::thread::sleep(Duration::from_millis(800));
        let out = rep.stop("TERM");
        assert_eq!(out.code, 0, "{out:?}");
    }
    // What it stored is sealed to sessions it no longer has.
    let changes: Vec<Vec<u8>> = std::fs::read_dir(env.repo.join("changes"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!changes.is_empty());
    assert!(
        changes.iter().all(|c| c[..6] == *b"LVLT\x02\x0a"),
        "every change object sealed to a session"
    );
    as_key(
        &env,
        &wo,
        &[
            "restore",
            "--db",
            db.to_str().unwrap(),
            "--at",
            "latest",
            "--target",
            "x.db",
        ],
    )
    .fails(19, &["needs a full key"]);
    // The full key restores the last commit, and a moment in between.
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
    let mid = &log[89];
    let at = crate::replicate::rfc3339(mid.at_ns + 1_000_000);
    let got = restore_at(&env, &db, &at, "mid.db").unwrap();
    assert!(
        got == mid.state
            || log
                .iter()
                .any(|l| l.state == got && l.at_ns <= mid.at_ns + 1_000_000),
        "restored {got:?}, a state the database never had before {at}"
    );
    env.run(&["check", "--read-data"]).ok();
}

#[test]
fn a_write_only_key_copies_snapshots_in_and_cannot_copy_them_out() {
    let src = Env::new();
    src.init();
    let db = src.dir.path().join("app.db");
    workload::create(&db, 2, 5);
    src.run(&["backup", db.to_str().unwrap()]).ok();
    let want = content(&db);
    let env = Env::new();
    env.init();
    let wo = add_write_only(&env, "wo", "wo password\n");
    let copy_in = || {
        as_key(
            &env,
            &wo,
            &[
                "copy",
                "--from-repo",
                src.repo.to_str().unwrap(),
                "--from-password-file",
                src.password_file.to_str().unwrap(),
            ],
        )
    };
    copy_in().ok();
    // It cannot tell what the target holds, so a second copy copies the
    // snapshot again; its data is stored once.
    let size = |p: &Path| tree(p).values().map(Vec::len).sum::<usize>();
    let before = size(&env.repo.join("data"));
    copy_in().ok();
    assert!(
        size(&env.repo.join("data")) < before + before / 20,
        "data stored twice"
    );
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    let out = env.dir.path().join("copied.db");
    env.run(&["restore", "latest", "--target", out.to_str().unwrap()])
        .ok();
    assert_eq!(content(&out), want);
    // Out of the repository: refused.
    let mut c = env.bare();
    c.args(["--repo", src.repo.to_str().unwrap(), "--password-file"])
        .arg(&src.password_file)
        .args([
            "copy",
            "--from-repo",
            env.repo.to_str().unwrap(),
            "--from-password-file",
        ])
        .arg(&wo);
    run(c).fails(19, &["copy needs a full key"]);
}

#[test]
fn a_service_with_a_write_only_key_backs_up_and_its_api_reads_nothing() {
    use crate::service::{http, start_task, wait_task, Daemon, Svc, TOKEN};
    let s = Svc::new();
    let app = s.small_db("app.db");
    let wo = add_write_only(&s.env, "wo", "wo password\n");
    let config = s.path("litevault.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\ntokens = [\"$LV_TEST_TOKEN\"]\n\
             [repositories.one]\nlocation = \"{}\"\npassword = {{ file = \"{}\" }}\n\
             [databases.app]\npath = \"{}\"\n\
             [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n",
            s.path("state/state.db").display(),
            s.env.repo.display(),
            wo.display(),
            app.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(s.cmd(&["serve", "--config", config.to_str().unwrap()]));
    let addr = d.address();
    let task = start_task(&addr, "/v1/backups", "{\"database\":\"app\"}");
    let done = wait_task(&addr, &task);
    assert_eq!(done["state"], "succeeded", "{done}");
    // Listing, downloading and restoring need a full key: 403, saying so.
    for (method, path, body) in [
        ("GET", "/v1/snapshots", None),
        ("GET", "/v1/snapshots/latest/database?database=app", None),
    ] {
        let (st, _, b) = http(&addr, method, path, Some(TOKEN), body);
        assert_eq!(st, 403, "{method} {path}: {}", String::from_utf8_lossy(&b));
        assert!(
            String::from_utf8_lossy(&b).contains("needs a full key"),
            "{path}"
        );
    }
    d.stop();
    // The trusted host sees the service's backup.
    assert_eq!(s.snapshots(&s.env.repo).len(), 1);
}
