//! What the service knows of its continuous jobs: the replications
//! running, by job, and how each stream is seen by the API and `/metrics`
//! (`service::continuous` starts and stops them).

use std::sync::Mutex;
use std::time::Instant;

use crate::commands::replicate::{Replication, StreamStatus};

/// The replications a service runs, by job.
#[derive(Default)]
pub struct Continuous {
    pub(super) running: Mutex<Vec<(String, Replication)>>,
    /// The streams of jobs waiting for their database files.
    pub(super) waiting: Mutex<Vec<StreamView>>,
    pub(super) last_heartbeat: Mutex<Option<Instant>>,
}

/// The phase of a stream whose database file does not exist yet.
pub const WAITING: &str = "waiting for the database file";

/// A continuous stream's status as the API and metrics show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamView {
    /// The job.
    pub job: String,
    /// Where the stream stands.
    #[serde(flatten)]
    pub status: StreamStatus,
    /// Seconds since the oldest commit not yet stored was read.
    pub lag_seconds: f64,
}

/// A metric: name, type, help, and its value for a stream.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StreamView) -> f64,
);

/// The replication metrics (Prometheus text).
pub fn metrics(views: &[StreamView]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let series: [Series; 7] = [
        (
            "litevault_replication_waiting",
            "gauge",
            "1 while the stream's database file does not exist yet (capture starts once it appears).",
            |v| f64::from(u8::from(v.status.phase == WAITING)),
        ),
        (
            "litevault_replication_lag_seconds",
            "gauge",
            "Age of the oldest captured commit not yet stored in the repository.",
            |v| v.lag_seconds,
        ),
        (
            "litevault_replication_commits_total",
            "counter",
            "Commits captured and sealed into change objects.",
            |v| v.status.commits as f64,
        ),
        (
            "litevault_replication_bytes_total",
            "counter",
            "Bytes written to the repository (change objects and bundles).",
            |v| v.status.bytes as f64,
        ),
        (
            "litevault_replication_requests_total",
            "counter",
            "Requests made to the repository (writes and deletes).",
            |v| (v.status.puts + v.status.deletes) as f64,
        ),
        (
            "litevault_replication_gaps_total",
            "counter",
            "Gaps found (each bridged by a snapshot).",
            |v| v.status.gaps as f64,
        ),
        (
            "litevault_replication_spool_bytes",
            "gauge",
            "Bytes waiting in the spool for the storage.",
            |v| v.status.spool_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        if views.is_empty() {
            break;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for v in views {
            let _ = writeln!(
                out,
                "{name}{{job=\"{}\",database=\"{}\",repository=\"{}\"}} {}",
                escape(&v.job),
                escape(&v.status.database),
                escape(&v.status.repository),
                value(v)
            );
        }
    }
    out
}

/// A Prometheus label value.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
