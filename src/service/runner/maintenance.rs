//! Whole-repository operations the service runs: prune and check; and
//! the heartbeat after a good backup.

use super::{error_line, Event, Service};
use crate::commands::check::{check, ReadData};
use crate::commands::prune::prune;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repository;
use crate::service::history::{Finish, Outcome, UnitKey};
use crate::service::units::Unit;

impl Service {
    /// Runs a whole operation on a repository, recorded and reported.
    pub(super) fn repo_operation(
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

    pub(super) fn run_prune(&self, job: &str, repo_name: &str) -> Result<bool> {
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
}
