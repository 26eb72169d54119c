//! A repository in an S3 bucket with Object Lock and a default retention
//! (SPEC.md 11.2), against moto's server, which enforces it (Garage does
//! not implement Object Lock): litevault works there with
//! `-o s3.object-lock=true`, and an attacker holding the host's storage
//! credentials can hide objects and add versions but remove or change no
//! byte of what was written, so the bucket's owner gets every snapshot
//! back. The production host's backups are made with a write-only key,
//! which reads none of them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::Command;

use crate::replicate::{state_of, wal_db};
use crate::util::servers::{self, unique};
use crate::util::Env;

fn vars() -> Vec<(String, OsString)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "litevault-test".into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            "litevault-test-secret".into(),
        ),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
    ]
}

/// `tests/fixtures/s3_lock.py ARGS`: the bucket owner's and the
/// attacker's side, through boto3; its output.
fn s3_lock(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/s3_lock.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .envs(vars())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "s3_lock.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every version under `prefix`: `key@version` to its bytes' hash, or
/// "marker".
fn versions(endpoint: &str, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
    serde_json::from_str(&s3_lock(&["versions", endpoint, bucket, prefix])).unwrap()
}

#[test]
fn an_object_lock_bucket_keeps_every_byte_from_an_attacker_with_the_credentials() {
    let moto = servers::moto();
    let endpoint = moto.endpoint();
    let bucket = unique("lock");
    s3_lock(&["bucket", &endpoint, &bucket, "1", "COMPLIANCE"]);
    let env = Env::remote(format!("s3:{endpoint}/{bucket}/repo"), vars());
    let locked = |args: &[&str]| {
        let mut all = vec!["-o", "s3.object-lock=true"];
        all.extend(args);
        env.run(&all)
    };

    // Without the option the bucket refuses the first write; the line
    // says what to add.
    env.run(&["init"])
        .fails(16, &["Object Lock", "-o s3.object-lock=true"]);
    locked(&["init"]).ok();
    let (db, c) = app_db(&env);
    locked(&["backup", db.to_str().unwrap()]).ok();
    // The production host backs up with a write-only key (SPEC.md 21):
    // with it and the credentials, nothing stored can be read either.
    let wo = env.password("wo", "write-only password\n");
    locked(&[
        "key",
        "add",
        "--write-only",
        "--new-password-file",
        wo.to_str().unwrap(),
    ])
    .ok();
    let production = |args: &[&str]| {
        let mut c = env.bare();
        c.arg("--repo")
            .arg(env.location())
            .arg("--password-file")
            .arg(&wo)
            .args(["-o", "s3.object-lock=true"])
            .args(args);
        crate::util::run(c)
    };
    c.execute("UPDATE t SET v = randomblob(300) WHERE id % 7 = 0", [])
        .unwrap();
    production(&["backup", db.to_str().unwrap()]).ok();
    drop(c);
    let want = state_of(&db);
    let target = env.dir.path().join("stolen.db");
    for args in [
        &["snapshots"][..],
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &["forget", "--keep-last", "1", "--prune"],
    ] {
        production(args).fails(19, &["needs a full key"]);
    }
    // Deleting works as S3 deletes there: a delete marker hides the
    // object, whose version stays until its retention ends.
    locked(&["forget", "--keep-last", "1", "--prune"]).ok();
    locked(&["check", "--read-data"]).ok();

    // The attacker overwrites the snapshots, deletes every object, and
    // tries to delete every version, with and without the governance
    // bypass (the retention is COMPLIANCE: no credential may).
    let before = versions(&endpoint, &bucket, "repo/");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let attack: serde_json::Value =
        serde_json::from_str(&s3_lock(&["attack", &endpoint, &bucket, "repo/"])).unwrap();
    assert!(attack["overwrites"].as_u64().unwrap() >= 1, "{attack}");
    assert!(attack["deletes"].as_u64().unwrap() >= 5, "{attack}");
    assert_eq!(attack["version_deletes"], 0, "{attack}");
    // The repository is gone from sight...
    let r = locked(&["--no-cache", "snapshots"]);
    assert_ne!(r.code, 0, "{r:?}");
    // ...but every version written before is there, byte for byte.
    let after = versions(&endpoint, &bucket, "repo/");
    for (version, hash) in &before {
        assert_eq!(
            after.get(version),
            Some(hash),
            "{version} was changed or removed"
        );
    }

    // The bucket's owner undoes what was done since the attack began,
    // and everything restores and checks.
    s3_lock(&["recover", &endpoint, &bucket, "repo/", &since]);
    locked(&["--no-cache", "check", "--read-data"]).ok();
    let target = env.dir.path().join("restored.db");
    locked(&[
        "--no-cache",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(state_of(&target), want);
}

#[test]
fn init_object_lock_gives_every_object_a_retention_and_prune_plans_around_it() {
    let moto = servers::moto();
    let endpoint = moto.endpoint();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // A bucket made without Object Lock cannot get it from litevault: the
    // line says how to make one that can; nothing is written.
    let plain = unique("plain");
    s3_lock(&["bucket", &endpoint, &plain, "0", "none"]);
    let env = Env::remote(format!("s3:{endpoint}/{plain}/repo"), vars());
    let r = env.run(&["init", "--object-lock", "1"]);
    r.fails(16, &["no Object Lock", "--object-lock-enabled-for-bucket"]);
    assert!(versions(&endpoint, &plain, "").is_empty());
    // And a local repository says Object Lock is an S3 feature.
    let local = Env::new();
    local
        .run(&["init", "--object-lock", "1"])
        .fails(1, &["not an S3 bucket", "append-only"]);
    assert!(!local.repo.exists(), "a refused init leaves nothing behind");

    // A bucket with Object Lock and no default retention: init sets it,
    // before it writes anything, so every object it writes has it.
    let bucket = unique("locked");
    s3_lock(&["bucket", &endpoint, &bucket, "0", "-"]);
    let env = Env::remote(format!("s3:{endpoint}/{bucket}/repo"), vars());
    let out = env.run(&["init", "--object-lock", "2"]);
    out.ok();
    assert!(
        out.stderr.contains("kept for 2 days") && out.stderr.contains("-o s3.object-lock=true"),
        "{out:?}"
    );
    let locked = |args: &[&str]| {
        let mut all = vec!["-o", "s3.object-lock=true"];
        all.extend(args);
        env.run(&all)
    };
    let (db, c) = app_db(&env);
    locked(&["backup", db.to_str().unwrap()]).ok();
    let retention: serde_json::Value =
        serde_json::from_str(&s3_lock(&["retention", &endpoint, &bucket, "repo/"])).unwrap();
    assert_eq!(
        retention["bucket"],
        serde_json::json!(["COMPLIANCE", 2]),
        "{retention}"
    );
    let objects = retention.as_object().unwrap();
    assert!(objects.len() > 4, "{retention}");
    for (key, r) in objects.iter().filter(|(k, _)| *k != "bucket") {
        assert_eq!(r[0], "COMPLIANCE", "{key}: {r}");
        let until = r[1].as_f64().unwrap();
        assert!(
            until > now + 2.0 * 86_400.0 - 60.0 && until < now + 2.0 * 86_400.0 + 600.0,
            "{key}: retained until {until}, 2 days after {now}"
        );
    }

    // Prune there deletes what no snapshot uses (it hides it) but repacks
    // nothing still retained, and says until when the bucket keeps it.
    c.execute("UPDATE t SET v = randomblob(800) WHERE id % 2 = 0", [])
        .unwrap();
    drop(c);
    locked(&["backup", db.to_str().unwrap()]).ok();
    let want = state_of(&db);
    locked(&["forget", "--keep-last", "1"]).ok();
    let out = locked(&["prune", "--max-unused", "0%"]);
    assert!(
        out.ok()
            .contains("keeps every object version 2 days after it is written")
            && out.stdout.contains("repack 0 pack(s)"),
        "{out:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(locked(&["prune", "--max-unused", "0%", "--dry-run", "--json"]).ok())
            .unwrap();
    assert_eq!(json["held"]["retention"]["days"], 2, "{json}");
    assert!(
        !json["held"]["packs"].as_array().unwrap().is_empty(),
        "{json}"
    );
    locked(&["check", "--read-data"]).ok();
    let target = env.dir.path().join("restored.db");
    locked(&["restore", "latest", "--target", target.to_str().unwrap()]).ok();
    assert_eq!(state_of(&target), want);

    // What the attack of the other test tries fails here too.
    let attack: serde_json::Value =
        serde_json::from_str(&s3_lock(&["attack", &endpoint, &bucket, "repo/"])).unwrap();
    assert_eq!(attack["version_deletes"], 0, "{attack}");
}

/// A WAL-mode database of 2000 rows of 800 random bytes in `env`'s
/// directory, and a connection to it.
fn app_db(env: &Env) -> (std::path::PathBuf, rusqlite::Connection) {
    let db = env.dir.path().join("app.db");
    wal_db(&db, 4096);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t(v, at) SELECT randomblob(800), i FROM n",
    )
    .unwrap();
    (db, c)
}
