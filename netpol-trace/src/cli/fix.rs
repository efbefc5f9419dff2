//! `netpol-trace fix`: the minimal NetworkPolicy change that allows a denied connection, proven
//! with the engine before it is shown, and optionally written to the manifest files or the
//! cluster.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

use crate::apply::cluster::{ClusterApply, apply_plan};
use crate::apply::plan_files::{PolicyWrite, write_plan};
use crate::args::{DryRun, DryRunArgs, FlowArgs, load_inventory};
use crate::exit::{self, ExitError};
use crate::fix::yaml::{clean_for_apply, to_yaml};
use crate::fix::{
    FixError, FixOptions, FixPlan, PatchAction, plan_delete_fallback, plan_fix_flows, table,
};
use crate::flow::{Flow, resolve_flows};
use crate::inventory::{Inventory, InventoryOptions};
use crate::k8s::backup::DEFAULT_BACKUP_ROOT;
use crate::k8s::client::{ClusterArgs, connect};
use crate::manifest::load_cluster_with;
use crate::output::{OutputFormat, write_json};

const EXAMPLE: &str = "\
Examples:
  # The database refuses the web pods: find the smallest safe change
  $ netpol-trace fix -f manifests/ --from app/web-7d9f8b6c5-x2k4q --to db/mysql-0 --port 3306
  DENY -> ALLOW  app/web-7d9f8b6c5-x2k4q (10.244.1.5) -> db/mysql-0 (10.244.2.7)  TCP/3306
  1 change allows the flow; 1 connection newly allowed

  patch db/mysql-ingress (ingress)  manifests/policy.yaml, document 1
    add TCP 3306 to ingress rule 0, whose peers are exactly pods app=web in app
      spec.ingress[0].ports:
    +   - protocol: TCP
    +     port: 3306
    newly allowed (1):
      app/web-7d9f8b6c5-x2k4q -> db/mysql-0 TCP/3306
    hint: rule 0 allows 3307; the destination declares 3306 (mysql) — a typo?

  # The same as kubectl commands (or -o yaml: the corrected policies for kubectl apply -f -)
  $ netpol-trace fix -f manifests/ --from app/web-7d9f8b6c5-x2k4q --to db/mysql-0 --port 3306 -o kubectl
  kubectl patch networkpolicy -n db mysql-ingress --type=json -p \
'[{\"op\":\"add\",\"path\":\"/spec/ingress/0/ports/-\",\"value\":{\"port\":3306,\"protocol\":\"TCP\"}}]'

  # Write it into the files, each backed up beside itself
  $ netpol-trace fix -f manifests/ --from app/web-7d9f8b6c5-x2k4q --to db/mysql-0 --port 3306 --apply
  patched networkpolicy db/mysql-ingress in manifests/policy.yaml (backup
  manifests/policy.yaml.netpol-trace-20260101T120000Z.bak; undo: netpol-trace restore ...)

  # Without -f: the cluster (server-side dry run, backup folder, resourceVersion-guarded PATCH;
  # a concurrent change is re-read and planned again once). --dry-run=server has the API
  # server validate every write; --dry-run (client) sends none. Both write nothing.
  # --kubeconfig/--context select the cluster and are repeated in every printed command.
  $ netpol-trace fix --context prod --from app/web-1 --to svc/db/mysql --port mysql --dry-run=server
  $ netpol-trace restore --context prod ./netpol-trace-backups/20260101T120000Z

  # Last resort when no safe patch exists (e.g. an ipBlock except excludes the source):
  # delete the denying policies, after a backup, with a loud warning
  $ netpol-trace fix -f manifests/ --from 172.17.1.5 --to default/db --port 6379 \\
      --fallback delete-policy --yes --apply

Exit status: 0 patch found (and applied) or nothing to do, 1 no safe patch (or a conflict that
persisted after one re-read), 2 bad input (or a write the API server refused), 3 cluster
unreachable (retry).
-o json: flow, verdict_before, verdict_after, patches[{namespace, name, direction, action,
json_patch | object, kubectl, newly_allowed[{from, to, port, protocol}], change, hints, source}],
newly_allowed, summary; with --apply/--dry-run also applied (dry_run, dry_run_mode); with no
safe patch, error.";

/// What to do when no safe patch exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Delete the policies that deny the flow (the runbook's last resort; needs --yes).
    DeletePolicy,
}

/// `fix` flags.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// Objects and flow.
    #[command(flatten)]
    pub flow: FlowArgs,

    /// Output format: `table` (verdicts, added YAML lines, blast radius, hints), `json` (one
    /// object), `yaml` (the corrected and created policies) or `kubectl` (the commands).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Write the fix: with -f into those manifest files (each backed up beside itself as
    /// FILE.netpol-trace-TIME.bak), else into the cluster (server-side dry run first, backup
    /// folder, PATCH guarded by the resourceVersion read).
    #[arg(long)]
    pub apply: bool,

    /// Show what --apply would write, write nothing (`--dry-run=server`: validated by the API
    /// server; with -f, every mode leaves the files alone).
    #[command(flatten)]
    pub dry_run: DryRunArgs,

    /// When no safe patch exists, fall back to MODE. Only with --yes.
    #[arg(long, value_enum, value_name = "MODE")]
    pub fallback: Option<Fallback>,

    /// Confirm --fallback delete-policy.
    #[arg(long)]
    pub yes: bool,

    /// Folder under which cluster backups are written (one timestamped folder per --apply).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BACKUP_ROOT)]
    pub backup_dir: PathBuf,
}

impl Args {
    fn dry_run(&self) -> DryRun {
        self.dry_run.dry_run
    }
}

/// Where the objects come from and go to.
enum Target {
    Files,
    Cluster(kube::Client),
}

/// Runs `fix` and returns the exit code.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.fallback == Some(Fallback::DeletePolicy) && !args.yes {
        return Err(ExitError::bad_input(
            "--fallback delete-policy deletes the denying policies and opens everything they \
             isolate; add --yes to confirm",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let target = if args.flow.filenames.is_empty() {
        let client = runtime
            .block_on(connect(&args.flow.cluster))
            .map_err(|e| ExitError::from(e).context("no -f given"))?;
        Target::Cluster(client)
    } else {
        Target::Files
    };
    let (inventory, flows) = load(&runtime, &args, &target)?;
    let options = FixOptions { explain: args.flow.explain_options() };
    let mut plan = match plan_fix_flows(&inventory, &flows, &options) {
        Ok(plan) => plan,
        Err(error) => match args.fallback {
            Some(Fallback::DeletePolicy) => {
                let plan = plan_delete_fallback(&inventory, &flows, &options);
                warn_fallback(&error, &plan, args.apply && !args.dry_run().is_dry());
                plan
            }
            None => return no_safe_patch(&args, &inventory, &flows, &options, &error),
        },
    };
    if args.fallback.is_some() && plan.patches.iter().all(|p| p.action != PatchAction::Delete) {
        eprintln!("note: a safe patch exists; --fallback is not needed and is ignored");
    }
    let write = (args.apply || args.dry_run().is_dry()) && !plan.is_noop();
    if write && !args.dry_run().is_dry() {
        refuse_tiered_writes(&args, &plan, &target)?;
    }
    let applied = match (&target, write) {
        (_, false) => None,
        (Target::Files, true) => Some(apply_files(&args, &plan)?),
        (Target::Cluster(_), true) if args.dry_run() == DryRun::Client => {
            Some(client_dry_run(&plan))
        }
        (Target::Cluster(client), true) => {
            let (final_plan, applied) = apply_cluster(&runtime, &args, client, plan, &options)?;
            plan = final_plan;
            Some(applied)
        }
    };
    for patch in &mut plan.patches {
        patch.kubectl = args.flow.cluster.kubectl(&patch.kubectl);
    }
    print(&args, &plan, applied.as_ref())?;
    Ok(exit::OK)
}

/// `--apply` writes NetworkPolicies and, to files, Calico policies; a change to an admin-tier
/// policy is left to a cluster admin (never applied on a user's behalf), and tiered kinds are
/// not written to the cluster: the plan is printed and the refusal says what to run instead.
fn refuse_tiered_writes(args: &Args, plan: &FixPlan, target: &Target) -> anyhow::Result<()> {
    let refused = if let Some(entry) = plan.patches.iter().find(|p| p.requires_cluster_admin) {
        format!(
            "only a cluster admin can make this change ({}): nothing was applied; \
             review the plan and have a cluster admin run its kubectl command (-o kubectl)",
            entry.key()
        )
    } else if let (Target::Cluster(_), Some(entry)) =
        (target, plan.patches.iter().find(|p| !p.is_kubernetes()))
    {
        format!(
            "--apply writes NetworkPolicies to the cluster, not {}: nothing was applied; \
             run the plan's kubectl command (-o kubectl) instead",
            entry.key()
        )
    } else {
        return Ok(());
    };
    print(args, plan, None)?;
    Err(ExitError { code: exit::NO, message: refused }.into())
}

/// `--dry-run=client` against the cluster: what would be written, nothing sent.
fn client_dry_run(plan: &FixPlan) -> Value {
    let objects: Vec<Value> = plan
        .patches
        .iter()
        .map(|p| {
            eprintln!(
                "dry run (client): would {} networkpolicy {} (nothing sent)",
                format!("{:?}", p.action).to_lowercase(),
                p.key()
            );
            json!({"namespace": p.namespace, "name": p.name, "action": p.action})
        })
        .collect();
    json!({"target": "cluster", "dry_run": true, "dry_run_mode": DryRun::Client, "objects": objects})
}

fn load(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    target: &Target,
) -> anyhow::Result<(Inventory, Vec<Flow>)> {
    let inventory = match target {
        Target::Files => load_inventory(&args.flow.filenames, &args.flow.cluster)?,
        Target::Cluster(client) => {
            let objects =
                runtime.block_on(load_cluster_with(client.clone())).map_err(ExitError::from)?;
            Inventory::from_objects(objects, InventoryOptions::default())
                .map_err(ExitError::from)?
        }
    };
    let flows = resolve_flows(&inventory, &args.flow.request())
        .map_err(ExitError::from)?
        .into_iter()
        .map(|resolved| resolved.flow)
        .collect();
    Ok((inventory, flows))
}

fn warn_fallback(error: &FixError, plan: &FixPlan, applying: bool) {
    eprintln!("WARNING: no safe patch ({error}).");
    for patch in &plan.patches {
        eprintln!(
            "WARNING: {} networkpolicy {}: every pod it selects loses its isolation ({} connection{} newly allowed)",
            if applying { "DELETING" } else { "would delete" },
            patch.key(),
            patch.newly_allowed.len(),
            if patch.newly_allowed.len() == 1 { "" } else { "s" }
        );
    }
    if applying {
        eprintln!("WARNING: backups are written first; undo with `netpol-trace restore BACKUP`.");
    }
}

fn no_safe_patch(
    args: &Args,
    inventory: &Inventory,
    flows: &[Flow],
    options: &FixOptions,
    error: &FixError,
) -> anyhow::Result<i32> {
    let explanation = crate::explain::explain(inventory, &flows[0], &options.explain);
    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            let value = json!({
                "flow": explanation.flow,
                "verdict_before": explanation.verdict,
                "verdict_after": explanation.verdict,
                "patches": [],
                "error": error.to_string(),
            });
            write_json(&mut stdout, &value)?;
        }
        OutputFormat::Table => {
            writeln!(stdout, "no safe patch: {error}")?;
        }
        OutputFormat::Yaml | OutputFormat::Kubectl => writeln!(stdout, "# no safe patch: {error}")?,
    }
    eprintln!("error: no safe patch: {error}");
    Ok(exit::NO)
}

/// Writes the plan into the manifest files; progress on stderr.
fn apply_files(args: &Args, plan: &FixPlan) -> anyhow::Result<Value> {
    let dry_run = args.dry_run().is_dry();
    let writes = write_plan(plan, &args.flow.filenames, dry_run).map_err(ExitError::from)?;
    for write in &writes {
        report_file(write);
    }
    let files: Vec<Value> = writes
        .iter()
        .map(|w| {
            json!({"policy": w.policy, "action": w.action, "path": w.file.path,
                   "file_action": w.file.action, "backup": w.file.backup})
        })
        .collect();
    Ok(
        json!({"target": "files", "dry_run": dry_run, "dry_run_mode": args.dry_run(), "files": files}),
    )
}

fn report_file(write: &PolicyWrite) {
    let verb = match write.action {
        PatchAction::Patch => "patched",
        PatchAction::Create => "added",
        PatchAction::Delete => "deleted",
    };
    match &write.file.backup {
        Some(backup) => eprintln!(
            "{verb} networkpolicy {} in {} (backup {}; undo: netpol-trace restore {})",
            write.policy,
            write.file.path.display(),
            backup.display(),
            backup.display()
        ),
        None => eprintln!(
            "dry run: would write networkpolicy {} to {} (nothing written)",
            write.policy,
            write.file.path.display()
        ),
    }
}

/// Writes the plan to the cluster; on a conflict, re-reads the cluster and plans again once.
fn apply_cluster(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    client: &kube::Client,
    plan: FixPlan,
    options: &FixOptions,
) -> anyhow::Result<(FixPlan, Value)> {
    let mut plan = plan;
    let mut retried = false;
    loop {
        let dry_run = args.dry_run().is_dry();
        match runtime.block_on(apply_plan(client, &plan, &args.backup_dir, dry_run)) {
            Ok(applied) => {
                report_cluster(&applied, dry_run, &args.flow.cluster);
                return Ok((plan, cluster_json(&applied, args.dry_run(), retried)));
            }
            Err(error) if error.is_conflict() && !retried => {
                eprintln!("{error}; re-reading the cluster and planning again");
                retried = true;
                let (inventory, flows) = load(runtime, args, &Target::Cluster(client.clone()))?;
                plan = match plan_fix_flows(&inventory, &flows, options) {
                    Ok(plan) if plan.is_noop() => {
                        eprintln!("nothing to do any more: the flow is allowed now");
                        return Ok((
                            plan,
                            json!({"target": "cluster", "dry_run": dry_run,
                                   "dry_run_mode": args.dry_run(), "retried": true}),
                        ));
                    }
                    Ok(plan) => plan,
                    Err(e) => {
                        return Err(ExitError {
                            code: exit::NO,
                            message: format!("no safe patch after re-reading: {e}"),
                        }
                        .into());
                    }
                };
            }
            Err(error) if error.is_conflict() => {
                return Err(ExitError { code: exit::NO, message: error.to_string() }.into());
            }
            Err(error) => return Err(ExitError::bad_input(error.to_string()).into()),
        }
    }
}

fn report_cluster(applied: &ClusterApply, dry_run: bool, cluster: &ClusterArgs) {
    for report in &applied.reports {
        let key = format!("{}/{}", report.namespace, report.name);
        if dry_run {
            eprintln!(
                "dry run: the API server accepts {} networkpolicy {key} (nothing written)",
                report.action
            );
            continue;
        }
        let versions = match (&report.resource_version_before, &report.resource_version_after) {
            (Some(before), Some(after)) => format!(" (resourceVersion {before} -> {after})"),
            (None, Some(after)) => format!(" (resourceVersion {after})"),
            _ => String::new(),
        };
        let retried = if report.retried { ", retried once after a concurrent change" } else { "" };
        eprintln!("{}: networkpolicy {key}{versions}{retried}", past(&report.action.to_string()));
    }
    if let Some(backup) = &applied.backup {
        eprintln!(
            "backup: {} (undo: netpol-trace restore{} {})",
            backup.display(),
            cluster.kubectl_flags(),
            backup.display()
        );
    }
}

fn past(action: &str) -> String {
    match action {
        "patch" => "patched".into(),
        "create" => "created".into(),
        "delete" => "DELETED".into(),
        other => other.into(),
    }
}

fn cluster_json(applied: &ClusterApply, dry_run: DryRun, retried: bool) -> Value {
    let objects: Vec<Value> = applied
        .reports
        .iter()
        .map(|r| {
            json!({"namespace": r.namespace, "name": r.name, "action": r.action,
                   "resource_version_before": r.resource_version_before,
                   "resource_version_after": r.resource_version_after, "retried": r.retried})
        })
        .collect();
    json!({"target": "cluster", "dry_run": dry_run.is_dry(), "dry_run_mode": dry_run,
           "retried": retried, "backup": applied.backup, "objects": objects})
}

/// `-o json`: the plan, plus what `--apply`/`--dry-run` wrote (`applied`).
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    plan: &'a FixPlan,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a Value>,
}

fn print(args: &Args, plan: &FixPlan, applied: Option<&Value>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Table => stdout.write_all(table::render(plan).as_bytes())?,
        OutputFormat::Json => write_json(&mut stdout, &JsonOutput { plan, applied })?,
        OutputFormat::Yaml => {
            if plan.is_noop() {
                writeln!(stdout, "# {}", plan.summary)?;
            }
            for (index, entry) in plan.final_entries().into_iter().enumerate() {
                if index > 0 {
                    writeln!(stdout, "---")?;
                }
                match entry.action {
                    PatchAction::Delete => writeln!(
                        stdout,
                        "# delete networkpolicy {} ({})",
                        entry.key(),
                        entry.kubectl
                    )?,
                    _ => stdout.write_all(to_yaml(&clean_for_apply(&entry.result)).as_bytes())?,
                }
            }
        }
        OutputFormat::Kubectl => {
            if plan.is_noop() {
                writeln!(stdout, "# {}", plan.summary)?;
            }
            for entry in &plan.patches {
                writeln!(stdout, "{}", entry.kubectl)?;
            }
        }
    }
    Ok(())
}
