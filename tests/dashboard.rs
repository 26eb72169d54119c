//! The web dashboard in a real browser: Debian's chromium, headless,
//! driven over the DevTools protocol by `tests/browser/drive.py` against
//! the real daemon: its accessibility (labels, contrast, keyboard), a
//! refused token, sign-in, both databases of the config, a backup started
//! and seen to finish, the restore points and the growth chart, and a
//! screenshot (`target/tmp/dashboard.png`).

use crate::service::{http, json, Daemon, Svc, TOKEN};
use crate::util;

#[test]
fn the_dashboard_signs_in_shows_both_databases_and_backs_up_in_a_real_browser() {
    let s = Svc::new();
    let app = s.small_db("app.db");
    let shop = s.small_db("shop.db");
    let p = s.write_config(&format!(
        "[databases.app]\npath = \"{}\"\n[databases.shop]\npath = \"{}\"\n\
         [jobs.j]\ndatabases = [\"app\", \"shop\"]\nrepositories = [\"one\"]\nschedule = \"1d\"\n",
        app.display(),
        shop.display()
    ));
    let daemon = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = daemon.address();

    // The page and its assets need no token, hold no data, and allow only
    // themselves.
    let (st, head, body) = http(&addr, "GET", "/", None, None);
    assert_eq!(st, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("<label for=\"token\">"));
    for asset in ["/dashboard/app.js", "/dashboard/app.css"] {
        assert_eq!(http(&addr, "GET", asset, None, None).0, 200, "{asset}");
    }
    assert_eq!(http(&addr, "GET", "/v1/history", None, None).0, 401);

    let Some(chromium) = util::which("chromium") else {
        eprintln!(
            "chromium is not installed here (apt install chromium): the browser part is skipped"
        );
        return;
    };
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/drive.py"
        ))
        .arg(&chromium)
        .arg(format!("http://{addr}/"))
        .arg(TOKEN)
        .arg(&screenshot)
        .args(["app", "shop"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(report.trim().as_bytes());
    assert_eq!(
        report["cards"],
        serde_json::json!(["app", "shop"]),
        "{report}"
    );
    assert!(
        report["refused"].as_str().unwrap().contains("refused"),
        "{report}"
    );
    assert!(
        report["task"].as_str().unwrap().contains("succeeded"),
        "{report}"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // The backup the browser started is in the repository and the history.
    assert_eq!(s.snapshots(&s.env.repo).len(), 1);
    let (st, _, b) = http(&addr, "GET", "/v1/history?days=7", Some(TOKEN), None);
    assert_eq!(st, 200);
    assert_eq!(json(&b)["days"][0]["repository"], "one");
    let (code, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
}
