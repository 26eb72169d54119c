//! `dump --format sql` replays to an equal database, for every value,
//! schema object and text encoding: a property test over generated schemas
//! and values (fixed seed), compared by the sqlite3 shell's own `.dump` of
//! the original and of the replay, and value by value, byte for byte.

#![allow(
    clippy::too_many_lines,
    clippy::cast_possible_wrap,
    clippy::type_complexity,
    clippy::enum_variant_names
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::util::Env;

#[derive(Clone, Debug)]
enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Text whose bytes are not valid UTF-8.
    BadText(Vec<u8>),
    Blob(Vec<u8>),
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        Just(Val::Null),
        any::<i64>().prop_map(Val::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Val::Int),
        any::<f64>().prop_map(Val::Real),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(5e-324),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.1),
            Just(1e16),
            Just(-2.5e-300),
        ]
        .prop_map(Val::Real),
        proptest::collection::vec(any::<char>(), 0..12)
            .prop_map(|c| Val::Text(c.into_iter().collect())),
        proptest::collection::vec(
            prop_oneof![Just('\0'), Just('\''), Just('\n'), Just('é'), Just('"')],
            0..6
        )
        .prop_map(|c| Val::Text(c.into_iter().collect())),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(|mut b| {
            b.push(0xff);
            Val::BadText(b)
        }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Val::Blob),
    ]
}

const NAMES: &[&str] = &[
    "t",
    "we\"ird",
    "名前",
    "a b",
    "select",
    "x'y",
    "e🦀",
    "Col_9",
    "[b]",
    "tab\there",
    "ünï",
];
const TYPES: &[&str] = &["INTEGER", "REAL", "TEXT", "BLOB", "", "NUMERIC", "ANY"];

#[derive(Clone, Copy, Debug)]
enum Key {
    None,
    IntegerPrimaryKey,
    WithoutRowid,
}

#[derive(Clone, Debug)]
struct Table {
    name: String,
    cols: Vec<(String, &'static str)>,
    key: Key,
    generated: bool,
    /// Explicit rowids (tables without a key) and values.
    rows: Vec<(i64, Vec<Val>)>,
}

#[derive(Clone, Debug)]
struct Case {
    encoding: &'static str,
    tables: Vec<Table>,
    fts: Vec<String>,
    rtree: Vec<(i64, [f64; 4])>,
    extras: bool,
}

fn table(i: usize) -> impl Strategy<Value = Table> {
    (
        0..NAMES.len(),
        proptest::collection::vec((0..NAMES.len(), 0..TYPES.len()), 1..5),
        prop_oneof![
            Just(Key::None),
            Just(Key::IntegerPrimaryKey),
            Just(Key::WithoutRowid)
        ],
        any::<bool>(),
        proptest::collection::vec((any::<i64>(), proptest::collection::vec(val(), 5)), 0..7),
    )
        .prop_map(move |(n, cols, key, generated, rows)| {
            let mut seen = std::collections::HashSet::new();
            let cols: Vec<(String, &'static str)> = cols
                .into_iter()
                .enumerate()
                .filter_map(|(j, (c, t))| {
                    let name = format!("{}{j}", NAMES[c]);
                    seen.insert(name.to_lowercase()).then_some((name, TYPES[t]))
                })
                .collect();
            let mut rowids = std::collections::HashSet::new();
            let rows = rows
                .into_iter()
                .enumerate()
                .filter(|(_, (r, _))| rowids.insert(*r))
                .map(|(k, (r, mut v))| {
                    v.truncate(cols.len());
                    if !matches!(key, Key::None) {
                        v[0] = Val::Int(k as i64 * 7 - 3);
                    }
                    (r, v)
                })
                .collect();
            Table {
                name: format!("{}_{i}", NAMES[n]),
                cols,
                key,
                generated,
                rows,
            }
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just("UTF-8"), Just("UTF-16le"), Just("UTF-16be")],
        (table(0), table(1), table(2)),
        0..3usize,
        proptest::collection::vec("[a-z ]{0,20}", 0..6),
        proptest::collection::vec(
            (1..1000i64, proptest::array::uniform4(-100.0..100.0f64)),
            0..8,
        ),
        any::<bool>(),
    )
        .prop_map(|(encoding, (a, b, c), n, fts, rtree, extras)| Case {
            encoding,
            tables: [a, b, c].into_iter().take(n + 1).collect(),
            fts,
            rtree,
            extras,
        })
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Builds the case's database at `path`.
fn build(path: &Path, case: &Case) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA encoding='{}'; PRAGMA user_version=7;",
        case.encoding
    ))
    .unwrap();
    for t in &case.tables {
        let mut defs: Vec<String> = t
            .cols
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                let ty = if i == 0 && matches!(t.key, Key::IntegerPrimaryKey) {
                    "INTEGER"
                } else {
                    ty
                };
                let pk = if i == 0 && !matches!(t.key, Key::None) {
                    " PRIMARY KEY"
                } else {
                    ""
                };
                format!("{} {ty}{pk}", q(name))
            })
            .collect();
        if t.generated {
            defs.push(format!(
                "gen GENERATED ALWAYS AS (typeof({})) VIRTUAL",
                q(&t.cols[0].0)
            ));
        }
        let without = if matches!(t.key, Key::WithoutRowid) {
            " WITHOUT ROWID"
        } else {
            ""
        };
        c.execute_batch(&format!(
            "CREATE TABLE {}({}){without};",
            q(&t.name),
            defs.join(", ")
        ))
        .unwrap();
        for (rowid, vals) in &t.rows {
            let mut names: Vec<String> = t.cols.iter().map(|(n, _)| q(n)).collect();
            let mut slots: Vec<String> = vals
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Val::BadText(_) => format!("CAST(?{} AS TEXT)", i + 1),
                    _ => format!("?{}", i + 1),
                })
                .collect();
            if matches!(t.key, Key::None) {
                names.insert(0, "rowid".into());
                slots.insert(0, rowid.to_string());
            }
            let params: Vec<rusqlite::types::Value> = vals
                .iter()
                .map(|v| match v {
                    Val::Null => rusqlite::types::Value::Null,
                    Val::Int(i) => rusqlite::types::Value::Integer(*i),
                    Val::Real(f) => rusqlite::types::Value::Real(*f),
                    Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
                    Val::BadText(b) | Val::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
                })
                .collect();
            c.execute(
                &format!(
                    "INSERT INTO {}({}) VALUES({})",
                    q(&t.name),
                    names.join(","),
                    slots.join(",")
                ),
                rusqlite::params_from_iter(params),
            )
            .unwrap();
        }
    }
    if !case.fts.is_empty() {
        c.execute_batch("CREATE VIRTUAL TABLE fts USING fts5(body, note);")
            .unwrap();
        for (i, body) in case.fts.iter().enumerate() {
            c.execute(
                "INSERT INTO fts(rowid, body, note) VALUES(?, ?, 'needle haystack')",
                rusqlite::params![i as i64 * 3 + 1, body],
            )
            .unwrap();
        }
    }
    if !case.rtree.is_empty() {
        c.execute_batch("CREATE VIRTUAL TABLE rt USING rtree(id, x0, x1, y0, y1);")
            .unwrap();
        for (id, v) in &case.rtree {
            let (x0, x1) = (v[0].min(v[1]), v[0].max(v[1]));
            let (y0, y1) = (v[2].min(v[3]), v[2].max(v[3]));
            c.execute(
                "INSERT OR REPLACE INTO rt VALUES(?, ?, ?, ?, ?)",
                rusqlite::params![id, x0, x1, y0, y1],
            )
            .unwrap();
        }
    }
    if case.extras {
        let t = &case.tables[0];
        let col = q(&t.cols[0].0);
        c.execute_batch(&format!(
            "CREATE INDEX {} ON {}({col});
             CREATE VIEW {} AS SELECT count(*) AS n FROM {};
             CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, x);
             INSERT INTO seq(x) VALUES (1), (2); DELETE FROM seq WHERE x = 2;
             CREATE TRIGGER trig AFTER INSERT ON seq BEGIN SELECT 1; END;",
            q(&format!("idx {}", t.name)),
            q(&t.name),
            q(&format!("view {}", t.name)),
            q(&t.name),
        ))
        .unwrap();
    }
}

/// A value exactly as stored.
#[derive(Debug, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// Every table's rows, value by value as stored (text as its bytes in the
/// database's encoding), rowids included; and the schema.
fn contents(
    path: &Path,
) -> (
    BTreeMap<String, Vec<Vec<Cell>>>,
    Vec<(String, String, String)>,
    i64,
) {
    let c = Connection::open(path).unwrap();
    let schema: Vec<(String, String, String)> = c
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeMap::new();
    for (ty, name, sql) in &schema {
        if ty != "table" || sql.to_uppercase().starts_with("CREATE VIRTUAL") {
            continue;
        }
        let cols: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0")
            .unwrap()
            .query_map([name], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let has_rowid = c.prepare(&format!("SELECT rowid FROM {}", q(name))).is_ok();
        let mut select: Vec<String> = Vec::new();
        if has_rowid {
            select.push("rowid".into());
        }
        select.extend(cols.iter().map(|c| q(c)));
        let exprs: Vec<String> = select
            .iter()
            .map(|e| format!("{e}, CASE WHEN typeof({e}) = 'text' THEN CAST({e} AS BLOB) END"))
            .collect();
        let order = if has_rowid { "rowid" } else { "1" };
        let mut stmt = c
            .prepare(&format!(
                "SELECT {} FROM {} ORDER BY {order}",
                exprs.join(", "),
                q(name)
            ))
            .unwrap();
        let n = select.len();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(2 * i).unwrap() {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Real(v) => Cell::Real(v.to_bits()),
                        ValueRef::Text(_) => {
                            Cell::Text(r.get_ref(2 * i + 1).unwrap().as_blob().unwrap().to_vec())
                        }
                        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    })
                    .collect::<Vec<Cell>>())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.insert(name.clone(), rows);
    }
    let user_version = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    (out, schema, user_version)
}

/// `sqlite3 DB .dump`, by the shell itself.
fn shell_dump(path: &Path) -> Vec<u8> {
    let out = Command::new("sqlite3")
        .arg(path)
        .arg(".dump")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Replays SQL text into a new database with the sqlite3 shell.
fn replay(sql: &[u8], path: &Path) {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(sql).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The checks of one case: equal contents, equal shell dumps, working
/// virtual tables.
fn same_database(orig: &Path, copy: &Path, case: Option<&Case>) {
    let (a, b) = (contents(orig), contents(copy));
    assert_eq!(a.0, b.0, "rows differ");
    let strip = |s: &Vec<(String, String, String)>| s.clone();
    assert_eq!(strip(&a.1), strip(&b.1), "schema differs");
    assert_eq!(a.2, b.2, "user_version differs");
    assert!(
        shell_dump(orig) == shell_dump(copy),
        "sqlite3 .dump differs"
    );
    let c = Connection::open(copy).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let enc = |p: &Path| -> String {
        Connection::open(p)
            .unwrap()
            .query_row("PRAGMA encoding", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(enc(orig), enc(copy), "encoding differs");
    if case.is_some_and(|c| !c.fts.is_empty()) {
        c.execute_batch("INSERT INTO fts(fts) VALUES('integrity-check');")
            .unwrap();
        let hits = |p: &Path| -> Vec<i64> {
            Connection::open(p)
                .unwrap()
                .prepare("SELECT rowid FROM fts WHERE fts MATCH 'needle' ORDER BY rowid")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(hits(orig), hits(copy), "full-text search differs");
        assert!(!hits(copy).is_empty());
    }
    if case.is_some_and(|c| !c.rtree.is_empty()) {
        let check: String = c
            .query_row("SELECT rtreecheck('rt')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}

#[test]
fn sql_dumps_replay_to_equal_databases() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        cases: 48,
        rng_seed: RngSeed::Fixed(20_261_122),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let n = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&case(), |case| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let orig = dir.path().join(format!("orig{i}.db"));
            let copy = dir.path().join(format!("copy{i}.db"));
            build(&orig, &case);
            let mut sql = Vec::new();
            litevault::sqlite::sqltext::write_sql(
                &Connection::open(&orig).unwrap(),
                &mut sql,
                &litevault::Cancel::new(),
            )
            .unwrap();
            replay(&sql, &copy);
            same_database(&orig, &copy, Some(&case));
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_snapshot_dumped_as_sql_by_the_binary_replays_exactly() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("odd.db");
    let case = Case {
        encoding: "UTF-16le",
        tables: vec![Table {
            name: "名前 \"t\"".into(),
            cols: vec![
                ("a".into(), "TEXT"),
                ("b b".into(), ""),
                ("c".into(), "REAL"),
            ],
            key: Key::None,
            generated: true,
            rows: vec![
                (
                    5,
                    vec![
                        Val::Text("nul\0inside".into()),
                        Val::BadText(vec![0xff, 0x00, 0x41]),
                        Val::Real(-0.0),
                    ],
                ),
                (
                    i64::MAX,
                    vec![
                        Val::Int(i64::MIN),
                        Val::Blob(vec![0, 1, 2]),
                        Val::Real(f64::INFINITY),
                    ],
                ),
                (
                    -3,
                    vec![
                        Val::Text("line\nbreak 'q' \"d\"".into()),
                        Val::Null,
                        Val::Real(5e-324),
                    ],
                ),
            ],
        }],
        fts: vec!["alpha beta".into(), "gamma".into()],
        rtree: vec![(1, [0.0, 1.0, 2.0, 3.0]), (2, [-5.5, 5.5, -1.0, 1.0])],
        extras: true,
    };
    build(&db, &case);
    crate::backup::backup_json(&env, &[db.to_str().unwrap()]);
    let sql = env.dir.path().join("odd.sql");
    env.run(&[
        "dump",
        "latest",
        "--format",
        "sql",
        "--output",
        sql.to_str().unwrap(),
    ])
    .ok();
    let copy = env.dir.path().join("copy.db");
    replay(&std::fs::read(&sql).unwrap(), &copy);
    same_database(&db, &copy, Some(&case));
}
