//! The kernel side as seen from user space: the embedded eBPF object, loading it with the
//! running kernel's offsets, attaching to veths, and reading what the programs observed.

pub mod btf;
pub mod kernel;
pub mod links;
pub mod object;
pub mod preflight;
pub mod programs;

pub use crate::netns;
pub use programs::{Counters, Datapath, DatapathError, DatapathOptions};
