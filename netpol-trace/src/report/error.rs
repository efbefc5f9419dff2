//! What can go wrong when reading the evidence of a report.

use std::path::PathBuf;

/// A report's input could not be used. Every message names the file and, for a bad line,
/// its number, so that the stream can be fixed or the right file picked.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read (missing, unreadable).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The input file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no line at all.
    #[error("{}: line 1: empty file: expected the NDJSON of `netpol-trace trace|agent|lab demo -o json`", path.display())]
    Empty {
        /// The input file.
        path: PathBuf,
    },
    /// A line is not an event of this tool.
    #[error("{}: line {line}: {message}", path.display())]
    Line {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The streams hold no dropped SYN: nothing to report on.
    #[error("{}: line {line}: no drop event in the stream: nothing to report (a report needs at least one `drop` line)", path.display())]
    NoDrops {
        /// The (last) input file.
        path: PathBuf,
        /// Its last line.
        line: usize,
    },
    /// A DropReport or pcap file could not be used.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The input file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

/// Results of this module.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
