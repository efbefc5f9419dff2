//! Flag groups shared by the commands, in one place: where objects come from and which flow
//! is meant ([`FlowArgs`]), which cluster ([`ClusterArgs`]: kubectl's `--kubeconfig`,
//! `--context`), `--dry-run` ([`DryRunArgs`]), which node interfaces and ports to trace
//! ([`TracerArgs`]), which DropReport a decision is about ([`ReportArgs`]), and the duration
//! syntax. The commands (`cli`) flatten these into their own arguments.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::exit::ExitError;
use crate::explain::ExplainOptions;
use crate::flow::{EndpointArg, FlowRequest, ResolvedFlow, resolve_flows};
use crate::inventory::{ClusterObjects, Inventory, InventoryOptions, PortRef};
pub use crate::k8s::client::{ClusterArgs, DryRun, DryRunArgs};
use crate::manifest;
use crate::netns;
use crate::policy::{IpBlockPodMode, Protocol};
use crate::trace::tracer::DEFAULT_PORT;

/// Where objects come from and which flow is meant; shared by the commands that take a flow.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowArgs {
    /// Manifest file or directory (YAML/JSON, multi-document, kind: List; `-` for stdin).
    /// Repeatable. Without it, the live cluster (kubeconfig or in-cluster) is read.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,

    /// Namespace of endpoints given as a bare POD name (default: the kubeconfig context's
    /// namespace, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Source: NAMESPACE/POD, POD (with -n) or an IP address.
    #[arg(long, value_name = "ENDPOINT")]
    pub from: EndpointArg,

    /// Destination: NAMESPACE/POD, POD (with -n), an IP address, or svc/NAMESPACE/NAME (a
    /// Service, also reached by its ClusterIP: one flow per backing pod on its target port).
    #[arg(long, value_name = "ENDPOINT")]
    pub to: EndpointArg,

    /// Destination port, a number or a container port name (for svc/..., the Service port).
    #[arg(long, value_name = "PORT")]
    pub port: Option<PortRef>,

    /// Protocol: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_name = "PROTOCOL")]
    pub protocol: Protocol,

    /// Whether ipBlock peers match pod IPs (true: as the Kubernetes e2e suite expects; false:
    /// ipBlock only matches addresses outside the cluster's pods).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub ipblock_matches_pods: bool,

    /// Which cluster (without -f; with -f, only the default namespace comes from it).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl FlowArgs {
    /// The namespace of bare POD names: `-n`, else the kubeconfig context's, else `default`.
    pub fn namespace(&self) -> String {
        match &self.namespace {
            Some(namespace) => namespace.clone(),
            None => self.cluster.default_namespace_blocking(),
        }
    }

    /// The flow request these flags describe.
    pub fn request(&self) -> FlowRequest {
        FlowRequest {
            from: self.from.clone(),
            to: self.to.clone(),
            port: self.port.clone(),
            protocol: self.protocol,
            namespace: self.namespace(),
        }
    }

    /// Evaluation options from the flags.
    pub fn explain_options(&self) -> ExplainOptions {
        let ip_block_pod_mode = if self.ipblock_matches_pods {
            IpBlockPodMode::MatchesPods
        } else {
            IpBlockPodMode::NeverMatchesPods
        };
        ExplainOptions { ip_block_pod_mode }
    }

    /// Loads the inventory from `-f` paths or the live cluster, and resolves the flow(s); a
    /// cluster that cannot be reached exits 3, every other failure is bad input (exit 2).
    pub fn load(&self) -> anyhow::Result<(Inventory, Vec<ResolvedFlow>)> {
        let inventory = load_inventory(&self.filenames, &self.cluster)?;
        let flows = resolve_flows(&inventory, &self.request()).map_err(ExitError::from)?;
        Ok((inventory, flows))
    }
}

/// Which namespaces a listing command covers, as kubectl's `-n` and `-A`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListScopeArgs {
    /// Only this namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

impl ListScopeArgs {
    /// The namespace to list, `None` for all: `-A`, else `-n`, else the context's namespace.
    pub fn namespace(&self, cluster: &ClusterArgs) -> Option<String> {
        if self.all_namespaces {
            return None;
        }
        Some(match &self.namespace {
            Some(namespace) => namespace.clone(),
            None => cluster.default_namespace_blocking(),
        })
    }
}

/// The node side of tracing, shared by `trace` and `agent`: the network namespace, the
/// interfaces and the watched ports.
#[derive(Debug, Clone, clap::Args)]
pub struct TracerArgs {
    /// Network namespace of the node: an `ip netns` name or a path (default: the current one;
    /// the node's with hostNetwork).
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,
    /// Only interfaces matching this glob (default: every veth), e.g. 'cali*'.
    #[arg(long, value_name = "GLOB")]
    pub iface: Option<String>,
    /// TCP server port to watch (repeatable, or comma-separated in NETPOL_TRACE_PORTS).
    #[arg(
        long = "port",
        short = 'p',
        value_name = "PORT",
        env = "NETPOL_TRACE_PORTS",
        value_delimiter = ',',
        default_values_t = [DEFAULT_PORT]
    )]
    pub ports: Vec<u16>,
    /// Watch every TCP port.
    #[arg(long, conflicts_with = "ports")]
    pub all_ports: bool,
}

impl TracerArgs {
    /// Checks `--port` (no 0) and resolves `--netns` (must exist); errors are bad input.
    pub fn netns_path(&self) -> Result<Option<PathBuf>, ExitError> {
        if self.ports.contains(&0) {
            return Err(ExitError::bad_input("--port: 0 is not a port"));
        }
        Ok(self.netns.as_deref().map(netns::resolve).transpose()?)
    }
}

/// Which DropReport `approve` and `reject` decide, and on which cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The DropReport's name (`dropreport/NAME` is accepted too).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its namespace (the destination's); default: the kubeconfig context's namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: crate::k8s::client::ClusterArgs,
}

/// Parses a duration the way every flag takes one: humantime's syntax (`500ms`, `1s`, `2m`,
/// `1h 30m`), or a number of seconds (`2`, `2.5`, also `2.5s`). Zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = match humantime::parse_duration(text) {
        Ok(duration) => duration,
        Err(error) => text
            .strip_suffix('s')
            .unwrap_or(text)
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{text:?} is not a duration (500ms, 1s, 2.5s, 2m): {error}"))?,
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: the duration must be positive"));
    }
    Ok(duration)
}

/// Loads objects from `paths` (or, when empty, the cluster `cluster` selects) and builds the
/// inventory. An unreachable cluster exits 3, other errors 2.
pub fn load_inventory(paths: &[PathBuf], cluster: &ClusterArgs) -> anyhow::Result<Inventory> {
    let objects = if paths.is_empty() {
        read_cluster(cluster)?
    } else {
        manifest::load_paths(paths).map_err(ExitError::from)?
    };
    Ok(Inventory::from_objects(objects, InventoryOptions::default()).map_err(ExitError::from)?)
}

fn read_cluster(cluster: &ClusterArgs) -> anyhow::Result<ClusterObjects> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = crate::k8s::client::connect(cluster)
            .await
            .map_err(|e| ExitError::from(e).context("no -f given"))?;
        manifest::load_cluster_with(client).await.map_err(|e| ExitError::from(e).into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct ExplainLike {
        #[command(flatten)]
        flow: FlowArgs,
    }

    #[derive(Debug, clap::Parser)]
    struct ListLike {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        scope: ListScopeArgs,
    }

    fn kubeconfig_with_namespace(dir: &std::path::Path, namespace: &str) -> PathBuf {
        let path = dir.join("config");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n\
             clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:1'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: ctx, context: {{cluster: c, user: u, namespace: {namespace}}}}}]\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn kubectl_flags_parse_and_the_namespace_defaults_to_the_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let config = kubeconfig_with_namespace(dir.path(), "shop");
        let config = config.to_str().unwrap();
        let base = ["x", "--from", "web-1", "--to", "db/mysql-0", "--kubeconfig", config];
        let cli = ExplainLike::try_parse_from(base.iter().chain(&["--context", "ctx"])).unwrap();
        assert_eq!(cli.flow.cluster.context.as_deref(), Some("ctx"));
        assert_eq!(cli.flow.cluster.kubeconfig.as_deref(), Some(std::path::Path::new(config)));
        assert_eq!(cli.flow.request().namespace, "shop");
        let cli = ExplainLike::try_parse_from(base.iter().chain(&["-n", "app"])).unwrap();
        assert_eq!(cli.flow.request().namespace, "app");

        let list = ["x", "--kubeconfig", config];
        let cli = ListLike::try_parse_from(list).unwrap();
        assert_eq!(cli.scope.namespace(&cli.cluster).as_deref(), Some("shop"));
        let cli = ListLike::try_parse_from(list.iter().chain(&["-A"])).unwrap();
        assert_eq!(cli.scope.namespace(&cli.cluster), None);
        let cli = ListLike::try_parse_from(list.iter().chain(&["--all-namespaces"])).unwrap();
        assert!(cli.scope.all_namespaces);
        assert!(ListLike::try_parse_from(list.iter().chain(&["-A", "-n", "db"])).is_err());
    }

    #[test]
    fn durations_take_humantime_and_plain_seconds() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
