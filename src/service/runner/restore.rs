//! Restores the API starts: the snapshot (or moment) resolved in the
//! configured repositories, then restored into a configured database.

use std::sync::Arc;

use super::tasks::{StartError, TaskState};
use super::{busy_db, error_line, Event, Service, API_JOB};
use crate::commands::restore::{restore, At};
use crate::error::ErrorKind;
use crate::progress::Progress;
use crate::repo::SnapshotFilter;
use crate::service::history::{Finish, Outcome, UnitKey};

impl Service {
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
        let task = self.start_task("restore", API_JOB, database)?;
        let task_id = task.view.lock().unwrap().id.clone();
        let mut opts = db.restore.clone();
        opts.at = at;
        opts.cancel = task.cancel.clone();
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
                v.exit_code = r.as_ref().err().map(crate::error::codes::exit_code);
                if let Ok(s) = r {
                    v.result
                        .push(serde_json::json!({"repository": repo_name, "restore": s}));
                }
            }
            me.release(&[busy_db(&database)]);
        });
        Ok(task_id)
    }
}
