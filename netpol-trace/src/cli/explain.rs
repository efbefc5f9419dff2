//! `netpol-trace explain`: which NetworkPolicy allows or denies a connection, rule by rule.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::exit::{self, ExitError};
use crate::explain::{ExplainOptions, Explanation, explain, table};
use crate::flow::{EndpointArg, FlowRequest, ResolvedFlow, resolve_flows};
use crate::inventory::{ClusterObjects, DEFAULT_NAMESPACE, Inventory, InventoryOptions, PortRef};
use crate::manifest;
use crate::output::{OutputFormat, write_json, write_yaml};
use crate::policy::{IpBlockPodMode, Protocol};

const EXAMPLE: &str = "\
Examples:
  # Why can't web-1 reach the database? (manifests from files; omit -f to read the cluster)
  $ netpol-trace explain -f manifests/ --from app/web-1 --to db/mysql-0 --port 3306
  DENY  app/web-1 (10.0.1.5) -> db/mysql-0 (10.0.2.7)  TCP/3306
  egress   allowed: no policy isolates web-1
  ingress  DENIED: mysql-0 isolated by 1 policy
    ✗ db/mysql-ingress
        ✗ rule 0: ports[0].port: want 3307, got 3306

  # Through a Service (port = the Service port), as JSON
  $ netpol-trace explain -f manifests/ --from app/web-1 --to svc/db/mysql --port mysql -o json

Exit status: 0 allowed, 1 denied, 2 bad input (unknown pod/service/port, invalid manifest).";

/// Where objects come from and which flow is meant; shared by the commands that take a flow.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowArgs {
    /// Manifest file or directory (YAML/JSON, multi-document, kind: List; `-` for stdin).
    /// Repeatable. Without it, the live cluster (kubeconfig or in-cluster) is read.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,

    /// Namespace of endpoints given as a bare POD name.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,

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
}

impl FlowArgs {
    /// The flow request these flags describe.
    pub fn request(&self) -> FlowRequest {
        FlowRequest {
            from: self.from.clone(),
            to: self.to.clone(),
            port: self.port.clone(),
            protocol: self.protocol,
            namespace: self.namespace.clone(),
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

    /// Loads the inventory from `-f` paths or the live cluster, and resolves the flow(s); every
    /// failure is bad input (exit 2).
    pub fn load(&self) -> anyhow::Result<(Inventory, Vec<ResolvedFlow>)> {
        let inventory = load_inventory(&self.filenames)?;
        let flows = resolve_flows(&inventory, &self.request())
            .map_err(|e| ExitError::bad_input(e.to_string()))?;
        Ok((inventory, flows))
    }
}

/// `explain` flags.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// Objects and flow.
    #[command(flatten)]
    pub flow: FlowArgs,

    /// Output format. json/yaml print one object; for a Service with several backing pods, a
    /// list with one object per pod.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Loads objects from `paths` (or the live cluster when empty) and builds the inventory.
/// Errors carry exit code 2.
pub fn load_inventory(paths: &[PathBuf]) -> anyhow::Result<Inventory> {
    let objects = if paths.is_empty() {
        read_cluster()?
    } else {
        manifest::load_paths(paths).map_err(|e| ExitError::bad_input(e.to_string()))?
    };
    Inventory::from_objects(objects, InventoryOptions::default())
        .map_err(|e| ExitError::bad_input(e.to_string()).into())
}

fn read_cluster() -> anyhow::Result<ClusterObjects> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(manifest::load_cluster()).map_err(|e| {
        ExitError::bad_input(format!("no -f given and no cluster reachable: {e}")).into()
    })
}

/// Runs `explain`: prints the explanation(s) and returns 0 when every flow is allowed, else 1.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let (inventory, flows) = args.flow.load()?;
    print_explanations(&inventory, &flows, &args.flow.explain_options(), args.output)
}

/// Explains `flows` against `inventory`, prints them in `output` format and returns the exit
/// code: 0 when every flow is allowed, else 1.
pub fn print_explanations(
    inventory: &Inventory,
    flows: &[ResolvedFlow],
    options: &ExplainOptions,
    output: OutputFormat,
) -> anyhow::Result<i32> {
    let explanations: Vec<Explanation> =
        flows.iter().map(|f| explain(inventory, &f.flow, options)).collect();
    let mut stdout = std::io::stdout().lock();
    match output {
        OutputFormat::Table => {
            for (index, (resolved, explanation)) in flows.iter().zip(&explanations).enumerate() {
                if let Some(service) = &resolved.service {
                    if index > 0 {
                        writeln!(stdout)?;
                    }
                    writeln!(stdout, "via svc/{}/{}:", service.namespace, service.name)?;
                }
                stdout.write_all(table::render(explanation).as_bytes())?;
            }
        }
        // One object for one flow (the contract); a Service with several backends gives a list.
        OutputFormat::Json if explanations.len() == 1 => write_json(&mut stdout, &explanations[0])?,
        OutputFormat::Json => write_json(&mut stdout, &explanations)?,
        OutputFormat::Yaml if explanations.len() == 1 => write_yaml(&mut stdout, &explanations[0])?,
        OutputFormat::Yaml => write_yaml(&mut stdout, &explanations)?,
    }
    Ok(if explanations.iter().all(Explanation::allowed) { exit::OK } else { exit::NO })
}
