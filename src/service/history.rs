//! Run history: one row per operation the service ran (backup, forget,
//! prune, check, restore), in a local SQLite database, so `status`, the
//! API and the metrics can say what happened and when, and the scheduler
//! knows when each unit last ran across restarts.
//!
//! A row is written when the operation starts (outcome `running`) and
//! completed when it ends, so a process killed mid-run leaves a row that
//! the next start marks `interrupted`.

use std::path::Path;
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};

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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| sql_err(path, &e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| sql_err(path, &e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(|e| sql_err(path, &e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sql_err(path, &e))?;
        restrict(path);
        Ok(History {
            conn: Mutex::new(conn),
        })
    }

    /// Marks every `running` row `interrupted` (at the start of a service
    /// that owns the history).
    pub fn mark_interrupted(&self) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "UPDATE runs SET outcome='interrupted', error='the process ended while it ran' WHERE outcome='running'",
            [],
        )
        .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }

    /// Records the start of a run; returns its row id.
    pub fn start(&self, unit: &UnitKey, at: Timestamp) -> Result<i64> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO runs(job, operation, database, repository, start_ms, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
            params![unit.job, unit.operation, unit.database, unit.repository, at.as_millisecond()],
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
                "SELECT database, repository,
                    (SELECT end_ms FROM runs s WHERE s.operation='backup' AND s.database=r.database AND s.repository=r.repository AND s.outcome IN ('success','unchanged') ORDER BY end_ms DESC LIMIT 1),
                    (SELECT end_ms - start_ms FROM runs s WHERE s.operation='backup' AND s.database=r.database AND s.repository=r.repository AND s.end_ms IS NOT NULL ORDER BY start_ms DESC LIMIT 1),
                    coalesce(sum(bytes_added), 0),
                    sum(outcome IN ('failed','interrupted')),
                    (SELECT snapshots FROM runs s WHERE s.operation='backup' AND s.database=r.database AND s.repository=r.repository AND s.snapshots IS NOT NULL ORDER BY start_ms DESC LIMIT 1)
                 FROM runs r WHERE operation='backup' AND database IS NOT NULL AND repository IS NOT NULL
                 GROUP BY database, repository ORDER BY database, repository",
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

    /// Deletes rows that started before `before`; returns how many.
    pub fn prune(&self, before: Timestamp) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "DELETE FROM runs WHERE start_ms < ?1 AND outcome != 'running'",
            params![before.as_millisecond()],
        )
        .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }
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
        assert_eq!(h.mark_interrupted().unwrap(), 1);
        assert_eq!(
            h.runs(Some("j"), 1).unwrap()[0].outcome,
            Outcome::Interrupted
        );
        assert_eq!(h.prune(t1).unwrap(), 1);
        assert_eq!(h.runs(None, 10).unwrap().len(), 2);
    }
}
