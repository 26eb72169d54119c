//! What changed between two databases, as SQLite sees them: schema objects
//! added, removed or changed, and per table the rows inserted, deleted,
//! updated and unchanged, with sqldiff's semantics: rows of an ordinary
//! table are matched by rowid, rows of a WITHOUT ROWID table by primary
//! key; a row is updated if any column differs (`IS NOT`, so NULLs
//! compare). Tables whose columns changed are counted before and after
//! only. Virtual tables are left out (their shadow tables are compared).
//!
//! The two databases are `main` and the attached `other` of one
//! connection, read inside one transaction.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SourceProblem};

/// A schema object that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// `table`, `index`, `view` or `trigger`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// `added`, `removed` or `changed` (its SQL differs).
    pub change: String,
}

/// One table's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDiff {
    /// The table.
    pub table: String,
    /// What rows are matched by: `rowid` or `primary key (a, b)`.
    pub key: String,
    /// Rows only in the second.
    pub inserted: u64,
    /// Rows only in the first.
    pub deleted: u64,
    /// Rows in both whose columns differ.
    pub updated: u64,
    /// Rows in both, equal.
    pub unchanged: u64,
    /// Set when the rows could not be matched (the columns changed, or the
    /// table is only on one side): what was counted instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Quotes an identifier for SQL text.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn err(e: &rusqlite::Error) -> Error {
    Error::source(
        "",
        SourceProblem::Unreadable,
        format!("comparing the databases: {e}"),
    )
}

/// `(type, name) -> sql` of a schema, internal objects left out.
fn schema(conn: &Connection, db: &str) -> Result<BTreeMap<(String, String), String>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT type, name, coalesce(sql, '') FROM {db}.sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ))
        .map_err(|e| err(&e))?;
    let rows = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .map_err(|e| err(&e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| err(&e))
}

/// Schema changes from `main` to `other`.
pub fn schema_changes(conn: &Connection) -> Result<Vec<SchemaChange>> {
    let a = schema(conn, "main")?;
    let b = schema(conn, "other")?;
    let mut out = Vec::new();
    for ((kind, name), sql) in &a {
        match b.get(&(kind.clone(), name.clone())) {
            None => out.push(SchemaChange {
                kind: kind.clone(),
                name: name.clone(),
                change: "removed".into(),
            }),
            Some(s) if s != sql => out.push(SchemaChange {
                kind: kind.clone(),
                name: name.clone(),
                change: "changed".into(),
            }),
            Some(_) => {}
        }
    }
    for (kind, name) in b.keys() {
        if !a.contains_key(&(kind.clone(), name.clone())) {
            out.push(SchemaChange {
                kind: kind.clone(),
                name: name.clone(),
                change: "added".into(),
            });
        }
    }
    Ok(out)
}

/// Columns `(name, pk position)` of `table` in `db`.
fn columns(conn: &Connection, db: &str, table: &str) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA {db}.table_info({})", ident(table)))
        .map_err(|e| err(&e))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))
        .map_err(|e| err(&e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| err(&e))
}

fn count(conn: &Connection, sql: &str) -> Result<u64> {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(|e| err(&e))
}

/// Ordinary (not virtual) tables of `db` with their SQL.
fn tables(conn: &Connection, db: &str) -> Result<BTreeMap<String, String>> {
    Ok(schema(conn, db)?
        .into_iter()
        .filter(|((kind, _), sql)| {
            kind == "table" && !sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL")
        })
        .map(|((_, name), sql)| (name, sql))
        .collect())
}

/// True if the table's SQL says WITHOUT ROWID.
fn without_rowid(sql: &str) -> bool {
    let s = sql.to_ascii_uppercase();
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.contains("WITHOUT ROWID")
}

/// Row differences of every ordinary table, from `main` to `other`.
pub fn table_diffs(conn: &Connection) -> Result<Vec<TableDiff>> {
    let a = tables(conn, "main")?;
    let b = tables(conn, "other")?;
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let t = ident(name);
        let d = match (a.get(name), b.get(name)) {
            (Some(_), None) => TableDiff {
                table: name.clone(),
                key: String::new(),
                deleted: count(conn, &format!("SELECT count(*) FROM main.{t}"))?,
                note: Some("table removed".into()),
                ..TableDiff::default()
            },
            (None, Some(_)) => TableDiff {
                table: name.clone(),
                key: String::new(),
                inserted: count(conn, &format!("SELECT count(*) FROM other.{t}"))?,
                note: Some("table added".into()),
                ..TableDiff::default()
            },
            (Some(sql_a), Some(sql_b)) => rows(conn, name, sql_a, sql_b)?,
            (None, None) => unreachable!("a name from one side"),
        };
        out.push(d);
    }
    Ok(out)
}

/// One table on both sides.
fn rows(conn: &Connection, name: &str, sql_a: &str, sql_b: &str) -> Result<TableDiff> {
    let t = ident(name);
    let ca = columns(conn, "main", name)?;
    let cb = columns(conn, "other", name)?;
    let names_a: Vec<&String> = ca.iter().map(|(c, _)| c).collect();
    let names_b: Vec<&String> = cb.iter().map(|(c, _)| c).collect();
    if names_a != names_b || without_rowid(sql_a) != without_rowid(sql_b) {
        let before = count(conn, &format!("SELECT count(*) FROM main.{t}"))?;
        let after = count(conn, &format!("SELECT count(*) FROM other.{t}"))?;
        return Ok(TableDiff {
            table: name.to_string(),
            key: String::new(),
            deleted: before,
            inserted: after,
            note: Some(format!(
                "its columns changed: rows not matched ({before} before, {after} after)"
            )),
            ..TableDiff::default()
        });
    }
    // The key: the primary key of a WITHOUT ROWID table, else the rowid
    // under a name no column shadows.
    let (key_cols, key_name): (Vec<String>, String) = if without_rowid(sql_b) {
        let mut pk: Vec<&(String, i64)> = cb.iter().filter(|(_, p)| *p > 0).collect();
        pk.sort_by_key(|(_, p)| *p);
        let cols: Vec<String> = pk.iter().map(|(c, _)| ident(c)).collect();
        let label = format!(
            "primary key ({})",
            pk.iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        (cols, label)
    } else {
        let alias = ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|a| !names_b.iter().any(|c| c.eq_ignore_ascii_case(a)))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "table {name} has columns named rowid, _rowid_ and oid: its rows cannot be matched"
                ))
            })?;
        (vec![alias.to_string()], "rowid".to_string())
    };
    let on = key_cols
        .iter()
        .map(|k| format!("x.{k} IS y.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let differs = names_b
        .iter()
        .map(|c| format!("x.{0} IS NOT y.{0}", ident(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let differs = if differs.is_empty() {
        "0".to_string()
    } else {
        differs
    };
    let inserted = count(
        conn,
        &format!("SELECT count(*) FROM other.{t} y WHERE NOT EXISTS (SELECT 1 FROM main.{t} x WHERE {on})"),
    )?;
    let deleted = count(
        conn,
        &format!("SELECT count(*) FROM main.{t} x WHERE NOT EXISTS (SELECT 1 FROM other.{t} y WHERE {on})"),
    )?;
    let both = count(
        conn,
        &format!("SELECT count(*) FROM main.{t} x JOIN other.{t} y ON {on}"),
    )?;
    let updated = count(
        conn,
        &format!("SELECT count(*) FROM main.{t} x JOIN other.{t} y ON {on} WHERE {differs}"),
    )?;
    Ok(TableDiff {
        table: name.to_string(),
        key: key_name,
        inserted,
        deleted,
        updated,
        unchanged: both.saturating_sub(updated),
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn rows_and_schema_are_compared_like_sqldiff() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        Connection::open(&a)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
                 INSERT INTO t VALUES (1,'a'),(2,'b'),(3,NULL),(4,'d');
                 CREATE TABLE k(a, b, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
                 INSERT INTO k VALUES (1,1,'x'),(1,2,'y');
                 CREATE TABLE gone(x); INSERT INTO gone VALUES (1);
                 CREATE INDEX t_v ON t(v);
                 CREATE TABLE \"we\"\"ird\"(x, y); INSERT INTO \"we\"\"ird\" VALUES (1, 2);",
            )
            .unwrap();
        Connection::open(&b)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
                 INSERT INTO t VALUES (1,'a'),(3,'c'),(4,'d'),(5,'e'),(6,'f');
                 CREATE TABLE k(a, b, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
                 INSERT INTO k VALUES (1,1,'x'),(1,2,'z'),(2,1,'w');
                 CREATE TABLE new(x); INSERT INTO new VALUES (1),(2);
                 CREATE INDEX t_v ON t(v, id);
                 CREATE TABLE \"we\"\"ird\"(x, y, z);",
            )
            .unwrap();
        let conn = Connection::open(&a).unwrap();
        conn.execute("ATTACH ?1 AS other", [b.to_str().unwrap()])
            .unwrap();
        let s = schema_changes(&conn).unwrap();
        let kinds: Vec<(String, String)> = s
            .iter()
            .map(|c| (c.name.clone(), c.change.clone()))
            .collect();
        assert!(kinds.contains(&("gone".into(), "removed".into())));
        assert!(kinds.contains(&("new".into(), "added".into())));
        assert!(kinds.contains(&("t_v".into(), "changed".into())));
        assert!(kinds.contains(&("we\"ird".into(), "changed".into())));
        assert!(!kinds.iter().any(|(n, _)| n == "t" || n == "k"));
        let d: BTreeMap<String, TableDiff> = table_diffs(&conn)
            .unwrap()
            .into_iter()
            .map(|d| (d.table.clone(), d))
            .collect();
        let t = &d["t"];
        assert_eq!(
            (t.inserted, t.deleted, t.updated, t.unchanged),
            (2, 1, 1, 2)
        );
        assert_eq!(t.key, "rowid");
        let k = &d["k"];
        assert_eq!(
            (k.inserted, k.deleted, k.updated, k.unchanged),
            (1, 0, 1, 1)
        );
        assert_eq!(k.key, "primary key (a, b)");
        assert_eq!((d["gone"].deleted, d["new"].inserted), (1, 2));
        assert!(d["we\"ird"]
            .note
            .as_deref()
            .unwrap()
            .contains("columns changed"));
    }
}
