//! Run history: one row per operation the service ran (backup, forget,
//! prune, check, restore), in a local SQLite database, so `status`, the
//! API and the metrics can say what happened and when, and the scheduler
//! knows when each unit last ran across restarts.
//!
//! A row is written when the operation starts (outcome `running`) and
//! completed when it ends, so a process killed mid-run leaves a row that
//! the next start marks `interrupted`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};

mod daily;

pub use daily::Day;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    operation TEXT NOT NULL,
    database TEXT,
    repository TEXT,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    outcome TEXT NOT NULL,
    snapshot TEXT,
    bytes_added INTEGER,
    snapshots INTEGER,
    detail TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_unit ON runs(job, operation, database, repository, start_ms);
CREATE INDEX IF NOT EXISTS runs_start ON runs(start_ms);
CREATE TABLE IF NOT EXISTS pruned_totals(
    database TEXT NOT NULL,
    repository TEXT NOT NULL,
    bytes_added INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY(database, repository)
);
";

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running (or the process died: see `Interrupted`).
    Running,
    /// Done.
    Success,
    /// A backup found the database unchanged: nothing stored.
    Unchanged,
    /// Failed; `error` says why.
    Failed,
    /// Stopped by a signal or a cancel request.
    Cancelled,
    /// Not started: the same database and repository were busy.
    Skipped,
    /// The process ended while it ran.
    Interrupted,
    /// Not started: the database file does not exist yet (its end is the
    /// latest look; the backup begins once the file appears).
    Waiting,
}

impl Outcome {
    /// Its name, as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Success => "success",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
            Outcome::Waiting => "waiting",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "running" => Outcome::Running,
            "success" => Outcome::Success,
            "unchanged" => Outcome::Unchanged,
            "cancelled" => Outcome::Cancelled,
            "skipped" => Outcome::Skipped,
            "interrupted" => Outcome::Interrupted,
            "waiting" => Outcome::Waiting,
            _ => Outcome::Failed,
        }
    }

    /// True for the outcomes that count as a success.
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Unchanged)
    }
}

/// One row.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Row id.
    pub id: i64,
    /// The job (or `api` for a run the API started).
    pub job: String,
    /// backup, forget, prune, check or restore.
    pub operation: String,
    /// The database, by its configured name.
    pub database: Option<String>,
    /// The repository, by its configured name.
    pub repository: Option<String>,
    /// Start (RFC 3339, UTC).
    pub start: String,
    /// End.
    pub end: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The snapshot it wrote (backup) or read (restore).
    pub snapshot: Option<String>,
    /// Bytes it added to the repository.
    pub bytes_added: Option<u64>,
    /// Snapshots of this database in the repository afterwards.
    pub snapshots: Option<u64>,
    /// What it did, in words ("removed 3 snapshots").
    pub detail: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// How a run ended: what [`History::finish`] records.
#[derive(Clone, Debug, Default)]
pub struct Finish {
    /// The snapshot.
    pub snapshot: Option<String>,
    /// Bytes added.
    pub bytes_added: Option<u64>,
    /// Snapshots of the database afterwards.
    pub snapshots: Option<u64>,
    /// What it did.
    pub detail: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Backup figures of one database in one repository.
#[derive(Clone, Debug)]
pub struct BackupMetrics {
    /// Database name.
    pub database: String,
    /// Repository name.
    pub repository: String,
    /// End of the newest successful backup (ms since the epoch).
    pub last_success_ms: Option<i64>,
    /// Duration of the newest backup.
    pub last_duration_ms: Option<i64>,
    /// Bytes added, summed.
    pub bytes_added: u64,
    /// Failed backups.
    pub failures: u64,
    /// Snapshots of the database after the newest backup.
    pub snapshots: Option<u64>,
}

/// What identifies a scheduled unit's runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitKey {
    /// Job.
    pub job: String,
    /// Operation.
    pub operation: String,
    /// Database, if the operation has one.
    pub database: Option<String>,
    /// Repository, if the unit is per repository.
    pub repository: Option<String>,
}

/// The history database.
pub struct History {
    conn: Mutex<Connection>,
}

fn ts(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn sql_err(path: &Path, e: &rusqlite::Error) -> Error {
    Error::InvalidInput(format!("run history {}: {e}", path.display()))
}

impl History {
    /// Opens (creating) the history at `path`, marking runs left
    /// `running` by a process that ended as `interrupted`.
    pub fn open(path: &Path) -> Result<History> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
        }
        let conn = Connection::open(path).map_err(|e| sql_err(path, &e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| sql_err(path, &e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(|e| sql_err(path, &e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sql_err(path, &e))?;
        // Histories made before runs recorded their process.
        let has_owner: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'owner'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| sql_err(path, &e))?
            > 0;
        if !has_owner {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN owner TEXT")
                .map_err(|e| sql_err(path, &e))?;
        }
        restrict(path);
        Ok(History {
            conn: Mutex::new(conn),
        })
    }

    /// Marks `interrupted` the `running` rows whose process is gone (at the
    /// start of a service that owns the history): one of an earlier boot,
    /// or of this boot and pid namespace whose pid no longer names the
    /// process that started the run. Rows of live processes (a `run` and
    /// a `serve` of the same config) stay running. A row of another pid
    /// namespace (an earlier container of a restarted service) cannot be
    /// judged by its pid: it is marked once a later run of the same unit
    /// has started, or after [`RUNNING_AT_MOST`].
    pub fn mark_interrupted(&self) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        let err = |e: rusqlite::Error| Error::InvalidInput(format!("run history: {e}"));
        let running: Vec<(i64, Option<String>, i64, bool)> = conn
            .prepare(
                "SELECT id, owner, start_ms, EXISTS(SELECT 1 FROM runs l WHERE l.job = r.job AND l.operation = r.operation
                     AND l.database IS r.database AND l.repository IS r.repository AND l.start_ms > r.start_ms)
                 FROM runs r WHERE outcome='running'",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(err)?;
        let here = crate::format::lock::PidScope::here();
        let now_ms = Timestamp::now().as_millisecond();
        let mut marked = 0;
        for (id, owner, start_ms, superseded) in running {
            let gone = match owner.as_deref().map(|o| owner_state(o, &here)) {
                None | Some(Owner::Gone) => true,
                Some(Owner::Alive) => false,
                Some(Owner::Unknown) => {
                    superseded
                        || now_ms.saturating_sub(start_ms) > RUNNING_AT_MOST.as_millis() as i64
                }
            };
            if !gone {
                continue;
            }
            marked += conn
                .execute(
                    "UPDATE runs SET outcome='interrupted', error='the process ended while it ran' WHERE id=?1 AND outcome='running'",
                    params![id],
                )
                .map_err(err)?;
        }
        Ok(marked)
    }

    /// Records the start of a run; returns its row id.
    pub fn start(&self, unit: &UnitKey, at: Timestamp) -> Result<i64> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO runs(job, operation, database, repository, start_ms, outcome, owner) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![unit.job, unit.operation, unit.database, unit.repository, at.as_millisecond(), owner_here()],
        )
        .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records how run `id` ended.
    pub fn finish(&self, id: i64, at: Timestamp, outcome: Outcome, f: &Finish) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "UPDATE runs SET end_ms=?2, outcome=?3, snapshot=?4, bytes_added=?5, snapshots=?6, detail=?7, error=?8 WHERE id=?1",
            params![
                id,
                at.as_millisecond(),
                outcome.as_str(),
                f.snapshot,
                f.bytes_added.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                f.snapshots.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                f.detail,
                f.error
            ],
        )
        .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(())
    }

    /// Records a run that did not start (`skipped`) or ended at once.
    pub fn record(
        &self,
        unit: &UnitKey,
        at: Timestamp,
        outcome: Outcome,
        f: &Finish,
    ) -> Result<()> {
        let id = self.start(unit, at)?;
        self.finish(id, at, outcome, f)
    }

    /// When the unit's newest run (of any outcome but `skipped`) started.
    pub fn last_start(&self, unit: &UnitKey) -> Result<Option<Timestamp>> {
        let conn = self.conn.lock().unwrap();
        let ms: Option<i64> = conn
            .query_row(
                "SELECT max(start_ms) FROM runs WHERE job=?1 AND operation=?2 AND (?3 IS NULL OR database = ?3) AND (?4 IS NULL OR repository = ?4) AND outcome != 'skipped'",
                params![unit.job, unit.operation, unit.database, unit.repository],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?
            .flatten();
        Ok(ms.and_then(|m| Timestamp::from_millisecond(m).ok()))
    }

    /// The unit's newest run (of any outcome but `skipped`): its id,
    /// outcome, and when it ended (else started).
    pub fn last(&self, unit: &UnitKey) -> Result<Option<(i64, Outcome, Timestamp)>> {
        let conn = self.conn.lock().unwrap();
        let row: Option<(i64, String, i64)> = conn
            .query_row(
                "SELECT id, outcome, coalesce(end_ms, start_ms) FROM runs WHERE job=?1 AND operation=?2 AND (?3 IS NULL OR database = ?3) AND (?4 IS NULL OR repository = ?4) AND outcome != 'skipped' ORDER BY start_ms DESC, id DESC LIMIT 1",
                params![unit.job, unit.operation, unit.database, unit.repository],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(row.and_then(|(id, o, ms)| {
            Some((
                id,
                Outcome::parse(&o),
                Timestamp::from_millisecond(ms).ok()?,
            ))
        }))
    }

    /// Moves the end of run `id` (a wait) to `at`: the latest look.
    pub fn touch(&self, id: i64, at: Timestamp) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "UPDATE runs SET end_ms=?2 WHERE id=?1",
            params![id, at.as_millisecond()],
        )
        .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(())
    }

    /// The backups waiting for their database file: (job, database) of
    /// each backup unit whose newest run is a wait.
    pub fn waiting(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT job, database FROM runs r WHERE operation='backup' AND outcome='waiting'
                   AND start_ms = (SELECT max(start_ms) FROM runs s WHERE s.job=r.job AND s.operation='backup'
                                     AND s.database=r.database AND s.outcome != 'skipped')
                 GROUP BY job, database ORDER BY job, database",
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }

    /// When the newest successful (or unchanged) backup of `database` into
    /// `repository` ended, by any job.
    pub fn last_success(&self, database: &str, repository: &str) -> Result<Option<Timestamp>> {
        let conn = self.conn.lock().unwrap();
        let ms: Option<i64> = conn
            .query_row(
                "SELECT max(end_ms) FROM runs WHERE operation='backup' AND database=?1 AND repository=?2 AND outcome IN ('success','unchanged')",
                params![database, repository],
                |r| r.get(0),
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(ms.and_then(|m| Timestamp::from_millisecond(m).ok()))
    }

    /// When the first run of `operation` in `job` started.
    pub fn first_start(&self, job: &str, operation: &str) -> Result<Option<Timestamp>> {
        let conn = self.conn.lock().unwrap();
        let ms: Option<i64> = conn
            .query_row(
                "SELECT min(start_ms) FROM runs WHERE job=?1 AND operation=?2 AND outcome != 'skipped'",
                params![job, operation],
                |r| r.get(0),
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(ms.and_then(|m| Timestamp::from_millisecond(m).ok()))
    }

    /// How many runs of `unit` succeeded (for rotating check subsets).
    pub fn successes(&self, unit: &UnitKey) -> Result<u64> {
        let conn = self.conn.lock().unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM runs WHERE job=?1 AND operation=?2 AND (?3 IS NULL OR database = ?3) AND (?4 IS NULL OR repository = ?4) AND outcome IN ('success','unchanged')",
                params![unit.job, unit.operation, unit.database, unit.repository],
                |r| r.get(0),
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        Ok(n as u64)
    }

    /// Runs, newest first: all of them, or those of one job; at most `limit`.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<Run>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, job, operation, database, repository, start_ms, end_ms, outcome, snapshot, bytes_added, snapshots, detail, error
                 FROM runs WHERE ?1 IS NULL OR job = ?1 ORDER BY start_ms DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        let rows = stmt
            .query_map(
                params![job, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    let start_ms: i64 = r.get(5)?;
                    let end_ms: Option<i64> = r.get(6)?;
                    Ok(Run {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        operation: r.get(2)?,
                        database: r.get(3)?,
                        repository: r.get(4)?,
                        start: ts(start_ms),
                        end: end_ms.map(ts),
                        duration_ms: end_ms.map(|e| (e - start_ms).max(0) as u64),
                        outcome: Outcome::parse(&r.get::<_, String>(7)?),
                        snapshot: r.get(8)?,
                        bytes_added: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
                        snapshots: r.get::<_, Option<i64>>(10)?.map(|b| b as u64),
                        detail: r.get(11)?,
                        error: r.get(12)?,
                    })
                },
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }

    /// Per database and repository, over the kept history: the newest
    /// successful backup's end and duration, bytes added, failures, and the
    /// snapshot count the newest backup saw.
    pub fn backup_metrics(&self) -> Result<Vec<BackupMetrics>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "WITH live AS (
                    SELECT database, repository, coalesce(sum(bytes_added), 0) AS bytes_added,
                           sum(outcome IN ('failed','interrupted')) AS failures
                      FROM runs WHERE operation='backup' AND database IS NOT NULL AND repository IS NOT NULL
                     GROUP BY database, repository),
                 units AS (SELECT database, repository FROM live UNION SELECT database, repository FROM pruned_totals)
                 SELECT u.database, u.repository,
                    (SELECT end_ms FROM runs s WHERE s.operation='backup' AND s.database=u.database AND s.repository=u.repository AND s.outcome IN ('success','unchanged') ORDER BY end_ms DESC LIMIT 1),
                    (SELECT end_ms - start_ms FROM runs s WHERE s.operation='backup' AND s.database=u.database AND s.repository=u.repository AND s.end_ms IS NOT NULL ORDER BY start_ms DESC LIMIT 1),
                    coalesce(l.bytes_added, 0) + coalesce(p.bytes_added, 0),
                    coalesce(l.failures, 0) + coalesce(p.failures, 0),
                    (SELECT snapshots FROM runs s WHERE s.operation='backup' AND s.database=u.database AND s.repository=u.repository AND s.snapshots IS NOT NULL ORDER BY start_ms DESC LIMIT 1)
                 FROM units u
                 LEFT JOIN live l ON l.database = u.database AND l.repository = u.repository
                 LEFT JOIN pruned_totals p ON p.database = u.database AND p.repository = u.repository
                 ORDER BY u.database, u.repository",
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(BackupMetrics {
                    database: r.get(0)?,
                    repository: r.get(1)?,
                    last_success_ms: r.get(2)?,
                    last_duration_ms: r.get(3)?,
                    bytes_added: r.get::<_, i64>(4)? as u64,
                    failures: r.get::<_, i64>(5)? as u64,
                    snapshots: r.get::<_, Option<i64>>(6)?.map(|n| n as u64),
                })
            })
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }

    /// Deletes rows that started before `before`; returns how many. What
    /// they count towards the totals (bytes added, failures) is kept, so
    /// the metrics' counters never go down.
    pub fn prune(&self, before: Timestamp) -> Result<usize> {
        let mut conn = self.conn.lock().unwrap();
        let err = |e: rusqlite::Error| Error::InvalidInput(format!("run history: {e}"));
        let tx = conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO pruned_totals(database, repository, bytes_added, failures)
             SELECT database, repository, coalesce(sum(bytes_added), 0), sum(outcome IN ('failed','interrupted'))
               FROM runs
              WHERE start_ms < ?1 AND outcome != 'running' AND operation = 'backup'
                AND database IS NOT NULL AND repository IS NOT NULL
              GROUP BY database, repository
             ON CONFLICT(database, repository) DO UPDATE SET
                bytes_added = bytes_added + excluded.bytes_added,
                failures = failures + excluded.failures",
            params![before.as_millisecond()],
        )
        .map_err(err)?;
        let n = tx
            .execute(
                "DELETE FROM runs WHERE start_ms < ?1 AND outcome != 'running'",
                params![before.as_millisecond()],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n)
    }
}

/// This process, as a run's owner: "BOOT_ID PID_NS PID START".
fn owner_here() -> Option<String> {
    let pid = std::process::id();
    Some(format!(
        "{} {} {pid} {}",
        crate::sys::boot_id()?,
        crate::sys::pid_namespace()?,
        crate::sys::process_start(pid)?
    ))
}

/// A `running` row of another pid namespace older than this is taken for
/// interrupted: no run lasts a week.
const RUNNING_AT_MOST: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// What `here` can tell of a run's owner.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Gone,
    Alive,
    /// Another pid namespace's, or `/proc` will not say.
    Unknown,
}

/// The state of the process `owner` names (see [`owner_here`]).
fn owner_state(owner: &str, here: &crate::format::lock::PidScope) -> Owner {
    use crate::sys::ProcState;
    let mut f = owner.split(' ');
    let (Some(boot), Some(ns), Some(pid), Some(start)) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Owner::Gone;
    };
    if here.boot_id.as_deref() != Some(boot) {
        // Another boot (or machine): not a process of this one.
        return Owner::Gone;
    }
    if here.pid_ns.map(|n| n.to_string()).as_deref() != Some(ns) {
        return Owner::Unknown;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return Owner::Gone;
    };
    match crate::sys::process_state(pid) {
        ProcState::Gone => Owner::Gone,
        ProcState::Started(s) if s != start => Owner::Gone,
        ProcState::Started(_) => Owner::Alive,
        ProcState::Unknown => Owner::Unknown,
    }
}

/// Creates `dir` and any missing parent, each mode 0700 (an existing
/// directory keeps its mode: it may be shared on purpose).
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))
}

/// `tmp/` beside the history file `state`: where the service writes
/// private temporary files (a snapshot's image made into SQL text for a
/// download). Made mode 0700, and made so again if it is not: it holds
/// plaintext.
pub fn temp_dir(state: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = state
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("tmp");
    private_dir(&dir)?;
    let m = std::fs::symlink_metadata(&dir).map_err(|e| Error::io("reading", &dir, e))?;
    if !m.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a directory: remove it, the service keeps its temporary files there",
            dir.display()
        )));
    }
    if m.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("making private", &dir, e))?;
    }
    Ok(dir)
}

/// The history holds database paths and errors: readable by its owner only.
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for p in [
        path.to_path_buf(),
        crate::sys::with_suffix(path, "-wal"),
        crate::sys::with_suffix(path, "-shm"),
    ] {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(db: &str) -> UnitKey {
        UnitKey {
            job: "j".into(),
            operation: "backup".into(),
            database: Some(db.into()),
            repository: None,
        }
    }

    #[test]
    fn rows_are_recorded_queried_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("s/state.db")).unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let id = h.start(&unit("a"), t0).unwrap();
        h.finish(
            id,
            t0.checked_add(jiff::SignedDuration::from_secs(3)).unwrap(),
            Outcome::Success,
            &Finish {
                snapshot: Some("ab".into()),
                bytes_added: Some(10),
                ..Finish::default()
            },
        )
        .unwrap();
        h.record(&unit("a"), t1, Outcome::Skipped, &Finish::default())
            .unwrap();
        h.start(&unit("b"), t1).unwrap();
        assert_eq!(h.last_start(&unit("a")).unwrap(), Some(t0));
        assert_eq!(h.last_start(&unit("c")).unwrap(), None);
        assert_eq!(h.successes(&unit("a")).unwrap(), 1);
        let runs = h.runs(None, 10).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs.last().unwrap().duration_ms, Some(3000));
        // This process is alive: its run stays running.
        assert_eq!(h.mark_interrupted().unwrap(), 0);
        let dead = {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        };
        let scope = crate::format::lock::PidScope::here();
        let (boot, ns) = (scope.boot_id.unwrap(), scope.pid_ns.unwrap());
        let set_owner = |owner: &str, start: Timestamp| {
            h.conn
                .lock()
                .unwrap()
                .execute(
                    "UPDATE runs SET owner = ?1, start_ms = ?2 WHERE outcome = 'running'",
                    params![owner, start.as_millisecond()],
                )
                .unwrap();
        };
        // Another pid namespace's run: left running while recent and the
        // unit's latest, marked once it is a week old...
        let other_ns = format!("{boot} {} 1 1", ns + 1);
        set_owner(&other_ns, Timestamp::now());
        assert_eq!(h.mark_interrupted().unwrap(), 0);
        set_owner(&other_ns, t1);
        assert_eq!(h.mark_interrupted().unwrap(), 1);
        // ... or once a later run of the same unit started.
        let row = h.start(&unit("b"), Timestamp::now()).unwrap();
        h.conn
            .lock()
            .unwrap()
            .execute(
                "UPDATE runs SET outcome = 'running' WHERE job = 'j' AND database = 'b'",
                [],
            )
            .unwrap();
        h.finish(row, Timestamp::now(), Outcome::Success, &Finish::default())
            .unwrap();
        set_owner(
            &other_ns,
            Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(60))
                .unwrap(),
        );
        assert_eq!(h.mark_interrupted().unwrap(), 1);
        // A dead process of this namespace.
        h.conn
            .lock()
            .unwrap()
            .execute_batch(&format!(
                "DELETE FROM runs WHERE id = {row}; UPDATE runs SET outcome = 'running' WHERE job = 'j' AND database = 'b';"
            ))
            .unwrap();
        set_owner(&format!("{boot} {ns} {dead} 1"), t1);
        assert_eq!(h.mark_interrupted().unwrap(), 1);
        assert_eq!(
            h.runs(Some("j"), 1).unwrap()[0].outcome,
            Outcome::Interrupted
        );
        assert_eq!(h.prune(t1).unwrap(), 1);
        assert_eq!(h.runs(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn counters_never_go_down_when_old_rows_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("state.db")).unwrap();
        let unit = UnitKey {
            repository: Some("r".into()),
            ..unit("a")
        };
        let mut t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for (i, outcome) in [Outcome::Success, Outcome::Failed, Outcome::Success]
            .into_iter()
            .enumerate()
        {
            let id = h.start(&unit, t).unwrap();
            h.finish(
                id,
                t,
                outcome,
                &Finish {
                    bytes_added: Some(100 * (i as u64 + 1)),
                    ..Finish::default()
                },
            )
            .unwrap();
            t = t.checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
        }
        let totals = |h: &History| {
            let m = &h.backup_metrics().unwrap()[0];
            (m.bytes_added, m.failures)
        };
        assert_eq!(totals(&h), (600, 1));
        for cut in ["2026-01-02T12:00:00Z", "2026-01-10T00:00:00Z"] {
            h.prune(cut.parse().unwrap()).unwrap();
            assert_eq!(totals(&h), (600, 1), "after pruning before {cut}");
        }
        assert!(h.runs(None, 10).unwrap().is_empty());
    }
}
