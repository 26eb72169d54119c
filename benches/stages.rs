//! Per-stage throughput of the backup path: keyed hash, zstd, seal, open.
//! Run with `cargo bench --bench stages`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use litevault::format::compression;
use litevault::MasterKey;

/// A page shaped like an SQLite table leaf: repeated rows with varying ids.
fn page(seed: u32) -> Vec<u8> {
    (0..4096u32)
        .map(|i| {
            if i % 64 < 40 {
                b"row: the quick brown fox jumps over the dog"[(i % 64) as usize]
            } else {
                (i.wrapping_mul(seed | 1) >> 5) as u8
            }
        })
        .collect()
}

fn chunk(pages: u32) -> Vec<u8> {
    (0..pages).flat_map(page).collect()
}

fn stages(c: &mut Criterion) {
    let key = MasterKey::from_secret(&[7u8; 32]);
    let mut g = c.benchmark_group("stages");
    for pages in [1u32, 4, 16] {
        let data = chunk(pages);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("keyed_blake3", data.len()),
            &data,
            |b, d| b.iter(|| key.blob_id(d)),
        );
        g.bench_with_input(BenchmarkId::new("zstd3", data.len()), &data, |b, d| {
            b.iter(|| compression::compress(d, Some(3)));
        });
        g.bench_with_input(BenchmarkId::new("seal", data.len()), &data, |b, d| {
            b.iter(|| key.seal(b"aad", d).unwrap());
        });
        let sealed = key.seal(b"aad", &data).unwrap();
        g.bench_with_input(BenchmarkId::new("open", data.len()), &sealed, |b, s| {
            b.iter(|| key.open(b"aad", s).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
