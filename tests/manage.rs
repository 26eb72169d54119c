//! `snapshots`, `tag`, `forget`, `prune`, `check`, `stats` on real
//! repositories, and prune under injected crashes.

use std::path::Path;
use std::sync::Arc;

use litevault::backend::faulty::{Fault, FaultPlan, FaultyBackend};
use litevault::backend::local::LocalBackend;
use litevault::testing;
use litevault::PruneOptions;
use litevault::ReadData;
use litevault::{ForgetPolicy, GroupBy};
use litevault::{Repository, SnapshotFilter};

use crate::backup::{backup_json, images, make_db, open, workload};
use crate::util::{Env, PASSWORD};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo_bytes(env: &Env) -> u64 {
    walkdir::WalkDir::new(&env.repo)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn snapshot_count(env: &Env, args: &[&str]) -> usize {
    let mut a = vec!["snapshots", "--json"];
    a.extend_from_slice(args);
    let v: serde_json::Value = serde_json::from_str(env.run(&a).ok()).unwrap();
    v.as_array().unwrap().len()
}

#[test]
fn snapshots_are_listed_and_filtered_by_tags_with_restic_semantics() {
    let env = Env::new();
    env.init();
    let app = make_db(&env, "app.db", 1, 1);
    let jobs = make_db(&env, "jobs.db", 1, 2);
    backup_json(
        &env,
        &[
            s(&app),
            "--tag",
            "env_production,db_app",
            "--time",
            "2026-01-01 00:00:00",
        ],
    );
    backup_json(
        &env,
        &[
            s(&app),
            "--tag",
            "env_demo,db_app",
            "--time",
            "2026-01-02 00:00:00",
        ],
    );
    backup_json(
        &env,
        &[
            s(&jobs),
            "--tag",
            "env_production,db_jobs",
            "--time",
            "2026-01-03 00:00:00",
        ],
    );
    assert_eq!(snapshot_count(&env, &[]), 3);
    assert_eq!(
        snapshot_count(&env, &["--tag", "env_production,db_app"]),
        1,
        "comma: both"
    );
    assert_eq!(snapshot_count(&env, &["--tag", "env_production"]), 2);
    assert_eq!(
        snapshot_count(&env, &["--tag", "env_demo", "--tag", "db_jobs"]),
        2,
        "repeated: either"
    );
    assert_eq!(snapshot_count(&env, &["--db", "jobs.db"]), 1);
    assert_eq!(snapshot_count(&env, &["--host", "elsewhere"]), 0);
    assert_eq!(snapshot_count(&env, &["--latest", "1"]), 3, "one per group");
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json", "--db", "jobs.db"]).ok()).unwrap();
    let snap = &v[0];
    assert_eq!(
        snap["tags"],
        serde_json::json!(["db_jobs", "env_production"])
    );
    assert_eq!(snap["id"].as_str().unwrap().len(), 64);
    assert!(snap["image"]["bytes"].as_u64().unwrap() > 0);
    let table = env.run(&["snapshots"]);
    assert!(
        table.ok().contains("db_app,env_demo") && table.stdout.contains("3 snapshot(s)"),
        "{table:?}"
    );
}

#[test]
fn tag_rewrites_the_manifest_safely() {
    let env = Env::new();
    env.init();
    let app = make_db(&env, "app.db", 1, 3);
    let b = backup_json(&env, &[s(&app), "--tag", "a"]);
    let old = b["snapshot"].as_str().unwrap().to_string();
    let out = env.run(&["tag", &old[..8], "--add", "b", "--remove", "a"]);
    assert!(out.ok().contains("tags b"), "{out:?}");
    let snaps = open(&env).snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_ne!(snaps[0].0.to_hex(), old, "a new manifest replaced the old");
    assert_eq!(snaps[0].1.tags, ["b"]);
    env.run(&["tag", "latest", "--set", "x,y"]).ok();
    assert_eq!(open(&env).snapshots().unwrap()[0].1.tags, ["x", "y"]);
    env.run(&["tag", "latest"]).fails(1, &["--add"]);
    env.run(&["tag", &old, "--add", "z"])
        .fails(1, &["no snapshot"]);
    env.run(&["tag", "latest", "--add", "bad tag"])
        .fails(1, &["invalid tag"]);
    // The data is still there.
    assert_eq!(images(&env)[0].1, std::fs::read(&app).unwrap());
}

#[test]
fn forget_plans_dry_runs_refuses_and_removes() {
    let env = Env::new();
    env.init();
    let app = make_db(&env, "app.db", 1, 4);
    for d in 1..=6 {
        backup_json(
            &env,
            &[
                s(&app),
                "--force",
                "--time",
                &format!("2026-02-0{d} 12:00:00"),
            ],
        );
    }
    env.run(&["forget"]).fails(1, &["no retention policy"]);
    let dry = env.run(&[
        "forget",
        "--keep-daily",
        "2",
        "--keep-within",
        "1d",
        "--dry-run",
    ]);
    let text = dry.ok();
    assert_eq!(text.matches("  keep ").count(), 2, "{text}");
    assert!(
        text.contains("daily snapshot #1") && text.contains("within 24h"),
        "{text}"
    );
    assert_eq!(text.matches("  remove ").count(), 4);
    assert_eq!(snapshot_count(&env, &[]), 6, "dry run changed nothing");
    let json: serde_json::Value = serde_json::from_str(
        env.run(&["forget", "--keep-last", "1", "--dry-run", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(json["groups"][0]["remove"].as_array().unwrap().len(), 5);
    env.run(&["forget", "--keep-tag", "nope"])
        .fails(1, &["would remove all", "--allow-remove-all"]);
    assert_eq!(snapshot_count(&env, &[]), 6);
    env.run(&["forget", "--keep-last", "0", "--keep-hourly", "x"])
        .usage(&["keep-hourly"]);
    env.run(&["forget", "--keep-within", "soon"])
        .fails(1, &["invalid duration"]);
    env.run(&["forget", "--keep-last", "1", "--group-by", "planet"])
        .fails(1, &["--group-by"]);
    env.run(&["forget", "--keep-daily", "3"]).ok();
    assert_eq!(snapshot_count(&env, &[]), 3);
    env.run(&["forget", "--keep-tag", "nope", "--allow-remove-all"])
        .ok();
    assert_eq!(snapshot_count(&env, &[]), 0);
}

/// 20 days of a churning database; forget half and prune; everything kept
/// restores to exactly what was backed up.
#[test]
fn forget_prune_frees_space_and_keeps_every_kept_snapshot_whole() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 3, 5);
    let copies = env.dir.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    for day in 1..=20u32 {
        workload(&["mutate", s(&db), "--step", &day.to_string(), "--seed", "5"]);
        backup_json(
            &env,
            // Byte-for-byte images: free pages kept as they are.
            &[
                s(&db),
                "--keep-free-pages",
                "--time",
                &format!("2026-03-{day:02} 12:00:00"),
            ],
        );
        std::fs::copy(&db, copies.join(format!("{day}.db"))).unwrap();
    }
    let before = repo_bytes(&env);
    let out = env.run(&[
        "forget",
        "--keep-last",
        "10",
        "--prune",
        "--max-unused",
        "0%",
    ]);
    assert!(out.ok().contains("prune did delete"), "{out:?}");
    let after = repo_bytes(&env);
    assert!(after < before, "repository grew: {before} -> {after}");
    let check = env.run(&["check", "--read-data"]);
    assert!(check.ok().contains("0 error(s), 0 warning(s)"), "{check:?}");
    let imgs = images(&env);
    assert_eq!(imgs.len(), 10);
    for (i, (m, img)) in imgs.iter().enumerate() {
        let day = 11 + i;
        assert!(
            m.time.starts_with(&format!("2026-03-{day:02}")),
            "{}",
            m.time
        );
        assert!(
            *img == std::fs::read(copies.join(format!("{day}.db"))).unwrap(),
            "day {day} differs"
        );
    }
    eprintln!("forget --prune: {before} -> {after} bytes");
    // Nothing left to do.
    let again = env.run(&["prune", "--max-unused", "0%", "--json"]);
    let p: serde_json::Value = serde_json::from_str(again.ok()).unwrap();
    assert!(
        p["delete"].as_array().unwrap().is_empty() && p["orphans"].as_array().unwrap().is_empty(),
        "{p}"
    );
}

#[test]
fn check_reports_missing_data_orphans_and_could_not_run() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 2, 6);
    backup_json(&env, &[s(&db)]);
    env.run(&["check"]).ok();
    let json: serde_json::Value = serde_json::from_str(
        env.run(&["check", "--read-data-subset", "1/2", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 0);

    // An orphan pack: a warning, exit 0.
    let repo = open(&env);
    let mut w = litevault::format::pack::PackWriter::new();
    let data = b"orphaned";
    w.add(
        repo.key(),
        litevault::format::pack::BlobType::Data,
        repo.key().blob_id(data),
        data,
        None,
    )
    .unwrap();
    testing::save_pack(&repo, w).unwrap();
    let out = env.run(&["check"]);
    assert!(
        out.ok().contains("warning") && out.stdout.contains("litevault prune"),
        "{out:?}"
    );
    env.run(&["prune"]).ok();
    assert!(env.run(&["check"]).ok().contains("0 warning(s)"));

    // A missing pack: an error naming it, exit 1.
    let pack = walkdir::WalkDir::new(env.repo.join("data"))
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_type().is_file())
        .unwrap()
        .into_path();
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&pack).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&name) && out.stdout.contains("missing"),
        "{out:?}"
    );

    // Could not run: exit 2.
    let mut c = env.bare();
    c.args(["check", "--repo"])
        .arg(env.dir.path().join("nowhere"))
        .arg("--password-file")
        .arg(&env.password_file);
    crate::util::run(c).fails(2, &["check could not run"]);
    env.run(&["check", "--read-data-subset", "3/2"])
        .fails(2, &["N/M"]);
    env.run(&["prune", "--max-unused", "150%"])
        .fails(1, &["--max-unused"]);
}

#[test]
fn stats_show_dedup_and_compression() {
    let env = Env::new();
    env.init();
    let db = make_db(&env, "app.db", 2, 7);
    backup_json(&env, &[s(&db)]);
    backup_json(&env, &[s(&db), "--force"]);
    let v: serde_json::Value = serde_json::from_str(env.run(&["stats", "--json"]).ok()).unwrap();
    assert_eq!(v["snapshots"], 2);
    assert!(v["dedup_ratio"].as_f64().unwrap() > 1.9, "{v}");
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.0, "{v}");
    assert_eq!(v["databases"][0]["snapshots"], 2);
    assert_eq!(v["databases"][0]["unique_bytes"], v["unique_bytes"]);
    assert!(env.run(&["stats"]).ok().contains("dedup"));
}

/// A crash after each step of prune (every write and every delete): check
/// finds no error, every kept snapshot still restores, and the next prune
/// finishes the job.
#[test]
fn prune_interrupted_at_every_step_loses_nothing() {
    let env = Env::new();
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(&env, "app.db", 2, 8);
    let mut copies = Vec::new();
    for day in 1..=8u32 {
        workload(&["mutate", s(&db), "--step", &day.to_string(), "--seed", "8"]);
        backup_json(
            &env,
            &[
                s(&db),
                "--keep-free-pages",
                "--time",
                &format!("2026-04-{day:02} 12:00:00"),
            ],
        );
        copies.push(std::fs::read(&db).unwrap());
    }
    let repo = open(&env);
    let plan = litevault::plan_forget(
        &repo,
        &ForgetPolicy {
            keep_last: 4,
            ..ForgetPolicy::default()
        },
        GroupBy::default(),
        &SnapshotFilter::default(),
    )
    .unwrap();
    litevault::forget(&repo, &plan, false).unwrap();
    let pristine = env.dir.path().join("pristine");
    crate::util::copy_dir(&env.repo, &pristine);
    let mut crashes = 0;
    for fault in [
        Fault::FailBeforeWrite,
        Fault::Torn { keep: 100 },
        Fault::FailAfterRename,
    ] {
        for nth in 1..=40 {
            std::fs::remove_dir_all(&env.repo).unwrap();
            crate::util::copy_dir(&pristine, &env.repo);
            let backend = Arc::new(
                FaultyBackend::new(
                    Arc::new(LocalBackend::open(&env.repo).unwrap()),
                    FaultPlan {
                        nth_write: nth,
                        fault,
                    },
                )
                .counting_removes(),
            );
            let faulty = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
            let opts = PruneOptions {
                max_unused: 0.0,
                dry_run: false,
                ..PruneOptions::default()
            };
            if litevault::prune(&faulty, &opts).is_ok() {
                break;
            }
            crashes += 1;
            let repo = open(&env);
            // The crashed process's lock stays behind, as a dead process's
            // would; `unlock` removes it.
            repo.unlock(true).unwrap();
            let report = litevault::check(&repo, ReadData::All).unwrap();
            assert_eq!(
                report.errors(),
                0,
                "{fault:?} at mutation {nth}: {:?}",
                report.findings
            );
            let imgs = images(&env);
            assert_eq!(imgs.len(), 4);
            for (i, (_, img)) in imgs.iter().enumerate() {
                assert!(
                    *img == copies[4 + i],
                    "{fault:?} at mutation {nth}: snapshot {i} lost data"
                );
            }
            // The next prune finishes the interrupted one.
            litevault::prune(&repo, &opts).unwrap();
            let report = litevault::check(&repo, ReadData::All).unwrap();
            assert!(
                report.findings.is_empty(),
                "{fault:?} at mutation {nth}: {:?}",
                report.findings
            );
        }
    }
    eprintln!("prune: {crashes} injected crashes");
    assert!(crashes >= 15, "only {crashes} crashes injected");
}
