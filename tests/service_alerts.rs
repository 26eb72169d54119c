//! What the service does around a backup and when backups stop: command
//! hooks before and after (their output in the history, their time limit
//! enforced), and the "no successful backup for N" alert, which comes even
//! when no scheduled run starts.

use std::time::{Duration, Instant};

use crate::service::{monitor, start_task, wait_task, Daemon, Svc};
use crate::util;

#[test]
fn hooks_run_around_each_backup_with_their_output_in_the_history() {
    let s = Svc::new();
    let app = s.small_db("app.db");
    let gate = s.path("gate");
    let after = s.path("after.txt");
    let failed = s.path("failed.txt");
    let config = |before: &str, timeout: &str| {
        s.write_config(&format!(
            "[databases.app]\npath = \"{}\"\n\
             [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\"]\nschedule = \"1h\"\n\
             run_before = '{before}'\n\
             run_after = 'echo \"$$LITEVAULT_HOOK $$LITEVAULT_JOB $$LITEVAULT_DATABASE $$LITEVAULT_REPOSITORIES\" > {}'\n\
             run_after_failure = 'echo \"$$LITEVAULT_EXIT_CODE $$LITEVAULT_ERROR\" > {}'\n\
             hook_timeout = \"{timeout}\"\n",
            app.display(),
            after.display(),
            failed.display()
        ))
    };
    let p = config(
        // ($$ is a $ in the config: the hook's shell expands the variable.)
        &format!(
            "echo before $$LITEVAULT_DATABASE; echo oops >&2; test -f {}",
            gate.display()
        ),
        "30s",
    );
    let once = |at: &str| {
        util::run(
            s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
                .env("LITEVAULT_TEST_ONLY_CLOCK", format!("{at}*0")),
        )
    };

    // run_before fails: no backup, recorded failed with its reason;
    // run_after_failure hears why; the hook's output (standard error
    // too) is in the history.
    let r = once("2026-03-01T00:00:00Z");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(s.snapshots(&s.env.repo).is_empty());
    let (detail, error): (String, String) = s
        .history()
        .query_row(
            "SELECT detail, error FROM runs WHERE operation='hook'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(detail, "run_before: before app\noops");
    assert_eq!(error, "run_before exited with 1");
    let backup_error: String = s
        .history()
        .query_row(
            "SELECT error FROM runs WHERE operation='backup' AND outcome='failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        backup_error.contains("run_before exited with 1"),
        "{backup_error}"
    );
    let told = std::fs::read_to_string(&failed).unwrap();
    assert!(
        told.starts_with("1 ") && told.contains("run_before exited with 1"),
        "{told}"
    );
    assert!(!after.exists());

    // The gate open: the backup runs, then run_after.
    std::fs::write(&gate, "").unwrap();
    once("2026-03-01T02:00:00Z").ok();
    assert_eq!(s.snapshots(&s.env.repo).len(), 1);
    assert_eq!(
        std::fs::read_to_string(&after).unwrap(),
        "run_after j app one\n"
    );
    // run_after_failure before; run_before and run_after now.
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='hook' AND outcome='success'"),
        3
    );

    // A hook past its time limit is killed, with what it started.
    let p = config("sleep 60 & sleep 60; wait", "1s");
    let started = Instant::now();
    let r = util::run(
        s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-03-01T04:00:00Z*0"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        r.stderr
            .contains("run_before ran past its time limit of 1s"),
        "{r:?}"
    );
    assert_eq!(s.snapshots(&s.env.repo).len(), 1);

    // A bad time limit is refused naming its key.
    let p = config("true", "soon");
    util::run(s.cmd(&["config", "check", p.to_str().unwrap()]))
        .fails(17, &["jobs.j.hook_timeout", "\"soon\""]);
}

#[test]
fn no_successful_backup_for_too_long_alerts_even_when_no_run_starts() {
    let s = Svc::new();
    let late = s.path("late.db");
    let (addr, seen) = monitor();
    let p = s.write_config(&format!(
        "[databases.late]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"late\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n\
         alert_after = \"3h\"\nwebhook_url = \"http://{addr}/hook\"\n\
         healthchecks_url = \"http://{addr}/hc\"\n",
        late.display()
    ));
    // One simulated hour per real second; the database never appears, so
    // no backup ever starts.
    let daemon = Daemon::start(
        s.cmd(&["run", "--config", p.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-05-01T00:00:00Z*3600"),
    );
    let overdue = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("POST /hook") && l.contains("\"event\":\"overdue\""))
            .cloned()
            .collect::<Vec<_>>()
    };
    daemon.wait_for("the overdue alert", Duration::from_secs(30), |_| {
        !overdue().is_empty()
    });
    let first = overdue()[0].clone();
    let body: serde_json::Value = serde_json::from_str(&first[first.find('{').unwrap()..]).unwrap();
    assert_eq!(body["job"], "j");
    assert_eq!(body["database"], "late");
    assert_eq!(body["repositories"], serde_json::json!(["one"]));
    assert!(body["last_success"].is_null());
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no successful backup of late into one"),
        "{body}"
    );
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("POST /hc/fail") && l.contains("no successful backup")));
    // Sent again every alert_after while it lasts, not at every look.
    std::thread::sleep(Duration::from_secs(4));
    let n = overdue().len();
    assert!((2..=3).contains(&n), "{n} alerts in about 7 hours");

    // The database appears and is backed up: no more alerts.
    rusqlite::Connection::open(&late)
        .unwrap()
        .execute_batch("CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    daemon.wait_for("the backup", Duration::from_secs(30), |ls| {
        ls.iter()
            .any(|l| l.contains("database=late") && l.contains("outcome=success"))
    });
    let after = overdue().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(overdue().len(), after, "alerts after a success");
    let (code, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("error overdue job=j database=late repository=one"),
        "{log}"
    );
}

#[test]
fn a_backup_started_from_the_api_runs_the_hooks_and_webhook_of_the_job_that_backs_it_up() {
    let s = Svc::new();
    let app = s.small_db("app.db");
    let shared = s.small_db("shared.db");
    let after = s.path("after.txt");
    let (hook_addr, seen) = monitor();
    let config = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\n[databases.shared]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"app\", \"shared\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1d\"\n\
         run_before = 'echo \"before $$LITEVAULT_JOB $$LITEVAULT_DATABASE\" >> {a}'\n\
         run_after = 'echo \"after $$LITEVAULT_JOB $$LITEVAULT_DATABASE $$LITEVAULT_REPOSITORIES\" >> {a}'\n\
         webhook_url = \"http://{hook_addr}/hook\"\nwebhook_on = [\"success\", \"failure\"]\n\
         [jobs.k]\ndatabases = [\"shared\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n\
         run_after = 'echo \"after k\" >> {a}'\n",
        app.display(),
        shared.display(),
        a = after.display()
    ));
    // `serve`: the API alone, no schedule runs.
    let daemon = Daemon::start(s.cmd(&["serve", "--config", config.to_str().unwrap()]));
    let addr = daemon.address();
    let backup = |db: &str| {
        let id = start_task(&addr, "/v1/backups", &format!("{{\"database\":\"{db}\"}}"));
        let v = wait_task(&addr, &id);
        assert_eq!(v["state"], "succeeded", "{v}");
        assert_eq!(v["job"], "api", "{v}");
    };

    // "Back up now" of a database one job backs up is a run of that job:
    // its hooks around it, its webhook after.
    backup("app");
    assert_eq!(
        std::fs::read_to_string(&after).unwrap(),
        "before j app\nafter j app one,two\n"
    );
    let start = Instant::now();
    while !seen.lock().unwrap().iter().any(|l| l.contains("/hook")) {
        assert!(start.elapsed() < Duration::from_secs(20), "no webhook");
        std::thread::sleep(Duration::from_millis(50));
    }
    let told = seen.lock().unwrap().join("\n");
    assert!(
        told.contains("\"job\":\"j\"") && told.contains("\"database\":\"app\""),
        "{told}"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='hook' AND outcome='success'"),
        2
    );

    // A database two jobs back up belongs to neither run: no hooks.
    backup("shared");
    assert_eq!(
        std::fs::read_to_string(&after).unwrap(),
        "before j app\nafter j app one,two\n"
    );
    assert_eq!(s.snapshots(&s.env.repo).len(), 2);
    daemon.stop();
}

#[test]
fn run_once_alerts_on_overdue_backups_counting_from_the_first_attempt() {
    let s = Svc::new();
    let late = s.path("late.db");
    let (addr, seen) = monitor();
    let config = s.write_config(&format!(
        "[databases.late]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"late\"]\nrepositories = [\"one\"]\nschedule = \"1h\"\n\
         alert_after = \"3h\"\nwebhook_url = \"http://{addr}/hook\"\n",
        late.display()
    ));
    // Cron's runs: each a new process, on a simulated clock.
    let once = |at: &str| {
        util::run(
            s.cmd(&["run", "--once", "--config", config.to_str().unwrap()])
                .env("LITEVAULT_TEST_ONLY_CLOCK", format!("{at}*0")),
        )
    };
    let overdue = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"event\":\"overdue\""))
            .cloned()
            .collect::<Vec<_>>()
    };
    // The database never appears: the first run records the wait, the
    // next ones within alert_after say nothing...
    once("2026-03-01T00:00:00Z").ok();
    once("2026-03-01T02:00:00Z").ok();
    assert!(overdue().is_empty(), "{:?}", overdue());
    // ...and past it, counted from the first attempt (not from this
    // process's start), the alert comes.
    let r = once("2026-03-01T04:00:00Z");
    assert_eq!(r.code, 0, "{r:?}");
    let alerts = overdue();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("no successful backup of late into one for 4h"),
        "{alerts:?}"
    );
    assert!(r.stderr.contains("overdue"), "{r:?}");
}
