//! `report`: the postmortem evidence people read. The NDJSON of `trace`, `agent` or `lab
//! demo` (or a DropReport) becomes one self-contained HTML or Markdown file: what broke, a
//! timeline chart with the detected / attributed / patched / restored markers against the
//! 30-minute objective, the denying policy and rule with the near-miss, the change and its
//! blast radius, the recovery point, and the kernel's evidence.
//!
//! * [`input`]: the NDJSON streams, line by line, with file and line in every error.
//! * [`assemble`]: streams → [`model::Incident`].
//! * [`dropreport`]: a DropReport (JSON or YAML) → [`model::Incident`].
//! * [`findings`]: explanations, hints and fix plans as the report shows them.
//! * [`policy`]: a policy's YAML with the offending field marked; before → after diffs.
//! * [`chart`]: per-second binning, the SVG chart and the ASCII sparkline.
//! * [`html`], [`markdown`]: the renderers; [`words`]: what both print alike.

pub mod assemble;
pub mod chart;
pub mod dropreport;
pub mod error;
pub mod findings;
pub mod html;
pub mod input;
pub mod markdown;
pub mod model;
pub mod policy;
pub mod words;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{ReportError, Result};
pub use model::Incident;

/// Output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML file (inline CSS and SVG, no script).
    #[default]
    Html,
    /// GitHub/GitLab Markdown.
    Markdown,
}

/// What the report adds to the evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The tool's version, for the footer.
    pub tool_version: String,
    /// The host the report is made on and its kernel, for the footer (none: not shown).
    pub host: Option<String>,
    /// Packet captures of the evidence.
    pub pcaps: Vec<model::PcapFile>,
    /// Policy objects known besides the evidence (their YAML and the diffs are shown).
    pub objects: Vec<serde_json::Value>,
}

impl Context {
    /// The context of this binary on this host.
    pub fn this_host() -> Self {
        Self {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_description(),
            ..Self::default()
        }
    }
}

/// `node-1 (Linux 6.18.0)`, from uname(2).
fn host_description() -> Option<String> {
    // SAFETY: uname only writes into the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(format!("{} ({} {})", field(&u.nodename), field(&u.sysname), field(&u.release)))
}

/// The incident told by NDJSON files (one per node, say).
pub fn from_ndjson_files(paths: &[PathBuf], ctx: &Context) -> Result<Incident> {
    let streams = paths.iter().map(|p| input::read_stream(p)).collect::<Result<Vec<_>>>()?;
    assemble::from_streams(&streams, ctx)
}

/// The incident told by NDJSON text already in memory (named `name` in messages).
pub fn from_ndjson_text(name: &Path, text: &str, ctx: &Context) -> Result<Incident> {
    assemble::from_streams(&[input::parse_stream(name, text)?], ctx)
}

/// Renders an incident.
pub fn render(incident: &Incident, format: Format) -> String {
    match format {
        Format::Html => html::render(incident),
        Format::Markdown => markdown::render(incident),
    }
}

/// Packets in a pcap file (classic format, either byte order, micro- or nanosecond
/// timestamps), for the kernel evidence section.
pub fn count_pcap_packets(path: &Path) -> Result<u64> {
    let bad = |message: String| ReportError::Invalid { path: path.to_owned(), message };
    let data = std::fs::read(path)
        .map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    let magic =
        data.get(..4).ok_or_else(|| bad("not a pcap file: shorter than its header".into()))?;
    let big = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return Err(bad("not a pcap file (unknown magic number)".into())),
    };
    let mut at = 24;
    let mut packets = 0;
    while at + 16 <= data.len() {
        let b = [data[at + 8], data[at + 9], data[at + 10], data[at + 11]];
        let caplen = if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) } as usize;
        at += 16 + caplen;
        if at > data.len() {
            return Err(bad(format!("truncated after {packets} packet(s)")));
        }
        packets += 1;
    }
    Ok(packets)
}
