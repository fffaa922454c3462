#!/usr/bin/env bash
# Ingestion benchmark (issue 3). One command runs the whole comparison on this machine:
#   (a) the ceiling: wrk against GET /healthz (does nothing);
#   (b) single-event POST /v1/track/event, durable acknowledgement;
#   (c) POST /v1/track/batch with 100 events per request;
#   (d) p50/p99 of (b) at half of (b)'s measured rate (hey, rate-limited);
# (b)-(d) on the embedded SQLite stores and with ClickHouse as the event store. For each:
# requests/s and events/s acknowledged, p50/p99, the server's peak RSS, and how long the
# processor took to have every acknowledged event in the event store.
# Usage: benches/ingest.sh [seconds per run] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-128}
for tool in wrk hey; do
  command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
done
cargo build --release --locked -q
bin=$PWD/target/release/cairn
ch_url=${CAIRN_BENCH_CLICKHOUSE_URL:-http://127.0.0.1:8123}

count_events() { # backend data_dir ch_db
  if [ "$1" = sqlite ]; then
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM events').fetchone()[0])" "$2/events.db"
  else
    curl -s "$ch_url" --data-binary "SELECT count() FROM $3.events"
  fi
}

run_backend() {
  local backend=$1 data pid port ch_db="" env=()
  data=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  if [ "$backend" = clickhouse ]; then
    ch_db="cairn_bench_$$"
    env=(CAIRN_CLICKHOUSE_URL="$ch_url" CAIRN_CLICKHOUSE_DATABASE="$ch_db")
  fi
  env "${env[@]}" CAIRN_DATA_DIR="$data" CAIRN_LOG=warn "$bin" tenants create --name Bench >/dev/null
  CAIRN_KEY=$(env "${env[@]}" CAIRN_DATA_DIR="$data" CAIRN_LOG=warn "$bin" keys create --tenant bench --name bench --json \
    | sed 's/.*"key":"\([^"]*\)".*/\1/')
  export CAIRN_KEY
  env "${env[@]}" CAIRN_DATA_DIR="$data" CAIRN_LOG=warn "$bin" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  local base="http://127.0.0.1:$port"

  echo "### $backend"
  if [ "$backend" = sqlite ]; then
    echo "== (a) ceiling: GET /healthz"
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$base/healthz" | grep -E 'Requests/sec|50%|99%'
  fi
  for kind in event batch; do
    local path=/v1/track/event per=1
    [ "$kind" = batch ] && path=/v1/track/batch && per=100
    local before out reqs errs start drained
    before=$(count_events "$backend" "$data" "$ch_db")
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "benches/lua/$kind.lua" "$base$path")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); errs=${errs:-0}
    echo "== ($([ "$kind" = event ] && echo b || echo c)) $path, $per event(s) per request"
    echo "$out" | grep -E 'Requests/sec|50%|99%|Non-2xx|Socket errors' || true
    local acked=$(( (reqs - errs) * per ))
    echo "   events acknowledged: $acked ($(( acked / secs ))/s)"
    start=$(date +%s.%N)
    while [ "$(count_events "$backend" "$data" "$ch_db")" -lt $((before + acked)) ]; do sleep 0.2; done
    drained=$(echo "$(date +%s.%N) - $start" | bc)
    echo "   all acknowledged events in the event store ${drained}s after the run"
    if [ "$kind" = event ]; then
      local rate=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2 / 2}')
      local workers=32 q=$(( rate / 32 ))
      echo "== (d) $path at half that rate (~$((q * workers))/s, hey)"
      printf '{"user_id":"u%s","event":"purchase","properties":{"amount":9.5,"currency":"EUR"}}' 7 > "$data/body.json"
      hey -z "${secs}s" -c $workers -q $q -m POST -T application/json -H "X-API-Key: $CAIRN_KEY" -D "$data/body.json" \
        "$base$path" | grep -E 'Requests/sec|50% in|99% in|\[2' || true
      before=$(count_events "$backend" "$data" "$ch_db")
      sleep 1
    fi
  done
  echo "== server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  [ -n "$ch_db" ] && curl -s "$ch_url" --data-binary "DROP DATABASE IF EXISTS $ch_db" >/dev/null
  echo
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
run_backend sqlite
run_backend clickhouse
