//! Crash consistency under SIGKILL of the real binary, across commands.
//!
//! Each round kills one command (backup, forget --prune, prune, tag,
//! restore) after a random delay, then checks: `check` finds no error
//! (orphans allowed), every snapshot that existed before still restores to
//! the image it was taken of, a restore target is the old or the new
//! database and opens cleanly, and the same command then succeeds.
//!
//! `LITEVAULT_CRASH_ROUNDS` sets the number of rounds (default 10, the
//! short CI variant); `scripts/reliability.sh` runs 1000.

use std::collections::HashMap;
use std::time::Duration;

use crate::backup::{dump, make_db, open, workload};
use crate::util::{run, Env};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The image hash of every snapshot, by its time. Images of snapshots
/// already in `known` are reassembled again only when `full`.
fn expected(env: &Env, known: &HashMap<String, [u8; 32]>, full: bool) -> HashMap<String, [u8; 32]> {
    let repo = open(env);
    repo.snapshots()
        .unwrap()
        .into_iter()
        .map(|(_, m)| {
            let hash = match known.get(&m.time) {
                Some(h) if !full => *h,
                _ => {
                    let mut img = Vec::new();
                    repo.write_image(&m, &mut img, &litevault::Cancel::new())
                        .unwrap();
                    *blake3::hash(&img).as_bytes()
                }
            };
            (m.time.clone(), hash)
        })
        .collect()
}

/// After a kill: `check` finds no error; on `full` rounds it reads all
/// data and every snapshot that existed before reassembles to the same
/// image.
fn verify(env: &Env, before: &HashMap<String, [u8; 32]>, what: &str, full: bool) {
    let repo = open(env);
    repo.unlock(false).unwrap();
    let read = if full {
        litevault::ReadData::All
    } else {
        litevault::ReadData::None
    };
    let report = litevault::check(&repo, read).unwrap();
    assert_eq!(
        report.errors(),
        0,
        "after killing {what}: {:?}",
        report.findings
    );
    if full {
        let now = expected(env, &HashMap::new(), true);
        for (time, hash) in before {
            if let Some(h) = now.get(time) {
                assert_eq!(
                    h, hash,
                    "after killing {what}: the snapshot of {time} changed"
                );
            }
        }
    }
}

/// Rounds from `LITEVAULT_CRASH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("LITEVAULT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sigkill_rounds_across_commands() {
    sigkill_rounds(&Env::new(), rounds(10));
}

/// `rounds` rounds of killed commands on `env`'s repository (local or
/// remote), each followed by the checks above.
pub fn sigkill_rounds(env: &Env, rounds: usize) {
    env.run(&["init", "--pack-size", "1"]).ok();
    let db = make_db(env, "app.db", 12, 201);
    let target = env.dir.path().join("target.db");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut day = 0u32;
    let mut crashes = 0usize;
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    env.run(&[
        "backup",
        db.to_str().unwrap(),
        "--time",
        "2026-01-01 00:00:00",
    ])
    .ok();
    // How long each command takes when it is not killed, to spread the kills.
    let mut spans: HashMap<&str, u64> = HashMap::new();
    let mut known: HashMap<String, [u8; 32]> = HashMap::new();
    for round in 0..rounds {
        let kind = ["backup", "forget", "prune", "tag", "restore"][round % 5];
        if kind == "backup" {
            day += 1;
            workload(&[
                "mutate",
                db.to_str().unwrap(),
                "--step",
                &day.to_string(),
                "--seed",
                "201",
            ]);
        }
        let time = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
            + jiff::SignedDuration::from_hours(i64::from(day) * 24 + 1);
        let args = command(kind, &db, &target, time, round);
        // Every fifth round (and the last) reads all data back.
        let full = round % 5 == 4 || round + 1 == rounds;
        known = expected(env, &known, false);
        let before = known.clone();
        let target_before = target.exists().then(|| dump(&target));
        let span = *spans
            .entry(kind)
            .or_insert_with(|| measure(env, kind, &args));
        // Up to 1.5 spans locally; up to one span remotely, where the
        // first run (which measured it) also paid for connecting.
        let spread = if env.location.is_some() {
            span
        } else {
            span * 3 / 2
        };
        let delay = Duration::from_micros(rng.next() % spread);
        let mut c = env.command(&args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(delay);
        let killed = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        child.wait().unwrap();
        if killed {
            crashes += 1;
            *kinds.entry(kind).or_default() += 1;
        }
        verify(env, &before, kind, full);
        if kind == "restore" {
            check_target(env, &target, target_before.as_ref());
        }
        // The same command, uninterrupted, succeeds.
        let mut c = env.command(&args);
        if kind == "backup" {
            c.arg("--force");
        }
        let r = run(c);
        assert!(r.code == 0, "{kind} after a kill: {r:?}");
    }
    eprintln!("crash suite: {rounds} rounds, {crashes} processes killed mid-run: {kinds:?}");
    assert!(
        crashes * 3 >= rounds,
        "too few kills landed mid-run: {crashes} of {rounds}"
    );
}

/// The command line of one round.
fn command(
    kind: &str,
    db: &std::path::Path,
    target: &std::path::Path,
    time: jiff::Timestamp,
    round: usize,
) -> Vec<String> {
    match kind {
        "backup" => vec![
            "backup".into(),
            db.to_str().unwrap().into(),
            "--time".into(),
            time.to_string(),
        ],
        "forget" => vec![
            "forget".into(),
            "--keep-last".into(),
            "3".into(),
            "--group-by".into(),
            "host,db".into(),
            "--prune".into(),
            "--max-unused".into(),
            "0%".into(),
        ],
        "prune" => vec!["prune".into(), "--max-unused".into(), "0%".into()],
        "tag" => vec![
            "tag".into(),
            "latest".into(),
            "--add".into(),
            format!("t{round}"),
        ],
        _ => vec![
            "restore".into(),
            "latest".into(),
            "--target".into(),
            target.to_str().unwrap().into(),
        ],
    }
}

/// How long `args` takes uninterrupted, in microseconds, on a scratch copy
/// (a remote repository: on the repository itself).
fn measure(env: &Env, kind: &str, args: &[String]) -> u64 {
    let scratch = env.dir.path().join("scratch");
    let mut a = args.to_vec();
    if kind == "restore" {
        a[3] = env
            .dir
            .path()
            .join("scratch-target.db")
            .to_str()
            .unwrap()
            .into();
    }
    let command = if env.location.is_some() {
        env.command(&a)
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
        crate::util::copy_dir(&env.repo, &scratch);
        env.command_for(&scratch, &a)
    };
    let t = std::time::Instant::now();
    let r = run(command);
    assert!(r.code == 0, "{kind}: {r:?}");
    t.elapsed().as_micros() as u64 + 1
}

/// A restore target after a kill is the old database or the new one.
fn check_target(env: &Env, target: &std::path::Path, before: Option<&Vec<String>>) {
    let (Some(old), true) = (before, target.exists()) else {
        return;
    };
    let now = dump(target);
    let repo = open(env);
    let latest = repo
        .find_snapshot("latest", &litevault::SnapshotFilter::default())
        .unwrap()
        .1;
    let mut img = Vec::new();
    repo.write_image(&latest, &mut img, &litevault::Cancel::new())
        .unwrap();
    let new_path = env.dir.path().join("expected-new.db");
    std::fs::write(&new_path, &img).unwrap();
    assert!(
        now == *old || now == dump(&new_path),
        "restore target is neither old nor new"
    );
}
