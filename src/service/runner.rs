//! The service's engine: runs the library's commands for the config's
//! jobs (scheduled) and for API requests (tasks), one operation per
//! database and per repository at a time, recording each in the history
//! and reporting it as an [`Event`].
//!
//! Every operation opens its repository afresh, reading the configured
//! password source each time, so an idle service holds no key and little
//! memory, and a changed password file takes effect at the next run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::config::Config;
use super::history::{Finish, History, Outcome, UnitKey};
use super::schedule::{Clock, Schedule};
use super::unlocked::Unlocked;
use crate::commands::backup::backup;
use crate::commands::check::{check, ReadData};
use crate::commands::forget::{forget, plan_forget};
use crate::commands::prune::prune;
use crate::commands::restore::{restore, At};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{Cancel, Progress};
use crate::repo::{GroupBy, Repository, SnapshotFilter};

/// Most finished tasks remembered for polling.
const TASKS_KEPT: usize = 1000;
/// The job name of runs the API started.
pub const API_JOB: &str = "api";

/// Something the service did, for its log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Event {
    /// When.
    pub time: String,
    /// `info` or `error`.
    pub level: &'static str,
    /// What happened: `backup`, `forget`, `prune`, `check`, `restore`,
    /// `heartbeat`, `start`, `reload`, `stop`, ...
    pub event: &'static str,
    /// The job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// How long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Bytes added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// Words.
    pub message: String,
}

/// Where events go (the command line prints them as text or JSON lines).
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

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

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Started, not done.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Stopped by the service's shutdown.
    Cancelled,
}

/// A backup or restore the service runs, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    /// Its id.
    pub id: String,
    /// `backup` or `restore`.
    pub kind: &'static str,
    /// The database.
    pub database: String,
    /// Its state.
    pub state: TaskState,
    /// Image bytes done and in all, of the current step.
    pub progress: TaskProgress,
    /// Start.
    pub started: String,
    /// End.
    pub finished: Option<String>,
    /// One entry per repository: the command's summary.
    pub result: Vec<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Progress counters.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TaskProgress {
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all (0 while unknown).
    pub bytes_total: u64,
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress for Counters {
    fn start(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

struct Task {
    view: Mutex<TaskView>,
    counters: Arc<Counters>,
}

/// Why an API request could not start a task.
#[derive(Debug)]
pub enum StartError {
    /// The database (or repository) is busy with this running task.
    Busy(String),
    /// No such configured database, repository or snapshot.
    NotFound(String),
    /// The request is not acceptable.
    Invalid(String),
    /// Opening the repository failed.
    Failed(Error),
}

/// The service.
pub struct Service {
    config: RwLock<Arc<Config>>,
    history: History,
    clock: Arc<dyn Clock>,
    cancel: Cancel,
    sink: EventSink,
    busy: Mutex<HashMap<String, String>>,
    tasks: Mutex<BTreeMap<u64, Arc<Task>>>,
    next_task: AtomicU64,
    last_history_prune: Mutex<Option<Timestamp>>,
    unlocked: Unlocked,
    continuous: super::streams::Continuous,
}

fn busy_db(name: &str) -> String {
    format!("database {name}")
}

fn busy_repo(name: &str) -> String {
    format!("repository {name}")
}

/// One line of an error, its cause included.
fn error_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}

impl Service {
    /// A service over `config`, its history opened. `cancel` stops it. A
    /// process that owns the history (the daemon) then calls
    /// [`History::mark_interrupted`].
    pub fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        cancel: Cancel,
        sink: EventSink,
    ) -> Result<Arc<Service>> {
        let history = History::open(&config.state)?;
        Ok(Arc::new(Service {
            config: RwLock::new(Arc::new(config)),
            history,
            clock,
            cancel,
            sink,
            busy: Mutex::new(HashMap::new()),
            tasks: Mutex::new(BTreeMap::new()),
            next_task: AtomicU64::new(1),
            last_history_prune: Mutex::new(None),
            unlocked: Unlocked::default(),
            continuous: super::streams::Continuous::default(),
        }))
    }

    /// The continuous jobs running (`service::continuous`).
    pub(crate) fn continuous(&self) -> &super::streams::Continuous {
        &self.continuous
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap())
    }

    /// Where the service writes private temporary files (mode 0700).
    pub fn temp_dir(&self) -> Result<std::path::PathBuf> {
        super::history::temp_dir(&self.config().state)
    }

    /// The history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The service's cancellation (set on shutdown).
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Replaces the config (a reload); running operations finish with the old one.
    pub fn reload(&self, config: Config) {
        let jobs = config.jobs.len();
        let dbs = config.databases.len();
        let old = self.config();
        let listening = |c: &Config| c.api.as_ref().map(|a| (a.listen, a.tls.clone()));
        let restart = listening(&old) != listening(&config);
        let tokens = config.api.as_ref().map_or(0, |a| a.tokens.len());
        *self.config.write().unwrap() = Arc::new(config);
        // Passwords and locations may have changed: unlock again.
        self.unlocked.clear();
        self.event(Event {
            event: "reload",
            message: format!(
                "config reloaded: {jobs} job(s), {dbs} database(s), {tokens} API token(s) (in effect now)"
            ),
            ..Event::default()
        });
        if restart {
            self.event(Event {
                event: "reload",
                level: "warning",
                message: "the API's listen address or TLS files changed: they take effect when the service restarts; it keeps its current listener until then".into(),
                ..Event::default()
            });
        }
    }

    /// Reports an event (time and level filled in).
    pub fn event(&self, mut e: Event) {
        e.time = self
            .clock
            .now()
            .round(jiff::Unit::Second)
            .unwrap_or(self.clock.now())
            .to_string();
        if e.level.is_empty() {
            e.level = if matches!(e.outcome, Some(Outcome::Failed | Outcome::Interrupted)) {
                "error"
            } else {
                "info"
            };
        }
        (self.sink)(&e);
    }

    /// Opens configured repository `name`.
    pub fn open_repository(&self, name: &str) -> Result<Repository> {
        let config = self.config();
        let r = config.repositories.get(name).ok_or_else(|| {
            Error::InvalidInput(format!("no repository named {name:?} in the config"))
        })?;
        self.unlocked.get(name, r)
    }

    /// Opens every configured repository once, naming the one that fails.
    pub fn check_repositories(&self) -> Result<()> {
        let config = self.config();
        for (name, r) in &config.repositories {
            self.unlocked.get(name, r).map_err(|e| Error::Config {
                file: config.file.clone(),
                message: format!("repositories.{name} ({}): {}", r.location, error_line(&e)),
            })?;
        }
        Ok(())
    }

    /// Every scheduled unit and its schedule.
    pub fn units(&self) -> Vec<(Unit, Schedule)> {
        units(&self.config())
    }

    /// When `unit` runs next (see [`next_run`]).
    pub fn next_run(
        &self,
        unit: &Unit,
        schedule: &Schedule,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        next_run(&self.history, unit, schedule, now)
    }

    /// The units due now, in order: backups first, then prune, then check.
    pub fn due(&self) -> Result<Vec<Unit>> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (unit, s) in self.units() {
            if self.next_run(&unit, &s, now)?.is_some_and(|n| n <= now) {
                due.push(unit);
            }
        }
        due.sort();
        Ok(due)
    }

    /// The earliest next run of any unit.
    pub fn next_wake(&self) -> Result<Option<Timestamp>> {
        let now = self.clock.now();
        let mut next: Option<Timestamp> = None;
        for (unit, s) in self.units() {
            if let Some(n) = self.next_run(&unit, &s, now)? {
                next = Some(next.map_or(n, |x| x.min(n)));
            }
        }
        Ok(next)
    }

    /// Runs every due unit once, in turn (stopping early when cancelled);
    /// prunes old history. Returns how many units ran and how many failed.
    pub fn run_due(&self) -> Result<(usize, usize)> {
        self.prune_history()?;
        let due = self.due()?;
        let mut failed = 0;
        let mut ran = 0;
        for unit in due {
            if self.cancel.is_cancelled() {
                break;
            }
            ran += 1;
            if !self.run_unit(&unit)? {
                failed += 1;
            }
        }
        Ok((ran, failed))
    }

    fn prune_history(&self) -> Result<()> {
        let now = self.clock.now();
        let mut last = self.last_history_prune.lock().unwrap();
        if last.is_some_and(|l| now.duration_since(l).as_secs() < 3600) {
            return Ok(());
        }
        *last = Some(now);
        let keep = self.config().history_keep;
        if let Ok(before) = now.checked_sub(keep) {
            self.history.prune(before)?;
        }
        Ok(())
    }

    /// Runs one unit; true if it succeeded.
    pub fn run_unit(&self, unit: &Unit) -> Result<bool> {
        match unit {
            Unit::Backup { job, database } => {
                let config = self.config();
                let Some(j) = config.jobs.get(job) else {
                    return Ok(true);
                };
                let repos = j.repositories.clone();
                let heartbeat = j.heartbeat_url.clone();
                let notify = j.notify.clone();
                match self.start_task("backup", database) {
                    Ok(task) => {
                        self.notify_start(job, &notify);
                        let ok = self.run_backup_task(&task, job, database, &repos);
                        let error = task.view.lock().unwrap().error.clone();
                        self.notify_end(job, database, &repos, &notify, error.as_deref());
                        if ok {
                            if let Some(url) = heartbeat {
                                self.heartbeat(job, &url);
                            }
                        }
                        Ok(ok)
                    }
                    Err(StartError::Busy(t)) => {
                        self.skipped(unit, &format!("database {database} is busy with task {t}"))?;
                        Ok(true)
                    }
                    Err(e) => Err(Error::InvalidInput(format!("{e:?}"))),
                }
            }
            Unit::Prune { job, repository } | Unit::Check { job, repository } => {
                let key = busy_repo(repository);
                if let Some(t) = self.reserve(std::slice::from_ref(&key), "scheduled") {
                    self.skipped(
                        unit,
                        &format!("repository {repository} is busy with task {t}"),
                    )?;
                    return Ok(true);
                }
                let ok = if matches!(unit, Unit::Prune { .. }) {
                    self.run_prune(job, repository)
                } else {
                    self.run_check(job, repository)
                };
                self.release(&[key]);
                ok
            }
        }
    }

    fn skipped(&self, unit: &Unit, why: &str) -> Result<()> {
        let key = unit.key();
        self.history.record(
            &key,
            self.clock.now(),
            Outcome::Skipped,
            &Finish {
                error: Some(why.to_string()),
                ..Finish::default()
            },
        )?;
        self.event(Event {
            event: "skipped",
            job: Some(key.job),
            database: key.database,
            repository: key.repository,
            outcome: Some(Outcome::Skipped),
            message: why.to_string(),
            ..Event::default()
        });
        Ok(())
    }

    /// Reserves busy keys for `task`; on conflict returns the holder.
    fn reserve(&self, keys: &[String], task: &str) -> Option<String> {
        let mut busy = self.busy.lock().unwrap();
        if let Some(holder) = keys.iter().find_map(|k| busy.get(k)) {
            return Some(holder.clone());
        }
        for k in keys {
            busy.insert(k.clone(), task.to_string());
        }
        None
    }

    fn release(&self, keys: &[String]) {
        let mut busy = self.busy.lock().unwrap();
        for k in keys {
            busy.remove(k);
        }
    }

    fn new_task(&self, kind: &'static str, database: &str) -> Arc<Task> {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task {
            view: Mutex::new(TaskView {
                id: format!("{id}"),
                kind,
                database: database.to_string(),
                state: TaskState::Running,
                progress: TaskProgress::default(),
                started: self.clock.now().to_string(),
                finished: None,
                result: Vec::new(),
                error: None,
            }),
            counters: Arc::new(Counters::default()),
        });
        let mut tasks = self.tasks.lock().unwrap();
        tasks.insert(id, Arc::clone(&task));
        while tasks.len() > TASKS_KEPT {
            let oldest_done = tasks
                .iter()
                .find(|(_, t)| t.view.lock().unwrap().state != TaskState::Running)
                .map(|(k, _)| *k);
            match oldest_done {
                Some(k) => tasks.remove(&k),
                None => break,
            };
        }
        task
    }

    /// A task's view.
    pub fn task(&self, id: &str) -> Option<TaskView> {
        let id: u64 = id.parse().ok()?;
        let task = self.tasks.lock().unwrap().get(&id).cloned()?;
        let mut v = task.view.lock().unwrap().clone();
        v.progress = TaskProgress {
            bytes_done: task.counters.done.load(Ordering::Relaxed),
            bytes_total: task.counters.total.load(Ordering::Relaxed),
        };
        Some(v)
    }

    /// Registers a `kind` task on `database`, holding the database, or
    /// says which task holds it.
    fn start_task(
        &self,
        kind: &'static str,
        database: &str,
    ) -> std::result::Result<Arc<Task>, StartError> {
        let task = self.new_task(kind, database);
        let id = task.view.lock().unwrap().id.clone();
        if let Some(holder) = self.reserve(&[busy_db(database)], &id) {
            self.tasks
                .lock()
                .unwrap()
                .remove(&id.parse::<u64>().unwrap_or(0));
            return Err(StartError::Busy(holder));
        }
        Ok(task)
    }

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
        let task = self.start_task("backup", database)?;
        let id = task.view.lock().unwrap().id.clone();
        let me = Arc::clone(self);
        let database = database.to_string();
        std::thread::spawn(move || {
            me.run_backup_task(&task, API_JOB, &database, &repos);
        });
        Ok(id)
    }

    /// Runs a reserved backup task to its end; true if every repository's
    /// backup succeeded. Releases the database.
    fn run_backup_task(
        &self,
        task: &Arc<Task>,
        job: &str,
        database: &str,
        repos: &[String],
    ) -> bool {
        let mut all_ok = true;
        let mut errors = Vec::new();
        let mut cancelled = false;
        for repo in repos {
            match self.backup_one(task, job, database, repo) {
                Ok(v) => task.view.lock().unwrap().result.push(v),
                Err(e) => {
                    all_ok = false;
                    cancelled |= e.kind() == ErrorKind::Interrupted;
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
        }
        self.release(&[busy_db(database)]);
        all_ok
    }

    /// One backup of `database` into `repo`, with retention after it;
    /// recorded and reported.
    #[allow(clippy::too_many_lines)] // record, run, retention, report: one sequence
    fn backup_one(
        &self,
        task: &Task,
        job: &str,
        database: &str,
        repo_name: &str,
    ) -> Result<serde_json::Value> {
        let key = UnitKey {
            job: job.to_string(),
            operation: "backup".into(),
            database: Some(database.to_string()),
            repository: Some(repo_name.to_string()),
        };
        let start = self.clock.now();
        let row = self.history.start(&key, start)?;
        self.event(Event {
            event: "backup",
            job: Some(job.into()),
            database: Some(database.into()),
            repository: Some(repo_name.into()),
            outcome: Some(Outcome::Running),
            message: "started".into(),
            ..Event::default()
        });
        let config = self.config();
        let result = (|| -> Result<_> {
            let db = config.databases.get(database).ok_or_else(|| {
                Error::InvalidInput(format!("database {database} is no longer in the config"))
            })?;
            let repo = self.open_repository(repo_name)?;
            let mut opts = db.backup.clone();
            opts.cancel = self.cancel.clone();
            opts.progress = Some(Arc::clone(&task.counters) as Arc<dyn Progress>);
            if self.clock.simulated() {
                opts.time = Some(start);
            }
            let summary = backup(&repo, &opts)?;
            let path = summary.manifest.database.key();
            Ok((repo, summary, path))
        })();
        let end = self.clock.now();
        let duration_ms = end.duration_since(start).as_millis().max(0) as u64;
        match result {
            Ok((repo, summary, path)) => {
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

    fn retention(
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

    /// Runs a whole operation on a repository, recorded and reported.
    fn repo_operation(
        &self,
        job: &str,
        operation: &'static str,
        repo_name: &str,
        f: impl FnOnce(&Repository) -> Result<(Outcome, String)>,
    ) -> Result<bool> {
        let key = UnitKey {
            job: job.to_string(),
            operation: operation.into(),
            database: None,
            repository: Some(repo_name.to_string()),
        };
        let start = self.clock.now();
        let row = self.history.start(&key, start)?;
        let r = self.open_repository(repo_name).and_then(|repo| f(&repo));
        let end = self.clock.now();
        let (outcome, detail, error) = match r {
            Ok((o, d)) => (o, Some(d), None),
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                (Outcome::Cancelled, None, Some(error_line(&e)))
            }
            Err(e) => (Outcome::Failed, None, Some(error_line(&e))),
        };
        self.history.finish(
            row,
            end,
            outcome,
            &Finish {
                detail: detail.clone(),
                error: error.clone(),
                ..Finish::default()
            },
        )?;
        self.event(Event {
            event: operation,
            job: Some(job.into()),
            repository: Some(repo_name.into()),
            outcome: Some(outcome),
            duration_ms: Some(end.duration_since(start).as_millis().max(0) as u64),
            message: error.or(detail).unwrap_or_default(),
            ..Event::default()
        });
        Ok(outcome.ok())
    }

    fn run_prune(&self, job: &str, repo_name: &str) -> Result<bool> {
        let opts = self
            .config()
            .jobs
            .get(job)
            .and_then(|j| j.prune.as_ref().map(|(_, o)| *o))
            .unwrap_or_default();
        self.repo_operation(job, "prune", repo_name, |repo| {
            let s = prune(repo, &opts)?;
            let d = match &s.stats {
                Some(st) => format!(
                    "deleted {} pack(s), wrote {}, freed {} bytes",
                    st.packs_deleted, st.new_packs, st.freed_bytes
                ),
                None => "nothing to prune".into(),
            };
            Ok((Outcome::Success, d))
        })
    }

    fn run_check(&self, job: &str, repo_name: &str) -> Result<bool> {
        let subsets = self
            .config()
            .jobs
            .get(job)
            .and_then(|j| j.check.as_ref().map(|(_, n)| *n))
            .unwrap_or(0);
        let key = Unit::Check {
            job: job.to_string(),
            repository: repo_name.to_string(),
        }
        .key();
        let read = if subsets == 0 {
            ReadData::None
        } else {
            let n = (self.history.successes(&key)? % u64::from(subsets)) as u32 + 1;
            ReadData::Subset(n, subsets)
        };
        self.repo_operation(job, "check", repo_name, |repo| {
            let report = check(repo, read)?;
            let what = match read {
                ReadData::Subset(n, m) => format!("structure and data subset {n}/{m}"),
                _ => "structure".into(),
            };
            if report.errors() > 0 {
                let first = report
                    .findings
                    .first()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                return Err(Error::InvalidInput(format!(
                    "check of the {what} found {} problem(s), first: {first}",
                    report.errors()
                )));
            }
            Ok((Outcome::Success, format!("checked the {what}: no problems")))
        })
    }

    /// Calls a job's heartbeat URL (failures are logged, not fatal).
    pub(crate) fn heartbeat(&self, job: &str, url: &str) {
        self.call_monitor("heartbeat", job, "heartbeat", url, None);
    }

    /// Starts an API restore of snapshot `snapshot` (an id or unique
    /// prefix) from `repository` (else the first repository holding it)
    /// into configured database `database`; returns the task id.
    #[allow(clippy::too_many_lines)] // resolve, reserve, then the task's whole life
    pub fn spawn_restore(
        self: &Arc<Self>,
        snapshot: Option<&str>,
        database: &str,
        repository: Option<&str>,
        at: Option<&str>,
    ) -> std::result::Result<String, StartError> {
        let config = self.config();
        let Some(db) = config.databases.get(database) else {
            return Err(StartError::NotFound(format!(
                "no database named {database:?} in the config"
            )));
        };
        let at = at
            .map(At::parse)
            .transpose()
            .map_err(|e| StartError::Invalid(error_line(&e)))?;
        let snapshot = match (snapshot, at) {
            (Some(s), _) => s,
            // With `at` alone, the snapshot is chosen in the repository.
            (None, Some(_)) => "",
            (None, None) => {
                return Err(StartError::Invalid(
                    "give a snapshot id, or `at` (latest, or an RFC 3339 time)".into(),
                ))
            }
        };
        if !snapshot.is_empty()
            && (snapshot.len() > 64 || !snapshot.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(StartError::Invalid(format!(
                "snapshot {snapshot:?}: give a snapshot id (hex digits)"
            )));
        }
        let names: Vec<String> = match repository {
            Some(r) if config.repositories.contains_key(r) => vec![r.to_string()],
            Some(r) => {
                return Err(StartError::NotFound(format!(
                    "no repository named {r:?} in the config"
                )))
            }
            None => config.repositories.keys().cloned().collect(),
        };
        let mut found = None;
        for name in &names {
            let repo = self.open_repository(name).map_err(StartError::Failed)?;
            let chosen = if snapshot.is_empty() {
                let filter = SnapshotFilter {
                    database_paths: vec![crate::format::manifest::DbPath::of(&db.backup.path)],
                    ..SnapshotFilter::default()
                };
                let until = at.and_then(At::until_ns).unwrap_or(i64::MAX);
                crate::commands::pitr::choose(&repo, &filter, until)
                    .map(|c| c.into_iter().next().expect("at least one"))
            } else {
                repo.find_snapshot(snapshot, &SnapshotFilter::default())
            };
            match chosen {
                Ok((id, _)) => {
                    found = Some((name.clone(), repo, id));
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e)
                    if e.kind() == ErrorKind::InvalidInput || e.kind() == ErrorKind::Ambiguous =>
                {
                    return Err(StartError::Invalid(error_line(&e)))
                }
                Err(e) => return Err(StartError::Failed(e)),
            }
        }
        let Some((repo_name, repo, id)) = found else {
            return Err(StartError::NotFound(format!(
                "no snapshot {snapshot} in the configured repositories"
            )));
        };
        let task = self.start_task("restore", database)?;
        let task_id = task.view.lock().unwrap().id.clone();
        let mut opts = db.restore.clone();
        opts.at = at;
        opts.cancel = self.cancel.clone();
        opts.progress = Some(Arc::clone(&task.counters) as Arc<dyn Progress>);
        let me = Arc::clone(self);
        let database = database.to_string();
        std::thread::spawn(move || {
            let key = UnitKey {
                job: API_JOB.into(),
                operation: "restore".into(),
                database: Some(database.clone()),
                repository: Some(repo_name.clone()),
            };
            let start = me.clock.now();
            let row = me.history.start(&key, start).ok();
            let r = restore(&repo, &id, &opts);
            let end = me.clock.now();
            let (outcome, state, error) = match &r {
                Ok(_) => (Outcome::Success, TaskState::Succeeded, None),
                Err(e) if e.kind() == ErrorKind::Interrupted => (
                    Outcome::Cancelled,
                    TaskState::Cancelled,
                    Some(error_line(e)),
                ),
                Err(e) => (Outcome::Failed, TaskState::Failed, Some(error_line(e))),
            };
            if let Some(row) = row {
                let _ = me.history.finish(
                    row,
                    end,
                    outcome,
                    &Finish {
                        snapshot: Some(id.to_hex()),
                        error: error.clone(),
                        ..Finish::default()
                    },
                );
            }
            me.event(Event {
                event: "restore",
                job: Some(API_JOB.into()),
                database: Some(database.clone()),
                repository: Some(repo_name.clone()),
                outcome: Some(outcome),
                snapshot: Some(id.short()),
                duration_ms: Some(end.duration_since(start).as_millis().max(0) as u64),
                message: error.clone().unwrap_or_else(|| "restored".into()),
                ..Event::default()
            });
            {
                let mut v = task.view.lock().unwrap();
                v.state = state;
                v.finished = Some(end.to_string());
                v.error = error;
                if let Ok(s) = r {
                    v.result
                        .push(serde_json::json!({"repository": repo_name, "restore": s}));
                }
            }
            me.release(&[busy_db(&database)]);
        });
        Ok(task_id)
    }

    /// Waits until every running task has ended (at shutdown), at most `limit`.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.busy.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Opens a configured repository, reading its password source now.
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
    let last = history.last_start(&unit.key())?;
    match (unit, last) {
        (Unit::Prune { job, .. } | Unit::Check { job, .. }, None) => {
            let first = history.first_start(job, "backup")?;
            Ok(first.and_then(|f| schedule.next_after(f)))
        }
        _ => Ok(schedule.next_run(last, now)),
    }
}
