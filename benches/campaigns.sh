#!/usr/bin/env bash
# The campaign benchmark: installs Debian's postfix package (for smtp-sink and smtp-source,
# without configuring or starting a mail server) and runs benches/campaigns.rs.
#   bash benches/campaigns.sh                 # SQLite
#   CAIRN_BENCH_PG=1 bash benches/campaigns.sh  # PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/smtp-source ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null
fi
exec cargo bench --bench campaigns
