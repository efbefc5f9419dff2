//! Checks made before loading anything, so that a missing privilege or kernel feature is
//! one clear line instead of a verifier or syscall error.

use std::path::Path;

use super::btf::VMLINUX_BTF;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Why the kernel programs cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The binary was built with `NETPOL_TRACE_SKIP_EBPF=1`.
    #[error(
        "this netpol-trace binary was built without its eBPF programs (NETPOL_TRACE_SKIP_EBPF); rebuild without it"
    )]
    NoObject,
    /// Missing capabilities.
    #[error(
        "tracing needs root or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (effective set lacks {0}); try sudo"
    )]
    Privileges(String),
    /// No kernel BTF.
    #[error("the kernel exposes no BTF at {0} (needs CONFIG_DEBUG_INFO_BTF=y, Linux >= 5.5)")]
    NoBtf(String),
}

/// Effective capability bits of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Names of the capabilities tracing needs that `caps` lacks (empty when it may run).
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    if has(CAP_SYS_ADMIN) && has(CAP_NET_ADMIN) {
        return vec![];
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| !has(*bit))
        .map(|(_, name)| name)
        .collect()
}

/// All checks: object embedded, privileges, BTF.
pub fn check(object_embedded: bool) -> Result<(), PreflightError> {
    if !object_embedded {
        return Err(PreflightError::NoObject);
    }
    let missing = missing_caps(effective_caps());
    if !missing.is_empty() {
        return Err(PreflightError::Privileges(missing.join(", ")));
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf(VMLINUX_BTF.into()));
    }
    Ok(())
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11); newer
/// kernels account BPF memory to the cgroup, so a refusal is only worth a debug line.
pub fn raise_memlock() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        assert!(missing_caps(u64::MAX).is_empty());
        assert_eq!(missing_caps(0), vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
        let bpf_only = 1u64 << CAP_BPF;
        assert_eq!(missing_caps(bpf_only), vec!["CAP_PERFMON", "CAP_NET_ADMIN"]);
        let fine = (1u64 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        assert!(missing_caps(fine).is_empty());
    }

    #[test]
    fn a_binary_without_programs_says_so() {
        let err = check(false).unwrap_err().to_string();
        assert!(err.contains("NETPOL_TRACE_SKIP_EBPF"), "{err}");
    }
}
