#!/usr/bin/env bash
# Benchmark of `netpol-trace agent` at steady state (numbers, not pass/fail): CPU and memory
# with 100 pods on the node, a fake API server holding them, and a light connection load,
# sampled over 30 s. Needs root; creates and removes its own network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -q -p netpol-trace-integration --bins
exec ./target/release/bench-agent
