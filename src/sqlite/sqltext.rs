//! A database as SQL text, like `sqlite3 DB .dump`: `CREATE` statements
//! and `INSERT`s in a single transaction that `sqlite3 new.db < dump.sql`
//! replays. Generated columns are left out of the `INSERT`s; virtual tables
//! keep their definitions but not their contents (as the shell does).

use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Result, SourceProblem};

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn sql_value(v: ValueRef<'_>, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) if f.is_nan() => out.push_str("NULL"),
        ValueRef::Real(f) if f.is_infinite() => {
            out.push_str(if f > 0.0 { "1e999" } else { "-1e999" });
        }
        ValueRef::Real(f) => {
            let _ = write!(out, "{f:?}");
        }
        ValueRef::Text(t) => {
            out.push('\'');
            out.push_str(&String::from_utf8_lossy(t).replace('\'', "''"));
            out.push('\'');
        }
        ValueRef::Blob(b) => {
            out.push_str("X'");
            out.push_str(&hex::encode(b));
            out.push('\'');
        }
    }
}

/// Writes the database behind `conn` as SQL text.
pub fn write_sql(conn: &Connection, out: &mut dyn Write) -> Result<()> {
    let sql_err = |e: rusqlite::Error| {
        Error::source(
            conn.path().unwrap_or(""),
            SourceProblem::Unreadable,
            format!("reading the snapshot's database: {e}"),
        )
    };
    let io = |e| Error::io("writing", "the SQL dump", e);
    writeln!(out, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;").map_err(io)?;
    let mut tables = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql NOT NULL ORDER BY rowid")
        .map_err(sql_err)?;
    let tables: Vec<(String, String)> = tables
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    for (name, create) in &tables {
        if name == "sqlite_sequence" {
            writeln!(out, "DELETE FROM sqlite_sequence;").map_err(io)?;
        } else if name.starts_with("sqlite_stat") {
            writeln!(out, "ANALYZE sqlite_schema;").map_err(io)?;
        } else if create.len() >= 20 && create[..20].eq_ignore_ascii_case("CREATE VIRTUAL TABLE") {
            writeln!(out, "{create};").map_err(io)?;
            continue;
        } else {
            writeln!(out, "{create};").map_err(io)?;
        }
        // Stored columns only: generated ones cannot be inserted.
        let mut cols = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_xinfo({}) WHERE hidden IN (0, 1)",
                sql_string(name)
            ))
            .map_err(sql_err)?;
        let cols: Vec<String> = cols
            .query_map([], |r| r.get(0))
            .map_err(sql_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err)?;
        if cols.is_empty() {
            continue;
        }
        let col_list = cols
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(",");
        let mut stmt = conn
            .prepare(&format!("SELECT {col_list} FROM {}", quote_ident(name)))
            .map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let prefix = format!("INSERT INTO {}({col_list}) VALUES(", quote_ident(name));
        let mut line = String::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            line.clear();
            line.push_str(&prefix);
            for i in 0..cols.len() {
                if i > 0 {
                    line.push(',');
                }
                sql_value(row.get_ref(i).map_err(sql_err)?, &mut line);
            }
            line.push_str(");");
            writeln!(out, "{line}").map_err(io)?;
        }
    }
    let mut rest = conn
        .prepare("SELECT sql FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') AND sql NOT NULL ORDER BY rowid")
        .map_err(sql_err)?;
    let mut rows = rest.query([]).map_err(sql_err)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        let sql: String = row.get(0).map_err(sql_err)?;
        writeln!(out, "{sql};").map_err(io)?;
    }
    writeln!(out, "COMMIT;").map_err(io)
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
