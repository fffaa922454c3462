#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png: runs the dashboard's browser test (tests/api/dashboard.rs,
# SQLite) with CAIRN_SCREENSHOTS set, which has tests/browser/dashboard.mjs save a picture of each
# main page as it goes. Needs what scripts/test.sh installs (Chromium, playwright-core, aiosmtpd).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm install --silent --no-audit --no-fund >/dev/null)
fi
rm -f docs/screenshots/*.png
CAIRN_SCREENSHOTS="$PWD/docs/screenshots" \
  cargo test --locked --test api dashboard::sqlite -- --exact dashboard::sqlite::the_dashboard_works_end_to_end_in_a_real_browser
ls -1 docs/screenshots
