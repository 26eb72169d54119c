#!/usr/bin/env bash
# Memory of the daemon in a realistic setup: two databases (the shared
# workload, SIZE MiB each), two repositories with real key derivation
# (Argon2id, 128 MiB), the HTTP API on. Prints VmRSS (resident) and RssAnon
# (anonymous memory alone) from /proc/PID/status when idle after the first
# backups (each database read once, stored into both repositories), the
# peak (VmHWM) during them, idle after a burst of API requests, and idle
# after a restart with nothing due. Targets: idle under 40 MiB, peak under
# 200 MiB.
#
#   bash scripts/service-idle-rss.sh [SIZE_MB]   (default 64)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-64}"
cargo build --release --quiet
bin="$PWD/target/release/litevault"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export LV_TOKEN=idle-rss-token-0123456789
printf 'a password for the memory benchmark\n' > "$work/pw"
for r in one two; do
  "$bin" init --repo "$work/$r" --password-file "$work/pw" >/dev/null 2>&1
done
for i in 1 2; do
  python3 ../shared/bench/workload.py create "$work/db$i.db" --size-mb "$size_mb" --seed "$i" >/dev/null
done
cat > "$work/c.toml" <<TOML
state = "$work/state.db"
[api]
listen = "127.0.0.1:0"
tokens = ["\$LV_TOKEN"]
[repositories.one]
location = "$work/one"
password = { file = "$work/pw" }
[repositories.two]
location = "$work/two"
password = { file = "$work/pw" }
[databases.app]
path = "$work/db1.db"
[databases.shop]
path = "$work/db2.db"
[jobs.all]
databases = ["app", "shop"]
repositories = ["one", "two"]
schedule = "1d"
retention = { keep_daily = 7 }
TOML
rss() { grep -E '^(VmRSS|RssAnon)' "/proc/$1/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

echo "2 databases of ${size_mb} MiB, 2 repositories (Argon2id 128 MiB), API on"
"$bin" run --config "$work/c.toml" 2> "$work/log" &
pid=$!
for _ in $(seq 1 1200); do
  [ "$(grep -c 'outcome=success' "$work/log" || true)" -ge 8 ] && break   # 4 backups and their retention
  sleep 0.1
done
sleep 5
echo "idle after the first backups:   $(rss $pid)"
echo "peak during them:               $(grep VmHWM "/proc/$pid/status" | tr -s ' \t' ' ')"
addr="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/log" | head -1)"
if [ -n "$addr" ]; then
  for _ in $(seq 1 20); do
    curl -s -H "Authorization: Bearer $LV_TOKEN" "$addr/v1/status" >/dev/null
    curl -s -H "Authorization: Bearer $LV_TOKEN" "$addr/v1/snapshots?repository=one" >/dev/null
    curl -s -H "Authorization: Bearer $LV_TOKEN" "$addr/metrics" >/dev/null
  done
  sleep 3
  echo "idle after 60 API requests:     $(rss $pid)"
  echo "peak so far:                    $(grep VmHWM "/proc/$pid/status" | tr -s ' \t' ' ')"
fi
kill "$pid"; wait "$pid" || true

"$bin" run --config "$work/c.toml" 2> "$work/log2" &
pid=$!
sleep 5
echo "idle, restarted, nothing due:   $(rss $pid)"
