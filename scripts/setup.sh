#!/usr/bin/env bash
# One-time set-up for building and testing netpol-trace on a fresh machine; idempotent and
# quick the second time (it only installs what is missing).
#
#  * system packages: iproute2, nftables, iptables, bpftool, MariaDB (lab), tshark (pcap checks);
#  * a toolchain for the eBPF programs: rustup's nightly with rust-src when present (the
#    standard aya set-up), otherwise Debian's rustc-web + rust-web-src (+ clippy) with LLVM 22;
#  * bpf-linker, built against the LLVM of that toolchain.
#
# Uses sudo only when not root. Set NETPOL_TRACE_SETUP_QUIET=1 for less output.
set -euo pipefail

say() { echo "setup: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "not root and no sudo: run this as root"; exit 2; }
    SUDO=(sudo)
fi

if ! command -v apt-get >/dev/null; then
    say "no apt-get: install by hand iproute2 nftables iptables bpftool mariadb-server mariadb-client,"
    say "a nightly Rust with rust-src, and bpf-linker (see README)."
    exit 2
fi

nightly_has_src() {
    command -v rustup >/dev/null || return 1
    local sysroot
    sysroot=$(rustup run nightly rustc --print sysroot 2>/dev/null) || return 1
    [ -f "$sysroot/lib/rustlib/src/rust/library/core/Cargo.toml" ]
}

packages=(iproute2 nftables iptables bpftool mariadb-server mariadb-client tshark)
# The report test renders the HTML report in headless Chromium.
packages+=(chromium)
if nightly_has_src; then
    say "using rustup's nightly (with rust-src) for the eBPF programs"
    use_debian_rust=0
else
    say "rustup's nightly has no rust-src here: using Debian's rustc-web (LLVM 22) for the eBPF programs"
    use_debian_rust=1
    packages+=(rustc-web cargo-web rust-web-src rust-web-clippy llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    # tshark asks whether non-root users may capture; the default (no) is right here.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | "${SUDO[@]}" debconf-set-selections
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" -E apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "system packages present"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if command -v bpf-linker >/dev/null && bpf-linker --version >/dev/null 2>&1; then
    say "bpf-linker present: $(bpf-linker --version)"
elif [ "$use_debian_rust" = 1 ]; then
    say "building bpf-linker against LLVM 22 (about 2 minutes)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install --quiet bpf-linker --version 0.13.0 \
        --no-default-features --features llvm-22
else
    say "building bpf-linker (standard aya set-up)"
    cargo install --quiet bpf-linker
fi
say "ready"
