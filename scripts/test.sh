#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit, integration and
# end-to-end tests (which start their own servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
install_build_deps
install_test_deps
install_guest_toolchains
install_flink_clients
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
