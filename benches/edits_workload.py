#!/usr/bin/env python3
"""A deterministic SQLite workload that is hard on page-level dedup.

The shape an SCM or a document store writes: rows updated in place with
small edits (a counter, a timestamp of fixed width, a few bytes inside a
blob), blobs that hold already-compressed data (zlib of generated text, so
zstd gains nothing), and a large share of the pages rewritten every day.

Same command line as ../shared/bench/workload.py, so scripts/bench.sh can
run either:

  edits_workload.py create DB --size-mb N [--seed S]
  edits_workload.py mutate DB --step K [--seed S]

All randomness comes from random.Random seeded from (seed, step); the same
seed and steps give the same logical content.
"""

import argparse
import random
import sqlite3
import sys
import zlib

WORDS = "commit tree blob merge branch rebase patch diff index object".split()

ROW_BYTES = 1400  # about three rows per 4 KiB page


def compressed_body(rng: random.Random, size: int) -> bytes:
    """A zlib stream of about `size` bytes holding data that does not
    compress (as an image, an archive or an object store's packed objects
    would): nothing for zstd to gain."""
    return zlib.compress(rng.randbytes(size), 6)


def create(path: str, size_mb: int, seed: int) -> None:
    rng = random.Random(f"edits-create:{seed}")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, path TEXT NOT NULL, "
        "revision INTEGER NOT NULL, updated TEXT NOT NULL, body BLOB NOT NULL)"
    )
    con.execute("CREATE INDEX docs_path ON docs(path)")
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    batch = []
    for i in range(rows):
        body = compressed_body(rng, rng.randrange(900, 1300))
        batch.append((i + 1, f"src/{rng.choice(WORDS)}/{i:08d}.dat", 1, "day-0000", body))
        if len(batch) == 2000:
            con.executemany("INSERT INTO docs VALUES (?,?,?,?,?)", batch)
            batch.clear()
    con.executemany("INSERT INTO docs VALUES (?,?,?,?,?)", batch)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def mutate(path: str, step: int, seed: int) -> None:
    """One day: a third of the rows get a new revision and time (same
    width, in place); a tenth of those get a few bytes of their blob
    changed, its length kept; a few rows are appended."""
    rng = random.Random(f"edits-mutate:{seed}:{step}")
    con = sqlite3.connect(path)
    (rows,) = con.execute("SELECT max(id) FROM docs").fetchone()
    touched = rng.sample(range(1, rows + 1), rows // 3)
    for n, rowid in enumerate(touched):
        if n % 10 == 0:
            (body,) = con.execute("SELECT body FROM docs WHERE id=?", (rowid,)).fetchone()
            b = bytearray(body)
            for _ in range(rng.randrange(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            con.execute(
                "UPDATE docs SET revision=revision+1, updated=?, body=? WHERE id=?",
                (f"day-{step:04d}", bytes(b), rowid),
            )
        else:
            con.execute(
                "UPDATE docs SET revision=revision+1, updated=? WHERE id=?",
                (f"day-{step:04d}", rowid),
            )
    for i in range(rows // 200):
        body = compressed_body(rng, rng.randrange(900, 1300))
        con.execute(
            "INSERT INTO docs VALUES (?,?,?,?,?)",
            (rows + i + 1, f"src/new/{step:04d}-{i:06d}.dat", 1, f"day-{step:04d}", body),
        )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("db")
    c.add_argument("--size-mb", type=int, required=True)
    c.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("mutate")
    m.add_argument("db")
    m.add_argument("--step", type=int, required=True)
    m.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.cmd == "create":
        create(a.db, a.size_mb, a.seed)
    else:
        mutate(a.db, a.step, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
