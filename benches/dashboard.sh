#!/usr/bin/env bash
# The dashboard with 1,000,000 customers (issue 11: every page ≤ 1 s): starts the release binary
# on a fresh embedded data directory, registers a workspace, seeds N profiles with scores and RFM
# segment members (benches/dashboard_seed.py), and times each page in headless Chromium
# (benches/dashboard.mjs). N defaults to 1,000,000 (CAIRN_BENCH_CUSTOMERS).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${CAIRN_BENCH_CUSTOMERS:-1000000}"
PORT=18090
BASE="http://127.0.0.1:$PORT"
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$DIR"' EXIT
cargo build --release --locked --bin cairn
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm install --silent --no-audit --no-fund)

start() {
  CAIRN_DATA_DIR="$DIR/data" CAIRN_LISTEN="127.0.0.1:$PORT" CAIRN_LOG=warn target/release/cairn serve >"$DIR/log" 2>&1 &
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
python3 benches/dashboard_seed.py "$DIR/data" "$TENANT" "$N"
start
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print int($2/1048576)}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
node benches/dashboard.mjs "$BASE" "$TOKEN" "$((N / 2))"
