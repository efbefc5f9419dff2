//! `trace`: dropped SYNs on pod veths with the kernel's drop reason, restored handshakes,
//! and the evidence (NDJSON, a live table, pcap).

pub mod flows;
pub mod model;
pub mod pcap;
pub mod source;
pub mod tracer;

pub use model::{
    DropRecord, Endpoint, Evidence, PolicyRef, RestoredRecord, SummaryRecord, TraceEvent,
};
pub use source::EventSource;
pub use tracer::{Tracer, TracerMessage, TracerOptions};
