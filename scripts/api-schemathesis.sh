#!/usr/bin/env bash
# Checks the HTTP API against its OpenAPI description (openapi.json) with
# schemathesis (PyPI), on a live `litevault serve` over a real repository
# and database on loopback. Any 500, any undocumented status code and any
# response that does not match its schema fails the run.
#
#   bash scripts/api-schemathesis.sh            (installs schemathesis if missing)
#   API_EXAMPLES=100 bash scripts/api-schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${API_EXAMPLES:-25}"
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check schemathesis
fi
cargo build --quiet
bin="$PWD/target/debug/litevault"

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

export LITEVAULT_TEST_ONLY_INSECURE_KDF=1
export LV_API_TOKEN="schemathesis-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'api fuzz password\n' > "$work/password"
"$bin" init --repo "$work/repo" --password-file "$work/password" >/dev/null 2>&1
sqlite3 "$work/app.db" "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'), ('b');"
"$bin" backup --repo "$work/repo" --password-file "$work/password" "$work/app.db" >/dev/null 2>&1
mkdir "$work/demo"
cat > "$work/litevault.toml" <<TOML
state = "$work/state.db"
[api]
listen = "127.0.0.1:0"
tokens = ["\$LV_API_TOKEN"]
[repositories.main]
location = "$work/repo"
password = { file = "$work/password" }
[databases.app]
path = "$work/app.db"
[databases.demo]
path = "$work/demo/app.db"
restore = { pre_restore = false }
[jobs.nightly]
databases = ["app"]
repositories = ["main"]
schedule = "0 3 * * *"
TOML

"$bin" serve --config "$work/litevault.toml" 2> "$work/serve.log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(sed -n 's|.*HTTP API on http://\([0-9.:]*\).*|\1|p' "$work/serve.log" | head -1)"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log"; echo "the API did not start" >&2; exit 1; }

schemathesis run "http://$addr/v1/openapi.json" \
  --header "Authorization: Bearer $LV_API_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" \
  --seed 20261122 \
  --request-timeout 30 \
  --no-color
