//! `import`: 30 daily full copies of the workload (Stanza's and
//! restinpieces' names; plain, gzip and zstd) become 30 snapshots in a
//! repository a small fraction of their size, each restoring to a
//! database equal to its source; and every kind of bad file fails alone,
//! with one line, nothing half-imported and no temporary file left.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::{self, workload, Env};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A consistent copy of a live database (SQLite's backup API).
fn copy_db(from: &Path, to: &Path) {
    let src = rusqlite::Connection::open(from).unwrap();
    src.backup(rusqlite::MAIN_DB, to, None).unwrap();
}

fn gzip(from: &Path, to: &Path) {
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(&std::fs::read(from).unwrap()).unwrap();
    e.finish().unwrap();
}

fn zstd_file(from: &Path, to: &Path) {
    let data = zstd::encode_all(std::fs::read(from).unwrap().as_slice(), 3).unwrap();
    std::fs::write(to, data).unwrap();
}

/// Files and directories under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn thirty_daily_copies_import_into_a_fraction_of_their_size_and_restore_equal() {
    let size_mb: u64 = std::env::var("LITEVAULT_TEST_IMPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let env = Env::new();
    env.init();
    let live = env.dir.path().join("live.db");
    workload::create(&live, size_mb, 30);
    let copies = env.dir.path().join("copies");
    let plain = env.dir.path().join("plain");
    std::fs::create_dir_all(&copies).unwrap();
    std::fs::create_dir_all(&plain).unwrap();
    let mut sources: Vec<(PathBuf, PathBuf)> = Vec::new();
    for day in 1..=30u64 {
        if day > 1 {
            workload::mutate(&live, day, 30);
        }
        let exact = plain.join(format!("day{day:02}.db"));
        copy_db(&live, &exact);
        let file = match day % 3 {
            // Stanza's names, plain; restinpieces', gzip; a date, zstd.
            0 => {
                let f = copies.join(format!("app.sqlite.202601{day:02}T030000Z.bak"));
                std::fs::copy(&exact, &f).unwrap();
                f
            }
            1 => {
                let f = copies.join(format!("app-2026-01-{day:02}T03-00-00Z-vacuum.bck.gz"));
                gzip(&exact, &f);
                f
            }
            _ => {
                let f = copies.join(format!("app-2026-01-{day:02}.db.zst"));
                zstd_file(&exact, &f);
                f
            }
        };
        sources.push((file, exact));
    }
    let total: u64 = sources
        .iter()
        .map(|(_, e)| std::fs::metadata(e).unwrap().len())
        .sum();
    let files: Vec<&str> = sources.iter().map(|(f, _)| s(f)).collect();
    let mut args = vec![
        "import",
        "--db",
        "/srv/app/app.db",
        "--time-from-name",
        "--json",
    ];
    args.extend(&files);
    let out = env.run(&args);
    let lines: Vec<serde_json::Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["imported"], 30, "{summary}");
    assert_eq!(summary["failed"], 0);
    let repo = dir_bytes(&env.repo);
    eprintln!(
        "import: 30 copies of {size_mb} MiB, databases {total} bytes, repository {repo} bytes ({:.2}%)",
        100.0 * repo as f64 / total as f64
    );
    assert!(
        repo * 10 < total,
        "repository {repo} bytes is not under 1/10 of {total}"
    );

    // Each snapshot, in time order, restores to a database equal to its source.
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(snaps.len(), 30);
    for (i, snap) in snaps.iter().enumerate() {
        assert_eq!(snap["database"]["path"], "/srv/app/app.db");
        let want_time = format!("2026-01-{:02}T", i + 1);
        assert!(
            snap["time"].as_str().unwrap().starts_with(&want_time),
            "{snap}"
        );
        let target = env.dir.path().join("restored.db");
        let _ = std::fs::remove_file(&target);
        env.run(&[
            "restore",
            snap["id"].as_str().unwrap(),
            "--target",
            s(&target),
            "--quick",
        ])
        .ok();
        let diff = std::process::Command::new("sqldiff")
            .arg(&sources[i].1)
            .arg(&target)
            .output()
            .expect("sqldiff (apt install sqlite3-tools)");
        assert!(
            diff.status.success() && diff.stdout.is_empty(),
            "day {}: {diff:?}",
            i + 1
        );
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one case after another
fn bad_files_fail_alone_with_one_line_and_leave_nothing_behind() {
    let env = Env::new();
    env.init();
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let db = env.dir.path().join("src.db");
    workload::create(&db, 2, 5);
    let good = env.dir.path().join("good-2026-02-01.db");
    copy_db(&db, &good);
    let bytes = std::fs::read(&good).unwrap();
    let dir = env.dir.path();
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    // Compressed and cut short; plain and cut short; damaged in the middle.
    let gz = dir.join("full-2026-02-02.db.gz");
    gzip(&good, &gz);
    let gz_bytes = std::fs::read(&gz).unwrap();
    let zst = dir.join("full-2026-02-03.db.zst");
    zstd_file(&good, &zst);
    let zst_bytes = std::fs::read(&zst).unwrap();
    let mut damaged = bytes.clone();
    for b in &mut damaged[bytes.len() / 2..bytes.len() / 2 + 8192] {
        *b = 0x5a;
    }
    // A dump that fails halfway, one that never commits, a compression bomb.
    let mut dump =
        String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(x);\n");
    for i in 0..50 {
        dump = format!("{dump}INSERT INTO t VALUES({i});\n");
    }
    dump.push_str("INSERT INTO missing VALUES(1);\nCOMMIT;\n");
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 64 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            write("cut-2026-02-04.db.gz", &gz_bytes[..gz_bytes.len() / 2]),
            vec!["cut-2026-02-04.db.gz"],
        ),
        (
            write("cut-2026-02-05.db.zst", &zst_bytes[..zst_bytes.len() / 2]),
            vec!["cut-2026-02-05.db.zst"],
        ),
        (
            write("cut-2026-02-06.db", &bytes[..bytes.len() / 2]),
            vec!["cut-2026-02-06.db", "cut short"],
        ),
        (
            write("bad-2026-02-07.db", &damaged),
            vec!["bad-2026-02-07.db"],
        ),
        (
            write("half-2026-02-08.sql", dump.as_bytes()),
            vec![
                "half-2026-02-08.sql line 54",
                "no such table: missing",
                "nothing of it was imported",
            ],
        ),
        (
            write("open-2026-02-09.sql", b"BEGIN;\nCREATE TABLE t(x);\n"),
            vec!["open-2026-02-09.sql", "transaction open"],
        ),
        (
            write("bomb-2026-02-10.db.gz", &bomb),
            vec!["bomb-2026-02-10.db.gz", "more than 16777216 bytes"],
        ),
        (
            write(
                "bin-2026-02-11.dat",
                &[0xff, 0xfe, 0x00, 0x01, 0x80, 0x81, 0x82, 0x83],
            ),
            vec!["bin-2026-02-11.dat", "not an SQLite database"],
        ),
        (
            write("empty-2026-02-12.db", b""),
            vec!["empty-2026-02-12.db", "empty"],
        ),
    ];
    for (file, needles) in &cases {
        let r = env.run(&[
            "import",
            "--db",
            "/srv/x.db",
            "--time-from-name",
            "--max-size",
            "16MiB",
            "--temp-dir",
            s(&tmp),
            s(&good),
            s(file),
        ]);
        assert_eq!(r.code, 18, "{file:?}: {r:?}");
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("litevault: error:"))
            .collect();
        assert_eq!(errors.len(), 2, "{r:?}");
        for n in needles {
            assert!(errors[0].contains(n), "{file:?}: {} lacks {n:?}", errors[0]);
        }
        assert!(errors[1].contains("1 of 2 file(s)"), "{r:?}");
        assert!(!r.stderr.contains("panicked"));
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "{file:?} left a temporary file"
        );
    }
    // The good file went in once (then was unchanged); the bad ones never.
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    // Whole files of every kind do import.
    let sql = dir.join("dump-2026-02-13.sql");
    let out = std::process::Command::new("sqlite3")
        .arg(&good)
        .arg(".dump")
        .output()
        .unwrap();
    std::fs::write(&sql, &out.stdout).unwrap();
    let out = env.run(&[
        "import",
        "--db",
        "/srv/x.db",
        "--time-from-name",
        s(&gz),
        s(&zst),
        s(&sql),
    ]);
    assert!(out.ok().contains("imported 3 file(s)"), "{out:?}");
    // Bad arguments: no time in a name (nothing imported), a bad time or size.
    let plain = write("noname.db", &bytes);
    env.run(&[
        "import",
        "--db",
        "/srv/y.db",
        "--time-from-name",
        s(&good),
        s(&plain),
    ])
    .fails(1, &["noname.db", "no time in its name"]);
    assert!(!env
        .run(&["snapshots", "--db", "/srv/y.db"])
        .ok()
        .contains("y.db"));
    env.run(&["import", "--db", "/srv/y.db", "--time", "soon", s(&good)])
        .fails(1, &["--time"]);
    env.run(&[
        "import",
        "--db",
        "/srv/y.db",
        "--max-size",
        "lots",
        s(&good),
    ])
    .fails(1, &["--max-size"]);
    env.run(&["import", s(&good)]).usage(&["--db"]);
    let r = env.run(&["import", "--db", "/srv/y.db", s(dir)]);
    assert_eq!(r.code, 18, "{r:?}");
    assert!(r.stderr.contains("not a regular file"), "{r:?}");
    let _ = util::PASSWORD;
}

/// Damaged files of every kind, cut or with bytes changed at random
/// (fixed seed): never a panic; either imported (a sound database, equal
/// to one the repository can restore) or refused with one line; no
/// temporary file left.
#[test]
fn randomly_damaged_files_import_or_fail_cleanly() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    let env = Env::new();
    env.init();
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let db = env.dir.path().join("src.db");
    workload::create(&db, 1, 11);
    let good = env.dir.path().join("good.db");
    copy_db(&db, &good);
    let gz = env.dir.path().join("good.db.gz");
    gzip(&good, &gz);
    let zst = env.dir.path().join("good.db.zst");
    zstd_file(&good, &zst);
    let sql = env.dir.path().join("good.sql");
    let dump = std::process::Command::new("sqlite3")
        .arg(&good)
        .arg(".dump")
        .output()
        .unwrap();
    std::fs::write(&sql, &dump.stdout).unwrap();
    let originals: Vec<Vec<u8>> = [&good, &gz, &zst, &sql]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    let config = Config {
        cases: 40,
        rng_seed: RngSeed::Fixed(20_261_122),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let n = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (
        0..4usize,
        any::<bool>(),
        any::<prop::sample::Index>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    );
    runner
        .run(&strategy, |(kind, cut, at, flips)| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut data = originals[kind].clone();
            if cut {
                data.truncate(at.index(data.len()));
            } else {
                for (pos, b) in &flips {
                    let p = pos.index(data.len());
                    data[p] ^= b | 1;
                }
            }
            let ext = ["db", "db.gz", "db.zst", "sql"][kind];
            let file = env.dir.path().join(format!("case{i}.{ext}"));
            std::fs::write(&file, &data).unwrap();
            let r = env.run(&[
                "import",
                "--db",
                "/srv/fuzz.db",
                "--time",
                "2026-03-01",
                "--max-size",
                "64MiB",
                "--temp-dir",
                s(&tmp),
                s(&file),
            ]);
            assert!(r.code == 0 || r.code == 18, "case {i}: {r:?}");
            assert!(!r.stderr.contains("panicked"), "case {i}: {r:?}");
            if r.code == 18 {
                let errors = r
                    .stderr
                    .lines()
                    .filter(|l| l.starts_with("litevault: error:"))
                    .count();
                assert_eq!(errors, 2, "case {i}: {r:?}");
            }
            assert_eq!(
                std::fs::read_dir(&tmp).unwrap().count(),
                0,
                "case {i} left a temporary file"
            );
            Ok(())
        })
        .unwrap();
    // Whatever was imported is sound.
    env.run(&["check", "--read-data"]).ok();
}
