//! The service end to end: `config check` and its refusals, `run --once`
//! under a simulated clock (missed runs run once), the daemon as a real
//! process (periods on a fast clock: snapshots, retention, prune, check,
//! history and status agree; SIGHUP adds a database; SIGTERM mid-backup
//! exits 0 with a clean repository), and the HTTP API with a real client
//! (backup, poll, list, download equal to `dump`, restore into a clone
//! target; 401, 404, 409, 400, 413, traversal, slow clients).

// Each test is one scenario, told in order.
#![allow(clippy::too_many_lines, clippy::many_single_char_names)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{self, workload, Env};

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// A temp dir with two repositories, databases and a config.
pub(crate) struct Svc {
    pub(crate) env: Env,
    pub(crate) repo2: PathBuf,
}

impl Svc {
    pub(crate) fn new() -> Self {
        let env = Env::new();
        env.init();
        let repo2 = env.dir.path().join("repo2");
        util::run(env.command_for(&repo2, &["init"])).ok();
        Svc { env, repo2 }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.env.dir.path().join(name)
    }

    /// A small database in rollback-journal mode.
    pub(crate) fn small_db(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('one'), ('two');",
        )
        .unwrap();
        p
    }

    /// The config's head: state, API, both repositories.
    pub(crate) fn head(&self) -> String {
        format!(
            r#"state = "{state}"
[api]
listen = "127.0.0.1:0"
tokens = ["$LV_TEST_TOKEN"]
[repositories.one]
location = "{r1}"
password = {{ file = "{pw}" }}
[repositories.two]
location = "{r2}"
password = {{ env = "LV_TEST_PASSWORD" }}
"#,
            state = self.path("state/state.db").display(),
            r1 = self.env.repo.display(),
            r2 = self.repo2.display(),
            pw = self.env.password_file.display(),
        )
    }

    pub(crate) fn write_config(&self, body: &str) -> PathBuf {
        let p = self.path("litevault.toml");
        std::fs::write(&p, format!("{}{body}", self.head())).unwrap();
        p
    }

    /// The binary with the service's environment.
    pub(crate) fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.env.bare();
        c.env("LV_TEST_TOKEN", TOKEN)
            .env("LV_TEST_PASSWORD", util::PASSWORD)
            .args(args);
        c
    }

    pub(crate) fn snapshots(&self, repo: &Path) -> Vec<serde_json::Value> {
        let out = util::run(self.env.command_for(repo, &["snapshots", "--json"]));
        serde_json::from_str::<Vec<serde_json::Value>>(out.ok()).unwrap()
    }

    pub(crate) fn history(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("state/state.db")).unwrap()
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.history().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// A running service process whose stderr lines are collected.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub(crate) fn start(mut c: impl std::borrow::BorrowMut<std::process::Command>) -> Self {
        let mut child = c
            .borrow_mut()
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Daemon { child, lines }
    }

    /// Waits until `pred` holds for the lines so far.
    #[track_caller]
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        loop {
            if pred(&self.lines.lock().unwrap()) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; log:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The API's address, from the `listen` event.
    pub(crate) fn address(&self) -> String {
        self.wait_for("the API", Duration::from_secs(20), |ls| {
            ls.iter().any(|l| l.contains("HTTP API on "))
        });
        let lines = self.lines.lock().unwrap();
        let l = lines.iter().find(|l| l.contains("HTTP API on ")).unwrap();
        l.split("://").nth(1).unwrap().trim().to_string()
    }

    pub(crate) fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Sends SIGTERM and returns the exit code.
    pub(crate) fn stop(mut self) -> (i32, String) {
        self.signal(rustix::process::Signal::TERM);
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (
                    s.code().unwrap_or(-1),
                    self.lines.lock().unwrap().join("\n"),
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the service did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn config_example_is_valid_toml_and_check_refuses_bad_configs_naming_the_key() {
    let s = Svc::new();
    // The example parses (its paths do not exist here: the databases are
    // waited for, each said, and the repositories are the one error).
    let example = util::run(s.cmd(&["config", "example"]));
    let text = example.ok().to_string();
    assert!(text.contains("[jobs.production.retention]"));
    let ex = s.path("example.toml");
    std::fs::write(&ex, &text).unwrap();
    let checked = util::run(
        s.cmd(&["config", "check", ex.to_str().unwrap()])
            .env("LITEVAULT_API_TOKEN", TOKEN),
    );
    assert!(
        checked
            .stderr
            .contains("databases.app.path: /srv/app/app.db does not exist yet")
            && checked
                .stderr
                .contains("databases.demo.path: directory /srv/demo does not exist yet"),
        "{checked:?}"
    );
    checked.fails(17, &["repositories.", "no repository at"]);

    let db = s.small_db("app.db");
    let not_sqlite = s.path("notes.txt");
    std::fs::write(&not_sqlite, "hello, this is not a database at all").unwrap();
    let good = format!(
        "[databases.app]\npath = \"{}\"\n[jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"30 3 * * *\"\n",
        db.display()
    );
    let p = s.write_config(&good);
    let out = util::run(s.cmd(&["config", "check", p.to_str().unwrap()]));
    let text = out.ok();
    assert!(
        text.contains("is valid") && text.contains("repository two"),
        "{text}"
    );
    assert!(
        text.contains("backup app") && text.contains("cron \"30 3 * * *\" (UTC)"),
        "{text}"
    );

    // Each bad config: exit 17, one line naming the key or path.
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            good.replace("schedule = ", "schedul = "),
            vec!["line", "unknown field `schedul`"],
        ),
        (
            good.replace("30 3 * * *", "61 3 * * *"),
            vec!["jobs.j.schedule", "invalid cron expression"],
        ),
        (
            good.replace("30 3 * * *", "every tuesday"),
            vec!["jobs.j.schedule"],
        ),
        (
            good.replace(&db.display().to_string(), &not_sqlite.display().to_string()),
            vec!["databases.app.path", "not an SQLite database"],
        ),
        (
            good.replace(&db.display().to_string(), "relative/app.db"),
            vec!["databases.app.path", "absolute"],
        ),
        (
            good.replace("\"two\"]", "\"three\"]"),
            vec!["jobs.j.repositories", "three"],
        ),
        (
            format!(
                "[databases.app]\npath = \"{}\"\ntagz = [\"x\"]\n",
                db.display()
            ),
            vec!["databases.app", "tagz"],
        ),
        (
            good.replace("[jobs.j]", "[jobs.j]\ntimezone = \"Mars/Olympus\""),
            vec!["jobs.j.schedule", "unknown time zone"],
        ),
        (
            format!("{good}[jobs.j.retention]\nkeep_dayly = 3\n"),
            vec!["keep_dayly"],
        ),
        (
            format!("{good}[jobs.j.prune]\nmax_unused = 0.1\n"),
            vec!["jobs.j.prune.schedule", "missing"],
        ),
    ];
    for (i, (body, needles)) in cases.iter().enumerate() {
        let p = s.path(&format!("bad{i}.toml"));
        std::fs::write(&p, format!("{}{body}", s.head())).unwrap();
        let line = util::run(s.cmd(&["config", "check", p.to_str().unwrap()])).fails(17, needles);
        assert!(line.contains(&p.display().to_string()), "{line}");
    }

    // An unset variable, a non-loopback API without TLS, a repository that
    // cannot be opened (wrong password), one that does not exist.
    let p = s.write_config(&good);
    util::run(
        s.cmd(&["config", "check", p.to_str().unwrap()])
            .env_remove("LV_TEST_TOKEN"),
    )
    .fails(17, &["api.tokens[0]", "LV_TEST_TOKEN is not set"]);
    let head = s.head();
    for (i, (from, to, needles)) in [
        (
            "127.0.0.1:0",
            "0.0.0.0:8790",
            vec!["api.listen", "tls_cert"],
        ),
        (
            "{ env = \"LV_TEST_PASSWORD\" }",
            "{ env = \"LV_TEST_WRONG\" }",
            vec!["repositories.two", "password"],
        ),
        (
            s.repo2.to_str().unwrap(),
            "/nonexistent/repo",
            vec!["repositories.two", "/nonexistent/repo"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let p = s.path(&format!("bad-head{i}.toml"));
        std::fs::write(&p, format!("{}{good}", head.replace(from, to))).unwrap();
        util::run(
            s.cmd(&["config", "check", p.to_str().unwrap()])
                .env("LV_TEST_WRONG", "not the password"),
        )
        .fails(17, &needles);
        // `run` refuses it at start too.
        util::run(
            s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
                .env("LV_TEST_WRONG", "not the password"),
        )
        .fails(17, &needles);
    }
}

#[test]
fn run_once_runs_what_is_due_once_however_many_runs_were_missed() {
    let s = Svc::new();
    let a = s.small_db("a.db");
    let b = s.small_db("b.db");
    let p = s.write_config(&format!(
        "[databases.a]\npath = \"{}\"\ntags = [\"db_a\"]\n[databases.b]\npath = \"{}\"\nschedule = \"0 */6 * * *\"\nlock_timeout = \"200ms\"\n\
         [jobs.j]\ndatabases = [\"a\", \"b\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1h\"\n",
        a.display(),
        b.display()
    ));
    let once = |at: &str| {
        util::run(
            s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
                .env("LITEVAULT_TEST_ONLY_CLOCK", format!("{at}*0")),
        )
    };
    // Never run: everything is due.
    once("2026-03-01T00:00:00Z").ok();
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='backup' AND outcome='success'"),
        4
    );
    // 30 minutes later: nothing due.
    once("2026-03-01T00:30:00Z").ok();
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='backup'"),
        4
    );
    // 5 days later (asleep): each due once, not 120 times. Unchanged
    // databases are not stored again.
    once("2026-03-06T00:00:00Z").ok();
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE operation='backup'"),
        8
    );
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE outcome='unchanged'"),
        4
    );
    assert_eq!(s.snapshots(&s.env.repo).len(), 2);
    // b's own schedule (every 6 hours at :00) and a's hourly one.
    rusqlite::Connection::open(&a)
        .unwrap()
        .execute("INSERT INTO t(v) VALUES ('three')", [])
        .unwrap();
    once("2026-03-06T01:00:00Z").ok();
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE database='a' AND operation='backup'"),
        6
    );
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE database='b' AND operation='backup'"),
        4
    );
    let snaps = s.snapshots(&s.repo2);
    assert_eq!(snaps.len(), 3);
    // Snapshot times follow the clock.
    assert!(
        snaps
            .iter()
            .any(|v| v["time"].as_str().unwrap().starts_with("2026-03-06T01:00")),
        "{snaps:?}"
    );

    // `status`: per job and unit.
    let out = util::run(
        s.cmd(&["status", "--json", "--config", p.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-03-06T01:10:00Z"),
    );
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let job = &v["jobs"][0];
    assert_eq!(job["job"], "j");
    assert_eq!(job["failures_since_success"], 0);
    let units = job["units"].as_array().unwrap();
    let ua = units.iter().find(|u| u["database"] == "a").unwrap();
    assert_eq!(ua["next_run"], "2026-03-06T02:00:00Z");
    let ub = units.iter().find(|u| u["database"] == "b").unwrap();
    assert_eq!(ub["next_run"], "2026-03-06T06:00:00Z");
    assert_eq!(ub["last_run"]["outcome"], "unchanged");
    // `status` needs neither the API's token nor the repositories'
    // secrets or locations: unset there, it answers the same. An unset
    // variable in what it reads (the state's path) is still the error.
    let moved = s.path("moved.toml");
    std::fs::write(
        &moved,
        std::fs::read_to_string(&p).unwrap().replacen(
            &format!("location = \"{}\"", s.env.repo.display()),
            "location = \"s3:http://$LV_TEST_S3_HOST/bucket\"",
            1,
        ),
    )
    .unwrap();
    let lean = util::run(
        s.cmd(&["status", "--json", "--config", moved.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-03-06T01:10:00Z")
            .env_remove("LV_TEST_TOKEN")
            .env_remove("LV_TEST_PASSWORD"),
    );
    let lean: serde_json::Value = serde_json::from_str(lean.ok()).unwrap();
    assert_eq!(lean["jobs"], v["jobs"], "{lean}\n{v}");
    util::run(
        s.cmd(&["config", "check", moved.to_str().unwrap()])
            .env_remove("LV_TEST_TOKEN"),
    )
    .fails(17, &["api.tokens[0]", "LV_TEST_TOKEN is not set"]);
    let unset_state = s.path("unset-state.toml");
    std::fs::write(
        &unset_state,
        std::fs::read_to_string(&p).unwrap().replacen(
            &format!("state = \"{}\"", s.path("state/state.db").display()),
            "state = \"$LV_TEST_STATE_DIR/state.db\"",
            1,
        ),
    )
    .unwrap();
    util::run(s.cmd(&["status", "--config", unset_state.to_str().unwrap()]))
        .fails(17, &["state", "LV_TEST_STATE_DIR is not set"]);

    // A failure (a writer holds b longer than its lock timeout): exit 1,
    // recorded, counted since the last success.
    let holder = rusqlite::Connection::open(&b).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t(v) VALUES ('x');")
        .unwrap();
    let r = once("2026-03-06T06:00:00Z");
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("outcome=failed"), "{r:?}");
    let out = util::run(
        s.cmd(&["status", "--config", p.to_str().unwrap()])
            .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-03-06T06:10:00Z"),
    );
    assert!(out.ok().contains("2 failure(s) since"), "{out:?}");
}

/// Writes to both databases until told to stop.
fn churn(
    paths: Vec<PathBuf>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for p in &paths {
                if let Ok(c) = rusqlite::Connection::open(p) {
                    let _ = c.busy_timeout(Duration::from_secs(5));
                    let _ = c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")]);
                }
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn the_daemon_runs_periods_applies_retention_prunes_checks_and_reloads_on_sighup() {
    let s = Svc::new();
    let a = s.small_db("a.db");
    let b = s.small_db("b.db");
    let c = s.small_db("c.db");
    let job = |dbs: &str| {
        format!(
            "[databases.a]\npath = \"{}\"\n[databases.b]\npath = \"{}\"\n[databases.c]\npath = \"{}\"\n\
             [jobs.j]\ndatabases = [{dbs}]\nrepositories = [\"one\", \"two\"]\nschedule = \"1h\"\n\
             retention = {{ keep_last = 3 }}\nprune = {{ schedule = \"3h\", max_unused = 0.0 }}\ncheck = {{ schedule = \"2h\", read_data_subsets = 2 }}\n",
            a.display(),
            b.display(),
            c.display()
        )
    };
    let p = s.write_config(&job("\"a\", \"b\""));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = churn(vec![a.clone(), b.clone(), c.clone()], Arc::clone(&stop));
    // One simulated hour per real second.
    let d = Daemon::start(
        s.cmd(&[
            "run",
            "--config",
            p.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("LITEVAULT_TEST_ONLY_CLOCK", "2026-05-01T00:00:00Z*3600"),
    );
    fn backups(ls: &[String], db: &str, repo: &str) -> usize {
        ls.iter()
            .filter(|l| {
                l.contains("\"event\":\"backup\"")
                    && l.contains(&format!("\"database\":\"{db}\""))
                    && l.contains(&format!("\"repository\":\"{repo}\""))
                    && l.contains("\"outcome\":\"success\"")
            })
            .count()
    }
    d.wait_for("5 periods", Duration::from_secs(60), |ls| {
        backups(ls, "a", "two") >= 5
    });
    // Add database c, reload.
    std::fs::write(&p, format!("{}{}", s.head(), job("\"a\", \"b\", \"c\""))).unwrap();
    d.signal(rustix::process::Signal::HUP);
    d.wait_for("c backed up", Duration::from_secs(60), |ls| {
        backups(ls, "c", "two") >= 1
    });
    d.wait_for("a check and a prune", Duration::from_secs(60), |ls| {
        ls.iter()
            .any(|l| l.contains("\"event\":\"prune\"") && l.contains("\"outcome\":\"success\""))
            && ls
                .iter()
                .filter(|l| {
                    l.contains("\"event\":\"check\"") && l.contains("\"outcome\":\"success\"")
                })
                .count()
                >= 2
    });
    let (code, log) = d.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("\"event\":\"reload\""), "{log}");
    assert!(!log.contains("\"level\":\"error\""), "{log}");

    for repo in [&s.env.repo, &s.repo2] {
        let snaps = s.snapshots(repo);
        for db in ["a.db", "b.db"] {
            let mine: Vec<&serde_json::Value> = snaps
                .iter()
                .filter(|v| v["database"]["name"] == db)
                .collect();
            // Retention: keep_last = 3 (a backup may have added one since the last forget).
            assert!((3..=3).contains(&mine.len()), "{db}: {mine:?}");
            // Times follow the simulated clock: an hour apart.
            let times: Vec<jiff::Timestamp> = mine
                .iter()
                .map(|v| v["time"].as_str().unwrap().parse().unwrap())
                .collect();
            for w in times.windows(2) {
                assert!(w[1].duration_since(w[0]).as_secs() >= 3000, "{times:?}");
            }
        }
        assert!(snaps.iter().any(|v| v["database"]["name"] == "c.db"));
        util::run(s.env.command_for(repo, &["check", "--read-data"])).ok();
    }
    // History agrees with the repositories and the log.
    let backups_a_two = s.count("SELECT count(*) FROM runs WHERE operation='backup' AND database='a' AND repository='two' AND outcome='success'");
    assert_eq!(
        backups_a_two as usize,
        backups(
            &log.lines().map(String::from).collect::<Vec<_>>(),
            "a",
            "two"
        )
    );
    let removed: i64 = s.count("SELECT count(*) FROM runs WHERE operation='forget' AND outcome='success' AND detail='removed 1 snapshot(s)'");
    assert!(removed >= 4, "{removed}");
    assert!(
        s.count("SELECT count(*) FROM runs WHERE operation='prune' AND outcome='success'") >= 2
    );
    assert!(s.count("SELECT count(*) FROM runs WHERE operation='check' AND outcome='success' AND detail LIKE '%subset 2/2%'") >= 1);
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE outcome IN ('running','failed')"),
        0
    );
}

#[test]
fn sigterm_during_a_backup_exits_0_and_leaves_the_repository_clean() {
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let s = Svc::new();
        let big = s.path("big.db");
        workload::create(&big, 48, round);
        let p = s.write_config(&format!(
            "[databases.big]\npath = \"{}\"\n[jobs.j]\ndatabases = [\"big\"]\nrepositories = [\"one\"]\nschedule = \"1h\"\n",
            big.display()
        ));
        let d = Daemon::start(s.cmd(&["run", "--config", p.to_str().unwrap()]));
        d.wait_for("the backup to start", Duration::from_secs(30), |ls| {
            ls.iter().any(|l| l.contains("outcome=running"))
        });
        std::thread::sleep(Duration::from_millis(50 + 150 * round));
        let (code, log) = d.stop();
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(" stop"), "{log}");
        util::run(s.env.command_for(&s.env.repo, &["check", "--read-data"])).ok();
        let outcome: String = s
            .history()
            .query_row(
                "SELECT outcome FROM runs WHERE operation='backup'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            ["cancelled", "success"].contains(&outcome.as_str()),
            "{outcome}"
        );
        // A cancelled backup wrote no snapshot; a finished one did.
        assert_eq!(
            s.snapshots(&s.env.repo).len(),
            usize::from(outcome == "success")
        );
        outcomes.push(outcome);
    }
    // The signal came during the backup at least once.
    assert!(outcomes.iter().any(|o| o == "cancelled"), "{outcomes:?}");
}

/// A minimal HTTP/1.1 client over a socket (no proxy, no redirects): the
/// status, headers and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req = format!("{req}Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        req = format!(
            "{req}Content-Type: application/json
Content-Length: {}
",
            b.len()
        );
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

pub(crate) fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// Polls a task until it is no longer running.
/// POSTs `body` to `path`, which must start a task (202); its id.
pub(crate) fn start_task(addr: &str, path: &str, body: &str) -> String {
    let (st, _, b) = http(addr, "POST", path, Some(TOKEN), Some(body.as_bytes()));
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    json(&b)["task_id"].as_str().unwrap().to_string()
}

pub(crate) fn wait_task(addr: &str, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (st, _, b) = http(addr, "GET", &format!("/v1/tasks/{id}"), Some(TOKEN), None);
        assert_eq!(st, 200);
        let v = json(&b);
        if v["state"] != "running" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "task {id} still running: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_http_api_backs_up_lists_downloads_restores_and_refuses_what_it_must() {
    let s = Svc::new();
    let app = s.small_db("app.db");
    std::fs::create_dir(s.path("demo")).unwrap();
    let demo = s.path("demo/app.db");
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\ntags = [\"env_production\"]\nlock_timeout = \"30s\"\n\
         [databases.demo]\npath = \"{}\"\nrestore = {{ pre_restore = false, post_sql = \"UPDATE t SET v = 'scrubbed';\" }}\n\
         [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1d\"\n",
        app.display(),
        demo.display()
    ));
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();

    // Health needs no token; everything else does.
    assert_eq!(http(&addr, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(&addr, "GET", "/v1/openapi.json", None, None).0, 200);
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        for (m, path) in [
            ("GET", "/v1/status"),
            ("GET", "/metrics"),
            ("GET", "/v1/snapshots"),
            ("POST", "/v1/backups"),
        ] {
            let (st, head, _) = http(&addr, m, path, token, Some(b"{\"database\":\"app\"}"));
            assert_eq!(st, 401, "{m} {path} {token:?}");
            assert!(head
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"));
        }
    }

    // Hold the database's write lock: the backup waits, and a second one
    // gets 409 with the first's task id.
    let holder = rusqlite::Connection::open(&app).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t(v) VALUES ('three');")
        .unwrap();
    let (st, head, b) = http(
        &addr,
        "POST",
        "/v1/backups",
        Some(TOKEN),
        Some(b"{\"database\":\"app\"}"),
    );
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let task = json(&b)["task_id"].as_str().unwrap().to_string();
    assert!(head.contains(&format!("/v1/tasks/{task}")));
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/backups",
        Some(TOKEN),
        Some(b"{\"database\":\"app\",\"repository\":\"one\"}"),
    );
    assert_eq!(st, 409);
    assert_eq!(json(&b)["task_id"], task.as_str());
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(TOKEN),
        Some(b"{\"database\":\"app\",\"snapshot\":\"abcd\"}"),
    );
    assert!(
        st == 409 || st == 404,
        "{st} {}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(
        json(
            &http(
                &addr,
                "GET",
                &format!("/v1/tasks/{task}"),
                Some(TOKEN),
                None
            )
            .2
        )["state"],
        "running"
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let v = wait_task(&addr, &task);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert!(v["progress"]["bytes_done"].as_u64().unwrap() > 0);

    // Listed, in the `snapshots --json` shape, filtered by tag and database.
    let (st, _, b) = http(
        &addr,
        "GET",
        "/v1/snapshots?database=app&tag=env_production",
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200);
    // No repository named: those of the database's job, each entry saying
    // which.
    let listed = json(&b);
    let cli = s.snapshots(&s.env.repo);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["repository"], "one");
    assert_eq!(listed[1]["repository"], "two");
    assert_eq!(listed[0]["id"], cli[0]["id"]);
    assert_eq!(listed[0]["short_id"], cli[0]["short_id"]);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let (_, _, b) = http(
        &addr,
        "GET",
        "/v1/snapshots?tag=nothing_like_this",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&b).as_array().unwrap().len(), 0);
    let (_, _, b) = http(
        &addr,
        "GET",
        "/v1/snapshots?repository=two",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&b).as_array().unwrap().len(), 1);

    // Downloads equal `dump`, with a length.
    let dumped = s.path("dumped.db");
    util::run(
        s.env
            .command(&["dump", &id, "--output", dumped.to_str().unwrap()]),
    )
    .ok();
    let (st, head, body) = http(
        &addr,
        "GET",
        &format!("/v1/snapshots/{id}/database"),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(body, std::fs::read(&dumped).unwrap());
    let sql = util::run(s.env.command(&["dump", &id[..8], "--format", "sql"]));
    let (st, head, body) = http(
        &addr,
        "GET",
        &format!("/v1/snapshots/{}/database?format=sql", &id[..8]),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200);
    // Streamed as it is made, in bounded memory: no length up front.
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(String::from_utf8(body).unwrap(), sql.ok());

    // Restore into the configured clone target, scrubbed.
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(TOKEN),
        Some(format!("{{\"snapshot\":\"{id}\",\"database\":\"demo\"}}").as_bytes()),
    );
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let v = wait_task(&addr, json(&b)["task_id"].as_str().unwrap());
    assert_eq!(v["state"], "succeeded", "{v}");
    let rows: Vec<String> = rusqlite::Connection::open(&demo)
        .unwrap()
        .prepare("SELECT v FROM t")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, ["scrubbed"; 3]);

    // Not found, not configured, traversal, malformed, oversized.
    let unknown_db = |db: &str| format!("{{\"database\":\"{db}\"}}");
    for db in ["nope", "../app", "/etc/passwd", "app/../../x", ""] {
        let (st, _, _) = http(
            &addr,
            "POST",
            "/v1/backups",
            Some(TOKEN),
            Some(unknown_db(db).as_bytes()),
        );
        assert_eq!(st, 404, "{db}");
        let (st, _, _) = http(
            &addr,
            "POST",
            "/v1/restores",
            Some(TOKEN),
            Some(format!("{{\"snapshot\":\"{id}\",\"database\":\"{db}\"}}").as_bytes()),
        );
        assert_eq!(st, 404, "{db}");
        let (st, _, _) = http(
            &addr,
            "GET",
            &format!("/v1/snapshots?database={}", db.replace('/', "%2F")),
            Some(TOKEN),
            None,
        );
        assert_eq!(st, 404, "{db}");
    }
    for (path, want) in [
        ("/v1/snapshots/abcdef0123/database".to_string(), 404),
        (
            "/v1/snapshots/..%2F..%2Fetc%2Fpasswd/database".to_string(),
            400,
        ),
        (format!("/v1/snapshots/{id}/database?format=csv"), 400),
        (
            format!("/v1/snapshots/{id}/database?repository=..%2Fother"),
            404,
        ),
        ("/v1/tasks/999999".to_string(), 404),
        ("/v1/tasks/..%2F1".to_string(), 404),
        ("/v1/nothing".to_string(), 404),
    ] {
        assert_eq!(
            http(&addr, "GET", &path, Some(TOKEN), None).0,
            want,
            "{path}"
        );
    }
    let (st, _, _) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(TOKEN),
        Some(b"{\"snapshot\":\"ffffffff\",\"database\":\"demo\"}"),
    );
    assert_eq!(st, 404);
    let (st, _, _) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(TOKEN),
        Some(b"{\"snapshot\":\"../../x\",\"database\":\"demo\"}"),
    );
    assert_eq!(st, 400);
    for body in [
        &b"{"[..],
        b"[]",
        b"{\"database\":1}",
        b"{\"database\":\"app\",\"path\":\"/tmp/x\"}",
        b"",
    ] {
        assert_eq!(
            http(&addr, "POST", "/v1/backups", Some(TOKEN), Some(body)).0,
            400,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = format!("{{\"database\":\"{}\"}}", "a".repeat(100_000));
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/backups",
            Some(TOKEN),
            Some(huge.as_bytes())
        )
        .0,
        413
    );

    // Status and metrics reflect the runs.
    let (_, _, b) = http(&addr, "GET", "/v1/status", Some(TOKEN), None);
    let v = json(&b);
    assert_eq!(v["jobs"][0]["job"], "j");
    let (st, head, b) = http(&addr, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(st, 200);
    assert!(head.contains("text/plain"));
    let m = String::from_utf8(b).unwrap();
    for line in [
        "litevault_snapshots{database=\"app\",repository=\"one\"} 1",
        "litevault_backup_failures_total{database=\"app\",repository=\"two\"} 0",
        "litevault_backup_last_success_timestamp_seconds{database=\"app\",repository=\"one\"}",
        "litevault_up 1",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }

    // A slow client: headers never finished, the server hangs up.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "the slow client was not timed out"
    );

    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(TOKEN), "the token was logged");
}

/// A one-route HTTP server counting the requests it gets (a heartbeat
/// monitor such as healthchecks.io).
pub(crate) fn monitor() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(&conn);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            // Headers, then a body of Content-Length bytes (a POST's).
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let mut seen_line = line.trim().to_string();
            if length > 0 {
                seen_line = format!("{seen_line} {}", String::from_utf8_lossy(&body));
            }
            s.lock().unwrap().push(seen_line);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (addr, seen)
}

#[test]
fn a_heartbeat_follows_each_successful_run_and_not_a_failed_one() {
    let s = Svc::new();
    let a = s.small_db("a.db");
    let (addr, seen) = monitor();
    let p = s.path("hb.toml");
    let head = s
        .head()
        .replacen("[api]", "history_keep = \"1d\"\n[api]", 1);
    std::fs::write(
        &p,
        head + &format!(
            "[databases.a]\npath = \"{}\"\nlock_timeout = \"200ms\"\n\
         [jobs.j]\ndatabases = [\"a\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1h\"\n\
         heartbeat_url = \"http://{addr}/ping/$LV_TEST_CHECK_ID\"\n",
            a.display()
        ),
    )
    .unwrap();
    let once = |at: &str| {
        util::run(
            s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
                .env("LITEVAULT_TEST_ONLY_CLOCK", format!("{at}*0"))
                .env("LV_TEST_CHECK_ID", "5f0c-check"),
        )
    };
    once("2026-03-01T00:00:00Z").ok();
    assert_eq!(*seen.lock().unwrap(), ["GET /ping/5f0c-check HTTP/1.1"]);
    // Unchanged is a success too.
    let r = once("2026-03-01T01:00:00Z");
    assert!(
        r.ok().is_empty() && r.stderr.contains("heartbeat answered 200"),
        "{r:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    // A failed backup: no heartbeat (silence is the alarm).
    let holder = rusqlite::Connection::open(&a).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    assert_eq!(once("2026-03-01T02:00:00Z").code, 1);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    // The URL (it may hold a secret) is not logged.
    assert!(!r.stderr.contains("5f0c-check"), "{r:?}");
    // History older than history_keep (1 day) is deleted.
    assert!(s.count("SELECT count(*) FROM runs") >= 6);
    once("2026-03-03T00:00:00Z").ok();
    assert_eq!(
        s.count("SELECT count(*) FROM runs WHERE start_ms < 1772409600000"),
        0
    );
    assert!(s.count("SELECT count(*) FROM runs") >= 2);
}

/// healthchecks.io's convention (`/start`, success, `/fail` with the
/// error) and a failure webhook with a JSON body naming the job, the
/// database and the error, with no secret in it; a bad URL or event in
/// the config is refused naming its key.
#[test]
fn failures_are_told_to_healthchecks_and_a_webhook() {
    let s = Svc::new();
    let a = s.small_db("a.db");
    let (addr, seen) = monitor();
    let p = s.path("notify.toml");
    let job = format!(
        "[databases.a]\npath = \"{}\"\nlock_timeout = \"200ms\"\n\
         [jobs.j]\ndatabases = [\"a\"]\nrepositories = [\"one\", \"two\"]\nschedule = \"1h\"\n\
         healthchecks_url = \"http://{addr}/hc/$LV_TEST_CHECK_ID/\"\n\
         webhook_url = \"http://{addr}/hook\"\n",
        a.display()
    );
    std::fs::write(&p, s.head() + &job).unwrap();
    let once = |at: &str| {
        util::run(
            s.cmd(&["run", "--once", "--config", p.to_str().unwrap()])
                .env("LITEVAULT_TEST_ONLY_CLOCK", format!("{at}*0"))
                .env("LV_TEST_CHECK_ID", "c1"),
        )
    };
    once("2026-03-01T00:00:00Z").ok();
    // A success: start and success; the webhook only hears of failures.
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /hc/c1/start HTTP/1.1", "GET /hc/c1 HTTP/1.1"]
    );
    let holder = rusqlite::Connection::open(&a).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let r = once("2026-03-01T01:00:00Z");
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(calls[2], "GET /hc/c1/start HTTP/1.1");
    assert!(
        calls[3].starts_with("POST /hc/c1/fail HTTP/1.1 one: ") && calls[3].contains("two: "),
        "{calls:?}"
    );
    let (line, body) = calls[4].split_at(calls[4].find('{').unwrap());
    assert_eq!(line.trim(), "POST /hook HTTP/1.1");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event"], "failure");
    assert_eq!(v["job"], "j");
    assert_eq!(v["database"], "a");
    assert_eq!(v["repositories"], serde_json::json!(["one", "two"]));
    assert_eq!(v["time"], "2026-03-01T01:00:00Z");
    assert!(v["error"].as_str().unwrap().contains("locked"), "{v}");
    // The command line's code for that failure: the database was locked.
    assert_eq!(v["exit_code"], 3, "{v}");
    for secret in [util::PASSWORD, TOKEN] {
        assert!(!calls.iter().any(|c| c.contains(secret)), "{calls:?}");
    }
    assert!(!r.stderr.contains("/hc/c1"), "a URL was logged: {r:?}");
    // Asked for successes too, the webhook hears of them.
    std::fs::write(
        &p,
        s.head() + &job + "webhook_on = [\"failure\", \"success\"]\n",
    )
    .unwrap();
    rusqlite::Connection::open(&a)
        .unwrap()
        .execute("INSERT INTO t(v) VALUES ('three')", [])
        .unwrap();
    once("2026-03-01T02:00:00Z").ok();
    let calls = seen.lock().unwrap().clone();
    assert!(
        calls[7].contains("\"event\":\"success\"") && calls[7].contains("\"exit_code\":0"),
        "{calls:?}"
    );
    // Bad settings are refused naming the key.
    for (extra, needles) in [
        (
            "webhook_on = [\"sometimes\"]\n",
            ["jobs.j.webhook_on", "sometimes"],
        ),
        ("", ["jobs.j.webhook_url", "http(s)"]),
    ] {
        let body = if extra.is_empty() {
            job.replace(&format!("http://{addr}/hook"), "ftp://x/hook")
        } else {
            job.clone() + extra
        };
        std::fs::write(&p, s.head() + &body).unwrap();
        util::run(
            s.cmd(&["config", "check", p.to_str().unwrap()])
                .env("LV_TEST_CHECK_ID", "c1"),
        )
        .fails(17, &needles);
    }
}

#[test]
fn the_api_serves_tls_when_given_a_certificate() {
    let s = Svc::new();
    let (cert, key) = (s.path("cert.pem"), s.path("key.pem"));
    let gen = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt install openssl)");
    assert!(gen.status.success(), "{gen:?}");
    let head = s.head().replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let p = s.path("tls.toml");
    std::fs::write(&p, head).unwrap();
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    assert!(d
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("https://")));
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl (apt install curl)")
    };
    let ok = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        &format!("https://{addr}/v1/status"),
    ]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("\"jobs\""),
        "{ok:?}"
    );
    // Plain HTTP to the TLS port is not answered.
    let plain = curl(&[&format!("http://{addr}/healthz")]);
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "{plain:?}"
    );
    // A certificate that is not trusted is refused by the client.
    let untrusted = curl(&[&format!("https://{addr}/healthz")]);
    assert!(!untrusted.status.success());
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
}
