//! `netpol-trace approve NAME -n NS`: approve a DropReport's fix (the controller applies it).

use anyhow::Context;

use crate::exit::{self, ExitError};
use crate::k8s::client::{ClusterArgs, load_config};
use crate::operator::Error;
use crate::operator::decide::{get_report, set_decision};
use crate::operator::report::Decision;

/// Arguments of `approve` and `reject`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # See what is pending, then approve one fix; the controller applies it with a backup
  $ netpol-trace drops -A
  $ netpol-trace approve app-web-to-mysql-3306-tcp-3f2a9c01d4 -n db
  approved dropreport db/app-web-to-mysql-3306-tcp-3f2a9c01d4; the controller will apply:
  kubectl patch networkpolicy -n db mysql-ingress --type=json -p '[...]'

Exit status: 0 done, 2 the report does not exist (or no cluster).")]
pub struct Args {
    /// The DropReport's name (`dropreport/NAME` is accepted too).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its namespace (the destination's); default: the kubeconfig context's namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Strips an optional `dropreport/` (or `dr/`, `dropreports/`) prefix.
pub fn report_name(arg: &str) -> &str {
    for prefix in ["dropreports/", "dropreport/", "dr/", "dropreports.netpol-trace.io/"] {
        if let Some(rest) = arg.strip_prefix(prefix) {
            return rest;
        }
    }
    arg
}

/// Connects and resolves the namespace (`-n`, else the context's).
pub async fn client_and_namespace(
    cluster: &ClusterArgs,
    namespace: Option<&str>,
) -> anyhow::Result<(kube::Client, String)> {
    let config = load_config(cluster).await.map_err(|e| ExitError::bad_input(e.to_string()))?;
    let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    Ok((client, namespace))
}

/// Maps "not found" to exit 2 with the report named.
pub fn not_found_is_bad_input(e: Error) -> anyhow::Error {
    match e {
        e @ Error::NotFound { .. } => ExitError::bad_input(e.to_string()).into(),
        e => anyhow::Error::from(e),
    }
}

/// Sets the decision and prints what follows from it.
pub fn decide(args: Args, decision: Decision) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) =
            client_and_namespace(&args.cluster, args.namespace.as_deref()).await?;
        let name = report_name(&args.name);
        // Read first: a missing report is exit 2, and the patch shown is the proposed one.
        let report = get_report(&client, &namespace, name).await.map_err(not_found_is_bad_input)?;
        set_decision(&client, &namespace, name, Some(decision))
            .await
            .map_err(not_found_is_bad_input)?;
        let verb = match decision {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        };
        println!("{verb} dropreport {namespace}/{name}");
        if decision == Decision::Approved {
            let fix = report.status.as_ref().and_then(|s| s.fix.as_ref());
            let patches = fix.map(|f| f.patches.as_slice()).unwrap_or_default();
            if patches.is_empty() {
                println!("no fix proposed yet: the controller plans one from the live cluster");
            } else {
                println!("the controller will re-check against the live cluster and apply:");
            }
            for p in patches {
                match p.get("kubectl").and_then(serde_json::Value::as_str) {
                    Some(k) => println!("{k}"),
                    None => println!("{}", serde_json::to_string(p)?),
                }
            }
        }
        Ok(exit::OK)
    })
}

/// Runs `approve`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    decide(args, Decision::Approved)
}
