#!/usr/bin/env bash
# Benchmark of the operator loop end to end (numbers, not pass/fail): N runs (default 5) of
# a dropped SYN -> DropReport -> approve -> controller patch -> CNI re-render -> Restored, with
# the real agent (eBPF), controller and CLI against a fake API server enforcing deploy/'s RBAC.
# Prints each run and the medians, min and max next to the budgets; `--show` also prints what
# a platform team types and sees in the first run (drops -A, approve, restore).
# Usage: scripts/bench-operator.sh [N] [--show]. Needs root; creates and removes its own network
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -q -p netpol-trace-integration --bins
exec ./target/release/bench-operator "$@"
