//! `netpol-trace approve NAME -n NS`: approve a DropReport's fix (the controller applies it).

use crate::args::ReportArgs;
use crate::exit::{self, ExitError, operator_error};
use crate::k8s::client::client_and_namespace;
use crate::operator::decide::{decide, name_of_argument};
use crate::operator::report::Decision;

/// Arguments of `approve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # See what is pending, then approve one fix; the controller applies it with a backup
  $ netpol-trace drops -A
  $ netpol-trace approve app-web-to-mysql-3306-tcp-3f2a9c01d4 -n db
  approved dropreport db/app-web-to-mysql-3306-tcp-3f2a9c01d4
  the controller will re-check against the live cluster and apply:
  kubectl patch networkpolicy -n db mysql-ingress --type=json -p '[...]'

Exit status: 0 done, 2 the report does not exist (or no cluster).")]
pub struct Args {
    /// The report.
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Runs `approve`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let args = args.report;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) = client_and_namespace(&args.cluster, args.namespace.as_deref())
            .await
            .map_err(ExitError::from)?;
        let name = name_of_argument(&args.name);
        let text =
            decide(&client, &namespace, name, Decision::Approved).await.map_err(operator_error)?;
        print!("{text}");
        Ok(exit::OK)
    })
}
