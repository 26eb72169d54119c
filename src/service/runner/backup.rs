//! Backups the service runs: scheduled and API-started, into each
//! repository of the job, with retention after each.

use std::path::Path;
use std::sync::Arc;

use super::tasks::{StartError, Task, TaskState};
use super::{busy_db, error_line, Event, Service, API_JOB};
use crate::commands::backup::BackupSummary;
use crate::commands::backup_each::backup_each;
use crate::commands::forget::{forget, plan_forget};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repo::{GroupBy, Repository, SnapshotFilter};
use crate::service::config::Job;
use crate::service::history::{Finish, Outcome, UnitKey};
use crate::service::hooks::Hook;
use crate::service::units::{Unit, WAIT_POLL};

impl Service {
    /// Starts an API backup of configured `database` into `repository`
    /// (else every repository of the jobs naming it); returns the task id.
    pub fn spawn_backup(
        self: &Arc<Self>,
        database: &str,
        repository: Option<&str>,
    ) -> std::result::Result<String, StartError> {
        let config = self.config();
        if !config.databases.contains_key(database) {
            return Err(StartError::NotFound(format!(
                "no database named {database:?} in the config"
            )));
        }
        let repos = match repository {
            Some(r) if config.repositories.contains_key(r) => vec![r.to_string()],
            Some(r) => {
                return Err(StartError::NotFound(format!(
                    "no repository named {r:?} in the config"
                )))
            }
            None => config.repositories_of(database),
        };
        if repos.is_empty() {
            return Err(StartError::Invalid(format!(
                "database {database:?} is in no job: name the repository to back it up into"
            )));
        }
        // The job that backs this database up (when one job does) lends
        // its hooks and notifications: "back up now" is a run of it.
        let mut naming = config
            .jobs
            .iter()
            .filter(|(_, j)| j.databases.iter().any(|d| d == database));
        let owner = match (naming.next(), naming.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        };
        let task = self.start_task("backup", API_JOB, database)?;
        let id = task.view.lock().unwrap().id.clone();
        let me = Arc::clone(self);
        let database = database.to_string();
        std::thread::spawn(move || {
            let config = me.config();
            let around = owner
                .as_deref()
                .and_then(|o| config.jobs.get(o).map(|j| (o, j)))
                .zip(config.databases.get(&database));
            match around {
                Some(((name, j), db)) => {
                    let path = db.backup.path.clone();
                    me.backup_with_hooks(&task, name, j, &database, &path, &repos);
                }
                None => {
                    me.run_backup_task(&task, API_JOB, &database, &repos, None);
                }
            }
        });
        Ok(id)
    }

    /// Runs scheduled backup `unit` (of `database` in `job`): its hooks,
    /// the backup into each repository of the job, notifications and the
    /// heartbeat; true unless it failed (a busy database is skipped, a
    /// missing one waited for: neither is a failure).
    pub(super) fn run_scheduled_backup(
        &self,
        unit: &Unit,
        job: &str,
        database: &str,
    ) -> Result<bool> {
        let config = self.config();
        let (Some(j), Some(db)) = (config.jobs.get(job), config.databases.get(database)) else {
            return Ok(true);
        };
        let path = &db.backup.path;
        if !self.database_present(unit, path)? {
            return Ok(true);
        }
        let task = match self.start_task("backup", job, database) {
            Ok(t) => t,
            Err(StartError::Busy(t)) => {
                self.skipped(unit, &format!("database {database} is busy with task {t}"))?;
                return Ok(true);
            }
            Err(e) => return Err(Error::InvalidInput(format!("{e:?}"))),
        };
        let ok = self.backup_with_hooks(&task, job, j, database, path, &j.repositories);
        if ok {
            if let Some(url) = &j.heartbeat_url {
                self.heartbeat(job, url);
            }
        }
        Ok(ok)
    }

    /// Runs backup `task` of `database` (at `path`) into `repos` with the
    /// hooks and notifications of job `job` around it; true if it
    /// succeeded. The task is recorded under the job it was started as.
    fn backup_with_hooks(
        &self,
        task: &Arc<Task>,
        job: &str,
        j: &Job,
        database: &str,
        path: &Path,
        repos: &[String],
    ) -> bool {
        let recorded = task.view.lock().unwrap().job.clone();
        let hook = |name, command, failure| Hook {
            name,
            command,
            job,
            database,
            path,
            repositories: repos,
            failure,
            timeout: j.hooks.timeout,
        };
        self.notify_start(job, &j.notify);
        let blocked = j
            .hooks
            .before
            .as_deref()
            .and_then(|c| self.run_hook(&hook("run_before", c, None)).err());
        let ok = self.run_backup_task(task, &recorded, database, repos, blocked);
        let (error, code) = {
            let v = task.view.lock().unwrap();
            (v.error.clone(), v.exit_code)
        };
        let failure = error.as_deref().map(|e| (e, code.unwrap_or(1)));
        let after = match failure {
            None => j.hooks.after.as_deref().map(|c| ("run_after", c)),
            Some(_) => j
                .hooks
                .after_failure
                .as_deref()
                .map(|c| ("run_after_failure", c)),
        };
        if let Some((name, c)) = after {
            // Its failure is its own row and event; the backup's outcome stands.
            let _ = self.run_hook(&hook(name, c, failure));
        }
        self.notify_end(job, database, repos, &j.notify, failure);
        ok
    }

    /// Runs a reserved backup task to its end: one read of the database
    /// stored into every repository (`commands::backup_each`), each
    /// recorded and reported; true if every repository's backup succeeded.
    /// Releases the database.
    pub(super) fn run_backup_task(
        &self,
        task: &Arc<Task>,
        job: &str,
        database: &str,
        repos: &[String],
        blocked: Option<String>,
    ) -> bool {
        let results = self.backup_all(task, job, database, repos, blocked);
        let mut all_ok = true;
        let mut errors = Vec::new();
        let mut cancelled = false;
        let mut code = None;
        for (repo, r) in repos.iter().zip(results) {
            match r {
                Ok(v) => task.view.lock().unwrap().result.push(v),
                Err(e) => {
                    all_ok = false;
                    cancelled |= e.kind() == ErrorKind::Interrupted;
                    code.get_or_insert(crate::error::codes::exit_code(&e));
                    errors.push(format!("{repo}: {}", error_line(&e)));
                }
            }
        }
        {
            let mut v = task.view.lock().unwrap();
            v.finished = Some(self.clock.now().to_string());
            v.state = if all_ok {
                TaskState::Succeeded
            } else if cancelled {
                TaskState::Cancelled
            } else {
                TaskState::Failed
            };
            if !errors.is_empty() {
                v.error = Some(errors.join("; "));
            }
            v.exit_code = code;
        }
        self.release(&[busy_db(database)]);
        all_ok
    }

    /// Backs `database` up into each of `repos` from one read, each backup
    /// recorded in the history and reported, with retention after it;
    /// unless `blocked` says why not (a `run_before` hook failed): then
    /// each is recorded failed with that reason.
    fn backup_all(
        &self,
        task: &Task,
        job: &str,
        database: &str,
        repos: &[String],
        blocked: Option<String>,
    ) -> Vec<Result<serde_json::Value>> {
        let start = self.clock.now();
        let rows: Vec<Result<i64>> = repos
            .iter()
            .map(|repo_name| {
                let row = self
                    .history
                    .start(&backup_key(job, database, repo_name), start)?;
                self.event(Event {
                    event: "backup",
                    job: Some(job.into()),
                    database: Some(database.into()),
                    repository: Some(repo_name.into()),
                    outcome: Some(Outcome::Running),
                    message: "started".into(),
                    ..Event::default()
                });
                Ok(row)
            })
            .collect();
        let config = self.config();
        let mut results: Vec<Option<Result<(Repository, BackupSummary)>>> =
            repos.iter().map(|_| None).collect();
        let mut opened = Vec::new();
        match (config.databases.get(database), blocked) {
            (_, Some(why)) => {
                for r in &mut results {
                    *r = Some(Err(Error::InvalidInput(format!("not backed up: {why}"))));
                }
            }
            (None, None) => {
                for r in &mut results {
                    *r = Some(Err(Error::InvalidInput(format!(
                        "database {database} is no longer in the config"
                    ))));
                }
            }
            (Some(db), None) => {
                for (i, name) in repos.iter().enumerate() {
                    if rows[i].is_err() {
                        continue; // (its error is its result)
                    }
                    match self.open_repository(name) {
                        Ok(repo) => opened.push((i, repo)),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
                let mut opts = db.backup.clone();
                opts.cancel = task.cancel.clone();
                opts.progress = Some(Arc::clone(&task.counters) as Arc<dyn Progress>);
                if self.clock.simulated() {
                    opts.time = Some(start);
                }
                let refs: Vec<&Repository> = opened.iter().map(|(_, r)| r).collect();
                let summaries = backup_each(&refs, &opts);
                for ((i, repo), summary) in opened.into_iter().zip(summaries) {
                    results[i] = Some(summary.map(|s| (repo, s)));
                }
            }
        }
        let end = self.clock.now();
        repos
            .iter()
            .zip(rows)
            .zip(results)
            .map(|((repo_name, row), result)| {
                let row = row?;
                let result = result.expect("every repository has a result");
                self.backup_done(job, database, repo_name, row, (start, end), result)
            })
            .collect()
    }

    /// Records and reports one repository's backup, with retention after it.
    fn backup_done(
        &self,
        job: &str,
        database: &str,
        repo_name: &str,
        row: i64,
        (start, end): (jiff::Timestamp, jiff::Timestamp),
        result: Result<(Repository, BackupSummary)>,
    ) -> Result<serde_json::Value> {
        let config = self.config();
        let duration_ms = end.duration_since(start).as_millis().max(0) as u64;
        match result {
            Ok((repo, summary)) => {
                let path = summary.manifest.database.key();
                let outcome = if summary.snapshot.is_some() {
                    Outcome::Success
                } else {
                    Outcome::Unchanged
                };
                let snapshot = summary
                    .snapshot
                    .or(summary.unchanged_since)
                    .map(|s| s.to_hex());
                for w in &summary.warnings {
                    self.event(Event {
                        event: "warning",
                        level: "warning",
                        job: Some(job.into()),
                        database: Some(database.into()),
                        repository: Some(repo_name.into()),
                        message: w.clone(),
                        ..Event::default()
                    });
                }
                self.event(Event {
                    event: "backup",
                    job: Some(job.into()),
                    database: Some(database.into()),
                    repository: Some(repo_name.into()),
                    outcome: Some(outcome),
                    snapshot: snapshot.as_deref().map(|s| s[..8].to_string()),
                    duration_ms: Some(duration_ms),
                    bytes_added: Some(summary.added_bytes),
                    message: if outcome == Outcome::Unchanged {
                        "unchanged since the last snapshot: nothing stored".into()
                    } else {
                        format!("snapshot saved, {} bytes added", summary.added_bytes)
                    },
                    ..Event::default()
                });
                // Retention, after a backup that added a snapshot.
                if summary.snapshot.is_some() {
                    if let Some(policy) = config.jobs.get(job).and_then(|j| j.retention.clone()) {
                        self.retention(job, database, repo_name, &repo, &policy, &path);
                    }
                }
                // The row is completed once retention has run, so its
                // snapshot count is the one the repository keeps.
                let count = repo
                    .snapshots()
                    .map(|s| s.iter().filter(|(_, m)| m.database.key() == path).count() as u64)
                    .ok();
                self.history.finish(
                    row,
                    end,
                    outcome,
                    &Finish {
                        snapshot: snapshot.clone(),
                        bytes_added: Some(summary.added_bytes),
                        snapshots: count,
                        detail: None,
                        error: None,
                    },
                )?;
                Ok(serde_json::json!({
                    "repository": repo_name,
                    "backup": summary,
                }))
            }
            Err(e) => {
                let outcome = if e.kind() == ErrorKind::Interrupted {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed
                };
                self.history.finish(
                    row,
                    end,
                    outcome,
                    &Finish {
                        error: Some(error_line(&e)),
                        ..Finish::default()
                    },
                )?;
                self.event(Event {
                    event: "backup",
                    job: Some(job.into()),
                    database: Some(database.into()),
                    repository: Some(repo_name.into()),
                    outcome: Some(outcome),
                    duration_ms: Some(duration_ms),
                    message: error_line(&e),
                    ..Event::default()
                });
                Err(e)
            }
        }
    }

    pub(super) fn retention(
        &self,
        job: &str,
        database: &str,
        repo_name: &str,
        repo: &Repository,
        policy: &crate::commands::forget::ForgetPolicy,
        path: &crate::format::manifest::DbPath,
    ) {
        let key = UnitKey {
            job: job.to_string(),
            operation: "forget".into(),
            database: Some(database.to_string()),
            repository: Some(repo_name.to_string()),
        };
        let start = self.clock.now();
        let result = (|| -> Result<usize> {
            let row = self.history.start(&key, start)?;
            let filter = SnapshotFilter {
                // The exact bytes: this database and no other.
                database_paths: vec![path.clone()],
                ..SnapshotFilter::default()
            };
            let r = plan_forget(repo, policy, GroupBy::default(), &filter)
                .and_then(|plan| forget(repo, &plan, false));
            let end = self.clock.now();
            match r {
                Ok(s) => {
                    self.history.finish(
                        row,
                        end,
                        Outcome::Success,
                        &Finish {
                            detail: Some(format!("removed {} snapshot(s)", s.removed)),
                            ..Finish::default()
                        },
                    )?;
                    Ok(s.removed)
                }
                Err(e) => {
                    self.history.finish(
                        row,
                        end,
                        Outcome::Failed,
                        &Finish {
                            error: Some(error_line(&e)),
                            ..Finish::default()
                        },
                    )?;
                    Err(e)
                }
            }
        })();
        let (outcome, message) = match result {
            Ok(n) => (
                Outcome::Success,
                format!("retention removed {n} snapshot(s)"),
            ),
            Err(e) => (Outcome::Failed, error_line(&e)),
        };
        self.event(Event {
            event: "forget",
            job: Some(job.into()),
            database: Some(database.into()),
            repository: Some(repo_name.into()),
            outcome: Some(outcome),
            message,
            ..Event::default()
        });
    }

    /// Whether a scheduled backup's database file is there. If not, the
    /// unit waits: recorded as `waiting` (once, then its latest look), told
    /// once, and looked at again every [`WAIT_POLL`]; the backup runs once
    /// the file appears.
    pub(super) fn database_present(&self, unit: &Unit, path: &std::path::Path) -> Result<bool> {
        let key = unit.key();
        let now = self.clock.now();
        let last = self.history.last(&key)?;
        let missing = crate::service::config::not_there(path);
        match (missing, last) {
            (true, Some((id, Outcome::Waiting, _))) => self.history.touch(id, now)?,
            (true, _) => {
                let why = format!(
                    "database file {} does not exist yet: it is backed up once it appears (looked for every {} s)",
                    path.display(),
                    WAIT_POLL.as_secs()
                );
                self.history.record(
                    &key,
                    now,
                    Outcome::Waiting,
                    &Finish {
                        error: Some(why.clone()),
                        ..Finish::default()
                    },
                )?;
                self.event(Event {
                    event: "waiting",
                    level: "warning",
                    job: Some(key.job),
                    database: key.database,
                    outcome: Some(Outcome::Waiting),
                    message: why,
                    ..Event::default()
                });
            }
            (false, Some((_, Outcome::Waiting, _))) => self.event(Event {
                event: "waiting",
                job: Some(key.job),
                database: key.database,
                message: format!("database file {} appeared: backing it up", path.display()),
                ..Event::default()
            }),
            (false, _) => {}
        }
        Ok(!missing)
    }
}

/// The history's key of a backup of `database` into `repo`.
fn backup_key(job: &str, database: &str, repo: &str) -> UnitKey {
    UnitKey {
        job: job.to_string(),
        operation: "backup".into(),
        database: Some(database.to_string()),
        repository: Some(repo.to_string()),
    }
}
