//! Times typed as they are listed pick what was meant: a time without a
//! zone is read in the zone listings use (local, or UTC with `--utc`),
//! for `--before`, `--time` and `import --time`, and the instant it
//! resolved to is said.

use std::path::Path;

use crate::util::{run, Env, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn in_zone(env: &Env, tz: &str, args: &[&str]) -> Run {
    let mut c = env.command(args);
    c.env("TZ", tz);
    run(c)
}

fn marker(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT x FROM t", [], |r| r.get(0))
        .unwrap()
}

fn set_marker(db: &Path, m: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(x); DELETE FROM t;")
        .unwrap();
    c.execute("INSERT INTO t VALUES (?1)", [m]).unwrap();
}

#[test]
fn times_without_a_zone_are_read_where_listings_show_them() {
    let env = Env::new();
    env.init();
    let db = env.dir.path().join("app.db");
    // 10:00Z (11:00 in Berlin, 05:00 in New York) and 12:00Z (13:00 Berlin).
    set_marker(&db, "ten");
    env.run(&["backup", s(&db), "--time", "2026-12-05T10:00:00Z"])
        .ok();
    set_marker(&db, "noon");
    // Typed as listed in Berlin: 13:00 local is 12:00Z.
    let out = in_zone(
        &env,
        "Europe/Berlin",
        &["backup", s(&db), "--time", "2026-12-05 13:00"],
    );
    out.ok();
    assert!(
        out.stderr.contains("2026-12-05T12:00:00Z"),
        "the instant is said: {out:?}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    let times: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(times, ["2026-12-05T10:00:00Z", "2026-12-05T12:00:00Z"]);

    for (tz, utc, before, want) in [
        // 12:00 in Berlin is 11:00Z: the 10:00Z snapshot.
        ("Europe/Berlin", false, "2026-12-05 12:00", "ten"),
        ("Europe/Berlin", false, "2026-12-05 13:00:00", "noon"),
        // 06:30 in New York is 11:30Z.
        ("America/New_York", false, "2026-12-05 06:30", "ten"),
        // With --utc, listings and typed times are UTC.
        ("Europe/Berlin", true, "2026-12-05 12:00", "noon"),
        ("Europe/Berlin", true, "2026-12-05 11:59:59", "ten"),
        // A time with its own offset means that instant anywhere.
        ("Asia/Tokyo", false, "2026-12-05T11:00:00Z", "ten"),
        ("Asia/Tokyo", false, "2026-12-05T13:00:00+01:00", "noon"),
    ] {
        let out_file = env.dir.path().join("out.db");
        let _ = std::fs::remove_file(&out_file);
        let mut args = vec![
            "dump",
            "latest",
            "--before",
            before,
            "--output",
            s(&out_file),
        ];
        if utc {
            args.push("--utc");
        }
        let r = in_zone(&env, tz, &args);
        r.ok();
        assert_eq!(marker(&out_file), want, "{tz} utc={utc} {before}: {r:?}");
        let target = env.dir.path().join("restored.db");
        let mut args = vec![
            "restore",
            "latest",
            "--before",
            before,
            "--target",
            s(&target),
            "--no-pre-restore",
            "--force",
        ];
        if utc {
            args.push("--utc");
        }
        in_zone(&env, tz, &args).ok();
        assert_eq!(marker(&target), want, "restore {tz} utc={utc} {before}");
    }
    // import --time reads the same way.
    let copy = env.dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    set_marker(&copy, "three");
    in_zone(
        &env,
        "Europe/Berlin",
        &[
            "import",
            s(&copy),
            "--db",
            s(&db),
            "--time",
            "2026-12-05 15:00",
        ],
    )
    .ok();
    let listed: serde_json::Value =
        serde_json::from_str(env.run(&["snapshots", "--json"]).ok()).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["time"] == "2026-12-05T14:00:00Z"),
        "{listed}"
    );
}
