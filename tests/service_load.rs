//! The HTTP API under hostile and heavy load, against the real daemon:
//! silent connections are closed and bounded, a client that stops reading
//! a download is cut off and its repository lock released, parallel reads
//! unlock the repository once, the daemon's memory stays under a stated
//! bound, and its scheduled backups keep succeeding throughout. Tokens
//! reload with SIGHUP; the `Bearer` scheme is case-insensitive; HTTP/2 is
//! refused.

// Each test is one scenario, told in order.
#![allow(clippy::too_many_lines)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::service::{http, json, Daemon, Svc, TOKEN};
use crate::util;

/// The daemon's peak resident memory the load test allows (stated in
/// README: the key derivation of one unlock is 128 MiB of it).
const RSS_BOUND_MIB: u64 = 256;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A request whose response is read up to its head, then left unread.
fn stall(addr: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 64];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.read(&mut head);
    s
}

/// True once the server has closed `s` (a read returns end of file or a
/// reset) within `limit`; what arrives meanwhile is read and counted.
fn closed_within(s: &mut TcpStream, limit: Duration) -> (bool, u64) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, got),
        }
    }
    (false, got)
}

#[test]
fn the_api_under_load_stays_bounded_and_backups_keep_running() {
    let s = Svc::new();
    // A repository whose key has the real (128 MiB) key derivation: every
    // unlock costs that much, so unlocking per request would show.
    let real = s.path("real-repo");
    let mut init = s.env.bare();
    init.env_remove("LITEVAULT_TEST_ONLY_INSECURE_KDF")
        .args(["--repo", real.to_str().unwrap(), "--password-file"])
        .arg(&s.env.password_file)
        .arg("init");
    util::run(init).ok();
    let big = s.path("big.db");
    util::workload::create(&big, 24, 7);
    let app = s.small_db("app.db");
    let p = s.write_config(&format!(
        "[repositories.real]\nlocation = \"{}\"\npassword = {{ file = \"{}\" }}\n\
         [databases.big]\npath = \"{}\"\n[databases.app]\npath = \"{}\"\n\
         [jobs.seed]\ndatabases = [\"big\"]\nrepositories = [\"real\"]\nschedule = \"1d\"\n\
         [jobs.often]\ndatabases = [\"app\"]\nrepositories = [\"real\"]\nschedule = \"2s\"\n",
        real.display(),
        s.env.password_file.display(),
        big.display(),
        app.display(),
    ));
    let config = std::fs::read_to_string(&p).unwrap().replacen(
        "tokens = [\"$LV_TEST_TOKEN\"]",
        "tokens = [\"$LV_TEST_TOKEN\"]\nclient_timeout = \"2s\"\nstall_timeout = \"3s\"",
        1,
    );
    std::fs::write(&p, config).unwrap();
    let d = Daemon::start(s.cmd(&["run", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    let pid = d.child.id();
    // The big database's first snapshot, to download.
    d.wait_for("the first backups", Duration::from_secs(60), |ls| {
        ls.iter().filter(|l| l.contains("snapshot saved")).count() >= 2
    });
    let (_, _, b) = http(
        &addr,
        "GET",
        "/v1/snapshots?database=big",
        Some(TOKEN),
        None,
    );
    let listed = json(&b);
    let big_id = listed[0]["id"].as_str().unwrap().to_string();
    let image_bytes = listed[0]["image"]["bytes"].as_u64().unwrap();

    // 200 connections that send nothing.
    let mut silent: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    let load_started = Instant::now();
    // 100 requests at once across every endpoint; some stall.
    let download = format!("/v1/snapshots/{big_id}/database");
    let sql = format!("/v1/snapshots/{big_id}/database?format=sql");
    let paths: Vec<(String, bool)> = (0..100)
        .map(|i| {
            let p = match i % 10 {
                0 | 1 => "/v1/snapshots".to_string(),
                2 => "/v1/snapshots?database=app".to_string(),
                3 => "/v1/status".to_string(),
                4 => "/metrics".to_string(),
                5 => "/healthz".to_string(),
                6 => download.clone(),
                7 => sql.clone(),
                8 => "/v1/tasks/12345".to_string(),
                _ => "POST".to_string(),
            };
            (p, i % 20 == 6)
        })
        .collect();
    let handles: Vec<_> = paths
        .into_iter()
        .map(|(path, stalls)| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                if stalls {
                    let mut st = stall(&addr, &path);
                    // A reader that stopped: the server gives up on it
                    // before the whole image went out.
                    std::thread::sleep(Duration::from_secs(8));
                    let (closed, got) = closed_within(&mut st, Duration::from_secs(30));
                    return u16::from(!(closed && got < image_bytes));
                }
                let (code, _, _) = if path == "POST" {
                    http(
                        &addr,
                        "POST",
                        "/v1/backups",
                        Some(TOKEN),
                        Some(br#"{"database":"app"}"#),
                    )
                } else {
                    http(&addr, "GET", &path, Some(TOKEN), None)
                };
                code
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for c in &codes {
        assert!(
            [0, 200, 202, 404, 409, 503].contains(c),
            "an unexpected status under load: {codes:?}"
        );
    }
    assert!(
        codes.iter().filter(|c| **c == 200).count() >= 40,
        "too few requests served: {codes:?}"
    );
    // The silent connections were closed by the server.
    let closed = silent
        .iter_mut()
        .map(|c| closed_within(c, Duration::from_secs(10)).0)
        .filter(|c| *c)
        .count();
    assert_eq!(
        closed,
        silent.len(),
        "silent connections stayed open: {closed} of {}",
        silent.len()
    );
    // Scheduled backups kept running through it all.
    let since = load_started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let ok_runs = s.count(&format!(
        "SELECT count(*) FROM runs WHERE database = 'app' AND operation = 'backup' AND outcome IN ('success', 'unchanged') AND start_ms >= {}",
        (jiff::Timestamp::now().as_millisecond() - (since.as_millis() as i64) - 5000)
    ));
    assert!(ok_runs >= 2, "scheduled backups stopped: {ok_runs}");
    let log = d.lines.lock().unwrap().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    // Memory stayed bounded: one unlock, bounded work.
    let peak_mib = status_kib(pid, "VmHWM:") / 1024;
    eprintln!(
        "daemon peak RSS under load: {peak_mib} MiB (now {} MiB)",
        status_kib(pid, "VmRSS:") / 1024
    );
    assert!(
        peak_mib < RSS_BOUND_MIB,
        "peak RSS {peak_mib} MiB over {RSS_BOUND_MIB} MiB"
    );
    // Every download's lock is released and its temporary file gone.
    util::run(
        s.env
            .command_for(&real, &["prune"])
            .env_remove("LITEVAULT_TEST_ONLY_INSECURE_KDF"),
    )
    .ok();
    let tmp: Vec<String> = std::fs::read_dir(s.path("state/tmp"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    drop(silent);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

#[test]
fn tokens_reload_with_sighup_and_the_scheme_is_case_insensitive() {
    let s = Svc::new();
    let p = s.write_config("");
    let d = Daemon::start(s.cmd(&["serve", "--config", p.to_str().unwrap()]));
    let addr = d.address();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let mut c = TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {scheme} {TOKEN}\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{scheme}: {out}");
    }
    // A new token replaces the old one on SIGHUP.
    let new_token = "another-token-fedcba9876543210";
    let config = std::fs::read_to_string(&p)
        .unwrap()
        .replace(
            "tokens = [\"$LV_TEST_TOKEN\"]",
            &format!("tokens = [\"{new_token}\"]"),
        )
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"");
    std::fs::write(&p, config).unwrap();
    d.signal(rustix::process::Signal::HUP);
    d.wait_for("the reload", Duration::from_secs(20), |ls| {
        ls.iter().any(|l| l.contains("config reloaded"))
    });
    assert_eq!(http(&addr, "GET", "/v1/status", Some(TOKEN), None).0, 401);
    assert_eq!(
        http(&addr, "GET", "/v1/status", Some(new_token), None).0,
        200
    );
    d.wait_for("the restart warning", Duration::from_secs(5), |ls| {
        ls.iter()
            .any(|l| l.contains("listen address") && l.contains("restart"))
    });
    // HTTP/2 (prior knowledge, without TLS) is not spoken.
    let mut h2 = TcpStream::connect(&addr).unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut reply = Vec::new();
    let _ = h2.read_to_end(&mut reply);
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 "),
        "an HTTP/2 answer: {reply:?}"
    );
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}
