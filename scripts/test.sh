#!/usr/bin/env bash
# Runs every test. Installs and starts what the tests need first:
#   - ClickHouse from Debian's package (18.16 on Debian 12), on 127.0.0.1:8123;
#   - PostgreSQL, if it is not already answering on 127.0.0.1:5432;
#   - Python packages (Segment's SDK, aiosmtpd), openssl, Chromium (Debian) and playwright-core
#     (npm) for the SDK, SMTP, TLS and browser tests.
# Then the whole suite: unit tests, store conformance on SQLite/PostgreSQL/ClickHouse, the
# HTTP API suite on SQLite and PostgreSQL (the snippet in headless Chromium included),
# end-to-end tests of the built binary, and the snippet core's own unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

command -v curl >/dev/null || apt_install curl

# --- ClickHouse -------------------------------------------------------------------------------
CH_URL="${CAIRN_TEST_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
if ! curl -sf "$CH_URL/ping" >/dev/null 2>&1; then
  if ! command -v clickhouse-server >/dev/null; then
    log "installing ClickHouse (Debian package)"
    apt_install clickhouse-server clickhouse-client
  fi
  log "starting ClickHouse"
  as_root setsid su -s /bin/sh clickhouse -c \
    'clickhouse-server --config-file=/etc/clickhouse-server/config.xml' \
    >/tmp/cairn-clickhouse.log 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    curl -sf "$CH_URL/ping" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf "$CH_URL/ping" >/dev/null || { echo "ClickHouse did not start; see /tmp/cairn-clickhouse.log" >&2; exit 1; }
fi
log "ClickHouse $(curl -s "$CH_URL/?query=SELECT%20version()") is up"

# --- PostgreSQL -------------------------------------------------------------------------------
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_isready >/dev/null || ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL (Debian package)"
    apt_install postgresql
    # The tests connect over TCP as `postgres` without a password, as on the CI machines.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    done
  fi
  log "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
fi
log "PostgreSQL is up"

# --- Segment's Python SDK (the ingestion suite drives it against the server) -----------------
if ! python3 -c 'import segment.analytics' 2>/dev/null; then
  log "installing segment-analytics-python (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore segment-analytics-python==2.4.0
fi

# --- A real SMTP server for the campaign tests (aiosmtpd, tests/support/smtp_sink.py) ---------
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore aiosmtpd==1.4.6
fi

# --- openssl (the SMTP TLS test makes its own CA) -------------------------------------------------
command -v openssl >/dev/null || apt_install openssl

# --- Headless Chromium and playwright-core for the snippet's browser test ---------------------
if [ ! -x /usr/bin/chromium ]; then
  log "installing Chromium (Debian package)"
  apt_install chromium
fi
command -v node >/dev/null || apt_install nodejs npm
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core (npm)"
  (cd tests/browser && npm install --silent --no-audit --no-fund >/dev/null)
fi

# --- The suite --------------------------------------------------------------------------------
log "building and running every test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# The snippet's core (its own workspace: plain Rust, tested natively; no wasm target needed).
cargo test --manifest-path snippet/Cargo.toml --locked 2>&1 | tee -a "$out"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nTOTAL: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
