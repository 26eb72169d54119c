//! The history by day: what each day's backups added to each repository,
//! for the dashboard's chart of a repository's growth.

use jiff::Timestamp;
use rusqlite::params;
use serde::Serialize;

use super::History;
use crate::error::{Error, Result};

/// One day's backups into one repository.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The repository.
    pub repository: String,
    /// Bytes the day's backups added (compressed and encrypted).
    pub bytes_added: u64,
    /// Backups that day (any outcome but skipped).
    pub backups: u64,
    /// Of them, failed.
    pub failures: u64,
}

impl History {
    /// Each day since `since`, per repository, oldest first (days with no
    /// backup are left out).
    pub fn daily(&self, since: Timestamp) -> Result<Vec<Day>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT date(start_ms / 1000, 'unixepoch') AS day, repository,
                        coalesce(sum(bytes_added), 0), count(*),
                        sum(outcome IN ('failed','interrupted'))
                   FROM runs
                  WHERE operation = 'backup' AND repository IS NOT NULL AND start_ms >= ?1
                    AND outcome != 'skipped'
                  GROUP BY day, repository ORDER BY day, repository",
            )
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        let rows = stmt
            .query_map(params![since.as_millisecond()], |r| {
                Ok(Day {
                    day: r.get(0)?,
                    repository: r.get(1)?,
                    bytes_added: r.get::<_, i64>(2)?.max(0) as u64,
                    backups: r.get::<_, i64>(3)?.max(0) as u64,
                    failures: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidInput(format!("run history: {e}")))
    }
}
