//! `netpol-trace reject NAME -n NS`: decide that a DropReport's fix is not wanted; the
//! controller leaves it alone.

use crate::args::ReportArgs;
use crate::exit::{self, ExitError, operator_error};
use crate::k8s::client::client_and_namespace;
use crate::operator::decide::{decide, name_of_argument};
use crate::operator::report::Decision;

/// Arguments of `reject`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  $ netpol-trace reject app-web-to-mysql-3306-tcp-3f2a9c01d4 -n db
  rejected dropreport db/app-web-to-mysql-3306-tcp-3f2a9c01d4

Exit status: 0 done, 2 the report does not exist (or no cluster).")]
pub struct Args {
    /// The report.
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Runs `reject`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let args = args.report;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) = client_and_namespace(&args.cluster, args.namespace.as_deref())
            .await
            .map_err(ExitError::from)?;
        let name = name_of_argument(&args.name);
        let text =
            decide(&client, &namespace, name, Decision::Rejected).await.map_err(operator_error)?;
        print!("{text}");
        Ok(exit::OK)
    })
}
