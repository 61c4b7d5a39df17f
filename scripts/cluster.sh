#!/usr/bin/env bash
# `make cluster`: a local cluster to look at — a throwaway PostgreSQL, a nats-server and three
# relay nodes serving the demo on http://127.0.0.1:8081, :8082 and :8083 (sign in on two of
# them as two people and watch the counts move across nodes). Ctrl-C stops everything.
# Not for production: see docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT="${BASE_PORT:-8081}"
relay=./target/release/tally-relay
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d /tmp/tally-cluster.XXXXXX)
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$(pg_bin pg_ctl)" -D "$work/pg" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop EXIT INT TERM

[ "$(id -u)" = 0 ] && chown postgres:postgres "$work"
as_pg "$(pg_bin initdb)" -D "$work/pg" -A trust -U tally >/dev/null
pg_port=$(free_port)
as_pg "$(pg_bin pg_ctl)" -D "$work/pg" -l "$work/pg.log" -w start \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" >/dev/null
export TALLY_POSTGRES="postgres://tally@127.0.0.1:$pg_port/postgres"

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
pids+=($!)
export TALLY_NATS="nats://127.0.0.1:$nats_port"

# Pages of one node may use the others (the widget's `relayUrls`): allow their origins.
origins=()
for n in 1 2 3; do origins+=(--allow-origin "http://127.0.0.1:$((BASE_PORT + n - 1))"); done
# …and a host app's (ALLOW_ORIGIN=https://app.example.com, as the e2e test's host page).
[ -n "${ALLOW_ORIGIN:-}" ] && origins+=(--allow-origin "$ALLOW_ORIGIN")
for n in 1 2 3; do
  port=$((BASE_PORT + n - 1))
  # Every node offers the demo's sign-in picker; the first seeds the demo staff and
  # conversations, the others find them in PostgreSQL (a demo is seeded once per log).
  "$relay" --data "$work/node$n" serve --listen "127.0.0.1:$port" --static dist --demo "${origins[@]}" \
    >"$work/node$n.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  # Wait for it (the first must have seeded before the others start).
  for _ in $(seq 100); do
    grep -q "listening on" "$work/node$n.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$work/node$n.log" || { cat "$work/node$n.log"; exit 1; }
  echo "node $n: http://127.0.0.1:$port (pid $pid)"
done
echo "PostgreSQL: $TALLY_POSTGRES"
echo "NATS:       $TALLY_NATS"
echo "Logs in $work. Ctrl-C stops the cluster (and deletes it)."
wait
