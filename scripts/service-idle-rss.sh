#!/usr/bin/env bash
# Memory of the idle daemon: 10 databases configured (each backed up once
# at start), the HTTP API on, then idle. Prints VmRSS (resident: anonymous
# memory plus the mapped pages of the binary and libraries it touched) and
# RssAnon (anonymous memory alone) from /proc/PID/status. Target: under 30 MiB.
#
#   bash scripts/service-idle-rss.sh [DATABASE_SIZE_MB]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-8}"
cargo build --release --quiet
bin="$PWD/target/release/litevault"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export LITEVAULT_TEST_ONLY_INSECURE_KDF=1 LV_TOKEN=idle-rss-token-0123456789
printf 'pw\n' > "$work/pw"
"$bin" init --repo "$work/repo" --password-file "$work/pw" >/dev/null 2>&1
{
  echo "state = \"$work/state.db\""
  echo '[api]'; echo 'listen = "127.0.0.1:0"'; echo 'tokens = ["$LV_TOKEN"]'
  echo '[repositories.main]'; echo "location = \"$work/repo\""; echo "password = { file = \"$work/pw\" }"
} > "$work/c.toml"
dbs=""
for i in $(seq 1 10); do
  python3 ../shared/bench/workload.py create "$work/db$i.db" --size-mb "$size_mb" --seed "$i" >/dev/null 2>&1 \
    || sqlite3 "$work/db$i.db" "CREATE TABLE t(x); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 20000) INSERT INTO t SELECT randomblob(200) FROM c;"
  printf '[databases.db%s]\npath = "%s"\n' "$i" "$work/db$i.db" >> "$work/c.toml"
  dbs="$dbs\"db$i\", "
done
printf '[jobs.all]\ndatabases = [%s]\nrepositories = ["main"]\nschedule = "1d"\nretention = { keep_daily = 7 }\n' "${dbs%, }" >> "$work/c.toml"
rss() { grep -E '^(VmRSS|RssAnon|RssFile)' "/proc/$1/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

echo "databases: 10 x ${size_mb} MiB configured, API on"

# 1. A fresh daemon: the 10 backups (never run) are due at once.
"$bin" run --config "$work/c.toml" 2> "$work/log" &
pid=$!
for _ in $(seq 1 600); do
  [ "$(grep -c 'outcome=success' "$work/log" || true)" -ge 20 ] && break   # 10 backups and their retention
  sleep 0.1
done
sleep 5
echo "idle after running 10 backups:  $(rss $pid)"
echo "peak during them:               $(grep VmHWM "/proc/$pid/status" | tr -s ' \t' ' ')"
kill "$pid"; wait "$pid" || true

# 2. Restarted: the history says nothing is due.
"$bin" run --config "$work/c.toml" 2> "$work/log2" &
pid=$!
sleep 5
echo "idle, restarted, nothing due:   $(rss $pid)"
