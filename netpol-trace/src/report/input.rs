//! Reading the NDJSON that `trace`, `agent` and `lab demo` print with `-o json`: `drop`,
//! `restored` and `summary` lines, plus the demo's `step` lines and its own `summary`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::{ReportError, Result};
use crate::trace::{DropRecord, RestoredRecord, SummaryRecord};

/// A `lab demo` timeline step as printed (`{"type":"step","step":"detected",...}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepLine {
    /// `lab-up`, `detected`, `broken`, `attributed`, `patched`, `restored`, `verified`,
    /// `failed`.
    pub step: String,
    /// Milliseconds since the demo started.
    #[serde(default)]
    pub at_ms: u64,
    /// Wall-clock time.
    pub time: DateTime<Utc>,
    /// One line for people.
    #[serde(default)]
    pub detail: String,
    /// The step's structured details (the drop, the explanation, the fix plan...).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The last line of `lab demo -o json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DemoSummaryLine {
    /// The scenario played.
    #[serde(default)]
    pub scenario: Option<String>,
    /// Whether the connection was restored.
    pub restored: bool,
    /// From the first dropped SYN to its report.
    #[serde(default)]
    pub time_to_detect_ms: Option<u64>,
    /// From the report to the attribution.
    #[serde(default)]
    pub time_to_attribute_ms: Option<u64>,
    /// From the first dropped SYN to the answered query.
    #[serde(default)]
    pub time_to_restore_ms: Option<u64>,
    /// The runbook's objective.
    #[serde(default)]
    pub runbook_rto_ms: Option<u64>,
}

/// One line of a stream, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Dropped SYNs of a flow (cumulative count of the outage).
    Drop(Box<DropRecord>),
    /// The flow completed its handshake.
    Restored(Box<RestoredRecord>),
    /// The tracer's (or agent's) closing counters.
    TraceSummary(SummaryRecord),
    /// A `lab demo` timeline step.
    Step(Box<StepLine>),
    /// The last line of `lab demo`.
    DemoSummary(DemoSummaryLine),
}

/// A line with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// 1-based line number in its file.
    pub line: usize,
    /// The parsed line.
    pub event: Line,
}

/// One input stream: a file (one per node, say) and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Where it was read from (`-` for stdin).
    pub path: PathBuf,
    /// A short name for the stream: the file's stem (e.g. `node-1` for `node-1.ndjson`).
    pub name: String,
    /// Its lines, in order.
    pub lines: Vec<Located>,
    /// Number of lines in the file (for messages).
    pub line_count: usize,
}

/// Reads and parses one NDJSON file.
pub fn read_stream(path: &Path) -> Result<Stream> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    parse_stream(path, &text)
}

/// Parses NDJSON text read from `path`. Blank lines are skipped; any other line must be an
/// event of this tool.
pub fn parse_stream(path: &Path, text: &str) -> Result<Stream> {
    let mut lines = Vec::new();
    let mut line_count = 0;
    for (index, raw) in text.lines().enumerate() {
        line_count = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let bad =
            |message: String| ReportError::Line { path: path.to_owned(), line: index + 1, message };
        lines.push(Located { line: index + 1, event: parse_line(raw).map_err(bad)? });
    }
    if lines.is_empty() {
        return Err(ReportError::Empty { path: path.to_owned() });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s != "-")
        .unwrap_or_else(|| "stdin".to_string());
    Ok(Stream { path: path.to_owned(), name, lines, line_count })
}

const NOT_OURS: &str = "not the NDJSON of `netpol-trace trace|agent|lab demo -o json`";

fn parse_line(raw: &str) -> std::result::Result<Line, String> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("{NOT_OURS}: invalid JSON: {e}"))?;
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("{NOT_OURS}: no \"type\" field"))?
        .to_string();
    let typed = |what: &str, e: serde_json::Error| format!("a `{what}` line: {e}");
    Ok(match kind.as_str() {
        "drop" => {
            Line::Drop(Box::new(serde_json::from_value(value).map_err(|e| typed("drop", e))?))
        }
        "restored" => Line::Restored(Box::new(
            serde_json::from_value(value).map_err(|e| typed("restored", e))?,
        )),
        "step" => {
            Line::Step(Box::new(serde_json::from_value(value).map_err(|e| typed("step", e))?))
        }
        // `lab demo` ends with its own summary (with `restored` and `steps`); `trace` and
        // `agent` end with the kernel counters.
        "summary" if value.get("restored").is_some() => {
            Line::DemoSummary(serde_json::from_value(value).map_err(|e| typed("summary", e))?)
        }
        "summary" => {
            Line::TraceSummary(serde_json::from_value(value).map_err(|e| typed("summary", e))?)
        }
        other => return Err(format!("{NOT_OURS}: unknown \"type\": {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Stream> {
        parse_stream(Path::new("run.ndjson"), text)
    }

    #[test]
    fn an_empty_file_names_the_file() {
        let e = parse("\n\n").unwrap_err().to_string();
        assert!(e.starts_with("run.ndjson: line 1: empty file"), "{e}");
    }

    #[test]
    fn a_foreign_line_names_the_file_and_line() {
        let e = parse("\n{\"level\":\"info\"}\n").unwrap_err().to_string();
        assert_eq!(e, format!("run.ndjson: line 2: {NOT_OURS}: no \"type\" field"),);
        let e = parse("hello").unwrap_err().to_string();
        assert!(e.starts_with("run.ndjson: line 1: not the NDJSON"), "{e}");
        let e = parse("{\"type\":\"flow\"}").unwrap_err().to_string();
        assert!(e.ends_with("unknown \"type\": \"flow\""), "{e}");
        let e = parse("{\"type\":\"drop\",\"time\":\"x\"}").unwrap_err().to_string();
        assert!(e.starts_with("run.ndjson: line 1: a `drop` line: "), "{e}");
    }

    #[test]
    fn both_summaries_are_told_apart() {
        let s = parse(concat!(
            "{\"type\":\"summary\",\"matched\":3,\"events_lost\":0,\"flows_full\":0,",
            "\"dropped_flows\":1,\"restored_flows\":0,\"interfaces\":[\"cali1\"]}\n",
            "{\"type\":\"summary\",\"scenario\":\"port-typo\",\"restored\":true,\"steps\":[]}\n"
        ))
        .unwrap();
        assert!(matches!(s.lines[0].event, Line::TraceSummary(ref t) if t.matched == 3));
        assert!(matches!(s.lines[1].event, Line::DemoSummary(ref d) if d.restored));
        assert_eq!(s.name, "run");
    }
}
