#!/usr/bin/env bash
# Scale benchmark (not a test: prints figures). Three parts:
#
#  1. A large database (workload.py --size-mb, 10 GiB by default): first
#     backup, an incremental after a day of churn, an unchanged one, and a
#     restore (integrity_check, then --quick): seconds and peak memory.
#     Memory is sampled from /proc/PID/status every 20 ms: RssAnon (heap,
#     stacks: what the process allocates) and RssFile (pages of files it
#     maps: SQLite maps the restored copy for its check, so those pages are
#     the page cache's, shared and reclaimable, not the process's own).
#  2. A repository with many snapshots (1000 by default) of a small
#     database: `snapshots`, `forget` (a policy keeping about 40), `prune`,
#     each timed at a tenth of the count too, to show how they grow.
#  3. Many databases (100 by default) in one repository: one
#     `backup --find DIR`, then `snapshots`.
#
#   scripts/bench-scale.sh
#   SCALE_DB_MB=2048 SCALE_SNAPSHOTS=300 SCALE_DATABASES=50 scripts/bench-scale.sh
#   SCALE_PARTS="2 3" scripts/bench-scale.sh      # only some parts
#
# Parts 2 and 3 make their repositories with the test-only key derivation
# (LITEVAULT_TEST_ONLY_INSECURE_KDF=1): each command would otherwise spend
# about a second deriving the key (Argon2id, 128 MiB), which is the same at
# any scale and would make the setup of 1000 snapshots take half an hour.
#
# Needs: python3, sqlite3, ../shared/bench/workload.py. The large database
# is kept in $SCALE_DIR (default /tmp/litevault-scale) between runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${SCALE_DB_MB:-10240}"
nsnap="${SCALE_SNAPSHOTS:-1000}"
ndb="${SCALE_DATABASES:-100}"
parts="${SCALE_PARTS:-1 2 3}"
part() { [[ " $parts " == *" $1 "* ]]; }
work="${SCALE_DIR:-/tmp/litevault-scale}"
workload="$root/../shared/bench/workload.py"
mkdir -p "$work"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
lv="$root/target/release/litevault"
head -c 24 /dev/urandom | base64 > "$work/password"
export LITEVAULT_PASSWORD_FILE="$work/password"

# measure NAME CMD...: runs CMD, sampling its memory; appends a table row.
rows=()
measure() {
  local name=$1; shift
  local start end pid anon=0 file=0 a f
  start=$(date +%s.%N)
  "$@" >/dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ -r "/proc/$pid/status" ]; then
      a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      f=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${a:-0}" -gt "$anon" ] && anon=$a
      [ "${f:-0}" -gt "$file" ] && file=$f
    fi
    sleep 0.02
  done
  wait "$pid"
  end=$(date +%s.%N)
  rows+=("$(awk -v n="$name" -v s="$start" -v e="$end" -v a="$anon" -v f="$file" \
    'BEGIN {printf "| %s | %.2f s | %.1f MiB | %.1f MiB |", n, e-s, a/1024, f/1024}')")
  echo "${rows[-1]}" >&2
}

# 1. One large database.
large_repo=0
if part 1; then
base="$work/base-$size.db"
if [ ! -f "$base" ]; then
  echo "creating the $size MiB workload database (about $(( size / 14 )) s)..." >&2
  python3 "$workload" create "$base.tmp" --size-mb "$size" --seed 42 >/dev/null
  mv "$base.tmp" "$base"
fi
db="$work/app.db"; repo="$work/repo-large"
rm -rf "$repo" "$db" "$db-wal" "$db-shm" "$work/restored.db"
cp "$base" "$db"
"$lv" -q --repo "$repo" init
measure "first backup ($size MiB)" "$lv" -q --repo "$repo" backup "$db"
python3 "$workload" mutate "$db" --step 1 --seed 42 >/dev/null
measure "incremental backup (a day of churn)" "$lv" -q --repo "$repo" backup "$db"
measure "unchanged database, written just before the last backup (read and compared)" "$lv" -q --repo "$repo" backup "$db"
# Nothing writes it for 2 s before the next backup, which keeps the file's
# stamp; the one after that only stats the file (SPEC.md 9.3).
sleep 2.1
"$lv" -q --repo "$repo" backup "$db" --force
measure "unchanged database, not written since its last backup (stat only)" "$lv" -q --repo "$repo" backup "$db"
sync
measure "restore (integrity_check)" "$lv" -q --repo "$repo" restore latest --target "$work/restored.db"
rm -f "$work/restored.db"; sync
measure "restore --quick (quick_check)" "$lv" -q --repo "$repo" restore latest --target "$work/restored.db" --quick
rm -f "$work/restored.db"
large_repo=$(du -sb "$repo" | cut -f1)
rm -f "$db"
fi

# 2. Many snapshots: N and N/10, to show the growth.
export LITEVAULT_TEST_ONLY_INSECURE_KDF=1
small="$work/small.db"
part 2 && for n in $(( nsnap / 10 )) "$nsnap"; do
  repo="$work/repo-snaps-$n"
  rm -rf "$repo" "$small" "$small-wal" "$small-shm"
  python3 "$workload" create "$small" --size-mb 4 --seed 7 >/dev/null
  "$lv" -q --repo "$repo" init 2>/dev/null
  echo "making $n snapshots..." >&2
  for i in $(seq 1 "$n"); do
    sqlite3 "$small" "CREATE TABLE IF NOT EXISTS bench_tick(i); INSERT INTO bench_tick VALUES ($i);"
    # one snapshot every 6 hours, back from now
    t=$(date -u -d "@$(( $(date +%s) - (n - i) * 21600 ))" +%Y-%m-%dT%H:%M:%SZ)
    "$lv" -q --repo "$repo" backup "$small" --time "$t"
  done
  measure "snapshots ($n snapshots)" "$lv" --repo "$repo" snapshots
  measure "forget --keep-daily 30 --keep-monthly 12 ($n snapshots)" "$lv" -q --repo "$repo" forget --keep-daily 30 --keep-monthly 12
  measure "prune (after forgetting $n -> about 40)" "$lv" -q --repo "$repo" prune
done

# 3. Many databases in one repository.
if part 3; then
dir="$work/many"; repo="$work/repo-many"
rm -rf "$dir" "$repo"; mkdir -p "$dir"
python3 "$workload" create "$work/one.db" --size-mb 4 --seed 9 >/dev/null
for i in $(seq 1 "$ndb"); do
  cp "$work/one.db" "$dir/db-$i.db"
  sqlite3 "$dir/db-$i.db" "CREATE TABLE tenant(id); INSERT INTO tenant VALUES ($i);"
done
"$lv" -q --repo "$repo" init 2>/dev/null
measure "backup --find ($ndb databases of 4 MiB)" "$lv" -q --repo "$repo" backup --find "$dir"
for i in $(seq 1 "$ndb"); do sqlite3 "$dir/db-$i.db" "INSERT INTO tenant VALUES ($i);"; done
measure "backup --find again (each changed)" "$lv" -q --repo "$repo" backup --find "$dir"
measure "snapshots ($(( ndb * 2 )) snapshots, $ndb databases)" "$lv" --repo "$repo" snapshots
fi

echo
part 1 && echo "$(nproc) cores; large database $size MiB (workload.py seed 42), its repository $(awk -v b="$large_repo" 'BEGIN {printf "%.0f MiB", b/1048576}') after three backups"
echo
echo "| operation | wall | peak anonymous memory (RssAnon) | peak mapped file pages (RssFile) |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
