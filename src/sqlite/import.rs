//! An existing backup file as a database litevault can read: an SQLite
//! file as it is; a gzip or zstd compressed one, decompressed into a
//! private temporary file; an SQL text dump (plain or compressed),
//! replayed into a private temporary database, a failing statement named
//! by its line. Decompression is bounded (a compression bomb stops at the
//! bound). Every result passes `integrity_check` before it is used.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};

use super::confine::Confinement;
use super::tempdb::TempDb;
use super::{interrupt_on_cancel, open_own, read_up_to, SQLITE_MAGIC};
use crate::error::{Error, Result, SourceProblem};
use crate::progress::Cancel;

/// What a file was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportKind {
    /// An SQLite database file.
    Sqlite,
    /// A gzip-compressed database file.
    SqliteGzip,
    /// A zstd-compressed database file.
    SqliteZstd,
    /// SQL text.
    Sql,
    /// Gzip-compressed SQL text.
    SqlGzip,
    /// Zstd-compressed SQL text.
    SqlZstd,
}

/// A file ready to back up.
#[derive(Debug)]
pub struct Prepared {
    /// The database file to read (the original, or a temporary one).
    pub path: PathBuf,
    /// What the original was.
    pub kind: ImportKind,
    /// The temporary file, removed when this is dropped.
    pub temp: Option<TempDb>,
}

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn bad(file: &Path, problem: SourceProblem, message: String) -> Error {
    Error::source(file, problem, message)
}

/// Prepares `file` (see the module docs); temporary files go to
/// `temp_dir`; decompressed content beyond `max_bytes` is refused.
pub fn prepare(file: &Path, temp_dir: &Path, max_bytes: u64, cancel: &Cancel) -> Result<Prepared> {
    let f = File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(
            file,
            SourceProblem::Missing,
            format!("{} does not exist", file.display()),
        ),
        _ => bad(
            file,
            SourceProblem::Unreadable,
            format!("cannot read {}: {e}", file.display()),
        ),
    })?;
    let meta = f.metadata().map_err(|e| Error::io("reading", file, e))?;
    if !meta.is_file() {
        return Err(bad(
            file,
            SourceProblem::NotAFile,
            format!("{} is not a regular file", file.display()),
        ));
    }
    let mut head = [0u8; 16];
    let n = read_up_to(&mut (&f), &mut head).map_err(|e| Error::io("reading", file, e))?;
    if n == 0 {
        return Err(bad(
            file,
            SourceProblem::NotSqlite,
            format!("{} is empty", file.display()),
        ));
    }
    let prepared = if n == 16 && &head == SQLITE_MAGIC {
        Prepared {
            path: file.to_path_buf(),
            kind: ImportKind::Sqlite,
            temp: None,
        }
    } else {
        let f = File::open(file).map_err(|e| Error::io("reading", file, e))?;
        let (reader, compressed): (Box<dyn Read>, Option<bool>) = if head[..2] == GZIP {
            (
                Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f))),
                Some(true),
            )
        } else if n >= 4 && head[..4] == ZSTD {
            let d = zstd::stream::read::Decoder::new(f).map_err(|e| {
                bad(
                    file,
                    SourceProblem::Corrupt,
                    format!("{}: not valid zstd: {e}", file.display()),
                )
            })?;
            (Box::new(d), Some(false))
        } else {
            (Box::new(BufReader::new(f)), None)
        };
        from_stream(file, reader, compressed, temp_dir, max_bytes, cancel)?
    };
    check(file, &prepared.path, cancel)?;
    Ok(prepared)
}

/// A (decompressed) stream: a database file, or SQL text.
fn from_stream(
    file: &Path,
    mut r: Box<dyn Read>,
    compressed: Option<bool>,
    temp_dir: &Path,
    max_bytes: u64,
    cancel: &Cancel,
) -> Result<Prepared> {
    let what = |e: std::io::Error| {
        bad(
            file,
            SourceProblem::Corrupt,
            format!("{}: cannot decompress it: {e}", file.display()),
        )
    };
    let mut head = [0u8; 16];
    let n = read_up_to(&mut r, &mut head).map_err(what)?;
    let stem = file
        .file_name()
        .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
    let (tmp, mut out) = TempDb::create(temp_dir, &stem, "import")?;
    if n == 16 && &head == SQLITE_MAGIC {
        out.write_all(&head)
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
        let mut limited = r.take(max_bytes.saturating_sub(16) + 1);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 16u64;
        loop {
            cancel.check("import stopped; nothing was imported")?;
            let k = limited.read(&mut buf).map_err(what)?;
            if k == 0 {
                break;
            }
            total += k as u64;
            if total > max_bytes {
                return Err(bomb(file, max_bytes));
            }
            out.write_all(&buf[..k])
                .map_err(|e| Error::io("writing", tmp.path(), e))?;
        }
        out.sync_all()
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
        return Ok(Prepared {
            path: tmp.path().to_path_buf(),
            kind: match compressed {
                Some(true) => ImportKind::SqliteGzip,
                Some(false) => ImportKind::SqliteZstd,
                None => unreachable!("an uncompressed database is read in place"),
            },
            temp: Some(tmp),
        });
    }
    drop(out);
    // SQL text, or nothing litevault knows.
    let mut text = head[..n].to_vec();
    r.take(max_bytes.saturating_sub(n as u64) + 1)
        .read_to_end(&mut text)
        .map_err(what)?;
    if text.len() as u64 > max_bytes {
        return Err(bomb(file, max_bytes));
    }
    let Ok(sql) = String::from_utf8(text) else {
        return Err(bad(
            file,
            SourceProblem::NotSqlite,
            format!(
                "{} is not an SQLite database, gzip or zstd file, or SQL text",
                file.display()
            ),
        ));
    };
    replay(file, &sql, tmp.path(), cancel)?;
    Ok(Prepared {
        path: tmp.path().to_path_buf(),
        kind: match compressed {
            Some(true) => ImportKind::SqlGzip,
            Some(false) => ImportKind::SqlZstd,
            None => ImportKind::Sql,
        },
        temp: Some(tmp),
    })
}

fn bomb(file: &Path, max: u64) -> Error {
    Error::option(
        "max_size",
        format!(
            "{} decompresses to more than {max} bytes: a compression bomb, or a database larger than the limit",
            file.display()
        ),
    )
}

/// SQLite's complaint about a statement, on one line and without the
/// statement's text (which can be long and hold data).
fn short(e: &rusqlite::Error) -> String {
    let m = match e {
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            format!("{msg} (at character {offset} of the statement)")
        }
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        e => e.to_string(),
    };
    let m = m.replace(['\n', '\r'], " ");
    if m.chars().count() > 200 {
        format!("{}...", m.chars().take(200).collect::<String>())
    } else {
        m
    }
}

/// A statement of `file` at `line` failed (or was interrupted, or was
/// refused by the confinement).
fn statement_failed(
    file: &Path,
    line: usize,
    e: &rusqlite::Error,
    confined: &Confinement,
) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
        return Error::Interrupted("import stopped; nothing was imported".into());
    }
    let why = match confined.refused() {
        Some(_) => confined.explain(e),
        None => short(e),
    };
    Error::InvalidInput(format!(
        "{} line {line}: {why} (nothing of it was imported)",
        file.display(),
    ))
}

/// Runs the statements of `sql` into the new database at `db`; a failure
/// names the line of the statement that failed.
fn replay(file: &Path, sql: &str, db: &Path, cancel: &Cancel) -> Result<()> {
    let conn = open_own(db, false).map_err(|e| {
        bad(
            file,
            SourceProblem::Unreadable,
            format!("creating the database for {}: {e}", file.display()),
        )
    })?;
    // A hostile dump may try to reach other files (ATTACH, VACUUM INTO).
    let confined = Confinement::install(&conn);
    let _interrupt = interrupt_on_cancel(&conn, cancel);
    let line_at = |offset: usize| sql[..offset.min(sql.len())].matches('\n').count() + 1;
    let mut cursor = 0usize;
    // Where the next statement starts: past blanks and comments.
    let skip = |mut at: usize| -> usize {
        loop {
            let rest = &sql[at..];
            let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            at += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                at += trimmed.find('\n').map_or(trimmed.len(), |i| i + 1);
            } else if trimmed.starts_with("/*") {
                at += trimmed.find("*/").map_or(trimmed.len(), |i| i + 2);
            } else {
                return at;
            }
        }
    };
    let mut batch = rusqlite::Batch::new(&conn, sql);
    loop {
        let start = skip(cursor);
        let failed = |e: rusqlite::Error| statement_failed(file, line_at(start), &e, &confined);
        let Some(mut stmt) = batch.next().map_err(failed)? else {
            break;
        };
        // Statements come one after the other: this one's text (from the
        // end of the previous one, blanks included) starts at the cursor.
        let text = stmt.expanded_sql().unwrap_or_default();
        let found = if sql[cursor..].starts_with(text.as_str()) {
            Some(cursor)
        } else {
            sql[cursor..].find(text.trim()).map(|i| cursor + i)
        };
        stmt.raw_execute().map_err(|e| {
            statement_failed(file, line_at(found.map_or(start, skip)), &e, &confined)
        })?;
        cursor = found.map_or(start, |i| {
            if sql[i..].starts_with(text.as_str()) {
                i + text.len()
            } else {
                i + text.trim().len()
            }
        });
    }
    if !conn.is_autocommit() {
        return Err(Error::InvalidInput(format!(
            "{}: the SQL leaves a transaction open (no COMMIT at its end: a dump cut short?); nothing of it was imported",
            file.display()
        )));
    }
    Ok(())
}

/// `integrity_check` on the prepared database, after checking its length
/// against its header's page count (a cut-short copy, or a compressed
/// stream that ended early, can otherwise pass: SQLite reads missing pages
/// as zeros).
fn check(file: &Path, db: &Path, cancel: &Cancel) -> Result<()> {
    let mut header = [0u8; 100];
    let len = std::fs::metadata(db)
        .map_err(|e| Error::io("reading", db, e))?
        .len();
    let got = File::open(db)
        .and_then(|mut f| read_up_to(&mut f, &mut header))
        .map_err(|e| Error::io("reading", db, e))?;
    if got == 100 {
        let be32 = |at: usize| {
            u64::from(u32::from_be_bytes(
                header[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            n => u64::from(n),
        };
        // The in-header page count is valid when its version-valid-for
        // number equals the change counter.
        if be32(92) == be32(24) {
            let want = page_size * be32(28);
            if len < want {
                return Err(bad(
                    file,
                    SourceProblem::Corrupt,
                    format!(
                        "{}: cut short: {len} bytes where its header says {want} (an incomplete copy or compressed stream)",
                        file.display()
                    ),
                ));
            }
        }
    }
    let conn = open_own(db, true).map_err(|e| {
        bad(
            file,
            SourceProblem::Unreadable,
            format!("{}: it does not open: {e}", file.display()),
        )
    })?;
    let _interrupt = interrupt_on_cancel(&conn, cancel);
    super::verify::check(&conn, false).map_err(|p| {
        bad(
            file,
            SourceProblem::Corrupt,
            format!(
                "{}: not a sound database (integrity_check: {p})",
                file.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_statement_is_named_by_its_line() {
        let dir = tempfile::tempdir().unwrap();
        for (sql, line) in [
            (
                "CREATE TABLE a(x);\nINSERT INTO a VALUES(1);\nINSERT INTO nosuch VALUES(2);\n",
                3,
            ),
            (
                "-- a comment\nCREATE TABLE a(x);\n\n\nINSERT INTO a VALUES('x\ny');\nSELEC 1;",
                7,
            ),
            ("CREATE TABLE a(x); CREATE TABLE a(y);", 1),
            ("BEGIN;\nCREATE TABLE a(x);\nINSERT INTO a VALUES(1);\n", 0),
        ] {
            let db = dir.path().join(format!("t{line}.db"));
            std::fs::write(&db, "").unwrap();
            let e = replay(Path::new("dump.sql"), sql, &db, &Cancel::new())
                .unwrap_err()
                .to_string();
            if line == 0 {
                assert!(e.contains("transaction open"), "{e}");
            } else {
                assert!(
                    e.contains(&format!("dump.sql line {line}:")),
                    "{sql:?}: {e}"
                );
                assert!(!e.contains('\n'), "{e}");
            }
        }
        let db = dir.path().join("ok.db");
        std::fs::write(&db, "").unwrap();
        replay(
            Path::new("d.sql"),
            "BEGIN; CREATE TABLE a(x); INSERT INTO a VALUES (1); COMMIT;",
            &db,
            &Cancel::new(),
        )
        .unwrap();
    }
}
