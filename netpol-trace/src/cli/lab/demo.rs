//! `netpol-trace lab demo`: the whole recovery on a built-in scenario, with a timeline.

use std::{io::Write, os::unix::process::CommandExt, time::Duration};

use anyhow::Context as _;
use clap::Args as ClapArgs;

use crate::{
    exit,
    lab::{
        demo::{self, DemoEvent, DemoOptions, DemoSummary},
        lifecycle::{self, LabContext},
        scenarios,
    },
    report::{self, Format},
    trace::TraceEvent,
};

use crate::output::trace_line as render_trace;
use crate::output::{OutputFormat, TABLE_OR_JSON};

/// Arguments of `lab demo`.
#[derive(Debug, ClapArgs)]
#[command(after_help = DEMO_HELP)]
pub struct DemoArgs {
    /// Built-in scenario to play (see --list).
    #[arg(long, default_value = "port-typo")]
    pub scenario: String,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Connect timeout of each `SELECT 1` attempt.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// How long to wait for the first drop and for the restored handshake.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Output: a timeline for people, or NDJSON (steps, drop/restored events, and a last
    /// `summary` line).
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,
    /// Also write the postmortem report of the run to PATH (Markdown for `.md`, else HTML).
    #[arg(long, value_name = "PATH")]
    pub report: Option<std::path::PathBuf>,
}

const DEMO_HELP: &str = "\
Example:
  sudo netpol-trace lab demo
  +    512 ms  lab-up      lab demo-4242 up: 2 pods, node namespace npt_demo-4242_node (no uplink) ...
  +   1648 ms  detected    1 dropped SYN(s) app/web-7d9f8b6c5-x2k4q -> db/mysql-0:3306 reason NETFILTER_DROP ...
  +   2590 ms  broken      SELECT 1 from app/web-7d9f8b6c5-x2k4q -> db/mysql-0: ERROR 2002 (HY000) ...
  +   2591 ms  attributed  denied by db/mysql-ingress (ingress); db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306
  +   2645 ms  patched     ... kubectl patch networkpolicy -n db mysql-ingress --type=json -p '...'
  +   2668 ms  restored    kernel saw the SYN-ACK db/mysql-0 -> app/web-7d9f8b6c5-x2k4q after 3 dropped SYN(s)
  +   2690 ms  verified    SELECT 1 from app/web-7d9f8b6c5-x2k4q answered 1
  restored in 1.0 s from the first dropped SYN (runbook objective: 30 min)

Needs root (network namespaces, nftables, eBPF): re-runs itself with sudo when it can.
Exit 0 only when the connection was restored; nothing of the lab is left behind, also on
Ctrl-C. Scenarios: port-typo, cross-namespace, no-ingress-list, egress-default-deny.";

/// Runs `lab demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    if args.list {
        for s in scenarios::all() {
            let info = s.info()?;
            println!("{:<22} {}", s.name, info.description);
        }
        return Ok(exit::OK);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return reexec_with_sudo();
    }
    let ctx = LabContext::from_env()?;
    let opts = DemoOptions {
        scenario: args.scenario.clone(),
        lab_name: format!("demo-{}", std::process::id()),
        connect_timeout: args.connect_timeout,
        wait: args.wait,
    };
    remove_on_signal(ctx.clone(), opts.lab_name.clone());
    let output = args.output;
    let mut out = std::io::stdout();
    // The run's NDJSON, for --report: the same lines `-o json` prints.
    let mut recorded: Vec<String> = Vec::new();
    let mut sink = |ev: &DemoEvent| {
        if args.report.is_some() {
            recorded.push(match ev {
                DemoEvent::Step(s) => serde_json::to_string(s).unwrap_or_default(),
                DemoEvent::Trace(t) => serde_json::to_string(t).unwrap_or_default(),
            });
        }
        let line = match (output, ev) {
            (OutputFormat::Table, DemoEvent::Step(s)) => {
                format!("+{:>7} ms  {:<11} {}", s.at_ms, s.step, s.detail)
            }
            (OutputFormat::Table, DemoEvent::Trace(t)) if matches!(**t, TraceEvent::Drop(_)) => {
                format!("           kernel      {}", render_trace(t))
            }
            (OutputFormat::Table, DemoEvent::Trace(_)) => return,
            (_, DemoEvent::Step(s)) => serde_json::to_string(s).unwrap_or_default(),
            (_, DemoEvent::Trace(t)) => serde_json::to_string(t).unwrap_or_default(),
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let summary = demo::run(&ctx, &opts, &mut sink).map_err(exit::ExitError::from)?;
    print_summary(output, &summary)?;
    if let Some(path) = &args.report {
        recorded.push(serde_json::to_string(&summary)?);
        // The run's own outcome decides the exit code; a report that cannot be made (no
        // drop was ever seen) is said on stderr.
        if let Err(e) = write_report(path, &recorded.join("\n")) {
            eprintln!("netpol-trace: no report: {e:#}");
        }
    }
    Ok(if summary.restored { exit::OK } else { exit::NO })
}

/// Writes the report of the run's NDJSON to `path` (Markdown for `.md`, else HTML).
fn write_report(path: &std::path::Path, ndjson: &str) -> anyhow::Result<()> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("md" | "markdown") => Format::Markdown,
        _ => Format::Html,
    };
    let incident = report::from_ndjson_text(
        std::path::Path::new("lab-demo.ndjson"),
        ndjson,
        &report::Context::this_host(),
    )
    .map_err(|e| exit::ExitError::bad_input(format!("--report {}: {e}", path.display())))?;
    std::fs::write(path, report::render(&incident, format))
        .with_context(|| format!("writing --report {}", path.display()))?;
    eprintln!("netpol-trace: report written to {}", path.display());
    Ok(())
}

fn print_summary(output: OutputFormat, s: &DemoSummary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Kubectl => {
            println!("{}", serde_json::to_string(s)?)
        }
        OutputFormat::Table => {
            let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
            println!(
                "time to detect {}, to attribute {}, to restore {} (runbook objective: {} min)",
                ms(s.time_to_detect_ms),
                ms(s.time_to_attribute_ms),
                ms(s.time_to_restore_ms),
                s.runbook_rto_ms / 60_000
            );
            println!(
                "{}",
                if s.restored {
                    "RESTORED: SELECT 1 answered and the kernel saw the handshake"
                } else {
                    "NOT RESTORED"
                }
            );
        }
    }
    Ok(())
}

/// Runs the same command again under sudo, or explains that root is needed.
fn reexec_with_sudo() -> anyhow::Result<i32> {
    let sudo =
        ["/usr/bin/sudo", "/bin/sudo"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(sudo) = sudo else {
        return Err(exit::ExitError::bad_input(
            "lab demo needs root (network namespaces, nftables, eBPF) and sudo is not available: run it as root",
        )
        .into());
    };
    eprintln!("netpol-trace: lab demo needs root; re-running with sudo");
    let exe = std::env::current_exe()?;
    let err = std::process::Command::new(sudo)
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(exit::ExitError::bad_input(format!("running sudo: {err}")).into())
}

/// On Ctrl-C or SIGTERM: remove the lab, then exit 130.
fn remove_on_signal(ctx: LabContext, name: String) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("netpol-trace: interrupted, removing lab {name}");
        let _ = lifecycle::down(&ctx, &name);
        std::process::exit(130);
    });
}
