#!/usr/bin/env bash
# End-to-end backup benchmark on the shared workload (not a test: prints figures).
#
# Builds a database with ../shared/bench/workload.py (512 MiB by default),
# takes a first backup, then DAYS daily churn steps with a backup after each,
# for: litevault --strategy pages, litevault --strategy vacuum, and
# VACUUM INTO + `restic backup` of the export (Debian's restic), all in the
# same run on the same sequence of databases; then restores of the latest
# snapshot by each, in turn, BENCH_RESTORE_RUNS times (default 3). Prints
# markdown tables (medians).
#
#   scripts/bench.sh                 # 512 MiB, 8 days
#   BENCH_SIZE_MB=64 BENCH_DAYS=3 scripts/bench.sh
#   BENCH_RESTORE_ONLY=1 scripts/bench.sh   # restores only, repositories of the last run
#   BENCH_WORKLOAD=edits scripts/bench.sh    # benches/edits_workload.py: small in-place
#                                            # edits, compressed blobs, most pages rewritten daily
#   BENCH_VACUUM_EVERY=7 scripts/bench.sh    # a VACUUM of the live database every 7th day
#
# Needs: python3, sqlite3, /usr/bin/time, restic (apt-get install restic).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${BENCH_SIZE_MB:-512}"
days="${BENCH_DAYS:-8}"
work="${BENCH_DIR:-/tmp/litevault-bench}"
kind_of_workload="${BENCH_WORKLOAD:-shared}"
case "$kind_of_workload" in
  shared) workload="$root/../shared/bench/workload.py" ;;
  edits) workload="$root/benches/edits_workload.py" ;;
  *) echo "bench: BENCH_WORKLOAD is shared or edits, not $kind_of_workload" >&2; exit 2 ;;
esac
vacuum_every="${BENCH_VACUUM_EVERY:-0}"
mkdir -p "$work"

for tool in python3 sqlite3 restic; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
lv="$root/target/release/litevault"

base="$work/base-$kind_of_workload-$size.db"
if [ ! -f "$base" ]; then
  echo "creating the $size MiB $kind_of_workload workload database..." >&2
  python3 "$workload" create "$base.tmp" --size-mb "$size" --seed 42 >/dev/null
  mv "$base.tmp" "$base"
fi
[ -n "${BENCH_RESTORE_ONLY:-}" ] || head -c 24 /dev/urandom | base64 > "$work/password"

# timed CMD...: runs CMD, appends "seconds maxrss_kib" to $work/t
timed() { /usr/bin/time -f "%e %M" -a -o "$work/t" "$@" >/dev/null; }
repo_bytes() { du -sb "$1" | cut -f1; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

backup_once() { # kind db repo
  local kind=$1 db=$2 repo=$3
  case "$kind" in
    pages|vacuum)
      timed "$lv" --repo "$repo" --password-file "$work/password" backup "$db" --strategy "$kind" --tag bench --temp-dir "$work" ;;
    restic)
      rm -f "$work/export.db"
      timed sqlite3 "$db" "VACUUM INTO '$work/export.db'"
      timed restic --repo "$repo" --password-file "$work/password" --quiet backup "$work/export.db" --tag bench
      rm -f "$work/export.db" ;;
  esac
}

init_repo() { # kind repo
  rm -rf "$2"
  case "$1" in
    pages|vacuum) "$lv" --repo "$2" --password-file "$work/password" --quiet init >/dev/null ;;
    restic) restic --repo "$2" --password-file "$work/password" --quiet init >/dev/null ;;
  esac
}

declare -A first_add first inc_med add_med repo_final rss unchanged unchanged_s unchanged_idle_s restore_s restore_quick_s vac_add vac_first
only_restore="${BENCH_RESTORE_ONLY:-}"
[ -z "$only_restore" ] || for kind in pages vacuum restic; do
  [ -d "$work/repo-$kind" ] || { echo "bench: BENCH_RESTORE_ONLY needs $work/repo-$kind from a full run" >&2; exit 1; }
done
for kind in pages vacuum restic; do
  [ -z "$only_restore" ] || break
  echo "== $kind" >&2
  db="$work/app-$kind.db"
  repo="$work/repo-$kind"
  rm -f "$db" "$db-wal" "$db-shm"
  cp "$base" "$db"
  init_repo "$kind" "$repo"
  : > "$work/t"
  empty=$(repo_bytes "$repo")
  backup_once "$kind" "$db" "$repo"
  first[$kind]=$(awk '{s+=$1} END {print s}' "$work/t")
  first_add[$kind]=$(( $(repo_bytes "$repo") - empty ))
  peak=$(awk '{if ($2>m) m=$2} END {print m}' "$work/t")
  incs=(); adds=(); vadds=(); vfirsts=()
  for d in $(seq 1 "$days"); do
    python3 "$workload" mutate "$db" --step "$d" --seed 42 >/dev/null
    vacuumed=""
    if [ "$vacuum_every" -gt 0 ] && [ $(( d % vacuum_every )) -eq 0 ]; then
      sqlite3 "$db" "VACUUM"; vacuumed=" (after VACUUM)"
    fi
    before=$(repo_bytes "$repo")
    : > "$work/t"
    backup_once "$kind" "$db" "$repo"
    if [ -n "$vacuumed" ]; then
      vadds+=("$(( $(repo_bytes "$repo") - before ))")
      # the yardstick: a first backup of this same database
      init_repo "$kind" "$work/scratch-$kind"
      empty=$(repo_bytes "$work/scratch-$kind")
      backup_once "$kind" "$db" "$work/scratch-$kind"
      vfirsts+=("$(( $(repo_bytes "$work/scratch-$kind") - empty ))")
      rm -rf "$work/scratch-$kind"
    else
      incs+=("$(awk '{s+=$1} END {print s}' "$work/t")")
      adds+=("$(( $(repo_bytes "$repo") - before ))")
    fi
    p=$(awk '{if ($2>m) m=$2} END {print m}' "$work/t"); [ "$p" -gt "$peak" ] && peak=$p
    echo "   day $d$vacuumed: $(awk '{s+=$1} END {print s}' "$work/t") s, +$(( $(repo_bytes "$repo") - before )) bytes" >&2
  done
  vac_add[$kind]=$( [ ${#vadds[@]} -gt 0 ] && printf '%s\n' "${vadds[@]}" | median || echo 0)
  vac_first[$kind]=$( [ ${#vfirsts[@]} -gt 0 ] && printf '%s\n' "${vfirsts[@]}" | median || echo 0)
  inc_med[$kind]=$(printf '%s\n' "${incs[@]}" | median)
  add_med[$kind]=$(printf '%s\n' "${adds[@]}" | median)
  repo_final[$kind]=$(repo_bytes "$repo")
  rss[$kind]=$peak
  # an unchanged database, written just before the last backup (so read
  # and compared)...
  before=$(repo_bytes "$repo"); : > "$work/t"
  backup_once "$kind" "$db" "$repo"
  unchanged[$kind]=$(( $(repo_bytes "$repo") - before ))
  unchanged_s[$kind]=$(awk '{s+=$1} END {print s}' "$work/t")
  # ...and one nothing wrote for 2 s before its last backup: that backup
  # keeps the file's stamp and the next one only stats it (SPEC.md 9.3).
  sleep 2.1
  [ "$kind" != pages ] || "$lv" --repo "$repo" --password-file "$work/password" --quiet backup "$db" --tag bench --force >/dev/null
  : > "$work/t"
  backup_once "$kind" "$db" "$repo"
  unchanged_idle_s[$kind]=$(awk '{s+=$1} END {print s}' "$work/t")
done

# Restores of the latest snapshot into a new file: every tool in turn,
# BENCH_RESTORE_RUNS rounds (default 3), the median of each; dirty pages of
# earlier steps are flushed first so that no run pays for another's writes.
runs="${BENCH_RESTORE_RUNS:-3}"
declare -A rs rq
for r in $(seq 1 "$runs"); do
  for kind in pages vacuum restic; do
    repo="$work/repo-$kind"; out="$work/restored-$kind"
    rm -rf "$out" "$out.db"; sync
    : > "$work/t"
    case "$kind" in
      pages|vacuum)
        timed "$lv" --repo "$repo" --password-file "$work/password" restore latest --tag bench --target "$out.db"
        rs[$kind]+="$(awk '{print $1}' "$work/t") "
        rm -f "$out.db"; sync; : > "$work/t"
        timed "$lv" --repo "$repo" --password-file "$work/password" restore latest --tag bench --target "$out.db" --quick
        rq[$kind]+="$(awk '{print $1}' "$work/t") "
        rm -f "$out.db" ;;
      restic)
        timed restic --repo "$repo" --password-file "$work/password" --quiet restore latest --target "$out"
        rs[$kind]+="$(awk '{print $1}' "$work/t") "
        rm -rf "$out" ;;
    esac
  done
  echo "   restore round $r: pages ${rs[pages]}/ ${rq[pages]}, vacuum ${rs[vacuum]}/ ${rq[vacuum]}, restic ${rs[restic]}" >&2
done
for kind in pages vacuum restic; do
  restore_s[$kind]=$(printf '%s\n' ${rs[$kind]} | median)
  restore_quick_s[$kind]=$( [ -n "${rq[$kind]:-}" ] && printf '%s\n' ${rq[$kind]} | median || echo -)
done

mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b/1048576}'; }
echo
if [ -z "$only_restore" ]; then
echo "workload: $size MiB database ($kind_of_workload, $(basename "$workload"), seed 42), $days daily churn steps$( [ "$vacuum_every" -gt 0 ] && echo ", VACUUM of the live database every ${vacuum_every}th day"); $(nproc) cores"
echo
echo "| | first backup | first backup adds | median incremental | median bytes added / day | a day after VACUUM adds | unchanged db adds | unchanged db: just written / idle | repository after $days days | peak RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for kind in pages vacuum restic; do
  case $kind in pages) name="litevault (pages)";; vacuum) name="litevault (vacuum)";; restic) name="VACUUM INTO + restic $(restic version | awk '{print $2}')";; esac
  printf '| %s | %.2f s | %s | %.2f s | %s | %s | %s | %.2f s / %.2f s | %s | %s |\n' "$name" "${first[$kind]}" "$(mib "${first_add[$kind]}")" "${inc_med[$kind]}" \
    "$(mib "${add_med[$kind]}")" "$( [ "$vacuum_every" -gt 0 ] && echo "$(mib "${vac_add[$kind]}") ($(awk -v a="${vac_add[$kind]}" -v f="${vac_first[$kind]}" 'BEGIN {printf "%.2f", a/(f>0?f:1)}')x a first backup of it)" || echo -)" \
    "$(mib "${unchanged[$kind]}")" "${unchanged_s[$kind]}" "${unchanged_idle_s[$kind]}" "$(mib "${repo_final[$kind]}")" "$(mib $(( ${rss[$kind]} * 1024 )))"
done
fi
echo
echo "| restore of the latest snapshot (median of $runs) | seconds | with --quick |"
echo "|---|---:|---:|"
echo "| litevault (pages) | ${restore_s[pages]} | ${restore_quick_s[pages]} |"
echo "| litevault (vacuum) | ${restore_s[vacuum]} | ${restore_quick_s[vacuum]} |"
echo "| restic restore | ${restore_s[restic]} | - |"
echo "(litevault: blob authentication, fsync, whole-image keyed hash, then integrity_check or quick_check; restic: writes the file)"
echo
[ -n "$only_restore" ] || awk -v a="${add_med[pages]}" -v r="${add_med[restic]}" -v ti="${inc_med[pages]}" -v tr="${inc_med[restic]}" \
  'BEGIN {printf "pages vs VACUUM INTO + restic: bytes added per day %.1fx smaller, incremental backup %.1fx faster\n", r/(a>0?a:1), tr/(ti>0?ti:0.001)}'
