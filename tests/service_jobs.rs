//! How the service runs a job's work and what the API asks of it: one
//! read of a database stored into every repository of the job; tasks
//! listed and stopped; a database that does not exist yet waited for;
//! `latest`, repositories searched, and maintenance on demand.

// Each test is one scenario, told in order.
#![allow(clippy::too_many_lines)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::service::Svc;
use crate::util;

/// A WAL-mode database of about 8 MiB.
fn busy_db(s: &Svc, name: &str) -> std::path::PathBuf {
    let p = s.path(name);
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t(v) SELECT randomblob(4000) FROM n;",
    )
    .unwrap();
    p
}

/// Commits a row every millisecond until stopped; returns how many.
fn writer(path: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        n
    })
}

#[test]
fn a_job_with_two_repositories_stores_one_read_of_the_database_in_each() {
    let s = Svc::new();
    let db = busy_db(&s, "busy.db");
    let p = s.write_config(&format!(
        "[databases.busy]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"busy\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1h\"\n",
        db.display()
    ));
    // Commits land all through the run: two reads would see two states.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = writer(db.clone(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(100));
    let first_run = util::run(s.cmd(&["run", "--once", "--config", p.to_str().unwrap()]));
    stop.store(true, Ordering::Relaxed);
    let written = commits.join().unwrap();
    first_run.ok();
    assert!(written > 20, "the writer committed {written} rows");
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='backup' AND outcome='success'"),
        2
    );

    // One snapshot in each, recording the same time...
    let one = s.snapshots(&s.env.repo);
    let two = s.snapshots(&s.repo2);
    assert_eq!((one.len(), two.len()), (1, 1), "{one:?} {two:?}");
    assert_eq!(one[0]["time"], two[0]["time"]);
    // ...and the same image, byte for byte.
    let dump = |repo: &std::path::Path, out: &str| {
        let f = s.path(out);
        util::run(
            s.env
                .command_for(repo, &["dump", "latest", "--output", f.to_str().unwrap()]),
        )
        .ok();
        std::fs::read(f).unwrap()
    };
    let first = dump(&s.env.repo, "one.db");
    let second = dump(&s.repo2, "two.db");
    assert!(
        first == second,
        "the two repositories hold different images"
    );
    let rows = |f: &str| -> i64 {
        rusqlite::Connection::open(s.path(f))
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    let held_rows = rows("one.db");
    assert!(
        held_rows > 2000 && held_rows <= 2000 + i64::try_from(written).unwrap(),
        "{held_rows}"
    );

    // A repository that fails (held exclusively) fails alone; the other
    // still gets its snapshot.
    let held = litevault::Repository::open_local(&s.repo2, util::PASSWORD.as_bytes()).unwrap();
    let guard = held.lock(litevault::LockKind::Exclusive, "prune").unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO t(v) VALUES (x'00')", [])
        .unwrap();
    let second_run = util::run(
        s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2099-01-01T00:00:00Z*0"),
    );
    assert_eq!(second_run.code, 1, "{second_run:?}");
    assert!(
        second_run.stderr.contains("repository=two"),
        "{second_run:?}"
    );
    drop(guard);
    assert_eq!(s.snapshots(&s.env.repo).len(), 2);
    assert_eq!(s.snapshots(&s.repo2).len(), 1);
}

#[test]
fn tasks_are_listed_and_a_running_one_is_stopped_leaving_nothing_half_done() {
    use crate::service::{http, json, start_task, wait_task, Daemon, TOKEN};
    let s = Svc::new();
    let app = s.small_db("app.db");
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\nlock_timeout = \"60s\"\n\
         [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n",
        app.display()
    ));
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    let post_backup = || start_task(&addr, "/v1/backups", "{\"database\":\"app\"}");
    let list = |query: &str| {
        let (st, _, b) = http(
            &addr,
            "GET",
            &format!("/v1/tasks{query}"),
            Some(TOKEN),
            None,
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
        json(&b)
    };

    // A writer holds the database: the backup waits for it, and is listed
    // as running.
    let holder = rusqlite::Connection::open(&app).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t(v) VALUES ('three');")
        .unwrap();
    let waiting = post_backup();
    let running = list("?state=running");
    assert_eq!(running.as_array().unwrap().len(), 1, "{running}");
    assert_eq!(running[0]["id"], waiting.as_str());
    assert_eq!(running[0]["job"], "api");
    assert_eq!(running[0]["kind"], "backup");

    // Stopped: cancelled, no snapshot, recorded as cancelled.
    let (st, _, b) = http(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{waiting}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let ended = wait_task(&addr, &waiting);
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert!(s.snapshots(&s.env.repo).is_empty());
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='backup' AND outcome='cancelled'"),
        1
    );
    let (st, _, b) = http(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{waiting}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 409);
    assert!(String::from_utf8_lossy(&b).contains("ended already (cancelled)"));
    assert_eq!(
        http(&addr, "DELETE", "/v1/tasks/999", Some(TOKEN), None).0,
        404
    );

    // The next backup is not touched by the cancellation before it.
    holder.execute_batch("ROLLBACK").unwrap();
    let next = post_backup();
    assert_eq!(wait_task(&addr, &next)["state"], "succeeded");
    assert_eq!(s.snapshots(&s.env.repo).len(), 1);
    let all = list("");
    assert_eq!(all[0]["id"], next.as_str(), "newest first: {all}");
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(list("?state=cancelled").as_array().unwrap().len(), 1);
    assert_eq!(list("?limit=1").as_array().unwrap().len(), 1);
    assert_eq!(
        http(&addr, "GET", "/v1/tasks?limit=0", Some(TOKEN), None).0,
        400
    );
    assert_eq!(
        http(&addr, "GET", "/v1/tasks?state=sleeping", Some(TOKEN), None).0,
        400
    );
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_database_that_does_not_exist_yet_is_waited_for_and_backed_up_once_it_appears() {
    use crate::service::{http, Daemon, TOKEN};
    let s = Svc::new();
    let app = s.small_db("app.db");
    let late = s.path("late.db");
    let live = s.path("live/live.db");
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\n[databases.late]\npath = \"{}\"\n[databases.live]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"app\", \"late\"]\nrepositories = [\"one\"]\nschedule = \"1h\"\n\
         [jobs.c]\ndatabases = [\"live\"]\nrepositories = [\"two\"]\ncontinuous = true\ninterval = \"500ms\"\n",
        app.display(),
        late.display(),
        live.display()
    ));
    // A first boot: the check and the daemon start, saying what waits.
    let checked = util::run(s.cmd(&["config", "check", p.to_str().unwrap()]));
    checked.ok();
    assert!(
        checked.stderr.contains("databases.late.path")
            && checked.stderr.contains("does not exist yet"),
        "{checked:?}"
    );
    let daemon = Daemon::start(s.cmd(&["run", "--config", p.to_str().unwrap()]));
    let addr = daemon.address();
    daemon.wait_for("both waits", Duration::from_secs(30), |ls| {
        ls.iter()
            .filter(|l| l.contains("does not exist yet"))
            .count()
            >= 2
    });
    daemon.wait_for("app's backup", Duration::from_secs(30), |ls| {
        ls.iter()
            .any(|l| l.contains("database=app") && l.contains("outcome=success"))
    });

    // Waiting, in the status, the API and the metrics.
    let status = util::run(s.cmd(&["status", "--config", p.to_str().unwrap(), "--json"]));
    let status: serde_json::Value = serde_json::from_str(status.ok()).unwrap();
    assert_eq!(status["jobs"][1]["job"], "j", "{status}");
    let unit = status["jobs"][1]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["database"] == "late")
        .cloned()
        .unwrap();
    assert_eq!(unit["last_run"]["outcome"], "waiting", "{unit}");
    assert_eq!(unit["failures_since_success"], 0);
    let (_, _, b) = http(&addr, "GET", "/metrics", Some(TOKEN), None);
    let metrics = String::from_utf8(b).unwrap();
    assert!(
        metrics.contains("litevault_backup_waiting{job=\"j\",database=\"late\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("litevault_replication_waiting{job=\"c\",")
            && metrics.contains("repository=\"two\"} 1"),
        "{metrics}"
    );

    // The files appear: both begin within the poll.
    let first = rusqlite::Connection::open(&late).unwrap();
    first
        .execute_batch("CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(first);
    std::fs::create_dir(s.path("live")).unwrap();
    let writer = rusqlite::Connection::open(&live).unwrap();
    writer
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    daemon.wait_for(
        "late's backup and the capture",
        Duration::from_secs(40),
        |ls| {
            ls.iter()
                .any(|l| l.contains("database=late") && l.contains("outcome=success"))
                && ls.iter().any(|l| l.contains("capturing 1 database(s)"))
        },
    );
    assert_eq!(s.snapshots(&s.env.repo).len(), 2);
    let (_, _, b) = http(&addr, "GET", "/metrics", Some(TOKEN), None);
    let metrics = String::from_utf8(b).unwrap();
    assert!(!metrics.contains("litevault_backup_waiting{"), "{metrics}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("litevault_replication_waiting{") && l.ends_with(" 1")),
        "{metrics}"
    );
    drop(writer);
    let (code, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn the_api_takes_latest_searches_repositories_and_runs_maintenance_on_demand() {
    use crate::service::{http, json, wait_task, Daemon, TOKEN};
    let s = Svc::new();
    let app = s.small_db("app.db");
    std::fs::create_dir(s.path("demo")).unwrap();
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\ntags = [\"env_production\"]\n[databases.demo]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1d\"\n\
         retention = {{ keep_last = 1 }}\n",
        app.display(),
        s.path("demo/app.db").display()
    ));
    let daemon = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = daemon.address();
    let post = |path: &str, body: &str| {
        let (st, _, b) = http(&addr, "POST", path, Some(TOKEN), Some(body.as_bytes()));
        (st, json(&b))
    };
    let run = |path: &str, body: &str| {
        let (st, v) = post(path, body);
        assert_eq!(st, 202, "{path} {body}: {v}");
        wait_task(&addr, v["task_id"].as_str().unwrap())
    };
    // Two backups into both repositories, the second after a change.
    assert_eq!(
        run("/v1/backups", r#"{"database":"app"}"#)["state"],
        "succeeded"
    );
    rusqlite::Connection::open(&app)
        .unwrap()
        .execute("INSERT INTO t(v) VALUES ('newest')", [])
        .unwrap();
    // Held in repository two only: its latest is newer than one's.
    assert_eq!(
        run("/v1/backups", r#"{"database":"app","repository":"two"}"#)["state"],
        "succeeded"
    );

    // `latest` of app, searched in every repository: two's.
    let (st, _, body) = http(
        &addr,
        "GET",
        "/v1/snapshots/latest/database?database=app&tag=env_production",
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200);
    let got = s.path("latest.db");
    std::fs::write(&got, &body).unwrap();
    let rows: i64 = rusqlite::Connection::open(&got)
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE v = 'newest'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
    let (st, _, _) = http(
        &addr,
        "GET",
        "/v1/snapshots/latest/database?database=app&tag=no_such_tag",
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 404);

    // The latest of production restored into the demo.
    let task = run(
        "/v1/restores",
        r#"{"snapshot":"latest","from":"app","database":"demo"}"#,
    );
    assert_eq!(task["state"], "succeeded", "{task}");
    let rows: i64 = rusqlite::Connection::open(s.path("demo/app.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE v = 'newest'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);

    // Maintenance on demand: a repository must be named where several
    // could be meant.
    let (st, v) = post("/v1/prunes", "{}");
    assert_eq!(st, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("name the repository: one of one, two"),
        "{v}"
    );
    let forgot = run("/v1/forgets", r#"{"database":"app","repository":"two"}"#);
    assert_eq!(forgot["state"], "succeeded", "{forgot}");
    assert_eq!(forgot["kind"], "forget");
    assert_eq!(forgot["repository"], "two");
    assert_eq!(s.snapshots(&s.repo2).len(), 1, "keep_last = 1 applied");
    let pruned = run("/v1/prunes", r#"{"repository":"two"}"#);
    assert_eq!(pruned["state"], "succeeded", "{pruned}");
    let checked = run(
        "/v1/checks",
        r#"{"repository":"two","read_data_subset":"all"}"#,
    );
    assert_eq!(checked["state"], "succeeded", "{checked}");
    assert!(
        checked["result"][0]["check"]
            .as_str()
            .unwrap()
            .contains("all data"),
        "{checked}"
    );
    let (st, v) = post(
        "/v1/checks",
        r#"{"repository":"two","read_data_subset":"8/7"}"#,
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = post("/v1/forgets", r#"{"database":"demo","repository":"one"}"#);
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("retention policy"),
        "{v}"
    );

    // What the API ran is in the status, as the job `api`.
    let (_, _, b) = http(&addr, "GET", "/v1/status", Some(TOKEN), None);
    let status = json(&b);
    let api = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "api")
        .cloned()
        .unwrap_or_else(|| panic!("no api job: {status}"));
    let ops: Vec<&str> = api["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["operation"].as_str().unwrap())
        .collect();
    for op in ["backup", "restore", "forget", "prune", "check"] {
        assert!(ops.contains(&op), "{op} missing: {api}");
    }
    let (code, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_running_check_is_stopped_and_a_prune_or_forget_says_why_it_is_not() {
    use crate::service::{http, start_task, wait_task, Daemon, TOKEN};
    let s = Svc::new();
    let big = s.path("big.db");
    crate::util::workload::create(&big, 96, 5);
    let config = s.write_config(&format!(
        "[databases.big]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"big\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\nretention = {{ keep_last = 5 }}\n",
        big.display()
    ));
    let daemon = Daemon::start(s.cmd(&["serve", "--config", config.to_str().unwrap()]));
    let addr = daemon.address();
    let start = |path: &str, body: &str| start_task(&addr, path, body);
    let stop = |id: &str| {
        let (st, _, b) = http(
            &addr,
            "DELETE",
            &format!("/v1/tasks/{id}"),
            Some(TOKEN),
            None,
        );
        (st, String::from_utf8_lossy(&b).into_owned())
    };
    let backup = start("/v1/backups", r#"{"database":"big"}"#);
    assert_eq!(wait_task(&addr, &backup)["state"], "succeeded");

    // Reading all of 96 MiB of data takes a while: stopped at once, it
    // is recorded as cancelled, and the repository is as it was.
    let before = crate::util::tree(&s.env.repo);
    let check = start(
        "/v1/checks",
        r#"{"repository":"one","read_data_subset":"all"}"#,
    );
    let (st, said) = stop(&check);
    assert_eq!(st, 202, "{said}");
    let ended = wait_task(&addr, &check);
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert!(
        ended["error"].as_str().unwrap().contains("check stopped"),
        "{ended}"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='check' AND outcome='cancelled'"),
        1
    );
    let after = crate::util::tree(&s.env.repo);
    let changed: Vec<_> = after
        .keys()
        .filter(|p| !p.starts_with(s.env.repo.join("locks")))
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "a stopped check changed {changed:?}");
    // The next one runs to its end.
    let again = start(
        "/v1/checks",
        r#"{"repository":"one","read_data_subset":"all"}"#,
    );
    assert_eq!(wait_task(&addr, &again)["state"], "succeeded");

    // A prune or forget ends by itself: the refusal says so.
    for (path, body) in [
        ("/v1/prunes", r#"{"repository":"one"}"#),
        ("/v1/forgets", r#"{"database":"big","repository":"one"}"#),
    ] {
        let id = start(path, body);
        let (st, said) = stop(&id);
        if st == 409 && said.contains("ended already") {
            continue; // it was quicker than the request
        }
        assert_eq!(st, 409, "{said}");
        assert!(said.contains("cannot be stopped midway"), "{said}");
        assert_eq!(wait_task(&addr, &id)["state"], "succeeded");
    }
    daemon.stop();
}
