//! `netpol-trace agent`: the DaemonSet entry point.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Why `--enable-fix` is refused.
pub const ENABLE_FIX_REMOVED: &str = "--enable-fix was removed: agents never write NetworkPolicies. They publish DropReports (kubectl get dr -A); a person approves one with `netpol-trace approve NAME -n NS` and the `netpol-trace controller` Deployment applies it, with the backup kept in the report";

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    agent::{Agent, AgentOptions, lifecycle::Output, store::DEFAULT_CAPACITY},
    args::TracerArgs,
    exit,
    k8s::{client::ClusterArgs, events::DEFAULT_MIN_INTERVAL},
    output::OutputFormat,
    trace::TracerOptions,
};

/// How long the agent waits for programs and caches before it keeps waiting silently.
const READY_WARNING: Duration = Duration::from_secs(60);

/// Arguments of `agent`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # As the DaemonSet runs it (hostNetwork, NODE_NAME from the downward API, ports from
  # NETPOL_TRACE_PORTS=3306,5432)
  netpol-trace agent --listen 0.0.0.0:9090 -o json

  # Locally against a lab node namespace and the current kubeconfig
  sudo netpol-trace agent --netns lab-node --listen 127.0.0.1:9090 --node-name lab

  curl -s localhost:9090/drops?namespace=db
  [{\"state\":\"dropping\",\"first_seen\":\"2026-11-26T07:31:02.114Z\",\"count\":12,
    \"src\":{\"ip\":\"10.244.1.5\",\"port\":51514,\"namespace\":\"app\",\"pod\":\"web-1\"},
    \"dst\":{\"ip\":\"10.244.2.7\",\"port\":3306,\"namespace\":\"db\",\"pod\":\"mysql-0\"},
    \"policies\":[{\"namespace\":\"db\",\"name\":\"mysql-ingress\",\"direction\":\"ingress\"}],
    \"hint\":\"db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306\",
    \"fix\":{\"kubectl\":[\"kubectl patch networkpolicy -n db mysql-ingress --type=json -p ...\"],...},...}]

Endpoints: /healthz (200 while running), /readyz (200 once the programs are attached and the
cluster caches synced, 503 before), /metrics (Prometheus), /drops (JSON; ?namespace=&pod=).

Every veth of the node's network namespace is watched (cali*, lxc*, veth*, eni*, gke*... or
--iface), including interfaces that appear later; drops are attributed with the objects of the
whole cluster, since clients and policies live everywhere. Kubernetes Events (reason
NetworkPolicyDrop) go to the destination pod, aggregated per pod and written at most once per
--event-interval. Programs are observe-only and detached on SIGTERM or Ctrl-C (exit 0).")]
pub struct Args {
    /// HTTP address of /healthz, /readyz, /metrics and /drops.
    #[arg(long, default_value = "0.0.0.0:9090", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The node's namespace, interfaces and ports.
    #[command(flatten)]
    pub tracer: TracerArgs,
    /// The node this agent runs on (recorded in every flow and Event).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Minimum time between two writes of the Event about one pod (occurrences in between
    /// are counted and carried by the next write).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub event_interval: Duration,
    /// Most flows kept in the drop store (least recently updated forgotten first).
    #[arg(long, default_value_t = DEFAULT_CAPACITY, value_name = "N")]
    pub max_flows: usize,
    /// Removed: agents never write NetworkPolicies. Given, the agent exits 2 and names what
    /// replaced it (`netpol-trace controller`, approval with `netpol-trace approve`).
    #[arg(long, hide = true)]
    pub enable_fix: bool,
    /// `json`: NDJSON on stdout (the `trace -o json` lines: `drop`, `restored`, a final
    /// `summary`), attributed.
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(&[OutputFormat::Json]))]
    pub output: Option<OutputFormat>,
    /// Write this file once ready (programs attached, caches synced); it holds the HTTP
    /// address, e.g. `127.0.0.1:9090`.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Cluster selection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `agent` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.enable_fix {
        return Err(exit::ExitError::bad_input(ENABLE_FIX_REMOVED).into());
    }
    let netns = args.tracer.netns_path()?;
    let opts = AgentOptions {
        tracer: TracerOptions {
            netns,
            iface_glob: args.tracer.iface.clone(),
            ports: args.tracer.ports.clone(),
            all_ports: args.tracer.all_ports,
            capture_packets: false,
            ..TracerOptions::default()
        },
        listen: args.listen,
        node_name: args.node_name.clone(),
        event_interval: if args.event_interval.is_zero() {
            DEFAULT_MIN_INTERVAL
        } else {
            args.event_interval
        },
        capacity: args.max_flows,
        feed: Some(crate::agent::feed::FeedOptions::new(
            args.node_name.as_deref().unwrap_or("netpol-trace"),
        )),
        access: crate::agent::access::Access::api_server(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let config = crate::k8s::client::load_config(&args.cluster).await?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let output: Option<Output> = args.output.map(|_| Box::new(std::io::stdout()) as Output);
        let mut agent = Agent::start(opts, client, output).await.map_err(exit::ExitError::from)?;
        let mut term = signal(SignalKind::terminate())?;
        let ready = async {
            loop {
                match agent.wait_ready(READY_WARNING).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => tracing::warn!(
                        waiting = ?agent.state().not_ready(),
                        "not ready yet"
                    ),
                    Err(e) => return Err(e),
                }
            }
        };
        let stopped_early = tokio::select! {
            _ = tokio::signal::ctrl_c() => true,
            _ = term.recv() => true,
            ready = ready => {
                ready.map_err(exit::ExitError::from)?;
                false
            }
        };
        if !stopped_early {
            tracing::info!(addr = %agent.local_addr(), "ready");
            if let Some(path) = &args.ready_file {
                std::fs::write(path, format!("{}\n", agent.local_addr()))
                    .with_context(|| format!("writing --ready-file {}", path.display()))?;
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                result = agent.finished() => {
                    result?;
                    anyhow::bail!("the agent loop ended");
                }
            }
        }
        tracing::info!("stopping");
        agent.stop().await?;
        anyhow::Ok(exit::OK)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn defaults_match_the_daemonset() {
        let cli = Cli::try_parse_from(["netpol-trace", "agent"]).unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        assert_eq!(args.listen.to_string(), "0.0.0.0:9090");
        assert_eq!(args.tracer.ports, [3306]);
        assert!(!args.enable_fix && args.output.is_none());
        let cli = Cli::try_parse_from(["netpol-trace", "agent", "-p", "3306", "-p", "5432,6379"])
            .unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        assert_eq!(args.tracer.ports, [3306, 5432, 6379]);
        assert!(Cli::try_parse_from(["netpol-trace", "agent", "--backup-dir", "/x"]).is_err());
    }

    #[test]
    fn enable_fix_is_refused_with_exit_2_and_names_its_replacement() {
        let cli = Cli::try_parse_from(["netpol-trace", "agent", "--enable-fix"]).unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        let err = super::run(args).unwrap_err();
        let exit = err.downcast_ref::<crate::exit::ExitError>().expect("an exit error");
        assert_eq!(exit.code, crate::exit::BAD_INPUT);
        assert!(exit.message.contains("netpol-trace controller"), "{}", exit.message);
        assert!(exit.message.contains("netpol-trace approve"), "{}", exit.message);
    }
}
