//! What the service has done and will do: per job, the last run, the
//! last success, the next run and the failures since the last success
//! (the `status` view, also `GET /v1/status`; what the API started shows
//! as a job `api`), and the Prometheus metrics.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use super::config::Config;
use super::history::{History, Outcome, Run};
use super::runner::API_JOB;
use super::units::{next_run, units, Unit};
use crate::error::Result;

/// One scheduled unit's state.
#[derive(Clone, Debug, Serialize)]
pub struct UnitStatus {
    /// backup, prune or check.
    pub operation: &'static str,
    /// The database (backups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The repository (prune, check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Its schedule, in words.
    pub schedule: String,
    /// Its newest run.
    pub last_run: Option<Run>,
    /// When its newest successful run ended.
    pub last_success: Option<String>,
    /// When it runs next.
    pub next_run: Option<String>,
    /// Failed runs since the last success.
    pub failures_since_success: u64,
}

/// One job's state.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    /// The job.
    pub job: String,
    /// Its newest run of any unit.
    pub last_run: Option<Run>,
    /// When its newest success ended.
    pub last_success: Option<String>,
    /// Its earliest next run.
    pub next_run: Option<String>,
    /// Failed runs since its units' last successes, summed.
    pub failures_since_success: u64,
    /// Its units.
    pub units: Vec<UnitStatus>,
}

/// The whole view.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// When it was taken.
    pub time: String,
    /// Per job.
    pub jobs: Vec<JobStatus>,
    /// Every stream of the continuous jobs the service runs (empty where no
    /// service runs them: `litevault status` reads only the history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<super::streams::StreamView>,
}

/// Runs considered per job.
const RUNS_PER_JOB: usize = 10_000;

fn failed(o: Outcome) -> bool {
    matches!(o, Outcome::Failed | Outcome::Interrupted)
}

/// The status of every job in `config` at `now`.
pub fn status(config: &Config, history: &History, now: Timestamp) -> Result<Status> {
    let all = units(config);
    let mut jobs = Vec::new();
    for job in config.jobs.keys() {
        let runs = history.runs(Some(job), RUNS_PER_JOB)?;
        let mut unit_views = Vec::new();
        for (unit, schedule) in all.iter().filter(|(u, _)| unit_job(u) == job) {
            let key = unit.key();
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| {
                    r.operation == key.operation
                        && (key.database.is_none() || r.database == key.database)
                        && (key.repository.is_none() || r.repository == key.repository)
                        && r.outcome != Outcome::Skipped
                })
                .collect();
            let success = mine.iter().position(|r| r.outcome.ok());
            let failures = mine[..success.unwrap_or(mine.len())]
                .iter()
                .filter(|r| failed(r.outcome))
                .count() as u64;
            unit_views.push(UnitStatus {
                operation: match unit {
                    Unit::Backup { .. } => "backup",
                    Unit::Prune { .. } => "prune",
                    Unit::Check { .. } => "check",
                },
                database: key.database.clone(),
                repository: key.repository.clone(),
                schedule: schedule.to_string(),
                last_run: mine.first().map(|r| (*r).clone()),
                last_success: success.and_then(|i| mine[i].end.clone()),
                next_run: next_run(history, unit, schedule, now)?.map(|t| t.to_string()),
                failures_since_success: failures,
            });
        }
        let last_run = runs.iter().find(|r| r.outcome != Outcome::Skipped).cloned();
        let last_success = runs
            .iter()
            .find(|r| r.outcome.ok())
            .and_then(|r| r.end.clone());
        let next = unit_views.iter().filter_map(|u| u.next_run.clone()).min();
        jobs.push(JobStatus {
            job: job.clone(),
            last_run,
            last_success,
            next_run: next,
            failures_since_success: unit_views.iter().map(|u| u.failures_since_success).sum(),
            units: unit_views,
        });
    }
    if let Some(api) = api_runs(history)? {
        jobs.push(api);
    }
    Ok(Status {
        time: now.to_string(),
        jobs,
        replication: Vec::new(),
    })
}

/// The runs the API started, as a job of their own (`api`): one unit per
/// operation and database (or repository), run on demand.
fn api_runs(history: &History) -> Result<Option<JobStatus>> {
    let runs = history.runs(Some(API_JOB), RUNS_PER_JOB)?;
    if runs.is_empty() {
        return Ok(None);
    }
    let mut units: Vec<UnitStatus> = Vec::new();
    for r in runs.iter().filter(|r| r.outcome != Outcome::Skipped) {
        let operation = match r.operation.as_str() {
            "backup" => "backup",
            "restore" => "restore",
            "forget" => "forget",
            "prune" => "prune",
            "check" => "check",
            _ => continue,
        };
        // Backups and restores by database; the rest by repository.
        let (database, repository) = if matches!(operation, "backup" | "restore") {
            (r.database.clone(), None)
        } else {
            (r.database.clone(), r.repository.clone())
        };
        if units.iter().any(|u| {
            u.operation == operation && u.database == database && u.repository == repository
        }) {
            continue;
        }
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|x| {
                x.operation == operation
                    && x.database == database
                    && (repository.is_none() || x.repository == repository)
                    && x.outcome != Outcome::Skipped
            })
            .collect();
        let success = mine.iter().position(|x| x.outcome.ok());
        units.push(UnitStatus {
            operation,
            database,
            repository,
            schedule: "on demand".into(),
            last_run: mine.first().map(|x| (*x).clone()),
            last_success: success.and_then(|i| mine[i].end.clone()),
            next_run: None,
            failures_since_success: mine[..success.unwrap_or(mine.len())]
                .iter()
                .filter(|x| failed(x.outcome))
                .count() as u64,
        });
    }
    Ok(Some(JobStatus {
        job: API_JOB.into(),
        last_run: runs.iter().find(|r| r.outcome != Outcome::Skipped).cloned(),
        last_success: runs
            .iter()
            .find(|r| r.outcome.ok())
            .and_then(|r| r.end.clone()),
        next_run: None,
        failures_since_success: units.iter().map(|u| u.failures_since_success).sum(),
        units,
    }))
}

fn unit_job(u: &Unit) -> &str {
    match u {
        Unit::Backup { job, .. } | Unit::Prune { job, .. } | Unit::Check { job, .. } => job,
    }
}

/// A label value as Prometheus' text format writes it.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in Prometheus' text exposition format.
pub fn metrics(history: &History) -> Result<String> {
    let rows = history.backup_metrics()?;
    let mut out = String::new();
    let mut family =
        |name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&super::history::BackupMetrics) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for r in &rows {
                if let Some(v) = value(r) {
                    let _ = writeln!(
                        out,
                        "{name}{{database=\"{}\",repository=\"{}\"}} {v}",
                        label(&r.database),
                        label(&r.repository)
                    );
                }
            }
        };
    family(
        "litevault_backup_last_success_timestamp_seconds",
        "gauge",
        "When the newest successful backup ended (Unix time).",
        &|r| {
            r.last_success_ms
                .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
        },
    );
    family(
        "litevault_backup_last_duration_seconds",
        "gauge",
        "How long the newest backup took.",
        &|r| {
            r.last_duration_ms
                .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
        },
    );
    family(
        "litevault_backup_bytes_added_total",
        "counter",
        "Bytes backups added to the repository (compressed and encrypted), over the kept history.",
        &|r| Some(r.bytes_added.to_string()),
    );
    family(
        "litevault_backup_failures_total",
        "counter",
        "Failed backups, over the kept history.",
        &|r| Some(r.failures.to_string()),
    );
    family(
        "litevault_snapshots",
        "gauge",
        "Snapshots of the database in the repository after the newest backup.",
        &|r| r.snapshots.map(|n| n.to_string()),
    );
    let _ = writeln!(
        out,
        "# HELP litevault_backup_waiting 1 while a job's database file does not exist yet (its backups wait for it)."
    );
    let _ = writeln!(out, "# TYPE litevault_backup_waiting gauge");
    for (job, database) in history.waiting()? {
        let _ = writeln!(
            out,
            "litevault_backup_waiting{{job=\"{}\",database=\"{}\"}} 1",
            label(&job),
            label(&database)
        );
    }
    let _ = writeln!(out, "# HELP litevault_up The service is running.");
    let _ = writeln!(out, "# TYPE litevault_up gauge");
    let _ = writeln!(out, "litevault_up 1");
    Ok(out)
}
