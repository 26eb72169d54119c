//! Nothing readable leaks into the repository: table names, values, paths,
//! host names, tags and passwords appear nowhere in its bytes, not even
//! inside a compressed frame; temporary files are removed.

use std::path::Path;

use crate::backup::dump;
use crate::util::{run, Env};

const MARKERS: [&str; 6] = [
    "LVMARKERPATHxq",
    "LVMARKERTABLExq",
    "LVMARKERVALUExq",
    "LVMARKERHOSTxq",
    "LVMARKERTAGxq",
    "LVMARKERPASSWORDxq",
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every zstd frame found anywhere in `bytes`, decompressed.
fn zstd_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let magic = 0xFD2F_B528u32.to_le_bytes();
    let mut out = Vec::new();
    for i in 0..bytes.len().saturating_sub(4) {
        if bytes[i..i + 4] == magic {
            if let Ok(d) = zstd::stream::decode_all(&bytes[i..]) {
                out.push(d);
            }
        }
    }
    out
}

fn scan(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().map(Result::unwrap) {
        if !e.file_type().is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp-"),
            "temporary file left: {}",
            e.path().display()
        );
        let bytes = std::fs::read(e.path()).unwrap();
        let frames = zstd_frames(&bytes);
        for m in MARKERS {
            assert!(
                !contains(&bytes, m.as_bytes()),
                "{m} in {}",
                e.path().display()
            );
            assert!(!contains(name.as_bytes(), m.as_bytes()));
            for f in &frames {
                assert!(
                    !contains(f, m.as_bytes()),
                    "{m} inside a zstd frame in {}",
                    e.path().display()
                );
            }
        }
    }
}

#[test]
fn no_marker_reaches_the_repository_and_no_temporary_file_remains() {
    let env = Env::new();
    let pw = env.password("pw", "LVMARKERPASSWORDxq");
    let mut c = env.bare();
    c.args(["init", "--repo"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&pw);
    let init = run(c);
    init.ok();
    let dir = env.dir.path().join("LVMARKERPATHxq");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE LVMARKERTABLExq(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO LVMARKERTABLExq(v, b) SELECT 'LVMARKERVALUExq ' || i || ' LVMARKERVALUExq', zeroblob(100) FROM n;",
    )
    .unwrap();
    drop(conn);
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let lv = |args: &[&str]| {
        let mut c = env.bare();
        c.arg("--repo")
            .arg(&env.repo)
            .arg("--password-file")
            .arg(&pw)
            .args(args);
        let r = run(c);
        for m in MARKERS {
            if m == "LVMARKERPASSWORDxq" {
                assert!(
                    !r.stdout.contains(m) && !r.stderr.contains(m),
                    "the password was printed by {args:?}"
                );
            }
        }
        r
    };
    for strategy in ["pages", "vacuum"] {
        lv(&[
            "backup",
            db.to_str().unwrap(),
            "--strategy",
            strategy,
            "--temp-dir",
            tmp.to_str().unwrap(),
            "--host",
            "LVMARKERHOSTxq",
            "--tag",
            "LVMARKERTAGxq",
            "--force",
        ])
        .ok();
    }
    let second = env.password("pw2", "LVMARKERPASSWORDxq-2");
    lv(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ])
    .ok();
    let target = env.dir.path().join("restored.db");
    lv(&["restore", "latest", "--target", target.to_str().unwrap()]).ok();
    lv(&["restore", "latest", "--target", target.to_str().unwrap()]).ok();
    let sql = env.dir.path().join("out.sql");
    lv(&[
        "dump",
        "latest",
        "--format",
        "sql",
        "--output",
        sql.to_str().unwrap(),
    ])
    .ok();
    lv(&["check", "--read-data"]).ok();
    assert_eq!(dump(&target), dump(&db));
    scan(&env.repo);
    assert!(
        crate::util::names(&tmp).is_empty(),
        "vacuum export left behind"
    );
    let leftovers: Vec<String> = crate::util::names(env.dir.path())
        .into_iter()
        .filter(|n| n.contains("litevault"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
