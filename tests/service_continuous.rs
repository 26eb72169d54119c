//! The service's continuous jobs, against the real daemon: a job with
//! `continuous = true` captures every commit into each of its
//! repositories; the API shows each stream's lag, `/metrics` the
//! replication series, restores and downloads accept `at`, the heartbeat
//! is sent while the lag is under the job's bound; stopping the service
//! stores what it captured.

use std::time::Duration;

use rusqlite::Connection;

use crate::replicate::{burst, state_of, wal_db, Logged};
use crate::service::{http, json, monitor, wait_task, Daemon, Svc, TOKEN};

#[test]
fn a_continuous_job_captures_every_commit_and_the_api_shows_and_restores_it() {
    let s = Svc::new();
    let app = s.path("app.db");
    wal_db(&app, 4096);
    let (mon, seen) = monitor();
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\n\
         [jobs.live]\ndatabases = [\"app\"]\nrepositories = [\"one\", \"two\"]\n\
         continuous = true\ninterval = \"500ms\"\nmax_lag = \"30s\"\n\
         heartbeat_url = \"http://{mon}/live\"\n",
        app.display()
    ));
    let checked = crate::util::run(s.cmd(&["config", "check", p.to_str().unwrap()]));
    assert!(
        checked.ok().contains("capture every commit of app"),
        "{checked:?}"
    );
    let d = Daemon::start(s.cmd(&["run", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    d.wait_for("capture to start", Duration::from_secs(30), |ls| {
        ls.iter()
            .any(|l| l.contains("capturing 1 database(s) into 2"))
    });
    let conn = Connection::open(&app).unwrap();
    let mut log: Vec<Logged> = Vec::new();
    burst(&conn, 40, &mut log, &app);
    std::thread::sleep(Duration::from_secs(2));

    // Each stream's place and lag, in the status and the metrics.
    let (st, _, b) = http(&addr, "GET", "/v1/status", Some(TOKEN), None);
    assert_eq!(st, 200);
    let status = json(&b);
    let streams = status["replication"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{status}");
    for v in streams {
        assert_eq!(v["job"], "live");
        assert_eq!(v["phase"], "running", "{v}");
        assert!(v["commits"].as_u64().unwrap() >= 35, "{v}");
        assert!(v["lag_seconds"].as_f64().unwrap() < 5.0, "{v}");
    }
    let (_, _, b) = http(&addr, "GET", "/metrics", Some(TOKEN), None);
    let metrics = String::from_utf8(b).unwrap();
    for series in [
        "litevault_replication_lag_seconds{job=\"live\",",
        "litevault_replication_bytes_total{",
        "litevault_replication_requests_total{",
    ] {
        assert!(metrics.contains(series), "{series} missing: {metrics}");
    }
    // The heartbeat: the lag is under the bound.
    d.wait_for("a heartbeat", Duration::from_secs(40), |_| {
        seen.lock().unwrap().iter().any(|l| l.contains("/live"))
    });

    // A download at a moment of the stream, through the API.
    let mid = log[20].at_ns + 4_000_000;
    let moment = jiff::Timestamp::from_nanosecond(i128::from(mid))
        .unwrap()
        .to_string();
    let snaps = s.snapshots(&s.env.repo);
    let id = snaps[0]["id"].as_str().unwrap().to_string();
    let (st, head, body) = http(
        &addr,
        "GET",
        &format!("/v1/snapshots/{id}/database?at={moment}&repository=one"),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let got = s.path("download.db");
    std::fs::write(&got, &body).unwrap();
    assert_eq!(state_of(&got), log[20].state);
    let (st, _, b) = http(
        &addr,
        "GET",
        &format!("/v1/snapshots/{id}/database?at=yesterday"),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&b));

    // A restore of the database to that moment, the snapshot chosen.
    drop(conn);
    let body = format!(r#"{{"database":"app","at":"{moment}","repository":"two"}}"#);
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(TOKEN),
        Some(body.as_bytes()),
    );
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let task = wait_task(&addr, json(&b)["task_id"].as_str().unwrap());
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(state_of(&app), log[20].state);

    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("capture stopped"), "{err}");
}
