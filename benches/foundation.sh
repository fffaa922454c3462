#!/usr/bin/env bash
# Foundation baseline: what the request pipeline costs before any feature work.
#   (a) the ceiling: GET /healthz (no auth, no rate limit, no store access);
#   (b) GET /v1/auth/me with an API key: authentication (one store read), rate limit,
#       request-log line, one more store read, JSON envelope.
# Both with wrk (Debian package) on loopback, server and load generator on this machine.
# Usage: benches/foundation.sh [seconds] [connections]      (entity store: SQLite by default;
#        set CAIRN_DATABASE_URL to measure PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -q
bin=target/release/cairn
data=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
export CAIRN_DATA_DIR="$data" CAIRN_LOG=warn
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

"$bin" tenants create --name Bench >/dev/null
key=$("$bin" keys create --tenant bench --name bench --json | sed 's/.*"key":"\([^"]*\)".*/\1/')
"$bin" serve --listen "127.0.0.1:$port" --rate-limit-secret 100000000 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

run() {
  local name=$1; shift
  echo "== $name"
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" | grep -E 'Requests/sec|Latency  |50%|99%'
}
run "ceiling: GET /healthz" "http://127.0.0.1:$port/healthz"
run "authenticated: GET /v1/auth/me (X-API-Key)" -H "X-API-Key: $key" "http://127.0.0.1:$port/v1/auth/me"
echo "== server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
if [ -n "${CAIRN_DATABASE_URL:-}" ]; then echo "== entity store: PostgreSQL"; else echo "== entity store: SQLite"; fi
