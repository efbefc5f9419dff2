//! `netpol-trace drops`: the DropReports of a namespace or of the whole cluster, read from the
//! API server (one list request, however many nodes there are).

use std::io::Write;

use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use crate::args::ListScopeArgs;
use crate::exit;
use crate::exit::ExitError;
use crate::k8s::client::{ClusterArgs, client_and_namespace};
use crate::operator::report::DropReport;
use crate::output::{OutputFormat, TABLE_JSON_YAML, write_json, write_yaml};

/// Arguments of `drops`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Reports in the kubeconfig context's namespace, then in every namespace
  $ netpol-trace drops
  $ netpol-trace drops -A
  NAMESPACE  NAME                                  SOURCE   DESTINATION  PORT      STATE     FIX       DECISION  COUNT  LAST SEEN
  db         app-web-to-mysql-3306-tcp-3f2a9c01d4  app/web  db/mysql     3306/TCP  Dropping  Proposed  -         12     2026-11-26T07:31:09Z

  # The same as JSON (a List, as kubectl prints it)
  $ netpol-trace drops -n db -o json

Then: `netpol-trace approve NAME -n NS` (the controller applies the fix), `reject`, and
`netpol-trace restore dropreport/NAME -n NS` to undo. `kubectl get dr -A` shows the same.")]
pub struct Args {
    /// Reports in one namespace (-n; default: the context's) or in all (-A).
    #[command(flatten)]
    pub scope: ListScopeArgs,
    /// Output format.
    #[arg(short, long, value_parser = OutputFormat::parser(TABLE_JSON_YAML), default_value = "table")]
    pub output: OutputFormat,
    /// Cluster selection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `drops`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reports = runtime.block_on(async {
        let (client, namespace) =
            client_and_namespace(&args.cluster, args.scope.namespace.as_deref())
                .await
                .map_err(ExitError::from)?;
        let api: Api<DropReport> = if args.scope.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &namespace)
        };
        // A server that cannot be reached exits 3 (retry), as every cluster command does.
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            let scope = (!args.scope.all_namespaces).then_some(namespace.as_str());
            ExitError::from(crate::k8s::Error::from_kube(e, "list", "dropreports", scope, None))
        })?;
        anyhow::Ok(list.items)
    })?;
    let mut reports = reports;
    reports.sort_by(|a, b| {
        (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
            .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
    });
    let mut out = std::io::stdout().lock();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": reports});
    match args.output {
        OutputFormat::Json => write_json(&mut out, &list)?,
        OutputFormat::Yaml => write_yaml(&mut out, &list)?,
        OutputFormat::Table | OutputFormat::Kubectl => {
            out.write_all(table(&reports, args.scope.all_namespaces).as_bytes())?
        }
    }
    Ok(exit::OK)
}

/// The default table.
pub fn table(reports: &[DropReport], with_namespace: bool) -> String {
    let mut header = vec![
        "NAME",
        "SOURCE",
        "DESTINATION",
        "PORT",
        "STATE",
        "FIX",
        "DECISION",
        "COUNT",
        "LAST SEEN",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let status = r.status.as_ref();
            let mut row = vec![
                r.metadata.name.clone().unwrap_or_default(),
                r.spec.source.display(),
                r.spec.destination.display(),
                format!("{}/{}", r.spec.port, r.spec.protocol),
                status.and_then(|s| s.state).map_or("-".into(), |s| format!("{s:?}")),
                r.phase().map_or("-", |p| p.as_str()).to_string(),
                r.spec.decision.map_or("-", |d| d.as_str()).to_string(),
                status.and_then(|s| s.count).map_or("-".into(), |c| c.to_string()),
                status
                    .and_then(|s| s.last_seen)
                    .map_or("-".into(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            ];
            if with_namespace {
                row.insert(0, r.metadata.namespace.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.clone());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if reports.is_empty() {
        out = "No drop reports found.\n".into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::report::{DropReportSpec, DropReportStatus, FlowEnd, FlowState};

    #[test]
    fn the_table_names_flow_state_fix_and_decision() {
        let mut r = DropReport::new(
            "app-web-to-mysql-3306-tcp-0123456789",
            DropReportSpec {
                source: FlowEnd::workload("app", "web", "Deployment"),
                destination: FlowEnd::workload("db", "mysql", "StatefulSet"),
                port: 3306,
                protocol: "TCP".into(),
                decision: None,
            },
        );
        r.metadata.namespace = Some("db".into());
        r.status = Some(DropReportStatus {
            state: Some(FlowState::Dropping),
            count: Some(12),
            ..Default::default()
        });
        let text = table(&[r], true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE  NAME"), "{text}");
        assert!(
            lines[1].starts_with("db         app-web-to-mysql-3306-tcp-0123456789  app/web  db/mysql     3306/TCP  Dropping  -    -         12"),
            "{text}"
        );
        assert_eq!(table(&[], false), "No drop reports found.\n");
    }
}

#[cfg(test)]
mod cli_tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    #[test]
    fn the_operator_commands_parse_as_documented() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["netpol-trace", "drops", "-A", "-o", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Drops(a) if a.scope.all_namespaces));
        assert!(Cli::try_parse_from(["netpol-trace", "drops", "-A", "-n", "db"]).is_err());
        let cli = Cli::try_parse_from(["netpol-trace", "approve", "r1", "-n", "db"]).unwrap();
        assert!(
            matches!(cli.command, Command::Approve(a) if a.report.namespace.as_deref() == Some("db"))
        );
        let cli = Cli::try_parse_from([
            "netpol-trace",
            "restore",
            "dropreport/r1",
            "-n",
            "db",
            "--force",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Restore(a) if a.force));
        let cli =
            Cli::try_parse_from(["netpol-trace", "controller", "--auto-approve", "regressions"])
                .unwrap();
        assert!(matches!(cli.command, Command::Controller(a) if a.auto_approve.is_some()));
    }
}
