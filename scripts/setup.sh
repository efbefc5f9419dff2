#!/usr/bin/env bash
# One-time set-up for building and testing netpol-trace on a fresh machine (Debian 12 or a
# Debian-based system with the same packages); idempotent, and quick the second time: it only
# installs what is missing.
#
#  * system packages: iproute2, nftables, iptables, bpftool, MariaDB (lab), tshark (pcap
#    checks), chromium (report rendering test), shellcheck;
#  * Helm's template engine for the chart test (helm, or helm-python-sdk in a virtualenv);
#  * a toolchain for the eBPF programs: rustup's nightly with rust-src when present (the
#    standard aya set-up), otherwise Debian's rustc-web + rust-web-src (+ clippy, rustfmt)
#    and the LLVM development files of the same major version;
#  * bpf-linker, built against the LLVM major version that toolchain's rustc uses.
#
# Works as root and as a user with sudo. Exit codes: 0 ready, 2 cannot set up here (the
# message says what to install by hand).
#
# Environment:
#   NETPOL_TRACE_SETUP_QUIET=1   print only warnings and errors
#   NETPOL_TRACE_SETUP_DRY_RUN=1 say what would be installed, install nothing
set -euo pipefail

quiet=${NETPOL_TRACE_SETUP_QUIET:-0}
dry_run=${NETPOL_TRACE_SETUP_DRY_RUN:-0}
say() { [ "$quiet" = 1 ] || echo "setup: $*" >&2; }
warn() { echo "setup: warning: $*" >&2; }
die() {
    echo "setup: error: $*" >&2
    exit 2
}

# Tools such as ip, nft, iptables and bpftool live in /usr/sbin, which is not on PATH after
# `su` without `-` or in some sudo set-ups.
for dir in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$dir:"*) ;; *) PATH="$PATH:$dir" ;; esac
done
if [ -d "$HOME/.cargo/bin" ]; then
    case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH" ;; esac
fi
export PATH

# Root runs commands directly; anyone else through sudo. `env` carries the variables through
# sudo (sudo's env_reset would drop DEBIAN_FRONTEND, and `sudo -E` may be refused by policy).
if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
else
    command -v sudo >/dev/null || die "not root and no sudo: run this script as root, or install sudo"
    as_root() { sudo "$@"; }
fi
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get "$@"; }

if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    die "this system has no apt-get/dpkg: set-up supports Debian 12 and Debian-based systems. Install by hand: iproute2 nftables iptables bpftool mariadb-server mariadb-client tshark chromium, a nightly Rust with rust-src (rustup component add rust-src --toolchain nightly), and bpf-linker built for that rustc's LLVM (cargo install bpf-linker --locked)."
fi

installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [ "$status" = "install ok installed" ]
}

apt_updated=0
# Installs the named Debian packages that are missing; refuses clearly when apt does not know
# one of them (another distribution or release).
ensure_packages() {
    local what=$1
    shift
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        say "$what: present"
        return 0
    fi
    if [ "$dry_run" = 1 ]; then
        say "$what: would install ${missing[*]}"
        return 0
    fi
    if [ "$apt_updated" = 0 ]; then
        say "updating the package lists (apt-get update, about 10 s)"
        apt_get update -qq >/dev/null
        apt_updated=1
    fi
    local unknown=()
    for p in "${missing[@]}"; do
        # Captured first: with pipefail, grep -q closing the pipe early would fail the test.
        policy=$(apt-cache policy "$p" 2>/dev/null || true)
        [[ "$policy" == *"Candidate: "[!\(]* ]] || unknown+=("$p")
    done
    [ ${#unknown[@]} -eq 0 ] || die \
        "apt has no package named ${unknown[*]} on this system (set-up is written for Debian 12): install the equivalent by hand, then run this script again"
    say "$what: installing ${missing[*]} (apt-get, about 1 minute on a fresh machine)"
    # tshark asks whether non-root users may capture; the default (no) is right here.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The LLVM major version a rustc reports in `rustc -vV` ("LLVM version: 22.1.8" -> 22).
llvm_major_of() { "$@" -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p'; }

# Debian's compiler, by absolute path: rustup's proxies come first on PATH.
system_rustc=${NETPOL_TRACE_SYSTEM_RUSTC:-/usr/bin/rustc}

nightly_has_src() {
    command -v rustup >/dev/null || return 1
    local sysroot
    sysroot=$(rustup run nightly rustc --print sysroot 2>/dev/null) || return 1
    [ -f "$sysroot/lib/rustlib/src/rust/library/core/Cargo.toml" ]
}

ensure_packages "system packages" iproute2 nftables iptables bpftool mariadb-server mariadb-client \
    tshark chromium shellcheck

if nightly_has_src; then
    say "eBPF toolchain: rustup's nightly with rust-src (the standard aya set-up)"
    llvm=$(llvm_major_of rustup run nightly rustc)
    bpf_toolchain=nightly
else
    say "eBPF toolchain: rustup's nightly has no rust-src here, using Debian's rustc-web"
    debian_rust=(rustc-web cargo-web rust-web-src rust-web-clippy)
    # `cargo fmt` is the first step of the tests; without rustup it comes from Debian too.
    if ! { command -v rustup >/dev/null && cargo fmt --version >/dev/null 2>&1; }; then
        debian_rust+=(rustfmt-web)
    fi
    ensure_packages "Debian Rust toolchain" "${debian_rust[@]}"
    llvm=$(llvm_major_of "$system_rustc")
    if [ -z "$llvm" ] && [ "$dry_run" = 1 ]; then
        say "dry run: bpf-linker follows the LLVM of Debian's rustc, which is not installed yet"
        exit 0
    fi
    bpf_toolchain=debian
fi
[ -n "$llvm" ] || die "cannot read the LLVM version of the eBPF toolchain's rustc (rustc -vV)"

# The LLVM major version an installed bpf-linker was built for: from its version line when it
# says, else from the libLLVM it is linked against.
bpf_linker_llvm() {
    local bin v
    bin=$(command -v bpf-linker) || return 1
    v=$("$bin" --version 2>/dev/null | sed -n 's/.*LLVM[^0-9]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
    [ -n "$v" ] || v=$(ldd "$bin" 2>/dev/null | sed -n 's/.*libLLVM[-.a-z]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
    [ -n "$v" ] && echo "$v"
}

if command -v bpf-linker >/dev/null && bpf-linker --version >/dev/null 2>&1; then
    have=$(bpf_linker_llvm || true)
    if [ -z "$have" ]; then
        say "bpf-linker present ($(bpf-linker --version)); cannot tell its LLVM version, assuming $llvm"
    elif [ "$have" = "$llvm" ]; then
        say "bpf-linker present, built for LLVM $have"
    else
        warn "the installed bpf-linker was built for LLVM $have but the eBPF toolchain uses LLVM $llvm: rebuilding it"
        need_linker=1
    fi
else
    need_linker=1
fi
if [ "${need_linker:-0}" = 1 ]; then
    case "$llvm" in
        21 | 22 | 23) ;;
        *) die "bpf-linker 0.13 supports LLVM 21 to 23, the eBPF toolchain uses LLVM $llvm: install a matching bpf-linker by hand (cargo install bpf-linker --locked --no-default-features --features llvm-$llvm)" ;;
    esac
    command -v cargo >/dev/null || die "no cargo on PATH to build bpf-linker"
    # bpf-linker links against the system's LLVM of the same major version (llvm-sys).
    ensure_packages "LLVM $llvm development files (for bpf-linker)" \
        "llvm-$llvm-dev" "libpolly-$llvm-dev" libzstd-dev zlib1g-dev
    if [ "$dry_run" = 1 ]; then
        say "would build bpf-linker 0.13.0 for LLVM $llvm"
    else
        say "building bpf-linker 0.13.0 for LLVM $llvm (cargo install, about 2 minutes on 2 cores)"
        LLVM_PREFIX=/usr/lib/llvm-$llvm cargo install --locked --force --quiet bpf-linker \
            --version 0.13.0 --no-default-features --features "llvm-$llvm"
    fi
fi
# Helm's template engine for the chart's render test (netpol-trace/tests/helm_chart.rs):
# `helm` itself when it is on PATH, otherwise Helm's Go library as PyPI's helm-python-sdk
# ships it, in a virtualenv of its own.
helm_venv=${NETPOL_TRACE_HELM_VENV:-$HOME/.cache/netpol-trace/helm-venv}
if command -v helm >/dev/null; then
    say "helm: present"
elif [ -x "$helm_venv/bin/python" ] && "$helm_venv/bin/python" -c 'import helm_python' 2>/dev/null; then
    say "Helm template engine (helm-python-sdk): present"
else
    ensure_packages "Python virtualenvs" python3-venv
    if [ "$dry_run" = 1 ]; then
        say "would install helm-python-sdk 0.2.2 into $helm_venv"
    else
        say "installing Helm's template engine (helm-python-sdk 0.2.2) into $helm_venv"
        python3 -m venv "$helm_venv"
        "$helm_venv/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==0.2.2"
    fi
fi
# Every tool the lab and the tests run must now be found (PATH plus the sbin folders above).
if [ "$dry_run" != 1 ]; then
    not_found=()
    for pair in ip:iproute2 nft:nftables iptables:iptables bpftool:bpftool tshark:tshark \
        mariadb-install-db:mariadb-server mariadb:mariadb-client chromium:chromium; do
        command -v "${pair%%:*}" >/dev/null || not_found+=("${pair%%:*} (package ${pair#*:})")
    done
    [ ${#not_found[@]} -eq 0 ] || die "installed, but not found on PATH or in /usr/sbin: ${not_found[*]}"
fi
say "ready (eBPF toolchain: $bpf_toolchain, LLVM $llvm)"
