//! `netpol-trace restore dropreport/NAME -n NS [--force]`: undo a fix the controller applied,
//! from the backup in the report, with the caller's own credentials.

use serde_json::json;

use super::approve::{client_and_namespace, not_found_is_bad_input};
use super::restore::{Args, Output};
use crate::exit;
use crate::operator::Error;
use crate::operator::restore::restore_report;

/// Runs the dropreport form of `restore`.
pub fn run(args: &Args, name: &str) -> anyhow::Result<i32> {
    if args.dry_run {
        return Err(exit::ExitError::bad_input(
            "--dry-run is not available for dropreport/NAME: the report's backup is shown by `netpol-trace drops -o yaml`",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) = client_and_namespace(&args.cluster, args.namespace.as_deref()).await?;
        match restore_report(&client, &namespace, name, args.force).await {
            Ok(done) => {
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string(&json!({"restored": true, "objects": done}))?
                    ),
                    Output::Table => {
                        for o in &done {
                            let rv = o.resource_version.as_deref().map(|v| format!(" (resourceVersion {v})")).unwrap_or_default();
                            println!("networkpolicy {}/{} {}{rv}", o.namespace, o.name, o.action);
                        }
                        println!("dropreport {namespace}/{name}: RolledBack; approve it again to re-apply");
                    }
                }
                Ok(exit::OK)
            }
            Err(e @ (Error::ChangedSinceFix { .. } | Error::Report { .. })) => {
                eprintln!("netpol-trace: {e}");
                Ok(exit::NO)
            }
            Err(e) => Err(not_found_is_bad_input(e)),
        }
    })
}
