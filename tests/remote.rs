//! Remote repositories on real servers the tests start on loopback
//! (`util::servers`: Garage for S3, OpenSSH's sshd for SFTP): the whole
//! command cycle on every backend, `copy` between every pair of kinds,
//! request economy, the fault and crash suites, bad input, and a
//! three-node Garage cluster losing nodes. (The backend contract suite runs
//! on S3 and SFTP in `contract.rs`.)

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backup::{dump, make_db, workload};
use crate::util::servers::{self, GarageNode, Sshd};
use crate::util::{run, Env, Run};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
    Sftp,
}

pub fn s3_vars() -> Vec<(String, OsString)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), servers::ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), servers::SECRET_KEY.into()),
        ("AWS_DEFAULT_REGION".into(), "garage".into()),
    ]
}

fn sftp_vars() -> Vec<(String, OsString)> {
    vec![("PATH".into(), Sshd::path_with(&servers::sshd().bin))]
}

/// A location of `kind` (a fresh, empty one) and the variables to reach it.
fn location(kind: Kind, env: &Env, name: &str) -> (String, Vec<(String, OsString)>) {
    match kind {
        Kind::Local => (
            env.dir.path().join(name).to_string_lossy().into_owned(),
            Vec::new(),
        ),
        Kind::S3 => (servers::s3_location(name), s3_vars()),
        Kind::Sftp => (servers::sshd().location(name), sftp_vars()),
    }
}

pub fn env_for(kind: Kind) -> Env {
    let scratch = Env::new();
    let (loc, vars) = location(kind, &scratch, "repo");
    match kind {
        Kind::Local => scratch,
        _ => Env::remote(loc, vars),
    }
}

fn json(r: &Run) -> serde_json::Value {
    let out = r.ok().trim();
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// How many snapshots `snapshots --json` (with `args` before it) lists.
fn snapshot_count(env: &Env, args: &[&str]) -> usize {
    let mut a = args.to_vec();
    a.extend(["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(env.run(&a).ok()).unwrap();
    listed.as_array().unwrap().len()
}

fn requests(io: &serde_json::Value) -> u64 {
    ["lists", "gets", "puts", "deletes"]
        .iter()
        .map(|k| io[k].as_u64().unwrap_or_else(|| panic!("io.{k} in {io}")))
        .sum()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// init, backup (first, changed, unchanged), snapshots, restore, dump, tag,
/// key add/list, forget --prune, prune, check --read-data, stats, unlock.
fn command_cycle(kind: Kind) {
    let env = env_for(kind);
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 6, 7);
    let first = json(&env.run(&["backup", s(&db), "--tag", "env_production", "--json"]));
    assert!(first["io"]["puts"].as_u64().unwrap() > 3, "{first}");
    workload(&["mutate", s(&db), "--step", "1", "--seed", "7"]);
    let second = json(&env.run(&["backup", s(&db), "--tag", "env_production", "--json"]));
    assert_eq!(second["skipped"], false);
    let sent = second["io"]["bytes_sent"].as_u64().unwrap();
    assert!(
        sent * 3 < first["io"]["bytes_sent"].as_u64().unwrap(),
        "an incremental sends only what changed: {first} then {second}"
    );
    let unchanged = json(&env.run(&["backup", s(&db), "--tag", "env_production", "--json"]));
    assert_eq!(unchanged["skipped"], true, "{unchanged}");
    let io = &unchanged["io"];
    assert_eq!(io["puts"], 1, "only the lock is written: {io}");
    assert_eq!(io["deletes"], 1, "only the lock is deleted: {io}");
    match kind {
        // One listing of keys, index files, locks and snapshots together,
        // after writing the lock; the config and key from the cache.
        Kind::S3 => assert_eq!(requests(io), 3, "{io}"),
        // keys, locks (before and after writing its own), index, snapshots;
        // the config and key from the cache.
        Kind::Sftp => {
            assert_eq!(io["lists"], 5, "{io}");
            assert_eq!(io["gets"], 0, "{io}");
        }
        // No cache: the config, the key, index files and manifests are read.
        Kind::Local => assert_eq!(io["lists"], 5, "{io}"),
    }
    if kind != Kind::Local {
        assert!(
            requests(io) <= 8,
            "an unchanged database costs at most 8 requests: {io}"
        );
    }

    let snaps: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);

    let target = env.dir.path().join("restored.db");
    let restored = json(&env.run(&["restore", "latest", "--target", s(&target), "--json"]));
    assert!(restored["io"]["gets"].as_u64().unwrap() > 0);
    assert_eq!(dump(&target), dump(&db));

    let dumped = env.dir.path().join("dumped.sql");
    env.run(&["dump", "latest", "--format", "sql", "--output", s(&dumped)])
        .ok();
    assert!(std::fs::read_to_string(&dumped)
        .unwrap()
        .contains("CREATE TABLE"));

    env.run(&["tag", "latest", "--add", "kept"]).ok();
    let second_pw = env.password("pw2", "another password");
    let mut c = env.command(&["key", "add"]);
    c.arg("--new-password-file").arg(&second_pw);
    run(c).ok();
    let keys: serde_json::Value =
        serde_json::from_str(env.run(&["key", "list", "--json"]).ok()).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);

    let forgot = json(&env.run(&[
        "forget",
        "--keep-last",
        "1",
        "--group-by",
        "host,db",
        "--prune",
        "--max-unused",
        "0%",
        "--json",
    ]));
    assert_eq!(forgot["removed"], 1, "{forgot}");
    // The prune removed every blob the kept snapshot does not need (the old
    // versions its delta blobs start from it does need): nothing is left
    // to delete or repack.
    assert!(forgot.get("prune").is_some(), "{forgot}");
    let left = json(&env.run(&["prune", "--dry-run", "--max-unused", "0%", "--json"]));
    for k in ["delete", "repack", "orphans"] {
        assert_eq!(left[k].as_array().unwrap().len(), 0, "{left}");
    }
    let checked = json(&env.run(&["check", "--read-data", "--json"]));
    assert_eq!(
        checked["findings"].as_array().unwrap().len(),
        0,
        "{checked}"
    );
    assert!(checked["packs_read"].as_u64().unwrap() > 0);
    let stats = json(&env.run(&["stats", "--json"]));
    assert_eq!(stats["snapshots"], 1);
    if kind == Kind::Local {
        assert!(stats.get("cache").is_none());
    } else {
        assert!(stats["cache"]["files"].as_u64().unwrap() >= 3, "{stats}");
    }
    let shown = env.run(&["stats"]);
    assert!(shown.ok().contains("requests"), "{shown:?}");
    assert_eq!(
        shown.ok().contains("cache "),
        kind != Kind::Local,
        "{shown:?}"
    );
    env.run(&["unlock"]).ok();
    let again = env.dir.path().join("again.db");
    env.run(&["restore", "latest", "--tag", "kept", "--target", s(&again)])
        .ok();
    assert_eq!(dump(&again), dump(&db));
    // Without the cache, the same answers.
    assert_eq!(snapshot_count(&env, &["--no-cache"]), 1);
}

#[test]
fn command_cycle_on_local() {
    command_cycle(Kind::Local);
}

#[test]
fn command_cycle_on_s3() {
    command_cycle(Kind::S3);
}

#[test]
fn command_cycle_on_sftp() {
    command_cycle(Kind::Sftp);
}

/// The request economy on S3, counted by Garage itself: an incremental
/// backup lists each object type at most once and reads no index file or
/// manifest it has cached; what it reads is the previous snapshot's tree
/// and the bases of its delta blobs; an unchanged database makes at most 8
/// requests.
#[test]
fn an_incremental_backup_lists_each_type_once_and_reads_only_what_it_has_not_seen() {
    let env = env_for(Kind::S3);
    let garage = servers::garage();
    env.run(&["init"]).ok();
    let db = make_db(&env, "app.db", 4, 11);
    env.run(&["backup", s(&db)]).ok();
    for step in 1..=2 {
        workload(&[
            "mutate",
            s(&db),
            "--step",
            &step.to_string(),
            "--seed",
            "11",
        ]);
        let before = garage.s3_requests();
        let out = json(&env.run(&["backup", s(&db), "--json"]));
        let after = garage.s3_requests();
        let delta = |k: &str| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
        let io = &out["io"];
        // Counted by the server: what litevault reports is what happened.
        // (Other tests share the server, so the server's counts are an
        // upper bound; litevault's must not exceed them.)
        assert!(
            io["lists"].as_u64().unwrap() <= delta("ListObjectsV2"),
            "{io}"
        );
        assert!(io["puts"].as_u64().unwrap() <= delta("PutObject"), "{io}");
        // keys, index files, locks and snapshots in one listing, and index
        // files and locks once more before the snapshot is published (its
        // lock and the index files it deduplicated against still there).
        assert_eq!(io["lists"], 2, "{io}");
        // The config, the key, index files and manifests it has seen (or
        // written) come from the cache. What it reads by range: on day 1
        // the first snapshot's tree blobs (a 4 MiB database has a handful)
        // and each delta's base (a full blob of the first backup); on day
        // 2 only bases it has not read or written before: day 1's tree and
        // deltas, and the bases it read, are in the cache.
        let new_chunks = out["manifest"]["stats"]["new_chunks"].as_u64().unwrap();
        let gets = io["gets"].as_u64().unwrap();
        // Before the manifest, one size request each confirms every pack
        // written is still there (HEAD: counted with gets); the lock is
        // confirmed by the second listing.
        let confirms = out["packs"].as_u64().unwrap();
        assert!(gets <= delta("GetObject") + delta("HeadObject"), "{io}");
        let bound = confirms
            + if step == 1 {
                8 + new_chunks
            } else {
                new_chunks
            };
        assert!(
            gets <= bound,
            "{io} for {new_chunks} new chunks on day {step}"
        );
        assert!(io["cache_hits"].as_u64().unwrap() >= 2, "{io}");
        // The lock, a pack, its index file, the manifest; the lock's delete.
        assert_eq!(io["puts"], 4, "{io}");
        assert_eq!(requests(io), 7 + gets, "{io}");
    }
    // Another machine (an empty cache) reads each object once, then no more.
    let other = env.dir.path().join("other-cache");
    let plan = [
        "--cache-dir",
        s(&other),
        "forget",
        "--keep-last",
        "9",
        "--dry-run",
        "--json",
    ];
    let cold = json(&env.run(&plan));
    let warm = json(&env.run(&plan));
    // config, the key, 3 manifests.
    assert_eq!(cold["io"]["gets"], 5, "{cold}");
    assert_eq!(warm["io"]["gets"], 0, "a warm cache reads nothing: {warm}");
    assert_eq!(warm["io"]["cache_hits"], 3, "{warm}");
    let out = json(&env.run(&["backup", s(&db), "--json"]));
    assert_eq!(out["skipped"], true);
    assert!(requests(&out["io"]) <= 8, "{}", out["io"]);
    // The cache is verified: a damaged cached object is fetched again.
    let cache = env.dir.path().join("cache/litevault");
    let mut damaged = 0;
    for e in walkdir::WalkDir::new(&cache)
        .into_iter()
        .map(Result::unwrap)
    {
        if e.file_type().is_file() && e.path().parent().unwrap().ends_with("snapshots") {
            std::fs::write(e.path(), b"garbage").unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    assert_eq!(snapshot_count(&env, &[]), 3);
}

/// The requests a `--verbose` run reports for its repository, by kind
/// ("gets", "puts", ...).
fn verbose_requests(stderr: &str, kind: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("litevault: repository ") && l.contains(" requests ("))
        .unwrap_or_else(|| panic!("no request line in {stderr}"));
    let inside = &line[line.find(" requests (").unwrap() + 11..];
    let inside = &inside[..inside.find(')').unwrap()];
    inside
        .split(", ")
        .find_map(|part| {
            let (n, what) = part.split_once(' ')?;
            what.starts_with(kind.trim_end_matches('s'))
                .then(|| n.parse().unwrap())
        })
        .unwrap_or(0)
}

/// A restore reads the delta bases of a snapshot with the range reads of
/// the chunks around them (a base is the chunk's previous version, in the
/// packs of the snapshot before): its requests grow with the packs, not
/// with the changed chunks, of which each cost a request of its own
/// before. Whatever the order of reads, the restore is exact, and with
/// an empty cache (`--no-cache`) as with a warm one.
#[test]
fn a_restore_reads_delta_bases_with_the_chunks_around_them() {
    let env = env_for(Kind::S3);
    env.run(&["init"]).ok();
    let db = make_db(&env, "app.db", 16, 5);
    env.run(&["backup", s(&db)]).ok();
    let mut deltas = 0;
    for (step, every) in [(1, 300), (2, 170)] {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "UPDATE events SET kind = kind || '{step}' WHERE id % {every} = 0"
        ))
        .unwrap();
        drop(conn);
        let out = json(&env.run(&["backup", s(&db), "--json"]));
        deltas = out["manifest"]["stats"]["new_chunks"].as_u64().unwrap();
    }
    assert!(deltas >= 150, "{deltas} changed chunks: too few to tell");
    for cache in [&["--no-cache"][..], &[]] {
        let target = env.dir.path().join(format!("out{}.db", cache.len()));
        let mut args = cache.to_vec();
        args.extend([
            "--verbose",
            "restore",
            "--db",
            "app.db",
            "--target",
            s(&target),
            "--no-pre-restore",
            "latest",
        ]);
        let r = env.run(&args);
        r.ok();
        let gets = verbose_requests(&r.stderr, "gets");
        // The config, the key, three index files and manifests, the tree
        // and a few runs per pack: far fewer than the changed chunks.
        assert!(
            gets > 0 && gets * 3 < deltas,
            "{gets} gets for {deltas} changed chunks: {}",
            r.stderr
        );
        assert_eq!(dump(&target), dump(&db));
    }
}

/// copy between every pair of backend kinds; a second copy sends nothing.
#[test]
fn copy_between_every_kind_of_backend() {
    let env = Env::new();
    env.run(&["init"]).ok();
    let db = make_db(&env, "app.db", 4, 21);
    for day in 1..=2 {
        if day > 1 {
            workload(&["mutate", s(&db), "--step", "1", "--seed", "21"]);
        }
        let time = format!("2026-03-0{day} 10:00:00");
        let args = ["backup", s(&db), "--tag", "env_production", "--time", &time];
        env.run(&args).ok();
    }
    let source = env.repo.to_string_lossy().into_owned();
    let mut prev = (source, Vec::new());
    for (i, kind) in [Kind::S3, Kind::Sftp, Kind::Local, Kind::Sftp, Kind::S3]
        .into_iter()
        .enumerate()
    {
        let (loc, vars) = location(kind, &env, &format!("copy{i}"));
        let target = Env::remote(loc.clone(), [prev.1.clone(), vars.clone()].concat());
        target.run(&["init"]).ok();
        let mut c = target.command(&["copy", "--json", "--from-repo", &prev.0]);
        c.arg("--from-password-file").arg(&env.password_file);
        let first = json(&run(c));
        assert_eq!(first["copied"].as_array().unwrap().len(), 2, "{first}");
        let mut c = target.command(&["copy", "--json", "--from-repo", &prev.0]);
        c.arg("--from-password-file").arg(&env.password_file);
        let again = json(&run(c));
        assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
        assert_eq!(again["already_present"].as_array().unwrap().len(), 2);
        assert!(
            again["target_io"]["puts"].as_u64().unwrap() <= 1,
            "a second copy writes only its lock: {again}"
        );
        // Same snapshots, same metadata, same databases.
        let snaps: serde_json::Value =
            serde_json::from_str(target.run(&["snapshots", "--json"]).ok()).unwrap();
        let times: Vec<&str> = snaps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["time"].as_str().unwrap())
            .collect();
        assert_eq!(times.len(), 2);
        assert!(times[0].starts_with("2026-03-01T10:00:00"), "{times:?}");
        assert_eq!(snaps[1]["tags"][0], "env_production");
        let out = env.dir.path().join(format!("copied{i}.db"));
        target.run(&["restore", "latest", "--target", s(&out)]).ok();
        assert_eq!(dump(&out), dump(&db), "{kind:?}");
        prev = (loc, vars);
    }
}

/// A copy killed midway resumes: the next copy sends only what the first
/// did not.
#[test]
fn an_interrupted_copy_resumes_where_it_stopped() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 24, 31);
    env.run(&["backup", s(&db)]).ok();
    let (loc, vars) = location(Kind::S3, &env, "resume");
    let target = Env::remote(loc.clone(), vars.clone());
    target.run(&["init", "--pack-size", "1"]).ok();
    let copy = |t: &Env| {
        let mut c = t.command(&["copy", "--json", "--from-repo", s(&env.repo)]);
        c.arg("--from-password-file").arg(&env.password_file);
        c
    };
    // A full copy elsewhere, for the byte count.
    let (full_loc, _) = location(Kind::S3, &env, "full");
    let full_env = Env::remote(full_loc, vars.clone());
    full_env.run(&["init", "--pack-size", "1"]).ok();
    let full = json(&run(copy(&full_env)));
    let full_sent = full["target_io"]["bytes_sent"].as_u64().unwrap();
    // Kill the copy once it has stored a few packs.
    let mut c = copy(&target);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let repo = litevault::Location::parse(&loc)
        .unwrap()
        .open(&litevault::BackendOptions::default())
        .unwrap();
    let start = Instant::now();
    while repo.list(litevault::FileType::Index).unwrap().len() < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended too soon"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    target.run(&["unlock"]).ok();
    let resumed = json(&run(copy(&target)));
    assert_eq!(resumed["copied"].as_array().unwrap().len(), 1);
    let sent = resumed["target_io"]["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < full_sent * 9 / 10,
        "the resumed copy sent {sent} of a full copy's {full_sent} bytes"
    );
    let out = env.dir.path().join("resumed.db");
    target.run(&["restore", "latest", "--target", s(&out)]).ok();
    assert_eq!(dump(&out), dump(&db));
    let checked = json(&target.run(&["check", "--read-data", "--json"]));
    assert_eq!(
        checked["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .count(),
        0,
        "{checked}"
    );
}

#[test]
fn faults_at_every_write_on_s3() {
    servers::garage();
    crate::faults::every_fault_at_every_write(&|| {
        let loc = servers::s3_location("faults");
        crate::faults::Storage {
            backend: litevault::Location::parse(&loc)
                .unwrap()
                .for_init(&litevault::BackendOptions::default())
                .unwrap(),
            dir: None,
            _guard: None,
        }
    });
}

#[test]
fn faults_at_every_write_on_sftp() {
    let sshd = servers::sshd();
    crate::faults::every_fault_at_every_write(&|| {
        let loc = sshd.location("faults");
        let path = loc.rsplit_once(':').unwrap().1.to_string();
        crate::faults::Storage {
            backend: litevault::Location::parse(&loc)
                .unwrap()
                .for_init(&litevault::BackendOptions::default())
                .unwrap(),
            dir: Some(path.into()),
            _guard: None,
        }
    });
}

#[test]
fn sigkill_rounds_on_s3() {
    crate::crash::sigkill_rounds(&env_for(Kind::S3), crate::crash::rounds(5));
}

#[test]
fn sigkill_rounds_on_sftp() {
    crate::crash::sigkill_rounds(&env_for(Kind::Sftp), crate::crash::rounds(5));
}

// ------------------------------------------------------------ bad input

/// Runs `init` and `snapshots` on `location` with `vars`, expecting one
/// error line with exit code `code` naming every needle and no secret,
/// within `limit`.
fn refused(
    location: &str,
    vars: &[(String, OsString)],
    extra: &[&str],
    code: i32,
    needles: &[&str],
) {
    let env = Env::remote(location.to_string(), vars.to_vec());
    for cmd in ["init", "snapshots"] {
        let start = Instant::now();
        let mut args: Vec<&str> = extra.to_vec();
        args.push(cmd);
        // Only the variables given: none from this process (its own S3
        // backends have the credentials set).
        let mut c = env.command(&args);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ] {
            c.env_remove(k);
        }
        for (k, v) in vars {
            c.env(k, v);
        }
        let r = run(c);
        let line = r.fails(code, needles);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{cmd} on {location} took {:?}",
            start.elapsed()
        );
        assert!(!line.contains(servers::SECRET_KEY), "{line}");
        assert!(!r.stdout.contains(servers::SECRET_KEY));
    }
}

#[test]
fn bad_s3_locations_fail_fast_with_one_line() {
    let garage = servers::garage();
    let endpoint = garage.endpoint();
    // Nothing listens there.
    let closed = format!("s3:http://127.0.0.1:{}/bucket/x", servers::free_port());
    refused(
        &closed,
        &s3_vars(),
        &["-o", "timeout=2s", "-o", "retries=1"],
        16,
        &["127.0.0.1", "cannot reach", "Connection refused"],
    );
    // Something listens there but never answers: the time limit holds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    refused(
        &format!("s3:http://127.0.0.1:{port}/bucket/x"),
        &s3_vars(),
        &["-o", "timeout=2s", "-o", "retries=1"],
        16,
        &["127.0.0.1", "cannot reach", "timeout"],
    );
    // Wrong credentials.
    let wrong = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            OsString::from("GK000000000000000000000000"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            OsString::from("0".repeat(64)),
        ),
        ("AWS_DEFAULT_REGION".to_string(), OsString::from("garage")),
    ];
    refused(
        &format!("s3:{endpoint}/{}/x", servers::BUCKET),
        &wrong,
        &[],
        16,
        &["credentials"],
    );
    // A bucket that does not exist.
    refused(
        &format!("s3:{endpoint}/no-such-bucket-here/x"),
        &s3_vars(),
        &[],
        16,
        &["no-such-bucket-here", "does not exist"],
    );
    // The wrong region.
    refused(
        &format!("s3:{endpoint}/{}/x", servers::BUCKET),
        &s3_vars(),
        &["-o", "s3.region=eu-west-9"],
        16,
        &["region"],
    );
    // No credentials at all.
    refused(
        &format!("s3:{endpoint}/{}/x", servers::BUCKET),
        &[],
        &[],
        1,
        &["AWS_ACCESS_KEY_ID"],
    );
}

#[test]
fn bad_sftp_locations_fail_fast_with_one_line() {
    let sshd = servers::sshd();
    let closed = format!("sftp:root@127.0.0.1:{}:/tmp/x", servers::free_port());
    refused(
        &closed,
        &sftp_vars(),
        &["-o", "timeout=5s"],
        16,
        &["127.0.0.1", "cannot reach", "Connection refused"],
    );
    // The server's host key is not the one known: changed, or unknown
    // (then the line to record it is given).
    let wrong = vec![(
        "PATH".to_string(),
        Sshd::path_with(&sshd.bin_wrong_host_key),
    )];
    refused(
        &sshd.location("hostkey"),
        &wrong,
        &[],
        16,
        &["host key changed", "known_hosts", "ssh-keygen -R"],
    );
    let unknown = vec![("PATH".to_string(), Sshd::path_with(&sshd.bin_unknown_host))];
    refused(
        &sshd.location("hostkey"),
        &unknown,
        &[],
        16,
        &[
            "host key is unknown",
            &format!(
                "ssh-keyscan -p {} 127.0.0.1 >> ~/.ssh/known_hosts",
                sshd.port
            ),
            "sftp.known-hosts=add",
        ],
    );
    // A key the server allows only to read.
    let read_only = sshd.location("readonly");
    let env = Env::remote(read_only.clone(), sftp_vars());
    let r = env.run(&[
        "-o",
        &format!("sftp.key={}", sshd.read_only_key.display()),
        "init",
    ]);
    r.fails(16, &["permission denied"]);
    // Nothing half-written is visible.
    let path = read_only.rsplit_once(':').unwrap().1;
    assert!(!Path::new(path).join("config").exists());
}

#[test]
fn locations_with_unknown_schemes_are_refused_not_created() {
    let env = Env::new();
    for loc in [
        "gopher://host/x",
        "ftp:user@host:/srv",
        "s3:ftp://host/bucket",
        "sftp:host",
        "sftp:user:secret@host:/x",
        "s3:http://key:secret@host/bucket",
    ] {
        let mut c = env.bare();
        c.args(["--repo", loc, "--password-file"])
            .arg(&env.password_file)
            .arg("init");
        let r = run(c);
        let line = r.fails(1, &["location"]);
        assert!(!line.contains("secret"), "{line}");
        let entries: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            entries.iter().all(|e| e == "password" || e == "cache"),
            "{loc} created {entries:?}"
        );
    }
    // An unknown option is refused too, naming the known ones.
    let r = env.run(&["-o", "s3.regoin=x", "snapshots"]);
    r.fails(1, &["s3.regoin", "s3.region"]);
}

// ------------------------------------------------------- Garage cluster

/// Runs `args`, stops node `n` while it runs, expects success, restarts
/// the node and waits for the cluster to be whole again.
fn stop_a_node_during(env: &Env, args: &[&str], nodes: &mut [GarageNode], n: usize) {
    let mut c = env.command(args);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{args:?} ended before the node stopped: use a bigger database"
    );
    nodes[n].stop();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} with a node stopped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    nodes[n].start();
    for (i, other) in nodes.iter().enumerate() {
        if i != n {
            other.connect(&nodes[n]);
        }
    }
    nodes[0].wait_healthy(3);
}

/// Three Garage nodes on loopback, replication factor 3: one stopped
/// during a backup and another during a restore, both succeed; all
/// stopped, a clear error within the timeout and nothing half-visible;
/// after restart, the next backup succeeds and `check --read-data` is clean.
#[test]
fn a_three_node_garage_cluster_survives_losing_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<GarageNode> = (0..3)
        .map(|i| GarageNode::new(&dir.path().join(format!("node{i}")), 3))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    servers::garage_setup(&nodes.iter().collect::<Vec<_>>());
    nodes[0].wait_healthy(3);
    let loc = format!("s3:{}/{}/cluster", nodes[0].endpoint(), servers::BUCKET);
    let env = Env::remote(loc, s3_vars());
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 24, 41);
    env.run(&["backup", s(&db)]).ok();

    // A node stops during a backup.
    workload(&["mutate", s(&db), "--step", "1", "--seed", "41"]);
    stop_a_node_during(&env, &["backup", s(&db), "--force"], &mut nodes, 2);

    // Another during a restore.
    let target = env.dir.path().join("restored.db");
    stop_a_node_during(
        &env,
        &["restore", "latest", "--target", s(&target)],
        &mut nodes,
        1,
    );
    assert_eq!(dump(&target), dump(&db));

    // All stopped: a clear error within the time limit, nothing visible.
    for n in &mut nodes {
        n.stop();
    }
    workload(&["mutate", s(&db), "--step", "2", "--seed", "41"]);
    let start = Instant::now();
    let r = env.run(&["-o", "timeout=3s", "-o", "retries=2", "backup", s(&db)]);
    r.fails(16, &["127.0.0.1"]);
    assert!(
        start.elapsed() < Duration::from_secs(45),
        "{:?}",
        start.elapsed()
    );
    for n in &mut nodes {
        n.start();
    }
    nodes[0].connect(&nodes[1]);
    nodes[0].connect(&nodes[2]);
    nodes[1].connect(&nodes[2]);
    nodes[0].wait_healthy(3);
    // The cluster needs a moment to see its nodes again.
    let start = Instant::now();
    loop {
        let r = env.run(&["snapshots", "--json"]);
        if r.code == 0 {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&r.stdout)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                2,
                "the failed backup left no snapshot"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{r:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    env.run(&["unlock"]).ok();
    env.run(&["backup", s(&db)]).ok();
    let checked = json(&env.run(&["check", "--read-data", "--json"]));
    let errors = checked["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .count();
    assert_eq!(errors, 0, "{checked}");
    let restored = env.dir.path().join("final.db");
    env.run(&["restore", "latest", "--target", s(&restored)])
        .ok();
    assert_eq!(dump(&restored), dump(&db));
}

/// A key opened from the local cache is confirmed by the next listing: a
/// key removed meanwhile, or a repository replaced at the same location,
/// stops the command (exit 12) and the cache forgets it; the next run reads
/// the repository afresh.
#[test]
fn a_cached_key_is_checked_against_the_repository() {
    for kind in [Kind::S3, Kind::Sftp] {
        // A key removed by another machine.
        let env = env_for(kind);
        env.run(&["init"]).ok();
        let db = make_db(&env, "app.db", 1, 51);
        env.run(&["backup", s(&db)]).ok();
        let keys: serde_json::Value =
            serde_json::from_str(env.run(&["key", "list", "--json"]).ok()).unwrap();
        let first = keys[0]["id"].as_str().unwrap().to_string();
        let other = env.password("pw2", "second password");
        let mut c = env.command(&["key", "add"]);
        c.arg("--new-password-file").arg(&other);
        run(c).ok();
        let mut c = env.bare();
        c.arg("--repo")
            .arg(env.location())
            .arg("--password-file")
            .arg(&other)
            .args(["--cache-dir", s(&env.dir.path().join("other-machine"))])
            .args(["key", "remove", &first]);
        run(c).ok();
        env.run(&["backup", s(&db)])
            .fails(12, &["no longer in the repository", "again"]);
        env.run(&["snapshots"]).fails(12, &["wrong password"]);
        // No lock was left behind.
        let mut c = env.bare();
        c.arg("--repo")
            .arg(env.location())
            .arg("--password-file")
            .arg(&other)
            .args(["snapshots"]);
        run(c).ok();

        // A repository replaced at the same location, same password.
        let env = env_for(kind);
        env.run(&["init"]).ok();
        env.run(&["backup", s(&db)]).ok();
        let backend = litevault::Location::parse(&env.location().to_string_lossy())
            .unwrap()
            .open(&litevault::BackendOptions::default())
            .unwrap();
        if kind == Kind::Sftp {
            // The server is on this machine: empty its directory.
            let loc = env.location().to_string_lossy().into_owned();
            std::fs::remove_dir_all(loc.rsplit_once(':').unwrap().1).unwrap();
        } else {
            for ty in litevault::FileType::ALL {
                for f in backend.list(ty).unwrap() {
                    backend.remove(ty, &f.name).unwrap();
                }
            }
        }
        env.run(&["init"]).ok();
        env.run(&["snapshots"])
            .fails(12, &["no longer in the repository"]);
        assert_eq!(snapshot_count(&env, &[]), 0, "{kind:?}");
        assert!(backend.list(litevault::FileType::Lock).unwrap().is_empty());
    }
}
