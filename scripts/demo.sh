#!/usr/bin/env bash
# The main job end to end on a real SQLite database: build litevault, create a
# repository, back the database up, restore it, and compare.
# Usage: scripts/demo.sh [WORKDIR]   (default: a fresh temp directory)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
workload="$root/../shared/bench/workload.py"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
lv="$root/target/release/litevault"

export LITEVAULT_REPOSITORY="$work/repo"
export LITEVAULT_PASSWORD_FILE="$work/password"
[ -f "$LITEVAULT_PASSWORD_FILE" ] || head -c 24 /dev/urandom | base64 > "$LITEVAULT_PASSWORD_FILE"

echo "== a real SQLite database ($work/app.db)"
if [ -f "$workload" ]; then
  python3 "$workload" create "$work/app.db" --size-mb 16 --seed 42 >/dev/null
else
  sqlite3 "$work/app.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
    INSERT INTO t(v) SELECT printf('row %d %s', i, hex(randomblob(32))) FROM n;" >/dev/null
fi
ls -l "$work/app.db"

echo "== init"
[ -f "$LITEVAULT_REPOSITORY/config" ] || "$lv" init
"$lv" key list

echo "== backup"
"$lv" backup "$work/app.db" --tag env_production --tag db_app
echo "== restore"
rm -f "$work/restored.db"
"$lv" restore latest --tag env_production --target "$work/restored.db"
diff <(sqlite3 "$work/app.db" .dump) <(sqlite3 "$work/restored.db" .dump)
echo "restored database equals the source"
echo "demo finished in $work"
