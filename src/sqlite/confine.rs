//! SQL litevault did not write (a dump being imported, a restore's
//! `post_sql` scrub script) runs confined to the one database it was
//! given, as `sqlite3 --safe` confines a script: SQLite's authorizer
//! refuses, while the statement is prepared,
//!
//! * `ATTACH` of any file (which would let the script read or change
//!   another database) and `DETACH`;
//! * `VACUUM INTO` a file (SQLite attaches its output file first, so the
//!   `ATTACH` rule refuses it);
//! * the SQL functions that reach files or code: `load_extension`,
//!   `readfile`, `writefile`, `edit`, `fts3_tokenizer`.
//!
//! A plain `VACUUM` stays allowed: it attaches a private temporary
//! database (an empty file name), which holds nothing but the database's
//! own content. What was refused is kept, so the error can name it
//! ([`Confinement::explain`]) instead of SQLite's bare "not authorized".

use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;

/// Functions a confined script may not call.
const DENIED_FUNCTIONS: [&str; 5] = [
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// The authorizer installed on a connection; remembers the first refusal.
#[derive(Clone, Default)]
pub struct Confinement {
    refused: Arc<Mutex<Option<String>>>,
}

impl Confinement {
    /// Installs the authorizer on `conn` (until [`release`]).
    pub fn install(conn: &Connection) -> Self {
        let me = Self::default();
        let refused = Arc::clone(&me.refused);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let why = refusal(&ctx.action);
            match why {
                Some(why) => {
                    let mut r = refused.lock().expect("refusal mutex");
                    r.get_or_insert(why);
                    Authorization::Deny
                }
                None => Authorization::Allow,
            }
        }));
        me
    }

    /// What was refused, if anything.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("refusal mutex").clone()
    }

    /// SQLite's message for `e`, or, when the authorizer refused the
    /// statement, what it refused and why.
    pub fn explain(&self, e: &rusqlite::Error) -> String {
        let denied = e.sqlite_error_code()
            == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied)
            || e.to_string().contains("not authorized");
        match self.refused() {
            Some(what) if denied => format!(
                "{what} is not allowed: SQL run by litevault may change only its own database (like the sqlite3 shell's safe mode)"
            ),
            _ => e.to_string(),
        }
    }
}

/// Removes the authorizer (before litevault's own statements, such as its
/// `VACUUM` of a scrubbed copy).
pub fn release(conn: &Connection) {
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
}

/// Why `action` is refused, or `None` if it is allowed.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        // VACUUM's own temporary database.
        AuthAction::Attach { filename: "" } => None,
        AuthAction::Attach { filename } => Some(format!("ATTACH (or VACUUM INTO) of {filename:?}")),
        AuthAction::Detach { database_name } => Some(format!("DETACH of {database_name:?}")),
        AuthAction::Function { function_name }
            if DENIED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Some(format!("the function {function_name}()"))
        }
        // An ATTACH whose file name is not a literal (a bound parameter).
        AuthAction::Unknown { code, .. }
            if *code == rusqlite::ffi::SQLITE_ATTACH || *code == rusqlite::ffi::SQLITE_DETACH =>
        {
            Some("ATTACH or DETACH of a computed file name".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined() -> (tempfile::TempDir, Connection, Confinement) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("a.db")).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let c = Confinement::install(&conn);
        (dir, conn, c)
    }

    #[test]
    fn other_files_are_out_of_reach() {
        let (dir, conn, c) = confined();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE secret(x); INSERT INTO secret VALUES ('s');")
            .unwrap();
        let into = dir.path().join("into.db");
        for sql in [
            format!("ATTACH '{}' AS o; DELETE FROM o.secret;", other.display()),
            format!("VACUUM INTO '{}'", into.display()),
            "ATTACH ':memory:' AS m".to_string(),
            "SELECT load_extension('/tmp/x.so')".to_string(),
        ] {
            let e = conn.execute_batch(&sql).unwrap_err();
            let m = c.explain(&e);
            assert!(
                m.contains("not allowed") && m.contains("safe mode"),
                "{sql}: {m}"
            );
        }
        assert!(!into.exists(), "VACUUM INTO wrote a file");
        let n: i64 = Connection::open(&other)
            .unwrap()
            .query_row("SELECT count(*) FROM secret", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the other database was changed");
        // Its own database is the script's to change, VACUUM included.
        conn.execute_batch("UPDATE t SET x = 2; VACUUM;").unwrap();
        release(&conn);
        conn.execute_batch(&format!("VACUUM INTO '{}'", into.display()))
            .unwrap();
    }
}
