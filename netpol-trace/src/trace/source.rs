//! Where the loops of the agent and of `lab demo` get their events from: the kernel (a
//! running [`Tracer`]) or a channel that anything else feeds — recorded kernel events in a
//! unit test (no root, no kernel), or a replayed NDJSON stream.

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::model::SummaryRecord;
use super::tracer::{Tracer, TracerError, TracerMessage, TracerOptions};

/// A stream of [`TracerMessage`]s and what stops it.
pub struct EventSource {
    /// Interfaces attached at start.
    pub interfaces: Vec<String>,
    /// Why the kernel source runs degraded (tc only, drop reason unknown), if it does.
    pub degraded: Option<String>,
    /// The messages, in order.
    pub events: UnboundedReceiver<TracerMessage>,
    tracer: Option<Tracer>,
}

impl EventSource {
    /// Loads and attaches the programs (needs privileges) and streams what they report.
    pub fn kernel(opts: TracerOptions) -> Result<Self, TracerError> {
        let (tracer, events) = Tracer::start(opts)?;
        Ok(Self {
            interfaces: tracer.interfaces.clone(),
            degraded: tracer.degraded.clone(),
            events,
            tracer: Some(tracer),
        })
    }

    /// A source fed through the returned sender, as if `interfaces` were attached.
    pub fn channel(interfaces: Vec<String>) -> (UnboundedSender<TracerMessage>, Self) {
        let (tx, events) = mpsc::unbounded_channel();
        (tx, Self { interfaces, degraded: None, events, tracer: None })
    }

    /// Stops the source: detaches the programs and returns the kernel counters (zero for a
    /// channel).
    pub fn stop(self) -> SummaryRecord {
        match self.tracer {
            Some(tracer) => tracer.stop(),
            None => SummaryRecord { interfaces: self.interfaces, ..SummaryRecord::default() },
        }
    }
}
