#!/usr/bin/env bash
# Installs Debian's PostgreSQL server when it is missing and starts a cluster for the tests on
# loopback, owned by a non-root system user, with trust authentication (loopback only).
# Prints the connection string; `.ci/run` exports it as GONGJI_TEST_PG.
# Usage: pg-start.sh [PORT=55433] [DIR=/tmp/gongji-ci-pg]
set -euo pipefail
port=${1:-55433}; dir=${2:-/tmp/gongji-ci-pg}
if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
user=gongjici
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home "$user"
if [[ -f $dir/data/postmaster.pid ]]; then
  runuser -u "$user" -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$dir"; mkdir -p "$dir"; chown "$user" "$dir"
runuser -u "$user" -- "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
runuser -u "$user" -- "$bin/pg_ctl" -D "$dir/data" -w -l "$dir/log" \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=512MB" start >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres"
