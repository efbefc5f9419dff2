//! The `netpol-trace` command line: one binary, kubectl's habits.

use clap::{Parser, Subcommand};

pub mod completion;
pub mod explain;
pub mod fix;
pub mod restore;

/// Find the NetworkPolicy that drops a connection and fix it minimally.
#[derive(Debug, Parser)]
#[command(name = "netpol-trace", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log verbosity (also RUST_LOG), e.g. info, debug, netpol_trace=trace.
    #[arg(long, global = true, default_value = "warn", env = "NETPOL_TRACE_LOG")]
    pub log_level: String,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::Args),
    /// Explain whether NetworkPolicies allow a connection, and which rule blocks it.
    Explain(explain::Args),
    /// Find the smallest NetworkPolicy change that allows a denied connection, and apply it.
    Fix(fix::Args),
    /// Put back NetworkPolicies (or manifest files) from a backup written by `fix --apply`.
    Restore(restore::Args),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Completion(args) => completion::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Fix(args) => fix::run(args),
        Command::Restore(args) => restore::run(args),
    }
}
