#!/usr/bin/env bash
# Benchmark of `netpol-trace agent` at cluster scale (numbers, not pass/fail): 100,000 pods in
# 1,000 namespaces, 10,001 NetworkPolicies, 20,000 Services with EndpointSlices served by the fake
# API server; time to ready, RSS after sync and peak, per-flow attribution latency p50/p99 for a
# storm of 20,000 SYNs to distinct dropped destinations, CPU during and after the storm. Needs
# root; creates and removes its own network namespaces. Arguments go to the benchmark, e.g.
#   scripts/bench-scale.sh --agent target/release/old --agent target/release/netpol-trace-under-test --runs 3
#   scripts/bench-scale.sh --namespaces 200     # 20,000 pods
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -q -p netpol-trace-integration --bins
exec ./target/release/bench-scale "$@"
