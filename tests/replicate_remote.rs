//! Continuous capture into remote repositories on servers the tests start
//! on loopback: Garage S3 and OpenSSH's SFTP (with checkpoints and a sudden
//! death while the application commits), and a three-node Garage cluster
//! that loses a node while commits go on, counted by Garage itself: no
//! listing while replicating.

use std::time::Duration;

use rusqlite::Connection;

use crate::remote::{env_for, s3_vars, Kind};
use crate::replicate::{
    burst, moments_restore, pause, restore_at, state_of, wait_restorable, wal_setup, Logged,
    Replicator, Scenario,
};
use crate::util::servers::{self, GarageNode};
use crate::util::Env;

/// Commits, checkpoints of two modes and a SIGKILL with a restart, into a
/// remote repository: the latest state and every moment restore, and
/// `check` reads every change object and finds nothing wrong.
fn capture_cycle(kind: Kind) {
    let env = env_for(kind);
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    // The stream's first snapshot is where moments begin.
    let t = std::time::Instant::now();
    while env.run(&["snapshots", "--json"]).stdout.trim_start().len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(60), "no first snapshot");
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut log: Vec<Logged> = Vec::new();
    let mut quiet = Vec::new();
    let steps = [
        "",
        "PRAGMA wal_checkpoint(PASSIVE)",
        "kill",
        "PRAGMA wal_checkpoint(RESTART)",
        "",
    ];
    let rep = Scenario {
        env: &env,
        state: &state,
        db: &db,
        c: &c,
        log: &mut log,
        quiet: &mut quiet,
    }
    .steps(rep, 20, &steps);
    wait_restorable(&env, &db);
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
    // The commits a kill left unstored, and a checkpoint that overtakes
    // the capture, are bridged: a moment before each may restore an older
    // state.
    moments_restore(&env, &db, &log, &quiet, 2);
    let checked: serde_json::Value =
        serde_json::from_str(env.run(&["check", "--json"]).ok()).unwrap();
    assert_eq!(
        checked["findings"].as_array().unwrap().len(),
        0,
        "{checked}"
    );
    assert!(checked["changes"].as_u64().unwrap() >= 3, "{checked}");
}

#[test]
fn replicate_on_s3() {
    capture_cycle(Kind::S3);
}

#[test]
fn replicate_on_sftp() {
    capture_cycle(Kind::Sftp);
}

/// Three Garage nodes on loopback, replication factor 3: while a stream is
/// captured, a node stops and commits go on; they are stored meanwhile
/// (two of three nodes make a quorum) and restore to every moment, during
/// the outage and after. Garage's own counters show the capture lists
/// nothing once it runs.
#[test]
fn replicate_into_a_garage_cluster_losing_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<GarageNode> = (0..3)
        .map(|i| GarageNode::new(&dir.path().join(format!("node{i}")), 3))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    servers::garage_setup(&nodes.iter().collect::<Vec<_>>());
    nodes[0].wait_healthy(3);
    let loc = format!("s3:{}/{}/stream", nodes[0].endpoint(), servers::BUCKET);
    let env = Env::remote(loc, s3_vars());
    let (db, state) = wal_setup(&env, 4096);
    let rep = Replicator::start(&env, &state, &[&db], &[]);
    let c = Connection::open(&db).unwrap();
    let mut log: Vec<Logged> = Vec::new();
    let mut quiet = Vec::new();
    burst(&c, 20, &mut log, &db);
    wait_restorable(&env, &db);

    // Running: only writes (and no listing) reach the storage. Requests
    // go to the first node, which counts them.
    let lists = |n: &GarageNode| n.s3_requests().get("ListObjectsV2").copied().unwrap_or(0);
    let before = lists(&nodes[0]);
    for _ in 0..3 {
        burst(&c, 20, &mut log, &db);
        pause(&mut quiet);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lists(&nodes[0]), before, "the capture listed the bucket");

    // A node stops: commits go on and are stored.
    nodes[2].stop();
    for _ in 0..3 {
        burst(&c, 20, &mut log, &db);
        pause(&mut quiet);
    }
    wait_restorable(&env, &db);
    nodes[2].start();
    nodes[0].connect(&nodes[2]);
    nodes[1].connect(&nodes[2]);
    nodes[0].wait_healthy(3);
    for _ in 0..2 {
        burst(&c, 20, &mut log, &db);
        pause(&mut quiet);
    }
    wait_restorable(&env, &db);
    let out = rep.stop("TERM");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("bridging"), "{out:?}");
    assert_eq!(
        restore_at(&env, &db, "latest", "latest.db").unwrap(),
        state_of(&db)
    );
    moments_restore(&env, &db, &log, &quiet, 0);
}
