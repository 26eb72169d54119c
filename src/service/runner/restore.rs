//! Restores the API starts: the snapshot (or moment) resolved in the
//! configured repositories, then restored into a configured database.

use std::sync::Arc;

use serde::Deserialize;

use super::tasks::{StartError, TaskState};
use super::{busy_db, error_line, Event, Service, API_JOB};
use crate::commands::restore::{restore, At};
use crate::error::ErrorKind;
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::{Repository, SnapshotFilter};
use crate::service::history::{Finish, Outcome, UnitKey};

/// An API restore (`POST /v1/restores`): which snapshot, into which
/// configured database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot id, unique prefix, or `latest` (the newest snapshot of
    /// `from` with `tag`, in any configured repository unless one is named).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The configured database restored into.
    pub database: String,
    /// `latest` or an RFC 3339 time: the database after the last commit
    /// captured then (the snapshot is chosen unless given).
    #[serde(default)]
    pub at: Option<String>,
    /// The configured repository (else every one is searched).
    #[serde(default)]
    pub repository: Option<String>,
    /// The configured database whose snapshots `latest` and `at` choose
    /// from (default: `database` itself; production's into a demo).
    #[serde(default)]
    pub from: Option<String>,
    /// With `latest`: only snapshots with these tags (`a,b`: both).
    #[serde(default)]
    pub tag: Option<String>,
}

/// A lookup's failure: a bad or ambiguous spec is the caller's, anything
/// else the repository's.
fn lookup_error(e: crate::error::Error) -> StartError {
    match e.kind() {
        ErrorKind::InvalidInput | ErrorKind::Ambiguous => StartError::Invalid(error_line(&e)),
        _ => StartError::Failed(e),
    }
}

impl Service {
    /// Finds the snapshot `req` names: its repository (by name), the
    /// repository opened, and its id.
    fn resolve_restore(
        &self,
        req: &RestoreRequest,
        at: Option<At>,
    ) -> std::result::Result<(String, Repository, SnapshotId), StartError> {
        let config = self.config();
        let from = req.from.as_deref().unwrap_or(&req.database);
        let Some(source) = config.databases.get(from) else {
            return Err(StartError::NotFound(format!(
                "no database named {from:?} in the config"
            )));
        };
        let snapshot = match (req.snapshot.as_deref(), at) {
            (Some(s), _) => s,
            // With `at` alone, the snapshot is chosen in the repository.
            (None, Some(_)) => "",
            (None, None) => {
                return Err(StartError::Invalid(
                    "give a snapshot id or latest, or `at` (latest, or an RFC 3339 time)".into(),
                ))
            }
        };
        if !snapshot.is_empty()
            && snapshot != "latest"
            && (snapshot.len() > 64 || !snapshot.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(StartError::Invalid(format!(
                "snapshot {snapshot:?}: give a snapshot id (hex digits) or latest"
            )));
        }
        let mut filter = SnapshotFilter {
            database_paths: vec![crate::format::manifest::DbPath::of(&source.backup.path)],
            ..SnapshotFilter::default()
        };
        if let Some(t) = &req.tag {
            let set = crate::repo::split_tags(std::slice::from_ref(t))
                .map_err(|e| StartError::Invalid(error_line(&e)))?;
            if !set.is_empty() {
                filter.tags.push(set);
            }
        }
        if snapshot.is_empty() {
            // With `at` alone: chosen in each repository's stream.
            let until = at.and_then(At::until_ns).unwrap_or(i64::MAX);
            for name in self.repository_names(req.repository.as_deref())? {
                let repo = self.open_repository(&name).map_err(StartError::Failed)?;
                match crate::commands::pitr::choose(&repo, &filter, until) {
                    Ok(c) => {
                        let (id, _) = c.into_iter().next().expect("at least one");
                        return Ok((name, repo, id));
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(lookup_error(e)),
                }
            }
            return Err(StartError::NotFound(format!(
                "no snapshot of {from} at that time in the configured repositories"
            )));
        }
        if snapshot != "latest" {
            filter = SnapshotFilter::default();
        }
        let (name, repo, id, _) =
            self.find_snapshot(snapshot, req.repository.as_deref(), &filter)?;
        Ok((name, repo, id))
    }

    /// The configured repository `named`, or all of them.
    fn repository_names(
        &self,
        named: Option<&str>,
    ) -> std::result::Result<Vec<String>, StartError> {
        let config = self.config();
        match named {
            Some(r) if config.repositories.contains_key(r) => Ok(vec![r.to_string()]),
            Some(r) => Err(StartError::NotFound(format!(
                "no repository named {r:?} in the config"
            ))),
            None => Ok(config.repositories.keys().cloned().collect()),
        }
    }

    /// Snapshot `spec` (an id, a unique prefix, or `latest` narrowed by
    /// `filter`) in configured repository `named`, else in every one: an
    /// id is in one of them, `latest` is the newest of all.
    pub fn find_snapshot(
        &self,
        spec: &str,
        named: Option<&str>,
        filter: &SnapshotFilter,
    ) -> std::result::Result<(String, Repository, SnapshotId, Manifest), StartError> {
        let searched = self.repository_names(named)?;
        let mut found: Option<(String, Repository, SnapshotId, Manifest)> = None;
        for name in &searched {
            let repo = self.open_repository(name).map_err(StartError::Failed)?;
            match repo.find_snapshot(spec, filter) {
                Ok((id, m)) => {
                    let newer = found
                        .as_ref()
                        .is_none_or(|f| m.timestamp() > f.3.timestamp());
                    if newer {
                        found = Some((name.clone(), repo, id, m));
                    }
                    if spec != "latest" {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(lookup_error(e)),
            }
        }
        found.ok_or_else(|| {
            StartError::NotFound(format!(
                "no snapshot {spec} in {}",
                if searched.len() == 1 {
                    format!("repository {}", searched[0])
                } else {
                    "any configured repository".into()
                }
            ))
        })
    }

    /// Starts the API restore `req` asks for; returns the task id.
    pub fn spawn_restore(
        self: &Arc<Self>,
        req: &RestoreRequest,
    ) -> std::result::Result<String, StartError> {
        let config = self.config();
        let database = req.database.as_str();
        let Some(db) = config.databases.get(database) else {
            return Err(StartError::NotFound(format!(
                "no database named {database:?} in the config"
            )));
        };
        let at = req
            .at
            .as_deref()
            .map(At::parse)
            .transpose()
            .map_err(|e| StartError::Invalid(error_line(&e)))?;
        let (repo_name, repo, id) = self.resolve_restore(req, at)?;
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
