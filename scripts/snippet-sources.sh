#!/usr/bin/env bash
# Lists the tracking snippet's sources with their SHA-256 (what snippet/dist/SOURCES records).
set -euo pipefail
cd "$(dirname "$0")/.."
sha256sum snippet/Cargo.toml snippet/src/*.rs snippet/js/*.js scripts/build-snippet.sh | sort -k2
