//! The `netpol-trace` command line: one binary, kubectl's habits.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod agent;
pub mod approve;
pub mod completion;
pub mod controller;
pub mod doctor;
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
  netpol-trace doctor                  # can this node run the agent, and if not, why

Objects come from -f manifests (files, directories, multi-document YAML, List) or, without
-f, from the cluster of your kubeconfig. kubectl's habits: --kubeconfig, --context, -n (default:
the context's namespace), -A where a command lists, --dry-run=none|client|server where it
writes (bare --dry-run: client); printed kubectl commands repeat your --kubeconfig/--context.
Exit codes: 0 yes/done, 1 no (denied, no safe patch, not restored), 2 bad input or cannot run
(privileges, BTF, unknown pod...), 3 cluster unreachable (retry later).";

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
    /// Log verbosity (also RUST_LOG), e.g. info, debug, netpol_trace=trace;
    /// warn,netpol_trace::ebpf=debug adds the kernel programs' diagnostics.
    #[arg(long, global = true, default_value = "warn", env = "NETPOL_TRACE_LOG")]
    pub log_level: String,

    /// Log lines on stderr as text (for people) or JSON (one object a line, for collectors).
    #[arg(long, global = true, value_enum, default_value_t, env = "NETPOL_TRACE_LOG_FORMAT")]
    pub log_format: crate::output::LogFormat,

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
    /// Can this node run the agent? Kernel, BTF, drop reasons, capabilities, CNI, API, RBAC.
    Doctor(doctor::Args),
}

/// The version line: the crate version and whether the kernel programs are embedded.
pub fn version() -> String {
    let programs = if crate::datapath::object::is_embedded() {
        "kernel programs embedded"
    } else {
        "built without kernel programs (NETPOL_TRACE_SKIP_EBPF): trace, agent and lab refuse"
    };
    format!("{} ({programs})", env!("CARGO_PKG_VERSION"))
}

/// The file name kubectl looks for on PATH to run `kubectl netpol-trace` (a dash in a plugin's
/// command name is an underscore in its file name).
pub const KUBECTL_PLUGIN_BINARY: &str = "kubectl-netpol_trace";

/// The command definition with the run-time [`version`]; invoked as the kubectl plugin, its
/// usage reads `kubectl netpol-trace ...`.
pub fn command() -> clap::Command {
    // Leaked once per process: clap keeps `&'static str` versions.
    let command = Cli::command().version(&*Box::leak(version().into_boxed_str()));
    let invoked = std::env::args_os().next().map(std::path::PathBuf::from);
    let as_plugin = invoked
        .as_deref()
        .and_then(std::path::Path::file_name)
        .is_some_and(|name| name == KUBECTL_PLUGIN_BINARY);
    if as_plugin { command.bin_name("kubectl netpol-trace") } else { command }
}

/// Parses the process arguments (exits with usage on error, like `Cli::parse`).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        Command::Doctor(args) => doctor::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Duplicate flags between shared groups (e.g. two `-n`) would only panic at run time.
        Cli::command().debug_assert();
    }

    #[test]
    fn cluster_commands_take_kubectls_flags() {
        for args in [
            &["netpol-trace", "explain", "--from", "a/b", "--to", "c/d", "--context", "x"][..],
            &["netpol-trace", "fix", "--from", "b", "--to", "d", "--kubeconfig", "k", "-n", "n"],
            &["netpol-trace", "fix", "--from", "b", "--to", "d", "--dry-run=server"],
            &["netpol-trace", "restore", "--context", "x", "--dry-run", "dir"],
            &["netpol-trace", "trace", "--context", "x", "--kubeconfig", "k"],
            &["netpol-trace", "agent", "--context", "x"],
            &["netpol-trace", "drops", "-A", "--context", "x"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
