//! `netpol-trace explain`: which NetworkPolicy allows or denies a connection, rule by rule.

use crate::args::FlowArgs;
use crate::output::{OutputFormat, TABLE_JSON_YAML, print_explanations};

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

/// `explain` flags.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    /// Objects and flow.
    #[command(flatten)]
    pub flow: FlowArgs,

    /// Output format. json/yaml print one object; for a Service with several backing pods, a
    /// list with one object per pod.
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(TABLE_JSON_YAML), default_value = "table")]
    pub output: OutputFormat,
}

/// Runs `explain`: prints the explanation(s) and returns 0 when every flow is allowed, else 1.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let (inventory, flows) = args.flow.load()?;
    print_explanations(&inventory, &flows, &args.flow.explain_options(), args.output)
}
