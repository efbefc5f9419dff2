//! `netpol-trace drops`: the dropped flows of the whole cluster, from every agent.

use std::{io::Write, time::Duration};

use anyhow::Context;

use crate::{
    agent::{
        FlowRecord, FlowState,
        collect::{
            AgentLocator, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_PORT, DEFAULT_AGENT_SELECTOR,
            collect,
        },
        events::fix_command,
    },
    args::ListScopeArgs,
    exit,
    k8s::client::ClusterArgs,
    output::{OutputFormat, TABLE_JSON_YAML, write_json, write_yaml},
};

/// Arguments of `drops`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Every dropped flow in the cluster (without -A: flows with an end in the context's namespace)
  $ netpol-trace drops -A
  STATE     NODE    COUNT  LAST SEEN             REASON          SOURCE     DESTINATION      DENIED BY
  dropping  node-a  12     2026-11-26T07:31:09Z  NETFILTER_DROP  app/web-1  db/mysql-0:3306  db/mysql-ingress (ingress)

  # Flows with an end in namespace db, and the patches that would allow them (the printed
  # commands carry the --kubeconfig/--context given here)
  $ netpol-trace drops --context prod -n db --fix

The agents are asked through the API server's pod proxy
(GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/drops): only `get pods/proxy` on the agents'
namespace is needed. An agent that does not answer is reported on stderr; exit 2 when none
answered, 3 when the API server is unreachable.")]
pub struct Args {
    /// Flows with an end in this namespace (-n; default: the context's), or all (-A).
    #[command(flatten)]
    pub scope: ListScopeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(TABLE_JSON_YAML), default_value = "table")]
    pub output: OutputFormat,
    /// Print the suggested patches (kubectl commands) of the flows still dropping.
    #[arg(long)]
    pub fix: bool,
    /// Namespace of the agent pods.
    #[arg(long, default_value = DEFAULT_AGENT_NAMESPACE, value_name = "NAMESPACE")]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(long, default_value = DEFAULT_AGENT_SELECTOR, value_name = "SELECTOR")]
    pub agent_selector: String,
    /// HTTP port of the agents.
    #[arg(long, default_value_t = DEFAULT_AGENT_PORT, value_name = "PORT")]
    pub agent_port: u16,
    /// How long one agent may take to answer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Cluster selection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// One suggestion of `--fix`.
#[derive(Debug, serde::Serialize)]
struct Suggestion {
    from: String,
    to: String,
    port: u16,
    /// kubectl commands (empty when the agent found no safe patch).
    kubectl: Vec<String>,
    /// The command that computes (and can apply) the patch.
    command: String,
}

/// Runs `drops`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let namespace = args.scope.namespace(&args.cluster);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let records = rt.block_on(async {
        let mut config = crate::k8s::client::load_config(&args.cluster).await?;
        // An agent that is down answers 503 through the proxy: report it, do not retry.
        config.default_retry = false;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let locator = AgentLocator {
            namespace: args.agent_namespace.clone(),
            selector: args.agent_selector.clone(),
            port: args.agent_port,
            timeout: args.timeout,
        };
        let answers = collect(&client, &locator, namespace.as_deref())
            .await
            .map_err(exit::ExitError::from)?;
        let mut records = vec![];
        let mut answered = 0;
        for answer in &answers {
            match &answer.drops {
                Ok(r) => {
                    answered += 1;
                    records.extend(r.iter().cloned());
                }
                Err(e) => eprintln!(
                    "netpol-trace: agent {}/{} (node {}): {e}",
                    locator.namespace,
                    answer.pod,
                    answer.node.as_deref().unwrap_or("?")
                ),
            }
        }
        if answered == 0 {
            return Err(exit::ExitError::bad_input(format!(
                "none of the {} agent(s) answered",
                answers.len()
            ))
            .into());
        }
        anyhow::Ok(records)
    })?;
    let mut records = records;
    records.sort_by_key(|r| std::cmp::Reverse(r.drop.time));
    let mut out = std::io::stdout().lock();
    if args.fix {
        print_fixes(&mut out, args.output, &records, &args.cluster)?;
    } else {
        match args.output {
            OutputFormat::Json => write_json(&mut out, &records)?,
            OutputFormat::Yaml => write_yaml(&mut out, &records)?,
            OutputFormat::Table | OutputFormat::Kubectl => {
                out.write_all(table(&records).as_bytes())?
            }
        }
    }
    Ok(exit::OK)
}

fn print_fixes(
    out: &mut impl Write,
    format: OutputFormat,
    records: &[FlowRecord],
    cluster: &ClusterArgs,
) -> anyhow::Result<()> {
    let suggestions: Vec<Suggestion> = records
        .iter()
        .filter(|r| r.state == FlowState::Dropping && !r.drop.policies.is_empty())
        .map(|r| Suggestion {
            from: r.drop.src.display_name(),
            to: format!("{}:{}", r.drop.dst.display_name(), r.drop.dst.port),
            port: r.drop.dst.port,
            kubectl: r
                .fix
                .as_ref()
                .map_or(vec![], |f| f.kubectl.iter().map(|k| cluster.kubectl(k)).collect()),
            command: format!("{}{}", fix_command(r), cluster.kubectl_flags()),
        })
        .collect();
    match format {
        OutputFormat::Json => write_json(out, &suggestions),
        OutputFormat::Yaml => write_yaml(out, &suggestions),
        OutputFormat::Table | OutputFormat::Kubectl => {
            if suggestions.is_empty() {
                writeln!(out, "# no flow is being dropped by a NetworkPolicy")?;
            }
            for s in &suggestions {
                writeln!(out, "# {} -> {}", s.from, s.to)?;
                if s.kubectl.is_empty() {
                    writeln!(out, "# no safe patch found by the agent; to investigate:")?;
                    writeln!(out, "{}", s.command)?;
                }
                for k in &s.kubectl {
                    writeln!(out, "{k}")?;
                }
            }
            Ok(())
        }
    }
}

/// The default table.
pub fn table(records: &[FlowRecord]) -> String {
    let header =
        ["STATE", "NODE", "COUNT", "LAST SEEN", "REASON", "SOURCE", "DESTINATION", "DENIED BY"];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let state = match r.state {
                FlowState::Dropping => "dropping",
                FlowState::Restored => "restored",
            };
            let mut dst = format!("{}:{}", r.drop.dst.display_name(), r.drop.dst.port);
            if let (Some(ns), Some(svc)) = (&r.drop.dst.namespace, &r.drop.dst.service) {
                dst.push_str(&format!(" (svc/{ns}/{svc})"));
            }
            let denied: Vec<String> = r
                .drop
                .policies
                .iter()
                .map(|p| format!("{}/{} ({})", p.namespace, p.name, p.direction))
                .collect();
            vec![
                state.into(),
                r.node.clone().unwrap_or_else(|| "-".into()),
                r.drop.count.to_string(),
                r.drop.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                r.drop.reason.clone(),
                r.drop.src.display_name(),
                dst,
                if denied.is_empty() { "-".into() } else { denied.join(", ") },
            ]
        })
        .collect();
    crate::output::table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::attribute::{
        attribute,
        tests::{MANIFESTS, inventory_of, record},
    };

    #[test]
    fn the_table_names_state_node_flow_and_policy() {
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        attribute(&inventory_of(MANIFESTS), &mut r);
        r.node = Some("node-a".into());
        let text = table(&[r.clone()]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STATE     NODE    COUNT"), "{text}");
        assert!(lines[1].starts_with("dropping  node-a  12"), "{text}");
        assert!(
            lines[1].contains("app/web-1  db/mysql-0:3306  db/mysql-ingress (ingress)"),
            "{text}"
        );

        let mut fixes = vec![];
        print_fixes(&mut fixes, OutputFormat::Table, &[r.clone()], &ClusterArgs::default())
            .unwrap();
        let fixes = String::from_utf8(fixes).unwrap();
        assert!(
            fixes.starts_with(
                "# app/web-1 -> db/mysql-0:3306\nkubectl patch networkpolicy -n db mysql-ingress"
            ),
            "{fixes}"
        );

        let prod = ClusterArgs { kubeconfig: None, context: Some("prod".into()) };
        let mut fixes = vec![];
        print_fixes(&mut fixes, OutputFormat::Table, &[r], &prod).unwrap();
        let fixes = String::from_utf8(fixes).unwrap();
        assert!(
            fixes.contains("\nkubectl --context prod patch networkpolicy -n db mysql-ingress"),
            "{fixes}"
        );
    }
}
