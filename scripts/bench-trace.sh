#!/usr/bin/env bash
# Benchmark of the tracer's kernel programs (numbers, not pass/fail): per-packet cost,
# throughput with/without trace, SYN storm. Needs root; installs iperf3 and hping3.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
for p in iperf3 hping3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
    }
done
cargo run --release -q -p netpol-trace-integration --bin bench-trace
