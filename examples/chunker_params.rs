//! Measures chunker parameters on two images of a database, a day apart:
//! average chunk size vs bytes a backup of day 1 adds vs index size.
//!
//! ```sh
//! python3 ../shared/bench/workload.py create day0.db --size-mb 64 --seed 42
//! cp day0.db day1.db && python3 ../shared/bench/workload.py mutate day1.db --step 1 --seed 42
//! cargo run --release --example chunker_params -- day0.db day1.db
//! ```
//!
//! The files must be checkpointed page images (workload.py leaves them so).
//! "added" counts what the second backup stores: new chunks compressed with
//! zstd 3 plus 40 bytes of encryption, 44 of pack header and 48 of index per
//! new blob, and the tree blobs that changed.

use std::collections::HashSet;

use litevault::format::chunker::chunk_image;
use litevault::format::tree::{TreeBuilder, TreeEntry, TreeNode};
use litevault::{BlobId, ChunkerParams, MasterKey};

const PER_BLOB: u64 = 40 + 44 + 48;

struct Backup {
    ids: HashSet<BlobId>,
    chunks: usize,
    added: u64,
    new_raw: u64,
}

fn backup(
    key: &MasterKey,
    params: ChunkerParams,
    ps: usize,
    image: &[u8],
    known: &HashSet<BlobId>,
) -> Backup {
    let mut ids = HashSet::new();
    let (mut added, mut new_raw) = (0u64, 0u64);
    let chunks = chunk_image(key.chunker_key(), params, ps, image);
    let mut tree = TreeBuilder::new();
    let mut tree_blobs = Vec::new();
    for c in &chunks {
        let id = key.blob_id(c);
        if !known.contains(&id) && ids.insert(id) {
            let (_, z) = litevault::format::compression::compress(c, Some(3));
            added += z.len() as u64 + PER_BLOB;
            new_raw += c.len() as u64;
        }
        ids.insert(id);
        tree.push(
            TreeEntry {
                id,
                len: c.len() as u64,
            },
            &mut |n: TreeNode| {
                let b = n.encode();
                let id = key.blob_id(&b);
                tree_blobs.push((id, b.len()));
                Ok(id)
            },
        )
        .unwrap();
    }
    tree.finish(&mut |n: TreeNode| {
        let b = n.encode();
        let id = key.blob_id(&b);
        tree_blobs.push((id, b.len()));
        Ok(id)
    })
    .unwrap();
    for (id, len) in tree_blobs {
        if !known.contains(&id) && ids.insert(id) {
            added += len as u64 + PER_BLOB;
        }
    }
    Backup {
        ids,
        chunks: chunks.len(),
        added,
        new_raw,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (day0, day1) = (
        std::fs::read(&args[1]).unwrap(),
        std::fs::read(&args[2]).unwrap(),
    );
    let ps = usize::from(u16::from_be_bytes([day0[16], day0[17]]));
    let ps = if ps == 1 { 65536 } else { ps };
    let key = MasterKey::from_secret(&[42u8; 32]);
    println!("| min | avg | max | avg chunk | chunks | day-1 new raw | day-1 added | index (day 0) | added/day-0 stored |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (min, avg, max) in [
        (1, 1, 1),
        (1, 2, 32),
        (1, 4, 64),
        (2, 4, 64),
        (1, 8, 64),
        (4, 8, 64),
        (1, 16, 128),
        (8, 16, 128),
        (1, 32, 256),
    ] {
        let params = ChunkerParams {
            min_pages: min,
            avg_pages: avg,
            max_pages: max,
        };
        let first = backup(&key, params, ps, &day0, &HashSet::new());
        let second = backup(&key, params, ps, &day1, &first.ids);
        println!(
            "| {min} | {avg} | {max} | {:.1} KiB | {} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2}% |",
            day0.len() as f64 / first.chunks as f64 / 1024.0,
            first.chunks,
            second.new_raw as f64 / 1_048_576.0,
            second.added as f64 / 1_048_576.0,
            (first.ids.len() as u64 * 48) as f64 / 1_048_576.0,
            100.0 * second.added as f64 / first.added as f64,
        );
    }
}
