#!/usr/bin/env bash
# README's test command: installs the test servers if they are missing
# (scripts/install-test-servers.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-servers.sh
cargo test "$@"
