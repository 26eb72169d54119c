//! API tokens with roles: what a read, backup and restore token may do,
//! a restore token limited to one database, an open `/metrics`, and the
//! config's one-line errors for bad token tables.

use crate::service::{http, json, wait_task, Daemon, Svc, TOKEN};
use crate::util;

const READ: &str = "read-token-0123456789abcdef";
const BACKUP: &str = "backup-token-0123456789abcdef";
const DEMO: &str = "demo-restore-token-0123456789";
/// Read from a file, as systemd's `LoadCredential=` gives it.
const FROM_FILE: &str = "credential-token-0123456789";

/// The config with four tokens (`$LV_TEST_TOKEN` is the admin) and
/// `extra` in `[api]`.
fn config(s: &Svc, extra: &str) -> std::path::PathBuf {
    let app = s.small_db("app.db");
    std::fs::create_dir_all(s.path("demo")).unwrap();
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\n[databases.demo]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"app\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n",
        app.display(),
        s.path("demo/app.db").display()
    ));
    let credential = s.path("api-token");
    std::fs::write(&credential, format!("{FROM_FILE}\n")).unwrap();
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "tokens = [\"$LV_TEST_TOKEN\"]",
        &format!(
            "tokens = [\"$LV_TEST_TOKEN\", {{ token = \"{READ}\", role = \"read\" }}, \
             {{ token = \"{BACKUP}\", role = \"backup\" }}, \
             {{ token = \"{DEMO}\", role = \"restore\", databases = [\"demo\"] }}, \
             {{ token_file = \"{}\", role = \"read\" }}]\n{extra}",
            credential.display()
        ),
        1,
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn each_token_does_what_its_role_allows_and_no_more() {
    let s = Svc::new();
    let p = config(&s, "metrics_open = true");
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    let backup_app = Some(&b"{\"database\":\"app\"}"[..]);

    // `/metrics` is open as configured; nothing else is.
    assert_eq!(http(&addr, "GET", "/metrics", None, None).0, 200);
    assert_eq!(http(&addr, "GET", "/v1/status", None, None).0, 401);

    // Read: lists and status, nothing that starts work.
    for path in ["/v1/status", "/v1/snapshots", "/metrics", "/v1/tasks"] {
        for t in [READ, FROM_FILE] {
            assert_eq!(http(&addr, "GET", path, Some(t), None).0, 200, "{path}");
        }
    }
    assert_eq!(
        http(&addr, "POST", "/v1/backups", Some(FROM_FILE), backup_app).0,
        403
    );
    let (st, _, b) = http(&addr, "POST", "/v1/backups", Some(READ), backup_app);
    assert_eq!(st, 403);
    let why = json(&b)["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("role is read") && why.contains("backup"),
        "{why}"
    );

    // Backup: backs up, cannot restore.
    let (st, _, b) = http(&addr, "POST", "/v1/backups", Some(BACKUP), backup_app);
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let task = json(&b)["task_id"].as_str().unwrap().to_string();
    assert_eq!(wait_task(&addr, &task)["state"], "succeeded");
    let (_, _, b) = http(&addr, "GET", "/v1/snapshots", Some(READ), None);
    let snap = json(&b)[0]["id"].as_str().unwrap().to_string();
    let into = |db: &str| format!("{{\"snapshot\":\"{snap}\",\"database\":\"{db}\"}}");
    let download = format!("/v1/snapshots/{snap}/database");
    for t in [READ, BACKUP] {
        let (st, _, _) = http(
            &addr,
            "POST",
            "/v1/restores",
            Some(t),
            Some(into("demo").as_bytes()),
        );
        assert_eq!(st, 403, "{t}");
        assert_eq!(http(&addr, "GET", &download, Some(t), None).0, 403, "{t}");
    }

    // Restore limited to demo: production's snapshot into demo, yes;
    // anything into app, or a download of app's snapshots, no.
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(DEMO),
        Some(into("app").as_bytes()),
    );
    assert_eq!(st, 403);
    assert!(
        json(&b)["error"]
            .as_str()
            .unwrap()
            .contains("only into demo"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (st, _, b) = http(&addr, "GET", &download, Some(DEMO), None);
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&b));
    let (st, _, b) = http(
        &addr,
        "POST",
        "/v1/restores",
        Some(DEMO),
        Some(into("demo").as_bytes()),
    );
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let task = json(&b)["task_id"].as_str().unwrap().to_string();
    assert_eq!(wait_task(&addr, &task)["state"], "succeeded");
    assert!(s.path("demo/app.db").exists());

    // The admin token does everything.
    let (st, _, body) = http(&addr, "GET", &download, Some(TOKEN), None);
    assert_eq!(st, 200);
    assert!(body.starts_with(b"SQLite format 3\0"));
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");

    // Without metrics_open, /metrics needs a token like the rest.
    let s = Svc::new();
    let p = config(&s, "");
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    assert_eq!(http(&addr, "GET", "/metrics", None, None).0, 401);
    assert_eq!(http(&addr, "GET", "/metrics", Some(READ), None).0, 200);
}

#[test]
fn bad_token_tables_are_refused_with_one_line_naming_the_key() {
    let s = Svc::new();
    let p = config(&s, "");
    let good = std::fs::read_to_string(&p).unwrap();
    let read = "role = \"read\" }";
    for (to, words) in [
        (
            "}",
            &["api.tokens[1].role", "read, backup, restore or admin"][..],
        ),
        (
            "role = \"reader\" }",
            &["api.tokens[1].role", "\"reader\" is not a role"][..],
        ),
        (
            "role = \"read\", scope = 1 }",
            &["api.tokens[1].scope", "unknown key"][..],
        ),
        (
            "role = \"read\", databases = [\"demo\"] }",
            &["api.tokens[1].databases", "only a restore token"][..],
        ),
    ] {
        let from = if to == "}" {
            ", role = \"read\" }"
        } else {
            read
        };
        let to = if to == "}" { " }" } else { to };
        std::fs::write(&p, good.replacen(from, to, 1)).unwrap();
        util::run(s.cmd(&["config", "check", p.to_str().unwrap()])).fails(17, words);
    }
    std::fs::write(
        &p,
        good.replacen("databases = [\"demo\"]", "databases = [\"staging\"]", 1),
    )
    .unwrap();
    util::run(s.cmd(&["config", "check", p.to_str().unwrap()])).fails(
        17,
        &["api.tokens[3].databases", "no database named \"staging\""],
    );
    let missing = s.path("no-such-token");
    std::fs::write(
        &p,
        good.replacen(
            &s.path("api-token").display().to_string(),
            &missing.display().to_string(),
            1,
        ),
    )
    .unwrap();
    util::run(s.cmd(&["config", "check", p.to_str().unwrap()])).fails(
        17,
        &[
            "api.tokens[4].token_file",
            "cannot read",
            &missing.display().to_string(),
        ],
    );
    std::fs::write(&p, good.replacen(READ, "short", 1)).unwrap();
    util::run(s.cmd(&["config", "check", p.to_str().unwrap()]))
        .fails(17, &["api.tokens[1]", "at least 16 characters"]);
}

/// The README's systemd unit, with this build's binary, as
/// `systemd-analyze verify` sees it: no warning, no error.
#[test]
fn the_readme_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = util::which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed here: the unit is not checked");
        return;
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("# /etc/systemd/system/litevault.service")
        .expect("the unit in README");
    let unit = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(unit.contains("ProtectSystem=strict") && unit.contains("LoadCredential="));
    assert!(
        !unit.contains("Environment="),
        "secrets belong in credentials"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litevault.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/litevault", env!("CARGO_BIN_EXE_litevault")),
    )
    .unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
