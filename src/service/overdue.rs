//! "No successful backup for N": a job's `alert_after` is watched on a
//! thread of its own, beside the scheduler, so the alert comes even when
//! the scheduled runs never start (a stuck run, a database that never
//! appears, a lock that is never free). For each database of the job and
//! each repository, the time since its newest successful backup (by any
//! job, the API's included; if there was none, since the job's first
//! attempt in the history or the service's start, whichever came first)
//! is compared with `alert_after`; past it, the alert is logged, POSTed
//! to the job's webhook (`"event":"overdue"`) and to its healthchecks
//! URL's `/fail`, and sent again every `alert_after` while it lasts. A
//! successful backup ends it. `/metrics` has each database's and
//! repository's last success for Prometheus' own alerting.

use super::history::Outcome;
use super::runner::{Event, Service};
use crate::error::Result;

impl Service {
    /// Sends the alerts that are due now.
    pub fn check_overdue(&self) -> Result<()> {
        let config = self.config();
        let now = self.clock().now();
        for (job, j) in &config.jobs {
            let Some(limit) = j.notify.alert_after else {
                continue;
            };
            if j.continuous.is_some() {
                continue; // watched by its lag (max_lag, the heartbeat)
            }
            // With no success yet: since the job's first attempt, which
            // the history keeps across restarts and `run --once` runs, else
            // since the service started.
            let first = self
                .history()
                .first_start(job, "backup")?
                .map_or(self.started(), |t| t.min(self.started()));
            for database in &j.databases {
                for repo in &j.repositories {
                    let last = self.history().last_success(database, repo)?;
                    let since = last.unwrap_or(first);
                    let Ok(age) = std::time::Duration::try_from(now.duration_since(since)) else {
                        continue;
                    };
                    if age < limit {
                        continue;
                    }
                    let key = format!("{job}\0{database}\0{repo}");
                    {
                        let mut alerted = self.alerted().lock().unwrap();
                        let again = alerted.get(&key).is_none_or(|t| {
                            *t < since
                                || std::time::Duration::try_from(now.duration_since(*t))
                                    .is_ok_and(|d| d >= limit)
                        });
                        if !again {
                            continue;
                        }
                        alerted.insert(key, now);
                    }
                    let message = format!(
                        "no successful backup of {database} into {repo} for {} ({}; alert_after is {})",
                        crate::sys::format_duration(age),
                        last.map_or_else(
                            || format!("none since {since}"),
                            |t| format!("the last ended {t}")
                        ),
                        crate::sys::format_duration(limit)
                    );
                    self.alert_overdue(job, database, repo, last, &message);
                }
            }
        }
        Ok(())
    }

    fn alert_overdue(
        &self,
        job: &str,
        database: &str,
        repo: &str,
        last: Option<jiff::Timestamp>,
        message: &str,
    ) {
        self.event(Event {
            event: "overdue",
            level: "error",
            job: Some(job.into()),
            database: Some(database.into()),
            repository: Some(repo.into()),
            outcome: Some(Outcome::Failed),
            message: message.to_string(),
            ..Event::default()
        });
        let config = self.config();
        let Some(notify) = config.jobs.get(job).map(|j| &j.notify) else {
            return;
        };
        if let Some(url) = &notify.healthchecks_url {
            self.call_monitor(
                "notify",
                job,
                "healthchecks fail (overdue)",
                &format!("{url}/fail"),
                Some(("text/plain; charset=utf-8", message.as_bytes().to_vec())),
            );
        }
        if let Some(url) = &notify.webhook_url {
            let body = serde_json::json!({
                "event": "overdue",
                "job": job,
                "database": database,
                "repositories": [repo],
                "error": message,
                "last_success": last.map(|t| t.to_string()),
                "time": self.clock().now().to_string(),
                "host": crate::sys::hostname(),
            });
            self.call_monitor(
                "notify",
                job,
                "webhook (overdue)",
                url,
                Some(("application/json", body.to_string().into_bytes())),
            );
        }
    }
}
