//! Output formats shared by the subcommands: a human table (the default), JSON or YAML.

use std::io::Write;

use serde::Serialize;

use crate::exit;
use crate::explain::{ExplainOptions, Explanation, explain, table};
use crate::flow::ResolvedFlow;
use crate::inventory::Inventory;
use crate::trace::TraceEvent;

/// `-o/--output`, the one output enum of every command; each command accepts the subset
/// it can print ([`OutputFormat::parser`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people: a table, a timeline, one line per event.
    #[default]
    Table,
    /// JSON: one object, or NDJSON (one object a line) for streams of events.
    Json,
    /// YAML (for `fix`: the corrected and created policies, for `kubectl apply -f -`).
    Yaml,
    /// `kubectl patch` / `kubectl apply` commands.
    Kubectl,
}

impl OutputFormat {
    /// A `-o` parser that accepts only `allowed` (clap lists them in `--help` and refuses
    /// the others).
    pub fn parser(
        allowed: &'static [OutputFormat],
    ) -> impl clap::builder::TypedValueParser<Value = OutputFormat> {
        use clap::ValueEnum;
        use clap::builder::TypedValueParser;
        clap::builder::PossibleValuesParser::new(
            allowed.iter().filter_map(OutputFormat::to_possible_value),
        )
        .map(|name| OutputFormat::from_str(&name, false).unwrap_or_default())
    }
}

/// `-o table|json`, the formats of the commands that print no YAML.
pub const TABLE_OR_JSON: &[OutputFormat] = &[OutputFormat::Table, OutputFormat::Json];
/// `-o table|json|yaml`.
pub const TABLE_JSON_YAML: &[OutputFormat] =
    &[OutputFormat::Table, OutputFormat::Json, OutputFormat::Yaml];

/// `--log-format`: how log lines are written to stderr (results and events stay on stdout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line for people: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object a line, for log collectors (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// Installs the process-wide `tracing` subscriber writing to stderr: `RUST_LOG` if set, else
/// `level` (an `EnvFilter` directive such as `info` or `netpol_trace=debug`), in `format`.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colours only when stderr is a terminal and NO_COLOR is unset.
        LogFormat::Text => builder.with_ansi(stderr_takes_colour()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Reports the error that ends the process on stderr: `error: ...` for people, or a JSON
/// `ERROR` log line with its `exit_code` when logs are JSON (a collector reads every line as
/// JSON, the last one too).
pub fn report_error(format: LogFormat, err: &anyhow::Error, exit_code: i32) {
    match format {
        LogFormat::Json => tracing::error!(exit_code, "{err:#}"),
        LogFormat::Text => eprintln!("error: {err:#}"),
    }
}

fn stderr_takes_colour() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes `value` as YAML.
pub fn write_yaml(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    out.write_all(serde_yaml_ng::to_string(value)?.as_bytes())?;
    Ok(())
}

/// Writes `value` to stdout as JSON or YAML; `Table` is the caller's own rendering, so it is
/// printed as JSON here.
pub fn print_structured(format: OutputFormat, value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        OutputFormat::Yaml => write_yaml(&mut stdout, value),
        OutputFormat::Json | OutputFormat::Table | OutputFormat::Kubectl => {
            write_json(&mut stdout, value)
        }
    }
}

/// Explains `flows` against `inventory`, prints them in `output` format and returns the exit
/// code: 0 when every flow is allowed, else 1.
pub fn print_explanations(
    inventory: &Inventory,
    flows: &[ResolvedFlow],
    options: &ExplainOptions,
    output: OutputFormat,
) -> anyhow::Result<i32> {
    let explanations: Vec<Explanation> =
        flows.iter().map(|f| explain(inventory, &f.flow, options)).collect();
    let mut stdout = std::io::stdout().lock();
    match output {
        OutputFormat::Table | OutputFormat::Kubectl => {
            for (index, (resolved, explanation)) in flows.iter().zip(&explanations).enumerate() {
                if let Some(service) = &resolved.service {
                    if index > 0 {
                        writeln!(stdout)?;
                    }
                    writeln!(stdout, "via svc/{}/{}:", service.namespace, service.name)?;
                }
                stdout.write_all(table::render(explanation).as_bytes())?;
            }
        }
        // One object for one flow (the contract); a Service with several backends gives a list.
        OutputFormat::Json if explanations.len() == 1 => write_json(&mut stdout, &explanations[0])?,
        OutputFormat::Json => write_json(&mut stdout, &explanations)?,
        OutputFormat::Yaml if explanations.len() == 1 => write_yaml(&mut stdout, &explanations[0])?,
        OutputFormat::Yaml => write_yaml(&mut stdout, &explanations)?,
    }
    Ok(if explanations.iter().all(Explanation::allowed) { exit::OK } else { exit::NO })
}

/// Rows as left-aligned columns under an upper-case header, two spaces apart (the last
/// column is not padded): the one table layout of every command. Plain text; a printer for
/// people uses [`styled_table`] and [`print_styled`].
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    render_table(header, rows, false)
}

/// [`table`] with terminal styles: a bold header and the verdict words of a STATUS, STATE or
/// RESULT column in green (done), yellow (degraded) or red (failed, dropping). Print it with
/// [`print_styled`], which removes the styles when they are not wanted.
pub fn styled_table(header: &[&str], rows: &[Vec<String>]) -> String {
    render_table(header, rows, true)
}

/// Writes `text` to stdout, keeping its terminal styles only when stdout is a terminal that
/// takes them and neither `NO_COLOR` nor `CLICOLOR=0` is set (`CLICOLOR_FORCE` forces them).
pub fn print_styled(text: &str) -> std::io::Result<()> {
    let mut stdout = anstream::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

const HEADER_STYLE: anstyle::Style = anstyle::Style::new().bold();

/// The style of a verdict word in a status column; `None` leaves the cell plain.
fn verdict_style(word: &str) -> Option<anstyle::Style> {
    use anstyle::AnsiColor::{Green, Red, Yellow};
    let color = match word {
        "ok" | "OK" | "restored" | "replaced" | "recreated" | "deleted" | "running" => Green,
        "degraded" | "skipped" | "unchanged" | "already-absent" => Yellow,
        "FAIL" | "failed" | "dropping" | "denied" => Red,
        _ => return None,
    };
    Some(anstyle::Style::new().fg_color(Some(color.into())))
}

fn render_table(header: &[&str], rows: &[Vec<String>], styled: bool) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let status_columns: Vec<bool> =
        header.iter().map(|h| matches!(*h, "STATUS" | "STATE" | "RESULT")).collect();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for (index, row) in std::iter::once(&header).chain(rows).enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let text = if i + 1 < row.len() {
                format!("{cell:<width$}", width = widths[i])
            } else {
                cell.clone()
            };
            let style = match (styled, index) {
                (false, _) => None,
                (true, 0) => Some(HEADER_STYLE),
                (true, _) if status_columns.get(i) == Some(&true) => verdict_style(cell),
                (true, _) => None,
            };
            match style {
                // Only the word is styled, not its padding, so trimming still works.
                Some(style) => {
                    let pad = text.len() - text.trim_end().len();
                    line.push_str(&format!(
                        "{style}{}{style:#}{}",
                        text.trim_end(),
                        " ".repeat(pad)
                    ));
                }
                None => line.push_str(&text),
            }
            if i + 1 < row.len() {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line for people.
pub fn trace_line(ev: &TraceEvent) -> String {
    match ev {
        TraceEvent::Drop(d) => {
            let mut line = format!(
                "{}  DROP      {:<16} {:<16} {}:{} -> {}:{}  x{}",
                d.time.format("%H:%M:%S%.3f"),
                d.reason,
                d.ifname,
                d.src.display_name(),
                d.src.port,
                d.dst.display_name(),
                d.dst.port,
                d.count
            );
            for p in &d.policies {
                let name = crate::attribution::wording::policy_name(
                    p.kind,
                    p.tier.is_some(),
                    &p.namespace,
                    &p.name,
                );
                line.push_str(&format!("  [{} {name}]", p.direction));
            }
            if let Some(hint) = &d.hint {
                line.push_str(&format!("  {hint}"));
            }
            line
        }
        TraceEvent::Restored(r) => format!(
            "{}  RESTORED  {} -> {}:{} handshake completed after {} dropped SYN(s) since {}",
            r.time.format("%H:%M:%S%.3f"),
            r.src.display_name(),
            r.dst.display_name(),
            r.dst.port,
            r.drops,
            r.first_drop.format("%H:%M:%S%.3f"),
        ),
        TraceEvent::Summary(s) => format!(
            "summary: {} dropped flow(s), {} restored, {} packets matched, {} events lost, interfaces: {}",
            s.dropped_flows,
            s.restored_flows,
            s.matched,
            s.events_lost,
            s.interfaces.join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_accepts_only_its_formats() {
        let command = clap::Command::new("t")
            .arg(clap::Arg::new("o").short('o').value_parser(OutputFormat::parser(TABLE_OR_JSON)));
        let matches = command.clone().try_get_matches_from(["t", "-o", "json"]).unwrap();
        assert_eq!(matches.get_one::<OutputFormat>("o"), Some(&OutputFormat::Json));
        let refused = command.try_get_matches_from(["t", "-o", "yaml"]).unwrap_err();
        assert!(refused.to_string().contains("[possible values: table, json]"), "{refused}");
    }

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["ok".into(), "btf".into(), "/sys/kernel/btf/vmlinux".into()],
            vec!["FAIL".into(), "capabilities".into(), "CAP_BPF missing".into()],
        ]
    }

    #[test]
    fn the_styled_table_is_the_plain_table_once_its_styles_are_stripped() {
        let header = ["STATUS", "CHECK", "FOUND"];
        let styled = styled_table(&header, &rows());
        assert!(styled.contains("\x1b[1mSTATUS"), "{styled:?}");
        assert!(styled.contains("\x1b[31mFAIL\x1b[0m"), "{styled:?}");
        let mut stripped = anstream::StripStream::new(Vec::new());
        stripped.write_all(styled.as_bytes()).unwrap();
        let stripped = String::from_utf8(stripped.into_inner()).unwrap();
        assert_eq!(stripped, table(&header, &rows()));
        assert!(!table(&header, &rows()).contains('\x1b'));
    }

    #[test]
    fn only_status_columns_are_coloured() {
        let styled = styled_table(&["NAME", "CHECK", "FOUND"], &rows());
        assert!(!styled.contains("\x1b[31m"), "{styled:?}");
    }
}
