//! `netpol-trace report`: the postmortem evidence as one self-contained HTML or Markdown file.

use std::{io::Write, path::PathBuf};

use anyhow::Context as _;
use clap::Args as ClapArgs;

use crate::k8s::client::{ClusterArgs, client_and_namespace};
use crate::{
    exit, manifest,
    report::{self, Context, Format, Incident, dropreport, model::PcapFile},
};

/// Arguments of `report`.
#[derive(Debug, ClapArgs)]
#[command(after_help = REPORT_HELP)]
pub struct Args {
    /// `dropreport/NAME` (with `-n`): the DropReport read from the cluster.
    #[arg(value_name = "dropreport/NAME", conflicts_with_all = ["from_ndjson", "from_dropreport"])]
    pub report: Option<String>,
    /// Namespace of `dropreport/NAME` (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE", requires = "report")]
    pub namespace: Option<String>,
    /// Which cluster (for `dropreport/NAME`).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// NDJSON of `trace`, `agent` or `lab demo` with `-o json` (repeatable: one per node).
    #[arg(
        long = "from-ndjson",
        value_name = "FILE",
        required_unless_present_any = ["from_dropreport", "report"]
    )]
    pub from_ndjson: Vec<PathBuf>,
    /// A DropReport saved as YAML or JSON (`kubectl get dr NAME -o yaml > dr.yaml`).
    #[arg(long, value_name = "FILE", conflicts_with = "from_ndjson")]
    pub from_dropreport: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
    /// Where to write the report; `-` for standard output (the default with `-o markdown`).
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    /// Packet captures of the evidence (`trace --pcap`), counted in the kernel section.
    #[arg(long, value_name = "FILE")]
    pub pcap: Vec<PathBuf>,
    /// Manifests with the policies as they were (file, directory, repeatable): their YAML is
    /// shown with the offending field marked.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,
}

const REPORT_HELP: &str = "\
Examples:
  sudo netpol-trace lab demo -o json > run.ndjson
  netpol-trace report --from-ndjson run.ndjson --output-file report.html
  netpol-trace report --from-ndjson run.ndjson -o markdown            # to stdout
  netpol-trace report --from-ndjson node-1.ndjson --from-ndjson node-2.ndjson \\
      --pcap drops.pcap -f manifests/ --output-file incident.html
  netpol-trace report --from-dropreport dr.yaml -o markdown --output-file incident.md
  netpol-trace report dropreport/app-web-to-mysql-3306-tcp-3f2a9c01d4 -n db --output-file r.html

Sections: what broke, timeline (chart with detected/attributed/patched/restored against the
30-minute objective), root cause, the change, recovery point, kernel evidence, how it was
measured. The HTML has no script and no external asset; it follows dark mode and prints.
Exit codes: 0 written, 2 bad input (missing or empty file, not this tool's NDJSON, no drop),
naming the file and line.";

fn bad(e: impl std::fmt::Display) -> anyhow::Error {
    exit::ExitError::bad_input(e.to_string()).into()
}

/// Runs `report`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let out = match (&args.output_file, args.output) {
        (Some(path), _) => path.clone(),
        (None, Format::Markdown) => PathBuf::from("-"),
        (None, Format::Html) => {
            return Err(bad(
                "--output-file: required with -o html (a file to open in a browser); `-` writes to standard output",
            ));
        }
    };
    let mut ctx = Context::this_host();
    for path in &args.pcap {
        let packets = report::count_pcap_packets(path).map_err(bad)?;
        ctx.pcaps.push(PcapFile { name: path.display().to_string(), packets });
    }
    if !args.filenames.is_empty() {
        let objects = manifest::load_paths(&args.filenames).map_err(bad)?;
        ctx.objects = objects.network_policies.into_iter().map(|p| p.raw).collect();
    }
    let incident: Incident = match (&args.report, &args.from_dropreport) {
        (Some(arg), _) => from_cluster(&args, arg, &ctx)?,
        (None, Some(path)) => dropreport::read(path, &ctx).map_err(bad)?,
        (None, None) => report::from_ndjson_files(&args.from_ndjson, &ctx).map_err(bad)?,
    };
    write(&out, &report::render(&incident, args.output))?;
    Ok(exit::OK)
}

/// The incident of `dropreport/NAME`, read from the cluster.
fn from_cluster(args: &Args, arg: &str, ctx: &Context) -> anyhow::Result<Incident> {
    let Some(name) = ["dropreport/", "dropreports/", "dr/", "dropreports.netpol-trace.io/"]
        .iter()
        .find_map(|p| arg.strip_prefix(p))
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        return Err(bad(format!("{arg}: expected dropreport/NAME (or --from-ndjson FILE)")));
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, namespace) = client_and_namespace(&args.cluster, args.namespace.as_deref())
            .await
            .map_err(exit::ExitError::from)?;
        dropreport::fetch(&client, &namespace, name, ctx).await.map_err(|e| match e {
            e @ crate::operator::Error::Report { .. } => bad(e),
            e => exit::operator_error(e),
        })
    })
}

/// Writes `text` to `path` (`-`: standard output).
pub fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        return Ok(stdout.flush()?);
    }
    std::fs::write(path, text).with_context(|| format!("writing --output-file {}", path.display()))
}
