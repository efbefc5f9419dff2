//! `netpol-trace controller`: the Deployment that applies approved DropReports, one leader at a
//! time (a `coordination.k8s.io/v1` Lease in its own namespace).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::exit::{self, ExitError};
use crate::k8s::client::{ClusterArgs, load_config};
use crate::operator::auto_approve::{AutoApprover, DEFAULT_PER_HOUR, PolicyHistory};
use crate::operator::controller::{LEASE_NAME, run_with as run_controller};
use crate::operator::fixer::Fixer;
use crate::operator::garbage::Garbage;
use crate::operator::lease::{Elector, LeaseTimings};

/// What may be approved without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AutoApprove {
    /// Flows the policies allowed before their latest change, in namespaces labelled
    /// `netpol-trace.io/auto-approve=regressions`.
    Regressions,
}

/// Arguments of `controller`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs in the cluster (deploy/), the only identity allowed to write NetworkPolicies. For each
DropReport with spec.decision Approved it re-plans from the live cluster, saves the objects it
will change into status.fix.applied.backup, dry-runs, writes each change guarded by the
resourceVersion it read, and records the result (Applied, NotNeeded, Unfixable, Failed).

The leader also deletes reports of flows restored longer ago than --gc-after (no decision, no
applied fix), looking every --gc-every: one cluster-wide list, not one per node.

The Lease lives in POD_NAMESPACE (else the kubeconfig context's namespace); the holder identity
is POD_NAME (else the host name).")]
pub struct Args {
    /// Approve narrow regressions without a person (off by default).
    #[arg(long, value_enum, value_name = "WHAT")]
    pub auto_approve: Option<AutoApprove>,
    /// Most auto-approvals per hour, cluster-wide.
    #[arg(long, default_value_t = DEFAULT_PER_HOUR, value_name = "N")]
    pub auto_approve_per_hour: usize,
    /// Name of the Lease.
    #[arg(long, default_value = LEASE_NAME, value_name = "NAME")]
    pub lease_name: String,
    /// How long the Lease stays valid without renewal.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// How long the leader keeps writing without a successful renewal.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew the Lease.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub retry_period: Duration,
    /// Delete DropReports of flows restored (and not seen) this long ago, unless a fix of
    /// theirs is applied or decided (the leader only, one cluster-wide list per period).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub gc_after: Duration,
    /// How often the leader looks for such reports.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub gc_every: Duration,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn identity() -> String {
    std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("netpol-trace-{}", std::process::id()))
    })
}

/// Runs `controller` until SIGTERM/Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.renew_deadline >= args.lease_duration {
        return Err(ExitError::bad_input(format!(
            "--renew-deadline ({:?}) must be shorter than --lease-duration ({:?})",
            args.renew_deadline, args.lease_duration
        ))
        .into());
    }
    if args.gc_every.is_zero() {
        return Err(ExitError::bad_input("--gc-every must be longer than 0s").into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let config =
            load_config(&args.cluster).await.map_err(|e| ExitError::bad_input(e.to_string()))?;
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let identity = identity();
        let timings = LeaseTimings {
            duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
        };
        let elector =
            Elector::new(client.clone(), &namespace, &args.lease_name, &identity, timings);
        let auto = args.auto_approve.map(|AutoApprove::Regressions| {
            let history = Arc::new(Mutex::new(PolicyHistory::default()));
            tokio::spawn(PolicyHistory::follow(history.clone(), client.clone()));
            AutoApprover::new(client.clone(), history, args.auto_approve_per_hour)
        });
        let fixer = Fixer { client, identity: identity.clone(), crash_at: None };
        eprintln!("netpol-trace controller {identity}: lease {namespace}/{}", args.lease_name);
        let garbage = Garbage { age: args.gc_after, every: args.gc_every };
        run_controller(fixer, elector, auto, garbage, shutdown()).await;
        anyhow::Ok(exit::OK)
    })
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
