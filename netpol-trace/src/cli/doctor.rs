//! `netpol-trace doctor`: can this node run the agent, and if not, exactly why.

use std::path::PathBuf;

use anyhow::Context;

use crate::datapath::{links, object};
use crate::doctor::{Report, cluster, node};
use crate::exit::ExitError;
use crate::k8s::client::ClusterArgs;
use crate::output::{OutputFormat, TABLE_OR_JSON, write_json};

const EXAMPLE: &str = "\
Examples:
  $ sudo netpol-trace doctor
  STATUS    CHECK            FOUND
  ok        kernel_programs  embedded in this binary
  ok        kernel           6.8
  ok        btf              /sys/kernel/btf/vmlinux: sk_buff and net_device offsets found
  ok        drop_reasons     enum skb_drop_reason (NETFILTER_DROP, TC_INGRESS, ...)
  ok        tc               tcx links (ours run first and pass every packet on)
  ok        capabilities     held: NET_ADMIN, SYS_ADMIN, PERFMON, BPF; needed: ...
  ok        bpffs            mounted
  ok        netfilter        nft and iptables found
  ok        cni              Calico (12 interface(s)): pod veths cali*; policy in netfilter ...
  ok        api              reachable, Kubernetes v1.33.1
  degraded  rbac             denied: create events.events.k8s.io
  degraded rbac: no Events on the destination pods
  the agent can run on this node, degraded (see what is lost above)

  # As the agent's DaemonSet sees it, with its ServiceAccount's kubeconfig
  $ netpol-trace doctor --kubeconfig sa.kubeconfig --context prod -o json

Exit status: 0 the agent can run, 1 it can run degraded (each degraded check says what is
lost), 2 it cannot run (a FAIL check says why).";

/// `doctor` flags.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// Output format: `table` or `json` (one object: verdict, version,
    /// kernel_programs_embedded, checks[{name, status, detail, lost}]).
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,

    /// Network namespace whose interfaces reveal the CNI (an `ip netns` name or a path;
    /// default: the current one).
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,

    /// Read /proc, /sys and the tools under this directory instead of `/` (a node's files
    /// copied for diagnosis); interfaces then come from its sys/class/net.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Check only the node, not the API server and RBAC.
    #[arg(long)]
    pub node_only: bool,

    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `doctor` and returns 0, 1 or 2.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let interfaces = interfaces(&args)?;
    let mut checks = node::NodeRoot::new(&args.root).checks(&interfaces);
    if !args.node_only {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        checks.extend(runtime.block_on(cluster::checks(&args.cluster)));
    }
    let report = Report::new(checks, object::is_embedded());
    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => write_json(&mut stdout, &report)?,
        _ => crate::output::print_styled(&report.styled_table())?,
    }
    Ok(report.verdict.exit_code())
}

fn interfaces(args: &Args) -> anyhow::Result<Vec<String>> {
    if args.root != std::path::Path::new("/") {
        return Ok(node::interfaces_under(&args.root));
    }
    let list = || links::list().map(|l| l.into_iter().map(|l| l.name).collect::<Vec<_>>());
    let names = match &args.netns {
        Some(netns) => crate::netns::in_netns(netns, list).map_err(ExitError::from)?,
        None => list(),
    };
    names.context("listing the network interfaces (netlink)")
}
