#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from the
# committed seed corpus in fuzz/corpus/<target>; new inputs go to fuzz/work/.
#   scripts/fuzz.sh            # a minute per target
#   scripts/fuzz.sh 3600       # an hour per target
# Needs cargo-fuzz (installed if missing) and nightly compiler flags, which
# RUSTC_BOOTSTRAP=1 enables on the stable toolchain.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for t in $(cargo fuzz list); do
  mkdir -p "work/$t" "corpus/$t"
  echo "== fuzz $t for ${secs}s"
  cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|Done|ERROR|panicked' || true
  # A crash leaves an artifact and a non-zero status from the run above; check it explicitly.
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1 || ls "artifacts/$t"/oom-* >/dev/null 2>&1 || ls "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz target $t found a failing input: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
