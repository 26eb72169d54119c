//! The service's engine: runs the library's commands for the config's
//! jobs (scheduled) and for API requests (tasks), one operation per
//! database and per repository at a time, recording each in the history
//! and reporting it as an [`Event`].
//!
//! Every operation opens its repository afresh, reading the configured
//! password source each time, so an idle service holds no key and little
//! memory, and a changed password file takes effect at the next run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use serde::Serialize;

mod backup;
mod maintenance;
mod on_demand;
mod restore;
mod tasks;

pub use on_demand::{CheckRequest, Maintenance};
pub use restore::RestoreRequest;
pub use tasks::{Cancelled, StartError, TaskFilter, TaskProgress, TaskState, TaskView};

use super::config::Config;
use super::history::{Finish, History, Outcome};
use super::schedule::{Clock, Schedule};
use super::units::{next_run, units, Unit};
use super::unlocked::Unlocked;
use crate::error::{Error, Result};
use crate::progress::Cancel;
use crate::repo::Repository;
use tasks::Task;

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
    /// When this service started: a database never backed up is overdue
    /// counted from then.
    started: Timestamp,
    /// When each overdue alert (by job, database and repository) was last
    /// sent (`service::overdue`).
    alerted: Mutex<HashMap<String, Timestamp>>,
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
            cancel,
            sink,
            busy: Mutex::new(HashMap::new()),
            tasks: Mutex::new(BTreeMap::new()),
            next_task: AtomicU64::new(1),
            last_history_prune: Mutex::new(None),
            unlocked: Unlocked::default(),
            continuous: super::streams::Continuous::default(),
            started: clock.now(),
            alerted: Mutex::new(HashMap::new()),
            clock,
        }))
    }

    /// When this service started.
    pub(crate) fn started(&self) -> Timestamp {
        self.started
    }

    /// When each overdue alert was last sent, by key.
    pub(crate) fn alerted(&self) -> &Mutex<HashMap<String, Timestamp>> {
        &self.alerted
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
            Unit::Backup { job, database } => self.run_scheduled_backup(unit, job, database),
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

    pub(super) fn skipped(&self, unit: &Unit, why: &str) -> Result<()> {
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
}
