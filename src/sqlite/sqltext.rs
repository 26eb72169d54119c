//! A database as SQL text, like `sqlite3 DB .dump`, that replays into an
//! equal database: every value exactly, every schema object, every text
//! encoding.
//!
//! * The text encoding comes first (`PRAGMA encoding`, which a fresh
//!   database takes before anything is written), then one transaction.
//! * Tables in schema order: `CREATE` then one `INSERT` per row, stored
//!   columns only (generated ones are computed again). A rowid table whose
//!   rowid is no column of its own gets its rowid written too, so rowids
//!   that other rows (or full-text indexes) refer to survive.
//! * Values: integers (the smallest one as an expression), reals in their
//!   shortest exact form (infinities as `1e999`), blobs as `X'..'`, text
//!   quoted when it is valid UTF-8 without NUL bytes and otherwise (and in
//!   UTF-16 databases) as `CAST(X'..' AS TEXT)` of its exact stored bytes.
//! * Virtual tables (FTS5, R*Tree, ...) as the sqlite3 shell writes them:
//!   their `sqlite_schema` row is inserted under `PRAGMA writable_schema`,
//!   and their shadow tables are dumped as the tables they are, so the
//!   index comes back as it was, not rebuilt nor doubled.
//! * `sqlite_sequence` and `sqlite_stat1` as the shell does; then indexes,
//!   triggers and views in schema order; `user_version` and
//!   `application_id` when set.

use std::fmt::Write as _;
use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Result, SourceProblem};
use crate::progress::Cancel;

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Appends a value as an SQL literal; `raw_text` is the text's stored
/// bytes when they must be written exactly (a UTF-16 database).
fn sql_value(v: ValueRef<'_>, raw_text: Option<&[u8]>, out: &mut String) {
    match v {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(i64::MIN) => out.push_str("(-9223372036854775807-1)"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) if f.is_nan() => out.push_str("NULL"),
        ValueRef::Real(f) if f.is_infinite() => {
            out.push_str(if f > 0.0 { "1e999" } else { "-1e999" });
        }
        ValueRef::Real(f) => out.push_str(&real_literal(f)),
        ValueRef::Text(t) => match (raw_text, std::str::from_utf8(t)) {
            (None, Ok(s)) if !s.contains('\0') => out.push_str(&sql_string(s)),
            (raw, _) => {
                out.push_str("CAST(X'");
                out.push_str(&hex::encode(raw.unwrap_or(t)));
                out.push_str("' AS TEXT)");
            }
        },
        ValueRef::Blob(b) => {
            out.push_str("X'");
            out.push_str(&hex::encode(b));
            out.push('\'');
        }
    }
}

/// A finite real as SQL that every SQLite reads back exactly: its shortest
/// decimal form when a parser cannot get that wrong (at most 15 significant
/// digits times a power of ten up to 22, which one exact multiplication or
/// division turns into the double), else its exact binary value as an
/// integer scaled by powers of two (each step exact).
fn real_literal(f: f64) -> String {
    const TWO_40: u64 = 1 << 40;
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return format!("{f:.1}");
    }
    let shortest = format!("{f:e}");
    let (mantissa, exp) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let exp: i32 = exp.parse().unwrap_or(i32::MAX);
    let frac = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
    let digits = mantissa
        .trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .len();
    let k = i64::from(exp) - i64::try_from(frac).unwrap_or(i64::MAX);
    if digits <= 15 && (-22..=22).contains(&k) {
        return format!("{f:?}");
    }
    // f = m * 2^e exactly, m an integer of at most 53 bits.
    let bits = f.to_bits();
    let (sign, biased, fraction) = (
        bits >> 63,
        i64::try_from((bits >> 52) & 0x7ff).expect("11 bits"),
        bits & ((1 << 52) - 1),
    );
    let (m, mut e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    let mut expr = format!("CAST({}{m} AS REAL)", if sign == 1 { "-" } else { "" });
    while e != 0 {
        let step = e.clamp(-40, 40);
        let factor = if step.unsigned_abs() == 40 {
            TWO_40
        } else {
            1u64 << step.unsigned_abs()
        };
        let op = if step > 0 { '*' } else { '/' };
        expr = format!("({expr}{op}{factor})");
        e -= step;
    }
    expr
}

/// True if `sql` creates a virtual table.
fn is_virtual(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    words == ["CREATE", "VIRTUAL", "TABLE"]
}

struct Dumper<'a> {
    conn: &'a Connection,
    out: &'a mut dyn Write,
    cancel: &'a Cancel,
    utf16: bool,
}

impl Dumper<'_> {
    fn sql_err(&self, e: &rusqlite::Error) -> Error {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
            return Error::Interrupted("dump stopped".into());
        }
        Error::source(
            self.conn.path().unwrap_or(""),
            SourceProblem::Unreadable,
            format!("reading the snapshot's database: {e}"),
        )
    }

    fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.out, "{s}").map_err(|e| Error::io("writing", "the output", e))
    }

    fn strings(&self, sql: &str, param: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql_err(&e))?;
        let rows = stmt
            .query_map([param], |r| r.get(0))
            .map_err(|e| self.sql_err(&e))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.sql_err(&e));
        rows
    }

    /// The name to write a rowid under, if the table has a rowid that is
    /// no column of its own.
    fn hidden_rowid(&self, table: &str, cols: &[String]) -> Result<Option<&'static str>> {
        let has_rowid = self
            .conn
            .prepare(&format!("SELECT rowid FROM {} LIMIT 0", quote_ident(table)))
            .is_ok();
        if !has_rowid {
            return Ok(None);
        }
        let pk: Vec<String> = self.strings(
            "SELECT upper(type) FROM pragma_table_info(?1) WHERE pk > 0",
            table,
        )?;
        if pk.len() == 1 && pk[0] == "INTEGER" {
            return Ok(None);
        }
        Ok(["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|r| !cols.iter().any(|c| c.eq_ignore_ascii_case(r))))
    }

    fn rows(&mut self, table: &str) -> Result<()> {
        // Stored columns only: generated ones cannot be inserted.
        let cols = self.strings(
            "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0",
            table,
        )?;
        if cols.is_empty() {
            return Ok(());
        }
        let rowid = self.hidden_rowid(table, &cols)?;
        let mut names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
        let mut select: Vec<String> = names.clone();
        if let Some(r) = rowid {
            names.insert(0, r.to_string());
            select.insert(0, r.to_string());
        }
        let n = select.len();
        if self.utf16 {
            // The exact stored bytes of every text value.
            for i in 0..n {
                let c = select[i].clone();
                select.push(format!(
                    "CASE WHEN typeof({c}) = 'text' THEN CAST({c} AS BLOB) END"
                ));
            }
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM {}",
                select.join(","),
                quote_ident(table)
            ))
            .map_err(|e| self.sql_err(&e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql_err(&e))?;
        let prefix = format!(
            "INSERT INTO {}({}) VALUES(",
            quote_ident(table),
            names.join(",")
        );
        let mut line = String::new();
        let mut count = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.sql_err(&e))? {
            count += 1;
            if count % 1024 == 0 {
                self.cancel.check("dump stopped")?;
            }
            line.clear();
            line.push_str(&prefix);
            for i in 0..n {
                if i > 0 {
                    line.push(',');
                }
                let v = row.get_ref(i).map_err(|e| self.sql_err(&e))?;
                let raw = if self.utf16 {
                    row.get_ref(n + i)
                        .map_err(|e| self.sql_err(&e))?
                        .as_blob_or_null()
                        .ok()
                        .flatten()
                } else {
                    None
                };
                sql_value(v, raw, &mut line);
            }
            line.push_str(");");
            writeln!(self.out, "{line}").map_err(|e| Error::io("writing", "the output", e))?;
        }
        Ok(())
    }
}

/// Writes the database behind `conn` as SQL text; `cancel` stops it.
pub fn write_sql(conn: &Connection, out: &mut dyn Write, cancel: &Cancel) -> Result<()> {
    let _interrupt = super::interrupt_on_cancel(conn, cancel);
    let encoding: String = conn
        .query_row("PRAGMA encoding", [], |r| r.get(0))
        .map_err(|e| Error::source("", SourceProblem::Unreadable, e.to_string()))?;
    let mut d = Dumper {
        conn,
        out,
        cancel,
        utf16: !encoding.eq_ignore_ascii_case("UTF-8"),
    };
    d.line("PRAGMA foreign_keys=OFF;")?;
    if d.utf16 {
        d.line(&format!("PRAGMA encoding={};", sql_string(&encoding)))?;
    }
    d.line("BEGIN TRANSACTION;")?;
    for pragma in ["user_version", "application_id"] {
        let v: i64 = conn
            .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(|e| d.sql_err(&e))?;
        if v != 0 {
            d.line(&format!("PRAGMA {pragma}={v};"))?;
        }
    }
    let tables: Vec<(String, String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'table' AND sql NOT NULL ORDER BY rowid",
            )
            .map_err(|e| d.sql_err(&e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| d.sql_err(&e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| d.sql_err(&e));
        rows?
    };
    let mut writable_schema = false;
    for (name, tbl_name, create) in &tables {
        if name == "sqlite_sequence" {
            d.line("DELETE FROM sqlite_sequence;")?;
        } else if name.starts_with("sqlite_stat") {
            d.line("ANALYZE sqlite_schema;")?;
        } else if is_virtual(create) {
            if !writable_schema {
                d.line("PRAGMA writable_schema=ON;")?;
                writable_schema = true;
            }
            d.line(&format!(
                "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql) VALUES('table',{},{},0,{});",
                sql_string(name),
                sql_string(tbl_name),
                sql_string(create)
            ))?;
            continue;
        } else {
            d.line(&format!("{create};"))?;
        }
        d.rows(name)?;
    }
    let rest = {
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') AND sql NOT NULL ORDER BY rowid")
            .map_err(|e| d.sql_err(&e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| d.sql_err(&e))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| d.sql_err(&e));
        rows?
    };
    for sql in rest {
        d.line(&format!("{sql};"))?;
    }
    if writable_schema {
        d.line("PRAGMA writable_schema=OFF;")?;
    }
    d.line("COMMIT;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_exact_literals() {
        let mut s = String::new();
        for (v, raw) in [
            (ValueRef::Integer(i64::MIN), None),
            (ValueRef::Real(-0.0), None),
            (ValueRef::Real(f64::INFINITY), None),
            (ValueRef::Text(b"it's"), None),
            (ValueRef::Text(b"nul\0byte"), None),
            (ValueRef::Text(b"\xff\xfe bad"), None),
            (ValueRef::Text(b"x"), Some(&b"x\0"[..])),
        ] {
            sql_value(v, raw, &mut s);
            s.push('|');
        }
        assert_eq!(
            s,
            "(-9223372036854775807-1)|-0.0|1e999|'it''s'|CAST(X'6e756c0062797465' AS TEXT)|CAST(X'fffe20626164' AS TEXT)|CAST(X'7800' AS TEXT)|"
        );
        assert!(is_virtual("create  virtual\ttable x using fts5(a)"));
        for f in [0.1, 3.0, -0.0, 1.5e-7, 123_456.789] {
            assert!(
                !real_literal(f).contains("CAST"),
                "{f}: {}",
                real_literal(f)
            );
        }
        let conn = Connection::open_in_memory().unwrap();
        for f in [
            5e-324,
            f64::MAX,
            f64::MIN,
            1e300,
            -2.5e-300,
            0.1 + 0.2,
            1.0 / 3.0,
            2.225_073_858_507_201_4e-308,
        ] {
            let back: f64 = conn
                .query_row(&format!("SELECT {}", real_literal(f)), [], |r| r.get(0))
                .unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f}: {}", real_literal(f));
        }
        assert!(!is_virtual("CREATE TABLE v(a)"));
    }
}
