//! The backup path per stage and whole: chunk boundary search, chunk +
//! keyed hash + zstd + seal in memory, and `litevault::backup` of a real
//! 16 MiB database (first and unchanged). Run with `cargo bench --bench pipeline`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use litevault::format::chunker::{chunk_image, PageChunker};
use litevault::format::compression;
use litevault::{BackupOptions, ChunkerParams, InitOptions, KdfParams, MasterKey, Repository};

/// A 16 MiB SQLite database shaped like an application's: text rows and
/// incompressible attachments.
fn make_db(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, payload TEXT);
         CREATE TABLE attachments(id INTEGER PRIMARY KEY, data BLOB); BEGIN;",
    )
    .unwrap();
    for i in 0..40_000i64 {
        c.execute(
            "INSERT INTO events(ts, payload) VALUES (?1, printf('{\"user\":%d,\"msg\":\"payment %d settled for invoice %d via gateway\"}', ?1 % 977, ?1, ?1 * 7))",
            [i],
        )
        .unwrap();
    }
    for _ in 0..100 {
        c.execute(
            "INSERT INTO attachments(data) VALUES (randomblob(32768))",
            [],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

fn stages(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    make_db(&db);
    let image = std::fs::read(&db).unwrap();
    let key = MasterKey::from_secret(&[5u8; 32]);
    let params = ChunkerParams::DEFAULT;

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(image.len() as u64));
    g.sample_size(10);
    g.bench_function("chunk_boundaries", |b| {
        b.iter(|| {
            let mut ch = PageChunker::new(key.chunker_key(), params, 4096);
            image.chunks(4096).filter(|p| ch.push(p).is_some()).count()
        });
    });
    g.bench_function("chunk_hash_compress_seal_in_memory", |b| {
        b.iter(|| {
            let mut stored = 0usize;
            for chunk in chunk_image(key.chunker_key(), params, 4096, &image) {
                let id = key.blob_id(&chunk);
                let (_, z) = compression::compress(&chunk, Some(3));
                stored += key.seal(id.as_bytes(), &z).unwrap().len();
            }
            stored
        });
    });

    let opts = InitOptions {
        kdf: KdfParams::TEST_ONLY_INSECURE,
        ..InitOptions::default()
    };
    g.bench_function("backup_first", |b| {
        b.iter_with_setup(
            || {
                let r = tempfile::tempdir().unwrap();
                let repo = Repository::init_local(r.path().join("repo"), b"pw", &opts).unwrap();
                (r, repo)
            },
            |(_r, repo)| litevault::backup(&repo, &BackupOptions::new(&db)).unwrap(),
        );
    });
    let r = tempfile::tempdir().unwrap();
    let repo = Repository::init_local(r.path().join("repo"), b"pw", &opts).unwrap();
    litevault::backup(&repo, &BackupOptions::new(&db)).unwrap();
    g.bench_function("backup_unchanged", |b| {
        b.iter(|| litevault::backup(&repo, &BackupOptions::new(&db)).unwrap());
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = stages
}
criterion_main!(benches);
