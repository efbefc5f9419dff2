//! Output formats shared by the subcommands: a human table (the default), JSON or YAML.

use std::io::Write;

use serde::Serialize;

/// `-o/--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table a person reads in seconds.
    #[default]
    Table,
    /// One pretty-printed JSON value.
    Json,
    /// YAML.
    Yaml,
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes `value` as YAML.
pub fn write_yaml(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    out.write_all(serde_yaml::to_string(value)?.as_bytes())?;
    Ok(())
}

/// Writes `value` to stdout as JSON or YAML; `Table` is the caller's own rendering, so it is
/// printed as JSON here.
pub fn print_structured(format: OutputFormat, value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        OutputFormat::Yaml => write_yaml(&mut stdout, value),
        OutputFormat::Json | OutputFormat::Table => write_json(&mut stdout, value),
    }
}
