#!/usr/bin/env bash
# Builds the tracking snippet (docs/snippet.md) into snippet/dist/, which is committed: the
# server embeds those files, so `cairn serve` needs no wasm toolchain. Run after changing
# anything under snippet/src or snippet/js; a test (tests/snippet.rs) fails while
# snippet/dist/SOURCES does not match the sources.
#
#   bash scripts/build-snippet.sh
#
# Installs what it needs: the wasm32 target (rustup), wasm-bindgen-cli at the crate's pinned
# version (cargo install), and terser + binaryen's wasm-opt (npm, into snippet/.tools).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*" >&2; }

BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' snippet/Cargo.toml)
TOOLS=snippet/.tools
OUT=snippet/dist
WORK=snippet/target/build

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
  log "installing wasm-bindgen-cli $BINDGEN_VERSION"
  cargo install --quiet wasm-bindgen-cli --version "$BINDGEN_VERSION"
fi
if [ ! -x "$TOOLS/node_modules/.bin/terser" ] || [ ! -x "$TOOLS/node_modules/.bin/wasm-opt" ]; then
  log "installing terser and binaryen (npm)"
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" terser@5.51.4 binaryen@132.0.0 >/dev/null
fi
python3 -c 'import brotli' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore brotli==1.1.0

log "compiling the core to WebAssembly"
cargo build --quiet --manifest-path snippet/Cargo.toml --release --target wasm32-unknown-unknown
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$WORK" \
  snippet/target/wasm32-unknown-unknown/release/cairn_snippet.wasm
"$TOOLS/node_modules/.bin/wasm-opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$WORK/cairn_snippet_bg.wasm" -o "$OUT/core.wasm"

log "bundling and minifying the JavaScript"
cat "$WORK/cairn_snippet.js" snippet/js/runtime.js > "$WORK/core.js"
"$TOOLS/node_modules/.bin/terser" "$WORK/core.js" --module --compress --mangle --ecma 2020 -o "$OUT/core.js"
hash() { sha256sum "$1" | cut -c1-12; }
CORE_JS="core-$(hash "$OUT/core.js").js"
CORE_WASM="core-$(hash "$OUT/core.wasm").wasm"
sed -e "s/__CORE_JS__/$CORE_JS/" -e "s/__CORE_WASM__/$CORE_WASM/" snippet/js/loader.js > "$WORK/loader.js"
"$TOOLS/node_modules/.bin/terser" "$WORK/loader.js" --compress --mangle --ecma 2020 -o "$OUT/snippet.js"

log "precompressing (gzip -9, brotli 11)"
python3 - "$OUT" <<'PY'
import brotli, gzip, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ["snippet.js", "core.js", "core.wasm"]:
    data = (out / name).read_bytes()
    (out / (name + ".gz")).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    (out / (name + ".br")).write_bytes(brotli.compress(data, quality=11))
    print(f"{name}: {len(data)} bytes, gzip -9 {len(gzip.compress(data, 9, mtime=0))}")
PY

# What the committed files were built from (checked by tests/snippet.rs).
bash scripts/snippet-sources.sh > "$OUT/SOURCES"
log "done: $OUT ($CORE_JS, $CORE_WASM)"
