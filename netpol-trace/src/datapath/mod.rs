//! The kernel side as seen from user space: the embedded eBPF object, loading it with the
//! running kernel's offsets, attaching to veths, and reading what the programs observed.

pub mod object;
