//! The `netpol-trace` command line: one binary, kubectl's habits.

use clap::{Parser, Subcommand};

pub mod agent;
pub mod completion;
pub mod drops;
pub mod explain;
pub mod fix;
pub mod lab;
pub mod restore;
pub mod trace;

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
    /// Explain whether NetworkPolicies allow a connection, and which rule blocks it.
    Explain(explain::Args),
    /// Find the smallest NetworkPolicy change that allows a denied connection, and apply it.
    Fix(fix::Args),
    /// Watch a node's pod veths for dropped SYNs, with the kernel's drop reason.
    Trace(trace::Args),
    /// The DaemonSet agent: live drops, attributed, over HTTP, metrics and Events.
    Agent(agent::Args),
    /// Dropped flows of the whole cluster, from every agent (through the API server).
    Drops(drops::Args),
    /// A local node replica from manifests, with NetworkPolicies enforced by the kernel.
    Lab(lab::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::Args),
    /// Put back NetworkPolicies (or manifest files) from a backup written by `fix --apply`.
    Restore(restore::Args),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Fix(args) => fix::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Drops(args) => drops::run(args),
        Command::Completion(args) => completion::run(args),
        Command::Restore(args) => restore::run(args),
    }
}
