//! Measures how long a WAL-mode writer stalls while litevault backs the
//! database up (pages strategy).
//!
//! ```sh
//! python3 ../shared/bench/workload.py create /tmp/stall.db --size-mb 64 --seed 42
//! cargo run --release --example writer_stall -- /tmp/stall.db
//! ```
//!
//! A writer commits a small transaction about every 2 ms (~500 commits/s)
//! while three backups run one after another; the report gives the commit
//! rate and the longest and 99th-percentile commit latency during the
//! backups and outside them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use litevault::{BackupOptions, InitOptions, KdfParams, Repository};

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    let db = std::env::args().nth(1).expect("usage: writer_stall DB");
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        kdf: KdfParams::TEST_ONLY_INSECURE,
        ..InitOptions::default()
    };
    let repo = Repository::init_local(dir.path().join("repo"), b"pw", &opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let in_backup = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(bool, Duration)>>> = Arc::default();
    let writer = {
        let (db, stop, in_backup, samples) =
            (db.clone(), stop.clone(), in_backup.clone(), samples.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS stall(id INTEGER PRIMARY KEY, v BLOB);")
                .unwrap();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let during = in_backup.load(Ordering::Relaxed);
                let t = Instant::now();
                c.execute("INSERT INTO stall(v) VALUES (randomblob(200))", [])
                    .unwrap();
                samples
                    .lock()
                    .unwrap()
                    .push((during || in_backup.load(Ordering::Relaxed), t.elapsed()));
                next += Duration::from_millis(2);
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut backup_time = Duration::ZERO;
    for _ in 0..3 {
        in_backup.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let mut o = BackupOptions::new(&db);
        o.force = true;
        litevault::backup(&repo, &o).unwrap();
        backup_time += t.elapsed();
        in_backup.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = started.elapsed() + Duration::from_secs(2);
    let s = samples.lock().unwrap();
    let (mut during, mut outside): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (d, l) in s.iter() {
        if *d {
            during.push(*l);
        } else {
            outside.push(*l);
        }
    }
    println!(
        "commits: {} in {:.1} s ({:.0}/s); backups: 3 in {:.2} s",
        s.len(),
        total.as_secs_f64(),
        s.len() as f64 / total.as_secs_f64(),
        backup_time.as_secs_f64()
    );
    println!(
        "commit latency during backups: max {:.1} ms, p99 {:.2} ms ({} commits)",
        during
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        percentile(&mut during, 0.99).as_secs_f64() * 1e3,
        during.len()
    );
    println!(
        "commit latency outside backups: max {:.1} ms, p99 {:.2} ms ({} commits)",
        outside
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        percentile(&mut outside, 0.99).as_secs_f64() * 1e3,
        outside.len()
    );
}
