//! The service's scheduled units (a backup of a database, a prune or a
//! check of a repository) and when each runs next.

use jiff::Timestamp;

use super::config::Config;
use super::history::{History, Outcome, UnitKey};
use super::schedule::Schedule;
use crate::error::Result;

/// How often a backup waiting for its database file looks for it.
pub const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// A unit of scheduled work.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// Back a database up into each of the job's repositories.
    Backup {
        /// Job.
        job: String,
        /// Database.
        database: String,
    },
    /// Prune a repository of the job.
    Prune {
        /// Job.
        job: String,
        /// Repository.
        repository: String,
    },
    /// Check a repository of the job.
    Check {
        /// Job.
        job: String,
        /// Repository.
        repository: String,
    },
}

impl Unit {
    /// Its key in the history.
    pub fn key(&self) -> UnitKey {
        match self {
            Unit::Backup { job, database } => UnitKey {
                job: job.clone(),
                operation: "backup".into(),
                database: Some(database.clone()),
                repository: None,
            },
            Unit::Prune { job, repository } => UnitKey {
                job: job.clone(),
                operation: "prune".into(),
                database: None,
                repository: Some(repository.clone()),
            },
            Unit::Check { job, repository } => UnitKey {
                job: job.clone(),
                operation: "check".into(),
                database: None,
                repository: Some(repository.clone()),
            },
        }
    }
}

/// Every scheduled unit of `config` and its schedule.
pub fn units(config: &Config) -> Vec<(Unit, Schedule)> {
    let mut out = Vec::new();
    for (job, j) in &config.jobs {
        for (db, s) in &j.schedules {
            out.push((
                Unit::Backup {
                    job: job.clone(),
                    database: db.clone(),
                },
                s.clone(),
            ));
        }
        for repo in &j.repositories {
            if let Some((s, _)) = &j.prune {
                out.push((
                    Unit::Prune {
                        job: job.clone(),
                        repository: repo.clone(),
                    },
                    s.clone(),
                ));
            }
            if let Some((s, _)) = &j.check {
                out.push((
                    Unit::Check {
                        job: job.clone(),
                        repository: repo.clone(),
                    },
                    s.clone(),
                ));
            }
        }
    }
    out
}

/// When `unit` runs next. A backup that never ran is due at once; prune
/// and check count from the job's first backup (they have nothing to do
/// before it).
pub fn next_run(
    history: &History,
    unit: &Unit,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Option<Timestamp>> {
    let key = unit.key();
    // A backup waiting for its database file looks again every WAIT_POLL.
    if let Some((_, Outcome::Waiting, at)) = history.last(&key)? {
        return Ok(at.checked_add(WAIT_POLL).ok());
    }
    let last = history.last_start(&key)?;
    match (unit, last) {
        (Unit::Prune { job, .. } | Unit::Check { job, .. }, None) => {
            let first = history.first_start(job, "backup")?;
            Ok(first.and_then(|f| schedule.next_after(f)))
        }
        _ => Ok(schedule.next_run(last, now)),
    }
}
