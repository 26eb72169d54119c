#!/usr/bin/env bash
# Writer stalls during a backup (not a test: prints figures).
#
# A writer commits small transactions at STALL_RATE per second (default 500)
# into a database of STALL_DB_MB (default 2048, ../shared/bench/workload.py)
# while `litevault backup` runs, in WAL mode and in rollback-journal
# (DELETE) mode. Printed: the backup's wall time, and the commits that
# started while it ran: how many, the longest, the 99th percentile.
#
# In WAL mode a reader never blocks a writer. In rollback-journal mode the
# backup's read transaction holds SQLite's SHARED lock for the whole page
# read, and a writer's COMMIT waits for it (busy_timeout): its stall is as
# long as that read.
#
#   scripts/bench-stall.sh
#   STALL_DB_MB=512 scripts/bench-stall.sh
#
# The writer runs with synchronous=OFF so that the rate measures locking,
# not this disk's fsync latency.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${STALL_DB_MB:-2048}"
rate="${STALL_RATE:-500}"
work="${STALL_DIR:-/tmp/litevault-stall}"
workload="$root/../shared/bench/workload.py"
mkdir -p "$work"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
lv="$root/target/release/litevault"
export LITEVAULT_PASSWORD_FILE="$work/password"
head -c 24 /dev/urandom | base64 > "$LITEVAULT_PASSWORD_FILE"

base="$work/base-$size.db"
if [ ! -f "$base" ]; then
  echo "creating the $size MiB workload database..." >&2
  python3 "$workload" create "$base.tmp" --size-mb "$size" --seed 42 >/dev/null
  mv "$base.tmp" "$base"
fi

cat > "$work/writer.py" <<'EOF'
import json, os, sqlite3, sys, time
db, stop, out, rate, mode = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
con = sqlite3.connect(db, timeout=60, isolation_level=None)
con.execute("PRAGMA synchronous=OFF")
con.execute("CREATE TABLE IF NOT EXISTS stall_probe(id INTEGER PRIMARY KEY, t REAL, pad BLOB)")
lat = []
period = 1.0 / rate
due = time.monotonic()
while not os.path.exists(stop):
    t0 = time.monotonic()
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO stall_probe(t, pad) VALUES (?, randomblob(100))", (t0,))
    con.execute("COMMIT")
    lat.append((t0, time.monotonic() - t0))
    due += period
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    else:
        due = time.monotonic()
json.dump(lat, open(out, "w"))
EOF

rows=()
for mode in wal delete; do
  db="$work/app-$mode.db"; repo="$work/repo-$mode"
  rm -rf "$db" "$db-wal" "$db-shm" "$db-journal" "$repo" "$work/stop" "$work/lat-$mode.json"
  cp "$base" "$db"
  "$lv" -q --repo "$repo" init
  "$lv" -q --repo "$repo" backup "$db"   # the first backup: what follows is a daily one
  python3 "$workload" mutate "$db" --step 1 --seed 42 >/dev/null
  # (workload.py puts the database back in WAL mode)
  [ "$(sqlite3 "$db" "PRAGMA journal_mode=$mode")" = "$mode" ] || { echo "bench: cannot set journal_mode=$mode" >&2; exit 1; }
  python3 "$work/writer.py" "$db" "$work/stop" "$work/lat-$mode.json" "$rate" "$mode" &
  writer=$!
  sleep 2
  start=$(python3 -c 'import time; print(time.monotonic())')
  "$lv" -q --repo "$repo" backup "$db" --lock-timeout 60s
  end=$(python3 -c 'import time; print(time.monotonic())')
  sleep 1
  touch "$work/stop"; wait "$writer"
  rows+=("$(python3 - "$work/lat-$mode.json" "$start" "$end" "$mode" <<'EOF'
import json, sys
lat = json.load(open(sys.argv[1])); start, end = float(sys.argv[2]), float(sys.argv[3])
during = sorted(l for t, l in lat if start <= t <= end or t < start < t + l)
p99 = during[int(len(during) * 0.99) - 1] if during else 0
print(f"| {sys.argv[4]} | {end - start:.2f} s | {len(during)} | {len(during) / max(end - start, 1e-9):.0f}/s "
      f"| {max(during) * 1000 if during else 0:.1f} ms | {p99 * 1000:.1f} ms |")
EOF
)")
  echo "${rows[-1]}" >&2
done

echo
echo "$size MiB database, a writer at $rate commits/s during an incremental backup; $(nproc) cores"
echo
echo "| journal mode | backup | commits during it | rate | longest commit | p99 commit |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
