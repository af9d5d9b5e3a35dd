#!/usr/bin/env bash
# Installs what Weir needs on a fresh Debian machine, builds it, and runs the
# word count example on its bundled text.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
install_build_deps
cargo build -p weir-cli
cargo build --release -p wordcount --target wasm32-wasip2
"$CARGO_TARGET_DIR/debug/weir" run --local \
    "$CARGO_TARGET_DIR/wasm32-wasip2/release/wordcount.wasm"
