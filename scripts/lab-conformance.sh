#!/usr/bin/env bash
# Every case of the conformance corpus (tests/conformance/cases) through a real lab: policies
# rendered into nftables, real connections between pod network namespaces, the kernel's answers
# compared with the expected verdicts. Prints `lab conformance: N probes, M agree` and the
# disagreements; exits non-zero on any. The other policy kinds' cases (netpol-trace/tests/kinds:
# ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy, Calico) run too, with
# every pod pair on their ports graded by explain. Needs root (network namespaces, nftables). CI runs a
# sample of the cases as part of `cargo xtask test`. The lab needs no eBPF: without the eBPF
# toolchain, run it with NETPOL_TRACE_SKIP_EBPF=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "lab-conformance: needs root (network namespaces, nftables): run it with sudo -E" >&2
    exit 2
fi
NETPOL_TRACE_LAB_CONFORMANCE=all cargo test -q -p netpol-trace-integration \
    --test lab_conformance -- --nocapture --test-threads=1
