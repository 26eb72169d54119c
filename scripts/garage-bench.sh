# Sourced by the benchmarks that need S3: starts a single-node Garage on
# loopback in "$work/garage", imports the key `bench` (exported as the AWS_*
# variables) and creates the buckets named in its arguments. Sets s3 and
# admin (ports), garage (the binary), g (a function running garage with this
# config) and garage_pid. The caller kills garage_pid when it ends.
#
#   . scripts/garage-bench.sh BUCKET...
garage="$(command -v garage || echo "$HOME/.cargo/bin/garage")"
[ -x "$garage" ] || { echo "bench: garage is missing (scripts/install-test-servers.sh)" >&2; exit 1; }
rm -rf "$work/garage"; mkdir -p "$work/garage"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3=$(port); rpc=$(port); admin=$(port)
cat > "$work/garage/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
compression_level = "none"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "bench"
metrics_token = "bench"
EOF
g() { "$garage" -c "$work/garage/garage.toml" "$@"; }
# Started directly (not through g, whose subshell would be what $! names).
"$garage" -c "$work/garage/garage.toml" server > "$work/garage/log" 2>&1 &
garage_pid=$!
for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
g layout assign -z dc1 -c 10G "$(g node id -q | cut -d@ -f1)" >/dev/null
g layout apply --version 1 >/dev/null
export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567 AWS_SECRET_ACCESS_KEY=$(printf 'b%.0s' $(seq 64)) AWS_DEFAULT_REGION=garage
for _ in $(seq 50); do g key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null 2>&1 && break; sleep 0.2; done
for b in "$@"; do
  g bucket create "$b" >/dev/null
  g bucket allow --read --write --owner "$b" --key bench >/dev/null
done
