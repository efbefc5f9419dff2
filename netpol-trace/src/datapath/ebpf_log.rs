//! The kernel programs' diagnostics (aya-log records) forwarded to `tracing` under the target
//! [`TARGET`]. The programs only log at debug level, on failure paths; they do so only when
//! the log filter enables [`TARGET`] at debug (`--log-level netpol_trace::ebpf=debug`), which
//! user space tells them at load time through aya-log's `AYA_LOG_LEVEL` global.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya_log::{EbpfLogger, Level};

/// The `tracing` target of the kernel programs' records.
pub const TARGET: &str = "netpol_trace::ebpf";

/// The most verbose level the log filter enables for [`TARGET`], as `AYA_LOG_LEVEL`'s value
/// (0: none; the programs skip every record above it).
pub fn kernel_level() -> u8 {
    use tracing::Level as T;
    let levels = [
        (T::TRACE, Level::Trace),
        (T::DEBUG, Level::Debug),
        (T::INFO, Level::Info),
        (T::WARN, Level::Warn),
        (T::ERROR, Level::Error),
    ];
    for (tracing_level, level) in levels {
        let enabled = match tracing_level {
            T::TRACE => tracing::enabled!(target: TARGET, T::TRACE),
            T::DEBUG => tracing::enabled!(target: TARGET, T::DEBUG),
            T::INFO => tracing::enabled!(target: TARGET, T::INFO),
            T::WARN => tracing::enabled!(target: TARGET, T::WARN),
            _ => tracing::enabled!(target: TARGET, T::ERROR),
        };
        if enabled {
            return level as u8;
        }
    }
    0
}

/// Hands aya-log's records to `tracing`, counting them.
#[derive(Debug, Clone, Default)]
pub struct Forwarder {
    records: Arc<AtomicU64>,
}

impl log::Log for Forwarder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.records.fetch_add(1, Ordering::Relaxed);
        let (file, line) = (record.file().unwrap_or("?"), record.line().unwrap_or(0));
        let message = record.args();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: TARGET, program_file = file, program_line = line, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: TARGET, program_file = file, program_line = line, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: TARGET, program_file = file, program_line = line, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: TARGET, program_file = file, program_line = line, "{message}")
            }
            log::Level::Trace => {
                tracing::trace!(target: TARGET, program_file = file, program_line = line, "{message}")
            }
        }
    }

    fn flush(&self) {}
}

/// The reader of the programs' log ring buffer.
pub struct KernelLog {
    logger: EbpfLogger<Forwarder>,
    records: Arc<AtomicU64>,
}

impl KernelLog {
    /// Takes the log ring buffer out of the loaded object (None when the object has none).
    pub fn take(ebpf: &mut aya::Ebpf) -> Option<Self> {
        let forwarder = Forwarder::default();
        let records = forwarder.records.clone();
        match EbpfLogger::init_with_logger(ebpf, forwarder) {
            Ok(logger) => Some(Self { logger, records }),
            Err(e) => {
                tracing::debug!(target: TARGET, error = %e, "no kernel log buffer");
                None
            }
        }
    }

    /// Forwards every pending record.
    pub fn flush(&mut self) {
        self.logger.flush();
    }

    /// Records forwarded so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

    fn level_under(filter: &str) -> u8 {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(filter));
        tracing::subscriber::with_default(subscriber, kernel_level)
    }

    #[test]
    fn the_kernel_level_follows_the_log_filter_for_the_ebpf_target() {
        assert_eq!(level_under("warn"), Level::Warn as u8);
        assert_eq!(level_under("warn,netpol_trace::ebpf=debug"), Level::Debug as u8);
        assert_eq!(level_under("netpol_trace=trace"), Level::Trace as u8, "a parent target");
        assert_eq!(level_under("off"), 0);
        assert_eq!(level_under("info,netpol_trace::ebpf=off"), 0);
    }
}
