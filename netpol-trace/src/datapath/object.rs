//! The eBPF object built by `build.rs` and embedded in the binary.

/// The kernel programs as an ELF object (empty when built with `NETPOL_TRACE_SKIP_EBPF=1`).
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpol-trace.bpf.o"));

/// Whether this binary carries its kernel programs.
pub fn is_embedded() -> bool {
    !OBJECT.is_empty()
}
