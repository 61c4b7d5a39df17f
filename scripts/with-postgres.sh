#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL, named to it by TALLY_TEST_POSTGRES (the relay's
# test suite then runs every relay as a one-node cluster on a database of its own), and stops
# the server afterwards. `make test` runs the relay suite once on SQLite and once through this.
set -euo pipefail
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
dir=$(mktemp -d /tmp/tally-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
as_pg "$(pg_bin initdb)" -D "$dir/db" -A trust -U tally --no-sync >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Each test makes a database; fsync off only for this throwaway server (the product sets
# synchronous_commit on in its sessions, and the cluster tests' servers keep fsync on).
as_pg "$(pg_bin pg_ctl)" -D "$dir/db" -l "$dir/log" -w start \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off" >/dev/null
trap 'as_pg "$(pg_bin pg_ctl)" -D "$dir/db" stop -m immediate >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
TALLY_TEST_POSTGRES="postgres://tally@127.0.0.1:$port/postgres" "$@"
