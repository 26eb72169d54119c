#!/usr/bin/env bash
# Write-only keys against full keys (issue 25): backup time, paired runs
# (farm-bench A B A B ...), and the storage a day of churn costs with each
# (a write-only backup stores changed chunks whole: it cannot read the
# previous version a delta needs).
#
#   bash scripts/bench-write-only.sh [SIZE_MB] [RUNS]     (default 256 MiB, 5 runs)
#
# Needs farm-bench (the tool library) and ../shared/bench/workload.py.
# Leaves its files in $WORK (default /tmp/lv-bench-wo).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
RUNS=${2:-5}
WORK=${WORK:-/tmp/lv-bench-wo}
WL=$PWD/../shared/bench/workload.py
cargo build --release -q
LV=$PWD/target/release/litevault
# Every open tries the key files in turn, each at Argon2id's cost (0.3 s):
# with two keys, which password pays twice depends on the files' order.
# Trivial KDF parameters keep that out of the comparison (this benchmark's
# keys protect nothing).
export LITEVAULT_TEST_ONLY_INSECURE_KDF=1
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
echo "full password" > full.pw
echo "write-only password" > wo.pw
python3 "$WL" create app.db --size-mb "$SIZE" --seed 7 > /dev/null

# Templates: tmpl0 holds both keys and nothing else; tmpl1 also a
# full-key snapshot of the database, which then gets a day of churn.
$LV -q -r tmpl0 --password-file full.pw init
LITEVAULT_NEW_PASSWORD_FILE=wo.pw $LV -q -r tmpl0 --password-file full.pw key add --write-only
cp -a tmpl0 tmpl1
$LV -q -r tmpl1 --password-file full.pw backup app.db
python3 "$WL" mutate app.db --step 1 --seed 7 > /dev/null

# Each timed run: a fresh copy of the template (the same for both keys),
# then one backup with the given key.
for t in tmpl0 tmpl1; do
  for k in full wo; do
    printf '#!/bin/sh\nset -e\nrm -rf r-%s && cp -a %s r-%s\nexec %s -q -r r-%s --password-file %s.pw backup --force app.db\n' \
      "$k" "$t" "$k" "$LV" "$k" "$k" > "run-$t-$k.sh"
    chmod +x "run-$t-$k.sh"
  done
done
echo "== first backup of a ${SIZE} MiB database into an empty repository (A = write-only, B = full key)"
farm-bench -n "$RUNS" --timeout 3000 --vs "$WORK/run-tmpl0-full.sh" -- "$WORK/run-tmpl0-wo.sh"
echo "== a day of churn after a full-key snapshot (A = write-only, B = full key, which writes deltas)"
farm-bench -n "$RUNS" --timeout 3000 --vs "$WORK/run-tmpl1-full.sh" -- "$WORK/run-tmpl1-wo.sh"

# Storage per day: the same 5 days of churn, backed up by each key into
# its own repository (after a first full-key backup in both).
echo "== storage of 5 days of churn"
for k in full wo; do
  rm -rf "day-$k" "app-$k".db* && cp -a tmpl0 "day-$k"
  python3 "$WL" create "app-$k.db" --size-mb "$SIZE" --seed 7 > /dev/null
  $LV -q -r "day-$k" --password-file full.pw backup "app-$k.db"
  total=0
  for d in 1 2 3 4 5; do
    python3 "$WL" mutate "app-$k.db" --step "$d" --seed 7 > /dev/null
    added=$($LV -r "day-$k" --password-file "$k.pw" backup --json "app-$k.db" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["added_bytes"])')
    total=$((total + added))
  done
  echo "$k key: $((total / 5)) bytes added per day (mean of 5 days); repository $(du -sb "day-$k" | cut -f1) bytes"
done
