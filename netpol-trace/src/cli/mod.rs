//! The `netpol-trace` command line: one binary, kubectl's habits.

use clap::{Parser, Subcommand};

pub mod agent;
pub mod approve;
pub mod completion;
pub mod controller;
pub mod drops;
pub mod explain;
pub mod fix;
pub mod lab;
pub mod reject;
pub mod report;
pub mod restore;
pub mod trace;

const TOP_HELP: &str = "\
The loop, each step also usable on its own:
  netpol-trace trace                   # kernel evidence: dropped SYNs, drop reason, interface
  netpol-trace explain --from app/web-1 --to db/mysql-0 --port 3306
                                       # which NetworkPolicy and rule, and what would match
  netpol-trace fix --from app/web-1 --to db/mysql-0 --port 3306 [--apply]
                                       # the minimal patch, with backup; `restore` undoes it
  netpol-trace lab demo                # the whole recovery on a local replica node

Objects come from -f manifests (files, directories, multi-document YAML, List) or, without
-f, from the cluster of your kubeconfig. Exit codes: 0 yes/done, 1 no (denied, no safe
patch, not restored), 2 bad input or cannot run (privileges, BTF, unknown pod...).";

/// Find the NetworkPolicy that drops a connection and fix it minimally.
#[derive(Debug, Parser)]
#[command(
    name = "netpol-trace",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = TOP_HELP
)]
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
    /// DropReports: dropped flows, who denies them and their fix (from the API server).
    Drops(drops::Args),
    /// Approve a DropReport's fix; the controller applies it.
    Approve(approve::Args),
    /// Reject a DropReport's fix; the controller leaves it alone.
    Reject(reject::Args),
    /// The in-cluster controller that applies approved DropReports (leader-elected).
    Controller(controller::Args),
    /// A local node replica from manifests, with NetworkPolicies enforced by the kernel.
    Lab(lab::Args),
    /// Put back NetworkPolicies (or manifest files) from a backup of `fix --apply`, or undo a
    /// DropReport's applied fix (`restore dropreport/NAME -n NS`).
    Restore(restore::Args),
    /// The postmortem report (HTML or Markdown) from `trace`/`agent`/`lab demo` NDJSON.
    Report(report::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::Args),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Fix(args) => fix::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Drops(args) => drops::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Reject(args) => reject::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Report(args) => report::run(args),
        Command::Completion(args) => completion::run(args),
    }
}
