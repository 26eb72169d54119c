#!/usr/bin/env bash
# Backups to S3 (a single-node Garage on loopback, started here) by litevault
# and by VACUUM INTO + restic, on the same workload in the same run (not a
# test: prints figures).
#
# The 512 MiB database of ../shared/bench/workload.py (seed 42), a first
# backup, then BENCH_DAYS (8) daily churn steps with a backup after each,
# then an unchanged backup, then restores of the latest snapshot (each tool
# in turn, BENCH_RESTORE_RUNS times, medians). Requests are counted by
# Garage itself (its Prometheus counters per S3 API call), the same way for
# both tools; bytes uploaded are the bucket's growth (Garage's own
# compression is off) and, for litevault, also its --json bytes_sent.
#
#   scripts/bench-remote.sh
#   BENCH_SIZE_MB=64 BENCH_DAYS=3 scripts/bench-remote.sh
#
# Needs: garage (scripts/install-test-servers.sh), restic, python3, sqlite3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${BENCH_SIZE_MB:-512}"
days="${BENCH_DAYS:-8}"
runs="${BENCH_RESTORE_RUNS:-3}"
work="${BENCH_DIR:-/tmp/litevault-bench-remote}"
workload="$root/../shared/bench/workload.py"
garage="$(command -v garage || echo "$HOME/.cargo/bin/garage")"
for tool in python3 sqlite3 restic "$garage"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-test-servers.sh, apt-get install restic)" >&2; exit 1; }
done

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
lv="$root/target/release/litevault"

. "$root/scripts/garage-bench.sh" litevault restic
trap 'kill $garage_pid 2>/dev/null || true' EXIT
endpoint="http://127.0.0.1:$s3"

base="$work/../litevault-bench/base-$size.db"
[ -f "$base" ] || base="$work/base-$size.db"
if [ ! -f "$base" ]; then
  echo "creating the $size MiB workload database..." >&2
  python3 "$workload" create "$base.tmp" --size-mb "$size" --seed 42 >/dev/null
  mv "$base.tmp" "$base"
fi
head -c 24 /dev/urandom | base64 > "$work/password"
export XDG_CACHE_HOME="$work/cache"; rm -rf "$XDG_CACHE_HOME"

# Garage's request counters: "list get put delete" (S3 calls grouped by kind).
requests() {
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$admin/metrics" | awk '
    /^api_s3_request_counter\{/ {
      match($0, /api_endpoint="[^"]*"/); ep = substr($0, RSTART+14, RLENGTH-15); n = $NF
      if (ep ~ /^List/) l += n; else if (ep ~ /^(Get|Head)/) g += n;
      else if (ep ~ /^(Put|Post|CreateMultipart|UploadPart|CompleteMultipart|Copy)/) p += n;
      else if (ep ~ /^Delete/) d += n; else o += n }
    END { printf "%d %d %d %d\n", l, g, p, d + o }'
}
bucket_bytes() {
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$admin/v2/GetBucketInfo?globalAlias=$1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes"])'
}
delta() { paste -d' ' <(echo "$1" | tr ' ' '\n') <(echo "$2" | tr ' ' '\n') | awk '{printf "%d ", $2-$1}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

lvr() { "$lv" --repo "s3:$endpoint/litevault/app" --password-file "$work/password" -o s3.region=garage "$@"; }
rr() { restic --repo "s3:$endpoint/restic/app" --password-file "$work/password" -o s3.region=garage "$@"; }

backup() { # kind db -> prints "seconds"
  local t0; t0=$(now)
  case "$1" in
    litevault) lvr backup "$2" --tag bench --json > "$work/last.json" ;;
    restic)
      rm -f "$work/export.db"
      sqlite3 "$2" "VACUUM INTO '$work/export.db'"
      rr --quiet backup "$work/export.db" --tag bench >/dev/null
      rm -f "$work/export.db" ;;
  esac
  awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b-a}'
}

declare -A first first_req inc_s inc_bytes inc_req unchanged_req unchanged_bytes lv_sent restore_s
for kind in litevault restic; do
  echo "== $kind" >&2
  db="$work/app-$kind.db"; rm -f "$db" "$db-wal" "$db-shm"; cp "$base" "$db"
  case $kind in litevault) lvr --quiet init >/dev/null ;; restic) rr --quiet init >/dev/null ;; esac
  r0=$(requests)
  first[$kind]=$(backup "$kind" "$db")
  first_req[$kind]=$(delta "$r0" "$(requests)")
  secs=(); bytes=(); reqs=(); sent=()
  for d in $(seq 1 "$days"); do
    python3 "$workload" mutate "$db" --step "$d" --seed 42 >/dev/null
    b0=$(bucket_bytes "$kind"); r0=$(requests)
    secs+=("$(backup "$kind" "$db")")
    r=$(delta "$r0" "$(requests)")
    reqs+=("$(echo $r | awk '{print $1+$2+$3+$4}')")
    bytes+=("$(( $(bucket_bytes "$kind") - b0 ))")
    [ "$kind" = litevault ] && sent+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["io"]["bytes_sent"])' "$work/last.json")")
    echo "   day $d: ${secs[-1]} s, +${bytes[-1]} bytes, requests (list get put delete) $r" >&2
  done
  inc_s[$kind]=$(printf '%s\n' "${secs[@]}" | median)
  inc_bytes[$kind]=$(printf '%s\n' "${bytes[@]}" | median)
  inc_req[$kind]=$(printf '%s\n' "${reqs[@]}" | median)
  [ "$kind" = litevault ] && lv_sent[$kind]=$(printf '%s\n' "${sent[@]}" | median)
  b0=$(bucket_bytes "$kind"); r0=$(requests)
  backup "$kind" "$db" >/dev/null
  unchanged_req[$kind]=$(delta "$r0" "$(requests)")
  unchanged_bytes[$kind]=$(( $(bucket_bytes "$kind") - b0 ))
done

# Restores of the latest snapshot, each tool in turn; litevault also with
# --quick (quick_check instead of integrity_check). restic verifies nothing
# beyond its blobs' hashes.
declare -A rs
for r in $(seq 1 "$runs"); do
  for kind in litevault litevault-quick restic; do
    out="$work/restored-$kind"; rm -rf "$out" "$out.db"; sync
    t0=$(now)
    case $kind in
      litevault) lvr --quiet restore latest --tag bench --target "$out.db" ;;
      litevault-quick) lvr --quiet restore latest --tag bench --target "$out.db" --quick ;;
      restic) rr --quiet restore latest --target "$out" ;;
    esac
    rs[$kind]+="$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b-a}') "
    rm -rf "$out" "$out.db"
  done
  echo "   restore round $r: litevault ${rs[litevault]}/ --quick ${rs[litevault-quick]}/ restic ${rs[restic]}" >&2
done
for kind in litevault litevault-quick restic; do restore_s[$kind]=$(printf '%s\n' ${rs[$kind]} | median); done

mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b/1048576}'; }
echo
echo "workload: $size MiB database, $days daily churn steps (workload.py, seed 42); single-node Garage $("$garage" --version 2>/dev/null | head -1 | awk '{print $2}') on loopback; $(nproc) cores"
echo
echo "| | first backup | median incremental | median bytes uploaded / incremental | median requests / incremental | unchanged db: requests (list get put delete) | restore (median of $runs) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for kind in litevault restic; do
  case $kind in litevault) name="litevault";; restic) name="VACUUM INTO + restic $(restic version | awk '{print $2}')";; esac
  u=${unchanged_req[$kind]}
  printf '| %s | %s s | %s s | %s | %s | %s (%s) | %s s |\n' "$name" "${first[$kind]}" "${inc_s[$kind]}" \
    "$(mib "${inc_bytes[$kind]}")" "${inc_req[$kind]}" "$(echo $u | awk '{print $1+$2+$3+$4}')" "$u" "${restore_s[$kind]}"
done
echo
echo "litevault restore --quick (median of $runs): ${restore_s[litevault-quick]} s"
echo "litevault's own count of bytes sent per incremental (median): $(mib "${lv_sent[litevault]}")"
awk -v lb="${inc_bytes[litevault]}" -v rb="${inc_bytes[restic]}" -v lr="${inc_req[litevault]}" -v rq="${inc_req[restic]}" \
  'BEGIN {printf "ratios per incremental: bytes 1/%.1f of restic'"'"'s, requests 1/%.1f of restic'"'"'s\n", rb/(lb>0?lb:1), rq/(lr>0?lr:1)}'
