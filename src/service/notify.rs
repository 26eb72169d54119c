//! Telling monitors how each scheduled backup went, as a job's config
//! asks (see [`Notify`]): healthchecks.io's convention (GET `URL/start` as
//! the backup starts, GET `URL` when it succeeded, POST `URL/fail` with
//! the error as the body, so a monitor sees runs that hang as well as
//! runs that fail), and a webhook POSTed a JSON body when a backup failed
//! (and, if asked, when it succeeded):
//!
//! ```json
//! {"event":"failure","job":"production","database":"app",
//!  "repositories":["local","offsite"],"error":"offsite: ...","exit_code":16,
//!  "time":"2026-12-07T03:00:00Z","host":"db1"}
//! ```
//!
//! The body holds no secret: the error lines name objects and paths, never
//! a password or a token, and the URLs (which may hold one) are never
//! logged. A monitor that does not answer costs a logged event, never the
//! backup: each call has the heartbeat's time limit.

use super::config::Notify;
use super::runner::{Event, Service};
use crate::service::history::Outcome;

impl Service {
    /// A backup of a job with `notify` starts.
    pub(crate) fn notify_start(&self, job: &str, notify: &Notify) {
        if let Some(url) = &notify.healthchecks_url {
            self.call_monitor(
                "notify",
                job,
                "healthchecks start",
                &format!("{url}/start"),
                None,
            );
        }
    }

    /// A backup of `database` into `repositories` ended, with `failure`
    /// (the error and its exit code) if any of them failed.
    pub(crate) fn notify_end(
        &self,
        job: &str,
        database: &str,
        repositories: &[String],
        notify: &Notify,
        failure: Option<(&str, u8)>,
    ) {
        let error = failure.map(|(e, _)| e);
        if let Some(url) = &notify.healthchecks_url {
            match error {
                None => self.call_monitor("notify", job, "healthchecks success", url, None),
                Some(e) => self.call_monitor(
                    "notify",
                    job,
                    "healthchecks fail",
                    &format!("{url}/fail"),
                    Some(("text/plain; charset=utf-8", e.as_bytes().to_vec())),
                ),
            }
        }
        let Some(url) = &notify.webhook_url else {
            return;
        };
        if error.is_none() && !notify.webhook_on_success {
            return;
        }
        let body = serde_json::json!({
            "event": if error.is_some() { "failure" } else { "success" },
            "job": job,
            "database": database,
            "repositories": repositories,
            "error": error,
            "exit_code": failure.map_or(0, |(_, c)| c),
            "time": self.clock().now().to_string(),
            "host": crate::sys::hostname(),
        });
        self.call_monitor(
            "notify",
            job,
            "webhook",
            url,
            Some(("application/json", body.to_string().into_bytes())),
        );
    }

    /// GETs `url`, or POSTs `body`, and logs how it went as an `event`
    /// of `job` saying `what` (the heartbeat's calls and these).
    pub(crate) fn call_monitor(
        &self,
        event: &'static str,
        job: &str,
        what: &str,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) {
        let (outcome, message) = match super::heartbeat::send(url, body, self.cancel()) {
            Ok(status) => (Outcome::Success, format!("{what} answered {status}")),
            Err(m) => (Outcome::Failed, format!("{what} failed: {m}")),
        };
        self.event(Event {
            event,
            job: Some(job.into()),
            outcome: Some(outcome),
            message,
            ..Event::default()
        });
    }
}
