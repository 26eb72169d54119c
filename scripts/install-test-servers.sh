#!/usr/bin/env bash
# Installs what the tests need when it is missing: the servers the remote
# tests start on loopback, OpenSSH's server and client (Debian packages) and
# Garage, an S3-compatible distributed object store (built from crates.io,
# about 8 minutes on two cores; an installed binary is reused); and the
# tools tests compare with or drive: sqldiff, man, curl, openssl, tzdata.
# Fails loudly if either cannot be installed: the tests never skip them.
set -euo pipefail

GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v sqldiff >/dev/null || need_apt+=(sqlite3-tools)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v man >/dev/null || need_apt+=(man-db)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
[ -d /usr/share/zoneinfo/Europe ] || need_apt+=(tzdata)
command -v mkfs.xfs >/dev/null || need_apt+=(xfsprogs)   # a filesystem with reflinks, on a loop device
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# sshd's privilege-separation directory.
mkdir -p /run/sshd
# moto's S3 server, which enforces Object Lock (tests/s3_object_lock.rs;
# Garage does not implement it), with boto3 for the tests' bucket owner.
if ! python3 -c "import moto.server, boto3, flask_cors" 2>/dev/null; then
  echo "== installing moto[server] (pip)"
  python3 -m pip install --quiet 'moto[server]' \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi
# The account the append-only SFTP tests log in as (tests/sftp_append.rs):
# not root, whom file modes do not stop. No password ("*": not locked, so
# sshd lets its keys in), no home.
if ! id litevault-append >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh -p '*' litevault-append
fi

if ! command -v garage >/dev/null && [ ! -x "$HOME/.cargo/bin/garage" ]; then
  echo "== installing garage $GARAGE_VERSION (cargo install, several minutes)"
  cargo install garage --version "$GARAGE_VERSION" --locked \
    --no-default-features --features bundled-libs,metrics,sqlite
fi
garage_bin="$(command -v garage || echo "$HOME/.cargo/bin/garage")"
"$garage_bin" --version >/dev/null 2>&1 || "$garage_bin" --help >/dev/null
echo "test servers: $(/usr/sbin/sshd -V 2>&1 | head -1 || true); garage at $garage_bin"
