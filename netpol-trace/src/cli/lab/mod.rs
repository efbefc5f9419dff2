//! `netpol-trace lab ...`: build a local node from manifests, probe it, swap its enforcement,
//! tear it down.

pub mod demo;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};

use crate::exit;
use crate::explain::ExplainOptions;
use crate::flow::{EndpointArg, FlowRequest, resolve_flows};
use crate::inventory::{DEFAULT_NAMESPACE, PortRef};
use crate::lab::lifecycle::{self, LabContext, PolicyChange, find_pod};
use crate::lab::listener;
use crate::lab::objects::LabPolicies;
use crate::lab::plan::{EnforcementPlan, Protocol};
use crate::lab::probe::{ProbeOutcome, probe};
use crate::lab::render::render_ruleset;
use crate::lab::state::LabState;
use crate::manifest;
use crate::output::{OutputFormat, TABLE_JSON_YAML, TABLE_OR_JSON, print_styled, styled_table};

/// Arguments of `lab`.
#[derive(Debug, ClapArgs)]
#[command(after_help = "Example:\n  sudo netpol-trace lab demo --scenario cross-namespace\n  \
    sudo netpol-trace lab up -f ./manifests --name shop\n  \
    sudo netpol-trace lab probe shop --from app/web-1 --to db/mysql-0 --port 3306\n  \
    sudo netpol-trace lab apply shop -f ./fixed-policy.yaml\n  \
    sudo netpol-trace lab exec shop app/web-1 -- mariadb -h 10.244.2.7 -u lab -pnetpol-trace-lab -e 'SELECT 1'\n  \
    sudo netpol-trace lab down shop\n\n\
    Labs live in /run/netpol-trace/labs/<name>/ (override with NETPOL_TRACE_LAB_DIR).")]
pub struct Args {
    /// The lab subcommand.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// `lab` subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a lab from manifests: a node namespace, one namespace per Pod, the manifests'
    /// NetworkPolicies enforced by nftables, listeners, MariaDB.
    #[command(after_help = "Example:\n  sudo netpol-trace lab up -f ./manifests --name shop\n  \
        NAMESPACE  POD      IP          INTERFACE        WORKLOAD  PORTS\n  \
        app        web-1    10.244.1.5  cali3f6c0b1e2d4  listener  8080/TCP\n  \
        db         mysql-0  10.244.2.7  cali9a0d77c1b3e  mariadb   3306/TCP\n  \
        lab shop: 1 NetworkPolicy enforced, 1 pod(s) isolated\n  \
        lab shop: node namespace npt_shop_node, nft table inet npt_shop, run directory /run/netpol-trace/labs/shop")]
    Up(UpArgs),
    /// Remove a lab: its processes, network namespaces, veths, nft table and run directory.
    #[command(after_help = "Example:\n  sudo netpol-trace lab down shop")]
    Down(DownArgs),
    /// List labs.
    #[command(after_help = "Example:\n  sudo netpol-trace lab ls")]
    Ls(LsArgs),
    /// Run a command inside a pod's network namespace; its exit code is passed through.
    #[command(after_help = "Example:\n  sudo netpol-trace lab exec shop app/web-1 -- \\\n    \
        mariadb -h 10.244.2.7 -u lab -pnetpol-trace-lab --connect-timeout=2 -e 'SELECT 1'")]
    Exec(ExecArgs),
    /// Connect from one pod to another for real; exit 0 allowed, 1 denied or refused.
    #[command(
        after_help = "Example:\n  sudo netpol-trace lab probe shop --from app/web-1 --to db/mysql-0 --port 3306\n  \
        denied: app/web-1 -> db/mysql-0 10.244.2.7:3306/TCP (no answer within 1s)"
    )]
    Probe(ProbeArgs),
    /// Explain a flow against the policies the lab enforces (like `netpol-trace explain`);
    /// exit 0 allowed, 1 denied.
    #[command(
        after_help = "Example:\n  sudo netpol-trace lab explain shop --from app/web-1 --to db/mysql-0 --port 3306\n  \
        DENY  app/web-1 (10.244.1.5) -> db/mysql-0 (10.244.2.7)  TCP/3306\n  \
        egress   allowed: no policy isolates web-1\n  \
        ingress  DENIED: mysql-0 isolated by 1 policy\n    \
        ✗ db/mysql-ingress\n        \
        ✗ rule 0: ports[0].port: want 3307, got 3306"
    )]
    Explain(ExplainArgs),
    /// Replace the lab's NetworkPolicies with those of the given manifests and swap the
    /// nftables ruleset atomically (pods stay as built).
    #[command(
        after_help = "Example:\n  sudo netpol-trace lab apply shop -f ./fixed-policy.yaml\n  \
        lab shop: 1 NetworkPolicy enforced, ruleset replaced (1 pod(s) isolated)\n  \
        sudo netpol-trace lab apply shop -f ./policies/ --dry-run   # print the ruleset only"
    )]
    Apply(ApplyArgs),
    /// The whole recovery on a built-in scenario: drop caught in the kernel, policy and rule
    /// named, minimal patch applied, handshake and `SELECT 1` back; a timeline with times.
    Demo(demo::DemoArgs),
    /// Listen on ports inside a pod (started by `lab up`).
    #[command(hide = true)]
    Serve(ServeArgs),
}

/// Arguments of `lab up`.
#[derive(Debug, ClapArgs)]
pub struct UpArgs {
    /// Manifest file or directory (recursive; repeatable; `-` for stdin): Namespaces, Pods,
    /// NetworkPolicies (enforced from the start); other kinds are ignored.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<PathBuf>,
    /// Lab name: 1-24 of a-z, 0-9 and '-', starting with a letter.
    #[arg(long)]
    pub name: String,
    /// Output format.
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,
}

/// Arguments of `lab down`.
#[derive(Debug, ClapArgs)]
pub struct DownArgs {
    /// The lab to remove (nothing to do is not an error).
    pub name: String,
}

/// Arguments of `lab ls`.
#[derive(Debug, ClapArgs)]
pub struct LsArgs {
    /// Output format.
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,
}

/// Arguments of `lab exec`.
#[derive(Debug, ClapArgs)]
pub struct ExecArgs {
    /// The lab.
    pub name: String,
    /// The pod: NAMESPACE/NAME, or NAME when unique.
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Arguments of `lab probe`.
#[derive(Debug, ClapArgs)]
pub struct ProbeArgs {
    /// The lab.
    pub name: String,
    /// Source pod: NAMESPACE/NAME, or NAME when unique.
    #[arg(long)]
    pub from: String,
    /// Destination pod: NAMESPACE/NAME, NAME when unique, or its IP address.
    #[arg(long)]
    pub to: String,
    /// Destination port: a number, or the name of one of the destination pod's ports.
    #[arg(long)]
    pub port: String,
    /// Protocol: TCP or UDP (default TCP, or the named port's protocol).
    #[arg(long)]
    pub protocol: Option<Protocol>,
    /// How long to wait for an answer: 500ms, 1s, 2.5s.
    #[arg(long, default_value = "1s", value_parser = crate::args::parse_duration)]
    pub timeout: Duration,
    /// Output format.
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,
}

/// Arguments of `lab explain`.
#[derive(Debug, ClapArgs)]
pub struct ExplainArgs {
    /// The lab.
    pub name: String,
    /// Source: NAMESPACE/POD, POD (with -n) or an IP address.
    #[arg(long, value_name = "ENDPOINT")]
    pub from: EndpointArg,
    /// Destination: NAMESPACE/POD, POD (with -n) or an IP address.
    #[arg(long, value_name = "ENDPOINT")]
    pub to: EndpointArg,
    /// Destination port: a number or a container port name of the destination.
    #[arg(long, value_name = "PORT")]
    pub port: PortRef,
    /// Protocol: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_name = "PROTOCOL")]
    pub protocol: crate::policy::Protocol,
    /// Namespace of endpoints given as a bare POD name.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(TABLE_JSON_YAML), default_value = "table")]
    pub output: OutputFormat,
}

/// Arguments of `lab apply`.
#[derive(Debug, ClapArgs)]
pub struct ApplyArgs {
    /// The lab.
    pub name: String,
    /// Manifest file or directory (recursive; repeatable; `-` for stdin): its policies
    /// (NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy,
    /// Calico NetworkPolicy, GlobalNetworkPolicy, Tier) replace all of the lab's policies.
    #[arg(short = 'f', long = "filename", required_unless_present = "plan")]
    pub filename: Vec<PathBuf>,
    /// An enforcement plan (JSON) to render instead of policies.
    #[arg(long, hide = true, conflicts_with = "filename")]
    pub plan: Option<PathBuf>,
    /// Print the ruleset instead of loading it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `lab serve`.
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {
    /// PORT/PROTOCOL to listen on (repeatable): 80/TCP, 53/UDP.
    #[arg(long = "port", required = true, value_parser = parse_port_protocol)]
    pub ports: Vec<(u16, Protocol)>,
    /// File written once every port is bound.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// Runs a `lab` subcommand.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let needs_root = !matches!(
        args.command,
        LabCommand::Ls(_) | LabCommand::Serve(_) | LabCommand::Explain(_) | LabCommand::Demo(_)
    );
    if needs_root {
        crate::lab::system::ensure_root()?;
    }
    match args.command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
        LabCommand::Ls(args) => ls(args),
        LabCommand::Exec(args) => exec(args),
        LabCommand::Probe(args) => run_probe(args),
        LabCommand::Explain(args) => explain(args),
        LabCommand::Apply(args) => apply(args),
        LabCommand::Demo(args) => demo::run(args),
        LabCommand::Serve(args) => {
            listener::serve(&args.ports, args.ready_file.as_deref())?;
            Ok(exit::OK)
        }
    }
}

fn up(args: UpArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let objects = manifest::load_paths(&args.filename).map_err(exit::ExitError::from)?;
    if objects.pods.is_empty() {
        return Err(exit::ExitError::bad_input(format!(
            "no Pod in {}: a lab needs at least one",
            args.filename.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let state =
        lifecycle::up(&ctx, &args.name, &objects, args.filename.first().map(PathBuf::as_path))?;
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Kubectl => {
            println!("{}", serde_json::to_string_pretty(&state)?)
        }
        OutputFormat::Table => print_pods(&state)?,
    }
    Ok(exit::OK)
}

fn print_pods(state: &LabState) -> std::io::Result<()> {
    let mut rows = Vec::new();
    for pod in &state.topology.pods {
        let ports: Vec<String> =
            pod.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect();
        let workload =
            serde_json::to_value(pod.workload).ok().and_then(|v| v.as_str().map(String::from));
        rows.push(vec![
            pod.namespace.clone(),
            pod.name.clone(),
            pod.ip.to_string(),
            pod.host_iface.clone(),
            workload.unwrap_or_default(),
            if ports.is_empty() { "-".into() } else { ports.join(",") },
        ]);
    }
    print_styled(&styled_table(
        &["NAMESPACE", "NAME", "IP", "INTERFACE", "WORKLOAD", "PORTS"],
        &rows,
    ))?;
    let isolated =
        state.plan.as_ref().map_or(0, |plan| plan.pods.iter().filter(|p| p.is_isolated()).count());
    println!(
        "lab {}: {} enforced, {isolated} pod(s) isolated",
        state.name,
        policy_count(state.policies.len(), state.tiered.len())
    );
    println!(
        "lab {}: node namespace {}, nft table inet {}, run directory {}",
        state.name,
        state.topology.node_netns,
        state.topology.nft_table,
        state.run_dir.display()
    );
    Ok(())
}

fn down(args: DownArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let report = lifecycle::down(&ctx, &args.name)?;
    if !report.removed_anything() {
        println!("lab {}: nothing to remove", args.name);
        return Ok(exit::OK);
    }
    for process in &report.processes {
        println!("stopped process {process}");
    }
    for netns in &report.netns {
        println!("deleted network namespace {netns}");
    }
    if let Some(dir) = &report.run_dir {
        println!("removed run directory {}", dir.display());
    }
    println!("lab {} removed", args.name);
    Ok(exit::OK)
}

fn ls(args: LsArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let labs = lifecycle::list(&ctx)?;
    if args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&labs)?);
        return Ok(exit::OK);
    }
    let mut rows = Vec::new();
    for lab in &labs {
        rows.push(vec![
            lab.name.clone(),
            lab.pods.to_string(),
            if lab.running { "running" } else { "stale (run `lab down`)" }.to_owned(),
            lab.created_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print_styled(&styled_table(&["NAME", "PODS", "STATUS", "CREATED"], &rows))?;
    Ok(exit::OK)
}

fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let state = lifecycle::load(&ctx, &args.name)?;
    let pod = find_pod(&state, &args.pod)?;
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    Ok(lifecycle::exec_in_pod(pod, program, rest)?)
}

fn run_probe(args: ProbeArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let state = lifecycle::load(&ctx, &args.name)?;
    let from = find_pod(&state, &args.from)?;
    let (to_label, dst_ip, dst_pod) = match args.to.parse::<IpAddr>() {
        Ok(ip) => {
            // Probes stay inside the lab: only its own pods are destinations.
            let pod = state.topology.pods.iter().find(|p| p.ip == ip).ok_or_else(|| {
                exit::ExitError::bad_input(format!(
                    "--to {ip}: not the IP of a pod of lab {}",
                    state.name
                ))
            })?;
            (pod.key(), ip, pod)
        }
        Err(_) => {
            let pod = find_pod(&state, &args.to)?;
            (pod.key(), pod.ip, pod)
        }
    };
    let resolved = dst_pod.resolve_port(&args.port);
    let (port, named_protocol) = resolved.ok_or_else(|| {
        exit::ExitError::bad_input(format!(
            "--port {:?}: not a number nor a port name of {to_label}",
            args.port
        ))
    })?;
    let protocol = args.protocol.or(named_protocol).unwrap_or(Protocol::Tcp);
    let result = probe(&from.netns, dst_ip, port, protocol, args.timeout)?;
    let flow = format!("{} -> {to_label} {dst_ip}:{port}/{protocol}", from.key());
    if args.output == OutputFormat::Json {
        let value = serde_json::json!({
            "from": from.key(), "to": to_label, "ip": dst_ip, "port": port, "protocol": protocol,
            "outcome": result.outcome, "elapsed_ms": result.elapsed.as_millis() as u64,
        });
        println!("{value}");
    } else {
        match result.outcome {
            ProbeOutcome::Allowed => {
                println!("allowed: {flow} ({} ms)", result.elapsed.as_millis())
            }
            ProbeOutcome::Denied => {
                println!("denied: {flow} (no answer within {})", format_duration(args.timeout))
            }
            ProbeOutcome::Refused => {
                println!("refused: {flow} (reachable, nothing listens on that port)")
            }
        }
    }
    Ok(if result.outcome == ProbeOutcome::Allowed { exit::OK } else { exit::NO })
}

fn explain(args: ExplainArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    let inventory = lifecycle::inventory(&ctx, &args.name)?;
    let request = FlowRequest {
        from: args.from,
        to: args.to,
        port: Some(args.port),
        protocol: args.protocol,
        namespace: args.namespace,
    };
    let flows = resolve_flows(&inventory, &request).map_err(exit::ExitError::from)?;
    crate::output::print_explanations(&inventory, &flows, &ExplainOptions::default(), args.output)
}

fn apply(args: ApplyArgs) -> anyhow::Result<i32> {
    let ctx = LabContext::from_env()?;
    if let Some(path) = &args.plan {
        return apply_plan_file(&ctx, &args.name, path, args.dry_run);
    }
    let objects = manifest::load_paths(&args.filename).map_err(exit::ExitError::from)?;
    if !objects.pods.is_empty() || !objects.namespaces.is_empty() {
        tracing::info!("lab apply takes only the policies: pods and namespaces stay as built");
    }
    let change: PolicyChange = if args.dry_run {
        let state = lifecycle::load(&ctx, &args.name)?;
        let change = lifecycle::plan_policies(&state, LabPolicies::from_objects(&objects))?;
        print!("{}", change.ruleset);
        return Ok(exit::OK);
    } else {
        lifecycle::apply_policies(&ctx, &args.name, LabPolicies::from_objects(&objects))?
    };
    println!(
        "lab {}: {} enforced, ruleset replaced ({} pod(s) isolated)",
        args.name,
        policy_count(change.policies, change.other_policies),
        change.isolated_pods()
    );
    Ok(exit::OK)
}

fn apply_plan_file(
    ctx: &LabContext,
    name: &str,
    path: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let plan: EnforcementPlan = serde_json::from_str(&text).map_err(|e| {
        exit::ExitError::bad_input(format!("{}: not an EnforcementPlan: {e}", path.display()))
    })?;
    if dry_run {
        let state = lifecycle::load(ctx, name)?;
        crate::lab::enforce::check_plan_against(&plan, &state.topology)?;
        print!("{}", render_ruleset(&state.topology.nft_table, &plan));
        return Ok(exit::OK);
    }
    lifecycle::apply(ctx, name, &plan)?;
    let isolated = plan.pods.iter().filter(|p| p.is_isolated()).count();
    println!("lab {name}: ruleset replaced from a plan ({isolated} pod(s) isolated)");
    Ok(exit::OK)
}

/// `1 NetworkPolicy`, `3 NetworkPolicies`.
/// `1 NetworkPolicy`, `3 NetworkPolicies`, `2 policy objects` (ClusterNetworkPolicies, Calico
/// policies, Tiers...), `3 NetworkPolicies and 2 policy objects of other kinds`.
fn policy_count(count: usize, others: usize) -> String {
    let policies =
        if count == 1 { "1 NetworkPolicy".to_owned() } else { format!("{count} NetworkPolicies") };
    let objects =
        if others == 1 { "1 policy object".to_owned() } else { format!("{others} policy objects") };
    match (count, others) {
        (_, 0) => policies,
        (0, _) => objects,
        _ => format!("{policies} and {objects} of other kinds"),
    }
}

fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Parses `PORT/PROTOCOL` (`80/TCP`); the protocol defaults to TCP.
fn parse_port_protocol(text: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let port: u16 =
        port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("{text:?}: bad port"))?;
    Ok((port, protocol.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_name_network_policies_and_other_kinds() {
        assert_eq!(policy_count(1, 0), "1 NetworkPolicy");
        assert_eq!(policy_count(0, 0), "0 NetworkPolicies");
        assert_eq!(policy_count(0, 1), "1 policy object");
        assert_eq!(policy_count(2, 3), "2 NetworkPolicies and 3 policy objects of other kinds");
    }

    #[test]
    fn durations_and_ports_parse() {
        assert_eq!(parse_port_protocol("53/UDP").unwrap(), (53, Protocol::Udp));
        assert_eq!(parse_port_protocol("80").unwrap(), (80, Protocol::Tcp));
        assert!(parse_port_protocol("0/TCP").is_err());
        assert!(parse_port_protocol("80/ICMP").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
