//! Whole-repository operations the service runs: prune, check and forget
//! (scheduled, or on demand through the API: `runner::on_demand`); and the
//! heartbeat after a good backup.

use super::{error_line, Event, Service};
use crate::commands::check::{check_with, ReadData};
use crate::commands::forget::{forget, plan_forget, ForgetPolicy};
use crate::commands::prune::{prune, PruneOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Cancel;
use crate::repo::{GroupBy, Repository, SnapshotFilter};
use crate::service::history::{Finish, Outcome, UnitKey};
use crate::service::units::Unit;

/// How a repository operation ended.
pub(super) struct Done {
    /// Its outcome (recorded in the history).
    pub outcome: Outcome,
    /// What it did, in words.
    pub detail: Option<String>,
    /// Why it failed, and the command line's exit code for that.
    pub error: Option<(String, u8)>,
}

impl Service {
    /// Runs a whole operation on a repository (of `database`, for a
    /// forget), recorded and reported.
    pub(super) fn repo_operation(
        &self,
        job: &str,
        operation: &'static str,
        (repo_name, database): (&str, Option<&str>),
        f: impl FnOnce(&Repository) -> Result<String>,
    ) -> Result<Done> {
        let key = UnitKey {
            job: job.to_string(),
            operation: operation.into(),
            database: database.map(str::to_string),
            repository: Some(repo_name.to_string()),
        };
        let start = self.clock.now();
        let row = self.history.start(&key, start)?;
        let r = self.open_repository(repo_name).and_then(|repo| f(&repo));
        let end = self.clock.now();
        let code = r.as_ref().err().map(crate::error::codes::exit_code);
        let done = match r {
            Ok(d) => Done {
                outcome: Outcome::Success,
                detail: Some(d),
                error: None,
            },
            Err(e) => Done {
                outcome: if e.kind() == ErrorKind::Interrupted {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed
                },
                detail: None,
                error: Some((error_line(&e), code.unwrap_or(1))),
            },
        };
        self.history.finish(
            row,
            end,
            done.outcome,
            &Finish {
                detail: done.detail.clone(),
                error: done.error.as_ref().map(|(e, _)| e.clone()),
                ..Finish::default()
            },
        )?;
        self.event(Event {
            event: operation,
            job: Some(job.into()),
            database: database.map(str::to_string),
            repository: Some(repo_name.into()),
            outcome: Some(done.outcome),
            duration_ms: Some(end.duration_since(start).as_millis().max(0) as u64),
            message: done
                .error
                .as_ref()
                .map(|(e, _)| e.clone())
                .or_else(|| done.detail.clone())
                .unwrap_or_default(),
            ..Event::default()
        });
        Ok(done)
    }

    /// The prune options of the first job with `repo_name` that has any.
    pub(super) fn prune_options(&self, job: Option<&str>, repo_name: &str) -> PruneOptions {
        let config = self.config();
        let mut jobs = config.jobs.iter().filter(|(name, j)| {
            job.is_none_or(|n| n == *name) && j.repositories.iter().any(|r| r == repo_name)
        });
        jobs.find_map(|(_, j)| j.prune.as_ref().map(|(_, o)| *o))
            .unwrap_or_default()
    }

    pub(super) fn run_prune(&self, job: &str, repo_name: &str) -> Result<bool> {
        let opts = self.prune_options(Some(job), repo_name);
        Ok(self.prune_op(job, repo_name, &opts)?.outcome.ok())
    }

    /// Prunes `repo_name` with `opts`.
    pub(super) fn prune_op(&self, job: &str, repo_name: &str, opts: &PruneOptions) -> Result<Done> {
        self.repo_operation(job, "prune", (repo_name, None), |repo| {
            let s = prune(repo, opts)?;
            Ok(match &s.stats {
                Some(st) => format!(
                    "deleted {} pack(s), wrote {}, freed {} bytes",
                    st.packs_deleted, st.new_packs, st.freed_bytes
                ),
                None => "nothing to prune".into(),
            })
        })
    }

    pub(super) fn run_check(&self, job: &str, repo_name: &str) -> Result<bool> {
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
        // The service's stop ends a long check at once.
        let cancel = self.cancel().clone();
        Ok(self.check_op(job, repo_name, read, &cancel)?.outcome.ok())
    }

    /// Checks `repo_name`, reading `read` of its data, until `cancel`.
    pub(super) fn check_op(
        &self,
        job: &str,
        repo_name: &str,
        read: ReadData,
        cancel: &Cancel,
    ) -> Result<Done> {
        self.repo_operation(job, "check", (repo_name, None), |repo| {
            let report = check_with(repo, read, cancel)?;
            let what = match read {
                ReadData::Subset(n, m) => format!("structure and data subset {n}/{m}"),
                ReadData::All => "structure and all data".into(),
                ReadData::None => "structure".into(),
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
            Ok(format!("checked the {what}: no problems"))
        })
    }

    /// Applies `policy` to the snapshots of configured `database` in
    /// `repo_name`.
    pub(super) fn forget_op(
        &self,
        job: &str,
        repo_name: &str,
        database: &str,
        policy: &ForgetPolicy,
    ) -> Result<Done> {
        let config = self.config();
        let path = config
            .databases
            .get(database)
            .map(|d| d.backup.path.clone());
        self.repo_operation(job, "forget", (repo_name, Some(database)), |repo| {
            let path = path.ok_or_else(|| {
                Error::InvalidInput(format!("database {database} is no longer in the config"))
            })?;
            let filter = SnapshotFilter {
                database_paths: vec![crate::format::manifest::DbPath::of(&path)],
                ..SnapshotFilter::default()
            };
            let plan = plan_forget(repo, policy, GroupBy::default(), &filter)?;
            let s = forget(repo, &plan, false)?;
            Ok(format!("removed {} snapshot(s)", s.removed))
        })
    }

    /// Calls a job's heartbeat URL (failures are logged, not fatal).
    pub(crate) fn heartbeat(&self, job: &str, url: &str) {
        self.call_monitor("heartbeat", job, "heartbeat", url, None);
    }
}
