#!/usr/bin/env bash
# The dashboard with 1,000,000 customers (issue 11: every page ≤ 1 s): starts the release binary
# on a fresh embedded data directory, registers a workspace, seeds N profiles with scores and RFM
# segment members (benches/dashboard_seed.py), and times each page in headless Chromium
# (benches/dashboard.mjs). N defaults to 1,000,000 (CAIRN_BENCH_CUSTOMERS).
#
# CAIRN_BENCH_PG=1: the entity store on PostgreSQL (a fresh database on 127.0.0.1:5432, dropped
# after; seeded by benches/dashboard_seed_pg.sql) instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${CAIRN_BENCH_CUSTOMERS:-1000000}"
PORT=18090
PG=""
if [ "${CAIRN_BENCH_PG:-0}" = 1 ]; then
  PGDB="cairn_dashboard_bench_$$"
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PGDB" postgres
  PG="postgres://postgres@127.0.0.1:5432/$PGDB"
fi
BASE="http://127.0.0.1:$PORT"
DIR=$(mktemp -d)
cleanup() {
  kill "$(cat "$DIR/pid" 2>/dev/null)" 2>/dev/null || true
  sleep 0.5
  [ -z "$PG" ] || psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PGDB" postgres || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cargo build --release --locked --bin cairn
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm install --silent --no-audit --no-fund)

start() {
  env ${PG:+CAIRN_DATABASE_URL=$PG} CAIRN_DATA_DIR="$DIR/data" CAIRN_LISTEN="127.0.0.1:$PORT" CAIRN_LOG=warn \
    target/release/cairn serve >"$DIR/log" 2>&1 &
  echo $! >"$DIR/pid"
  for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && return; sleep 0.1; done
  echo "cairn did not start: $(cat "$DIR/log")" >&2; exit 1
}
start
TOKEN=$(curl -sf -X POST "$BASE/v1/auth/register" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery","name":"Bench","workspace":"Bench"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
TENANT=$(curl -sf "$BASE/v1/workspace" -H "Authorization: Bearer $TOKEN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
curl -sf "$BASE/v1/segments" -H "Authorization: Bearer $TOKEN" >/dev/null
kill "$(cat "$DIR/pid")"; wait "$(cat "$DIR/pid")" 2>/dev/null || true
echo "seeding $N customers"
if [ -n "$PG" ]; then
  psql -q -h 127.0.0.1 -U postgres -v tenant="$TENANT" -v n="$N" -f benches/dashboard_seed_pg.sql "$PGDB"
else
  python3 benches/dashboard_seed.py "$DIR/data" "$TENANT" "$N"
fi
if [ -n "$PG" ]; then
  echo "entity store: PostgreSQL $(psql -tA -h 127.0.0.1 -U postgres -c 'SHOW server_version' postgres)"
else
  echo "entity store: SQLite"
fi
start
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print int($2/1048576)}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
node benches/dashboard.mjs "$BASE" "$TOKEN" "$((N / 2))"
