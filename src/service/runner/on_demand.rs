//! Prune, check and forget on demand (the API's `POST /v1/prunes`,
//! `/v1/checks`, `/v1/forgets`): each a task like a backup, holding its
//! repository, recorded in the history under the job `api`.

use std::sync::Arc;

use serde::Deserialize;

use super::maintenance::Done;
use super::tasks::{StartError, TaskState};
use super::{busy_repo, Service, API_JOB};
use crate::commands::check::ReadData;
use crate::commands::forget::ForgetPolicy;

/// What an on-demand request asks for.
#[derive(Debug)]
pub enum Maintenance {
    /// Prune with the options of a job of the repository (else defaults).
    Prune,
    /// Check the structure, and `read` of the data.
    Check {
        /// How much data to read.
        read: ReadData,
    },
    /// Apply `policy` (else the retention of a job of the database) to
    /// the snapshots of configured database `database`.
    Forget {
        /// The database.
        database: String,
        /// The policy.
        policy: Option<ForgetPolicy>,
    },
}

/// The body of `POST /v1/checks`: `read_data_subset` as `n/m` or `all`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The repository (needed when several are configured).
    #[serde(default)]
    pub repository: Option<String>,
    /// `1/7`, or `all`; none: the structure only.
    #[serde(default)]
    pub read_data_subset: Option<String>,
}

impl CheckRequest {
    /// The data to read, or why the request is wrong.
    pub fn read(&self) -> std::result::Result<ReadData, String> {
        match self.read_data_subset.as_deref() {
            None => Ok(ReadData::None),
            Some("all") => Ok(ReadData::All),
            Some(s) => {
                let parsed = s.split_once('/').and_then(|(n, m)| {
                    let (n, m) = (n.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
                    (n >= 1 && n <= m && m <= 10_000).then_some(ReadData::Subset(n, m))
                });
                parsed.ok_or_else(|| {
                    format!(
                        "read_data_subset {s:?}: write n/m with 1 <= n <= m (\"1/7\"), or \"all\""
                    )
                })
            }
        }
    }
}

impl Service {
    /// The configured repository a request names, or the only candidate
    /// (`candidates`: the repositories it could mean); else an error
    /// saying which to name.
    pub fn repository_for(
        &self,
        named: Option<&str>,
        candidates: &[String],
    ) -> std::result::Result<String, StartError> {
        let config = self.config();
        match named {
            Some(r) if config.repositories.contains_key(r) => Ok(r.to_string()),
            Some(r) => Err(StartError::NotFound(format!(
                "no repository named {r:?} in the config"
            ))),
            None if candidates.len() == 1 => Ok(candidates[0].clone()),
            None if candidates.is_empty() => {
                Err(StartError::NotFound("no repository in the config".into()))
            }
            None => Err(StartError::Invalid(format!(
                "name the repository: one of {}",
                candidates.join(", ")
            ))),
        }
    }

    /// Starts `what` on configured repository `repository` as an API
    /// task; returns its id.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        repository: &str,
        what: Maintenance,
    ) -> std::result::Result<String, StartError> {
        let config = self.config();
        if !config.repositories.contains_key(repository) {
            return Err(StartError::NotFound(format!(
                "no repository named {repository:?} in the config"
            )));
        }
        let (kind, database) = match &what {
            Maintenance::Prune => ("prune", String::new()),
            Maintenance::Check { .. } => ("check", String::new()),
            Maintenance::Forget { database, policy } => {
                if !config.databases.contains_key(database) {
                    return Err(StartError::NotFound(format!(
                        "no database named {database:?} in the config"
                    )));
                }
                let has_job_policy = config
                    .jobs
                    .values()
                    .any(|j| j.databases.contains(database) && j.retention.is_some());
                if policy.is_none() && !has_job_policy {
                    return Err(StartError::Invalid(format!(
                        "no job of {database} has a retention policy: give one (\"policy\": {{\"keep_daily\": 7}})"
                    )));
                }
                ("forget", database.clone())
            }
        };
        let task = self.start_repo_task(kind, repository, &database)?;
        let id = task.view.lock().unwrap().id.clone();
        let me = Arc::clone(self);
        let repository = repository.to_string();
        std::thread::spawn(move || {
            let done = match what {
                Maintenance::Prune => {
                    let opts = me.prune_options(None, &repository);
                    me.prune_op(API_JOB, &repository, &opts)
                }
                Maintenance::Check { read } => {
                    me.check_op(API_JOB, &repository, read, &task.cancel)
                }
                Maintenance::Forget { database, policy } => {
                    let config = me.config();
                    let policy = policy.or_else(|| {
                        config
                            .jobs
                            .values()
                            .filter(|j| j.databases.contains(&database))
                            .find_map(|j| j.retention.clone())
                    });
                    match policy {
                        Some(p) => me.forget_op(API_JOB, &repository, &database, &p),
                        None => Err(crate::error::Error::InvalidInput(format!(
                            "no job of {database} has a retention policy any more"
                        ))),
                    }
                }
            };
            let done = done.unwrap_or_else(|e| Done {
                outcome: crate::service::history::Outcome::Failed,
                detail: None,
                error: Some((super::error_line(&e), crate::error::codes::exit_code(&e))),
            });
            {
                let mut v = task.view.lock().unwrap();
                v.finished = Some(me.clock.now().to_string());
                v.state = match done.outcome {
                    o if o.ok() => TaskState::Succeeded,
                    crate::service::history::Outcome::Cancelled => TaskState::Cancelled,
                    _ => TaskState::Failed,
                };
                if let Some(d) = done.detail {
                    v.result
                        .push(serde_json::json!({ "repository": repository, kind: d }));
                }
                if let Some((e, code)) = done.error {
                    v.error = Some(e);
                    v.exit_code = Some(code);
                }
            }
            me.release(&[busy_repo(&repository)]);
        });
        Ok(id)
    }
}
