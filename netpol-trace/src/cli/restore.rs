//! `netpol-trace restore BACKUP`: put back what `fix --apply` (or `--fallback delete-policy`)
//! changed, from a cluster backup folder or a manifest-file backup.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::apply::files::{FileRestore, original_of_backup, restore_file};
use crate::exit::{self, ExitError, operator_error};
use crate::k8s::backup::MANIFEST_FILE;
use crate::k8s::client::{ClusterArgs, DryRunArgs, client_and_namespace, connect};
use crate::k8s::restore::{RestoreReport, restore_with};
use crate::operator;
use crate::operator::restore::restore_report;
use crate::output::{OutputFormat, TABLE_OR_JSON};

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Undo a `fix --apply`: every patched policy gets its saved spec, labels and annotations
  # back, created policies are deleted, deleted ones are re-created
  netpol-trace restore ./netpol-trace-backups/20260101T120000Z

  NAMESPACE  NAME           RECORDED  RESULT     DETAIL
  db         mysql-ingress  patch     replaced   spec, labels and annotations replaced (resourceVersion 4711 -> 4790)

  # Check first: server-side dry run (the API server validates, nothing is written); a bare
  # --dry-run (client) only reads the cluster. --kubeconfig/--context as with kubectl.
  netpol-trace restore --context prod ./netpol-trace-backups/20260101T120000Z --dry-run=server

  # Undo a fix the controller applied for a DropReport (refused, exit 1, when a policy was
  # edited since the fix, unless --force); the report becomes RolledBack
  netpol-trace restore dropreport/app-web-to-mysql-3306-tcp-3f2a9c01d4 -n db

  # Put a manifest file back from the backup saved beside it by `fix -f ... --apply`
  netpol-trace restore manifests/db.yaml.netpol-trace-20260101T120000Z.bak

Exit status: 0 restored, 1 some object could not be restored, 2 bad input or no cluster
configured, 3 cluster unreachable (retry).")]
pub struct Args {
    /// A backup folder (holding manifest.json), a file backup (<file>.netpol-trace-<time>.bak),
    /// or `dropreport/NAME` (the backup the controller kept in the report; with -n).
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,

    /// Namespace of `dropreport/NAME` (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// `dropreport/NAME`: restore even objects changed since the fix (their later edits are
    /// lost).
    #[arg(long)]
    pub force: bool,

    /// Show what would be done, write nothing.
    #[command(flatten)]
    pub dry_run: DryRunArgs,

    /// Output format.
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,

    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `restore` and returns the exit code.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(name) = args.backup.to_str().and_then(dropreport_name) {
        let name = name.to_string();
        return run_dropreport(&args, &name);
    }
    if args.backup.is_dir() {
        if !args.backup.join(MANIFEST_FILE).is_file() {
            return Err(ExitError::bad_input(format!(
                "{} is not a netpol-trace backup folder: it has no {MANIFEST_FILE}",
                args.backup.display()
            ))
            .into());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let report = runtime.block_on(async {
            let client = connect(&args.cluster).await.map_err(ExitError::from)?;
            restore_with(&client, &args.backup, args.dry_run.dry_run)
                .await
                .map_err(|e| anyhow::Error::from(ExitError::from(e)))
        })?;
        print_cluster_report(&report, args.output)?;
        return Ok(if report.restored() { exit::OK } else { exit::NO });
    }
    if args.backup.is_file() && original_of_backup(&args.backup).is_some() {
        let done =
            restore_file(&args.backup, args.dry_run.dry_run.is_dry()).map_err(ExitError::from)?;
        print_file_report(&done, args.output)?;
        return Ok(exit::OK);
    }
    Err(ExitError::bad_input(format!(
        "{} is neither a backup folder (with {MANIFEST_FILE}) nor a file backup (<file>.netpol-trace-<time>.bak)",
        display_missing(&args.backup)
    ))
    .into())
}

/// The dropreport form: undo a fix the controller applied, from the backup in the report,
/// with the caller's own credentials. Exit 1 (phase unchanged) when an object changed since
/// the fix and `--force` is not given.
fn run_dropreport(args: &Args, name: &str) -> anyhow::Result<i32> {
    if args.dry_run.dry_run.is_dry() {
        return Err(ExitError::bad_input(
            "--dry-run is not available for dropreport/NAME: the report's backup is shown by `netpol-trace drops -o yaml`",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) = client_and_namespace(&args.cluster, args.namespace.as_deref())
            .await
            .map_err(ExitError::from)?;
        match restore_report(&client, &namespace, name, args.force).await {
            Ok(done) => {
                if args.output == OutputFormat::Table {
                    for o in &done {
                        let rv = o.resource_version.as_deref();
                        let rv = rv.map(|v| format!(" (resourceVersion {v})")).unwrap_or_default();
                        println!("networkpolicy {}/{} {}{rv}", o.namespace, o.name, o.action);
                    }
                    println!(
                        "dropreport {namespace}/{name}: RolledBack; approve it again to re-apply"
                    );
                } else {
                    println!("{}", json!({"restored": true, "objects": done}));
                }
                Ok(exit::OK)
            }
            Err(e @ (operator::Error::ChangedSinceFix { .. } | operator::Error::Report { .. })) => {
                eprintln!("netpol-trace: {e}");
                Ok(exit::NO)
            }
            Err(e) => Err(operator_error(e)),
        }
    })
}

/// `NAME` of a `dropreport/NAME` (or `dr/NAME`) argument.
fn dropreport_name(arg: &str) -> Option<&str> {
    ["dropreport/", "dropreports/", "dr/", "dropreports.netpol-trace.io/"]
        .iter()
        .find_map(|p| arg.strip_prefix(p))
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

fn display_missing(path: &Path) -> String {
    if path.exists() {
        path.display().to_string()
    } else {
        format!("{} (not found)", path.display())
    }
}

fn print_cluster_report(report: &RestoreReport, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Kubectl => {
            let mut value = serde_json::to_value(report)?;
            value["restored"] = json!(report.restored());
            println!("{}", serde_json::to_string(&value)?);
        }
        OutputFormat::Table => {
            if report.dry_run {
                println!("dry run: nothing was written");
            }
            let rows: Vec<Vec<String>> = report
                .objects
                .iter()
                .map(|i| {
                    vec![
                        i.namespace.clone(),
                        i.name.clone(),
                        i.recorded_action.to_string(),
                        i.outcome.as_str().to_string(),
                        i.detail.clone(),
                    ]
                })
                .collect();
            crate::output::print_styled(&crate::output::styled_table(
                &["NAMESPACE", "NAME", "RECORDED", "RESULT", "DETAIL"],
                &rows,
            ))?;
        }
    }
    Ok(())
}

fn print_file_report(done: &FileRestore, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Kubectl => {
            let mut value = serde_json::to_value(done)?;
            value["restored"] = json!(true);
            println!("{}", serde_json::to_string(&value)?);
        }
        OutputFormat::Table => {
            let verb = match (done.outcome, done.dry_run) {
                ("removed", true) => "would remove",
                ("removed", false) => "removed",
                (_, true) => "would restore",
                _ => "restored",
            };
            println!("{verb} {} from {}", done.path.display(), done.backup.display());
        }
    }
    Ok(())
}
