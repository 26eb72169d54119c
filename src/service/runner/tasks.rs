//! The service's tasks: what runs, for the API to poll, and the busy
//! marks that keep one operation per database and per repository.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{busy_db, busy_repo, Service};
use crate::error::Error;
use crate::progress::{Cancel, Progress};

/// Most finished tasks remembered for polling.
const TASKS_KEPT: usize = 1000;

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Started, not done.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Stopped by the service's shutdown or `DELETE /v1/tasks/{id}`.
    Cancelled,
}

/// A backup or restore the service runs, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    /// Its id.
    pub id: String,
    /// `backup`, `restore`, `prune`, `check` or `forget`.
    pub kind: &'static str,
    /// The job that ran it (`api` for one the API started).
    pub job: String,
    /// The database (empty for a prune or a check).
    pub database: String,
    /// The repository (for a prune, a check or a forget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
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
    /// The exit code the command line gives for that failure (its first,
    /// with several repositories; see `error::codes`).
    pub exit_code: Option<u8>,
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
pub(super) struct Counters {
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

pub(super) struct Task {
    pub(super) view: Mutex<TaskView>,
    pub(super) counters: Arc<Counters>,
    /// Stops this task (and is stopped by the service's shutdown).
    pub(super) cancel: Cancel,
}

/// Which tasks a listing shows, newest first.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    /// Only tasks in this state.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// Only `backup` or only `restore` tasks.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only tasks on this configured database.
    #[serde(default)]
    pub database: Option<String>,
    /// At most this many (default 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// What asking a task to stop found.
#[derive(Debug)]
pub enum Cancelled {
    /// It was running: it stops at its next check, keeping nothing half-done.
    Requested(TaskView),
    /// It had ended already.
    Ended(TaskView),
    /// It cannot be stopped midway (a prune or a forget): it ends
    /// by itself.
    Unstoppable(TaskView),
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

impl Service {
    /// Reserves busy keys for `task`; on conflict returns the holder.
    pub(super) fn reserve(&self, keys: &[String], task: &str) -> Option<String> {
        let mut busy = self.busy.lock().unwrap();
        if let Some(holder) = keys.iter().find_map(|k| busy.get(k)) {
            return Some(holder.clone());
        }
        for k in keys {
            busy.insert(k.clone(), task.to_string());
        }
        None
    }

    pub(super) fn release(&self, keys: &[String]) {
        let mut busy = self.busy.lock().unwrap();
        for k in keys {
            busy.remove(k);
        }
    }

    pub(super) fn new_task(&self, kind: &'static str, job: &str, database: &str) -> Arc<Task> {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task {
            view: Mutex::new(TaskView {
                id: format!("{id}"),
                kind,
                job: job.to_string(),
                database: database.to_string(),
                repository: None,
                state: TaskState::Running,
                progress: TaskProgress::default(),
                started: self.clock.now().to_string(),
                finished: None,
                result: Vec::new(),
                error: None,
                exit_code: None,
            }),
            counters: Arc::new(Counters::default()),
            cancel: self.cancel.child(),
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
        Some(view_of(&task))
    }

    /// The tasks `filter` selects, newest first (the last
    /// [`TASKS_KEPT`] are remembered).
    pub fn tasks(&self, filter: &TaskFilter) -> Vec<TaskView> {
        let all: Vec<Arc<Task>> = self.tasks.lock().unwrap().values().cloned().collect();
        all.iter()
            .rev()
            .map(|t| view_of(t))
            .filter(|v| filter.state.is_none_or(|s| v.state == s))
            .filter(|v| filter.kind.as_deref().is_none_or(|k| v.kind == k))
            .filter(|v| filter.database.as_deref().is_none_or(|d| v.database == d))
            .take(filter.limit.unwrap_or(100))
            .collect()
    }

    /// Asks task `id` to stop: a backup stops with no snapshot written, a
    /// restore with its target untouched, a check (which only reads) at
    /// the next pack. `None` if there is no such task.
    pub fn cancel_task(&self, id: &str) -> Option<Cancelled> {
        let id: u64 = id.parse().ok()?;
        let task = self.tasks.lock().unwrap().get(&id).cloned()?;
        let view = view_of(&task);
        if view.state != TaskState::Running {
            return Some(Cancelled::Ended(view));
        }
        if !matches!(view.kind, "backup" | "restore" | "check") {
            return Some(Cancelled::Unstoppable(view));
        }
        task.cancel.cancel();
        Some(Cancelled::Requested(view))
    }

    /// Registers a `kind` task of the API on repository `repository` (and
    /// `database`, for a forget), holding the repository, or says which
    /// task holds it.
    pub(super) fn start_repo_task(
        &self,
        kind: &'static str,
        repository: &str,
        database: &str,
    ) -> std::result::Result<Arc<Task>, StartError> {
        let task = self.new_task(kind, super::API_JOB, database);
        task.view.lock().unwrap().repository = Some(repository.to_string());
        self.hold(task, busy_repo(repository))
    }

    /// Reserves busy key `key` for new `task`, or forgets the task and
    /// says which task holds the key.
    fn hold(&self, task: Arc<Task>, key: String) -> std::result::Result<Arc<Task>, StartError> {
        let id = task.view.lock().unwrap().id.clone();
        if let Some(holder) = self.reserve(&[key], &id) {
            self.tasks
                .lock()
                .unwrap()
                .remove(&id.parse::<u64>().unwrap_or(0));
            return Err(StartError::Busy(holder));
        }
        Ok(task)
    }

    /// Registers a `kind` task on `database`, holding the database, or
    /// says which task holds it.
    pub(super) fn start_task(
        &self,
        kind: &'static str,
        job: &str,
        database: &str,
    ) -> std::result::Result<Arc<Task>, StartError> {
        let task = self.new_task(kind, job, database);
        self.hold(task, busy_db(database))
    }

    /// Waits until every running task has ended (at shutdown), at most `limit`.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.busy.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A task's view, its progress counters read now.
fn view_of(task: &Task) -> TaskView {
    let mut v = task.view.lock().unwrap().clone();
    v.progress = TaskProgress {
        bytes_done: task.counters.done.load(Ordering::Relaxed),
        bytes_total: task.counters.total.load(Ordering::Relaxed),
    };
    v
}
