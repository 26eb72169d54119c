//! A restore's scrub (`post_sql`): the user's SQL run on the verified copy
//! before it replaces the target, so that a clone of production can be
//! handed out anonymised (SPEC.md 13, step 3).
//!
//! What it guarantees: the file that replaces the target holds no byte of
//! what the script deleted or overwrote, and SQLite opens and checks it.
//!
//! 1. The script runs confined to the copy ([`super::confine`]: no
//!    `ATTACH`, no `VACUUM INTO`, no extension loading) with
//!    `secure_delete` on, so what it deletes is overwritten with zeros as
//!    it goes. A script that leaves a transaction open is refused (SQLite
//!    would roll its changes back unseen).
//! 2. Then, unless the caller opts out, the copy is `VACUUM`ed with
//!    `secure_delete` still on: every page is rebuilt from the rows that
//!    remain, so neither free pages nor the unused space inside pages keep
//!    old values (SQLite zeroes each new page of the rebuild only under
//!    `secure_delete`; without it, a page could inherit bytes of a freed
//!    buffer). The WAL is checkpointed with `TRUNCATE` and every side file
//!    of the copy (`-wal`, `-shm`, a persistent `-journal` the script may
//!    have asked for) is removed: old page versions live in them.
//! 3. The copy is checked on a **fresh** connection (the script's own has
//!    its schema cached, so a script that broke `sqlite_schema` through
//!    `writable_schema` would pass there): the schema must parse and
//!    `integrity_check` (`quick_check` when asked) must pass.
//!
//! What it cannot remove: what the database still holds logically (a
//! full-text index of old text the script did not rebuild, a log table it
//! did not clear).

use std::path::Path;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::confine::{release, Confinement};
use super::verify::{check, checkpoint};
use super::{interrupt_on_cancel, open_own};
use crate::error::{Error, Result};
use crate::progress::Cancel;
use crate::sys::with_suffix;

const STOPPED: &str = "restore stopped; the target was not touched";
const OUTCOME: &str = "the target was not touched";

/// What a scrub did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// `secure_delete` was still on when the script ended (it is turned on
    /// before it runs; a script may turn it off: then only the `VACUUM`
    /// removes what it deleted).
    pub secure_delete: bool,
    /// The copy was rebuilt by `VACUUM` afterwards, leaving none of what
    /// the script deleted or overwrote in the file.
    pub vacuumed: bool,
    /// The copy's size after the script, before the `VACUUM`.
    pub bytes_before: u64,
    /// The copy's size at the end.
    pub bytes_after: u64,
}

/// Runs `sql` (given by option `option`) on the copy at `path`, then
/// rebuilds (`vacuum`) and checks it (see the module docs); `quick` checks
/// with `quick_check`. `cancel` interrupts a long script or rebuild.
pub fn scrub(
    path: &Path,
    sql: &str,
    option: &'static str,
    vacuum: bool,
    quick: bool,
    cancel: &Cancel,
) -> Result<ScrubReport> {
    let fail = |message: String| Error::Sql {
        option,
        message,
        outcome: OUTCOME,
    };
    let conn =
        open_own(path, false).map_err(|e| fail(format!("opening the restored copy: {e}")))?;
    let secure = |conn: &Connection| {
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(|e| fail(format!("turning secure_delete on: {e}")))
    };
    secure(&conn)?;
    let confined = Confinement::install(&conn);
    let interrupt = interrupt_on_cancel(&conn, cancel);
    let ran = conn.execute_batch(sql);
    cancel.check(STOPPED)?;
    ran.map_err(|e| fail(confined.explain(&e)))?;
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(fail(
            "it left a transaction open (a BEGIN or SAVEPOINT without COMMIT or RELEASE), so its changes would be discarded; end it with COMMIT".into(),
        ));
    }
    release(&conn);
    // What the script left: it may have turned secure_delete off.
    let secure_delete = conn
        .query_row("PRAGMA secure_delete", [], |r| r.get::<_, i64>(0))
        .map_err(|e| fail(format!("afterwards: {e}")))?
        == 1;
    let bytes_before = file_len(path)?;
    if vacuum {
        // The script may have turned it off; the rebuild needs it on.
        secure(&conn)?;
        conn.execute_batch("PRAGMA writable_schema = OFF; VACUUM;")
            .map_err(|e| {
                if cancel.is_cancelled() {
                    Error::Interrupted(STOPPED.into())
                } else {
                    fail(format!("afterwards, VACUUM of the copy failed: {e}"))
                }
            })?;
    }
    checkpoint(&conn).map_err(|e| fail(format!("afterwards: {e}")))?;
    // A journal mode of the script's (PERSIST, TRUNCATE) would keep old
    // pages in a -journal file: back to the copy's own mode's rules.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| fail(format!("afterwards: {e}")))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("delete") {
        conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(|e| fail(format!("afterwards: {e}")))?;
    }
    drop(interrupt);
    drop(conn);
    for side in ["-wal", "-shm", "-journal"] {
        let p = with_suffix(path, side);
        if std::fs::symlink_metadata(&p).is_ok() {
            if side == "-wal" && std::fs::metadata(&p).is_ok_and(|m| m.len() > 0) {
                return Err(fail(
                    "afterwards the copy's WAL could not be folded in".into(),
                ));
            }
            std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
        }
    }
    verify_fresh(path, quick, cancel).map_err(|m| fail(format!("afterwards, {m}")))?;
    Ok(ScrubReport {
        secure_delete,
        vacuumed: vacuum,
        bytes_before,
        bytes_after: file_len(path)?,
    })
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("reading", path, e))?
        .len())
}

/// Checks the copy on a connection of its own: the schema parses and the
/// integrity check passes.
fn verify_fresh(path: &Path, quick: bool, cancel: &Cancel) -> std::result::Result<(), String> {
    // Read-write, so that closing it removes the (empty) WAL it opens.
    let conn = open_own(path, false).map_err(|e| format!("the copy does not open: {e}"))?;
    let _interrupt = interrupt_on_cancel(&conn, cancel);
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| format!("SQLite cannot read the copy's schema: {e}"))?;
    let pragma = if quick {
        "quick_check"
    } else {
        "integrity_check"
    };
    check(&conn, quick).map_err(|e| format!("PRAGMA {pragma} failed: {e}"))
}
