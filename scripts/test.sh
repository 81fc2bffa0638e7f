#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests, including DPDK virtual devices and
# network namespaces (those need root; under CI=true they must run). The corpus tier runs when
# ../shared/corpus exists and says so when it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --workspace --bins --locked 2>/dev/null || cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
echo "test: all passed"
