//! The service's tasks: what runs, for the API to poll, and the busy
//! marks that keep one operation per database and per repository.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::{busy_db, Service};
use crate::error::Error;
use crate::progress::Progress;

/// Most finished tasks remembered for polling.
const TASKS_KEPT: usize = 1000;

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

    pub(super) fn new_task(&self, kind: &'static str, database: &str) -> Arc<Task> {
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
    pub(super) fn start_task(
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

    /// Waits until every running task has ended (at shutdown), at most `limit`.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.busy.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
