//! Continuous capture of an application whose last connection closes
//! after each write: SQLite then checkpoints and deletes the WAL (and its
//! `-shm`) at every commit, and the next connection starts a new WAL with
//! random salts. Nothing in the files tells that one came and went, so
//! the capture counts the `-wal` files the directory's events saw written
//! and removed, and a bridge reads its wal-index from the `-shm` its own
//! connection maps.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::replicate::{
    commit_one, expected_at, moments_restore, now_ns, pause, restore_at, rfc3339, state_of,
    wait_restorable, wal_setup, Logged, Replicator,
};
use crate::util::Env;

/// Commits `n` transactions, each on a connection of its own that closes
/// right after (the last one: it checkpoints and deletes the WAL); logs
/// each.
fn commits_each_closing(db: &Path, n: usize, log: &mut Vec<Logged>) {
    for i in 0..n {
        let c = Connection::open(db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        commit_one(&c, i % 3 == 0);
        drop(c);
        log.push(Logged {
            at_ns: now_ns(),
            state: state_of(db),
        });
    }
}

/// Sends `signal` to the replicator.
fn signal(rep: &Replicator, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &rep.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn an_application_that_closes_after_each_commit_restores_exactly_or_to_a_state_it_had() {
    let env = Env::new();
    let (db, state) = wal_setup(&env, 4096);
    let mut log: Vec<Logged> = Vec::new();
    let mut quiet: Vec<i64> = Vec::new();
    // Commits from the first moment, as fast as they go: the stream's
    // bridges align while WAL files come and go, and most files come and
    // go between two reads.
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    for _ in 0..5 {
        commits_each_closing(&db, 150, &mut log);
        pause(&mut quiet);
    }
    // A connection that stays open keeps the WAL: commits are read one
    // by one again.
    let keep = Connection::open(&db).unwrap();
    keep.query_row("SELECT count(*) FROM t", [], |_| Ok(()))
        .unwrap();
    commits_each_closing(&db, 20, &mut log);
    wait_restorable(&env, &db);
    pause(&mut quiet);
    let read_one_by_one = *quiet.last().unwrap();

    // Certainly missed: while the replicator is stopped, WAL files are
    // made, written and deleted (the last connection closes each time),
    // then one stays. What it reads next follows commits it never saw.
    drop(keep);
    signal(&rep, "STOP");
    commits_each_closing(&db, 3, &mut log);
    let keep = Connection::open(&db).unwrap();
    keep.execute("INSERT INTO t(v, at) VALUES (randomblob(500), 0)", [])
        .unwrap();
    log.push(Logged {
        at_ns: now_ns(),
        state: state_of(&db),
    });
    signal(&rep, "CONT");
    commits_each_closing(&db, 10, &mut log);
    wait_restorable(&env, &db);
    pause(&mut quiet);
    let after_the_miss = *quiet.last().unwrap();
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("a -wal file was made, written and removed between two reads"),
        "{out:?}"
    );
    drop(keep);

    // The latest state is the database's.
    let latest = restore_at(&env, &db, "latest", "latest.db").unwrap();
    assert_eq!(latest, state_of(&db));
    // Every moment restores (no change object contradicts the image
    // before it) to the state after the last commit before it, or,
    // inside a gap the capture found and bridged, to an older state the
    // database really had.
    moments_restore(&env, &db, &log, &quiet, quiet.len());
    // Commits read one by one, and those after the bridged miss, restore
    // exactly.
    for (i, at) in [read_one_by_one, after_the_miss].into_iter().enumerate() {
        let got = restore_at(&env, &db, &rfc3339(at), &format!("exact-{i}.db")).unwrap();
        assert_eq!(got, expected_at(&log, at), "moment {i}");
    }
    env.run(&["check"]).ok();
}
