//! `netpol-trace trace`: watch a node's pod veths for dropped SYNs.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{ClusterArgs, TracerArgs, load_inventory};
use crate::attribution;
use crate::output::{OutputFormat, TABLE_OR_JSON};
use crate::{
    exit,
    inventory::Inventory,
    trace::{
        TraceEvent, Tracer, TracerMessage, TracerOptions,
        pcap::{PcapWriter, ip_total_len},
    },
};

/// Arguments of `trace`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # On a node: every pod veth, MySQL's port, until Ctrl-C
  sudo netpol-trace trace

  # In a lab's node namespace, two ports, 30 seconds, NDJSON and a pcap for the postmortem,
  # each drop attributed to pods and NetworkPolicies from manifests
  sudo netpol-trace trace --netns lab-node --port 3306 --port 5432 --duration 30s \\
      -f manifests/ -o json --pcap drops.pcap

  {\"type\":\"drop\",\"time\":\"2026-11-26T07:31:02.114Z\",\"reason\":\"NETFILTER_DROP\",\"ifname\":\"cali3f2a9c01d4e\",
   \"count\":3,\"protocol\":\"TCP\",\"src\":{\"ip\":\"10.244.1.5\",\"port\":51514},\"dst\":{\"ip\":\"10.244.2.7\",\"port\":3306},...}
  {\"type\":\"restored\",\"time\":\"2026-11-26T07:31:09.870Z\",\"drops\":7,...}

Programs are observe-only: they never change, delay or drop a packet, and everything is
detached on exit (Ctrl-C, SIGTERM, --duration). Exit codes: 0 done, 2 cannot trace
(privileges, BTF, missing namespace).")]
pub struct Args {
    /// The node's namespace, interfaces and ports.
    #[command(flatten)]
    pub tracer: TracerArgs,
    /// Stop after this long (e.g. 10s, 2m); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Write this file once the programs are attached (for scripts: no sleeping).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Write the captured SYN headers (first of each flow at each point) to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Output format: `table` (one line per event) or `json` (NDJSON: `drop`, `restored`, and a
    /// final `summary`).
    #[arg(short = 'o', long, value_parser = OutputFormat::parser(TABLE_OR_JSON), default_value = "table")]
    pub output: OutputFormat,
    /// Manifests (file, directory, repeatable) to attribute drops to pods and policies;
    /// without it, the cluster of the kubeconfig (or in-cluster) when one is configured.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,
    /// Which cluster attributes the drops (without -f).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Whether a cluster is configured (flags, kubeconfig or in-cluster), so `trace` may try it.
fn cluster_configured(cluster: &ClusterArgs) -> bool {
    cluster.kubeconfig.is_some()
        || cluster.context.is_some()
        || std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists())
}

/// The objects that attribute drops: `-f` manifests (errors are bad input), else the
/// configured cluster (unreachable: a warning, and drops stay unattributed).
fn attribution_inventory(args: &Args) -> anyhow::Result<Option<Inventory>> {
    if !args.filenames.is_empty() {
        return load_inventory(&args.filenames, &args.cluster).map(Some);
    }
    if !cluster_configured(&args.cluster) {
        return Ok(None);
    }
    match load_inventory(&[], &args.cluster) {
        Ok(inv) => Ok(Some(inv)),
        Err(e) => {
            eprintln!("netpol-trace: drops will not be attributed: {e:#}");
            Ok(None)
        }
    }
}

/// Runs `trace`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let netns = args.tracer.netns_path()?;
    let inventory = attribution_inventory(&args)?;
    let opts = TracerOptions {
        netns,
        iface_glob: args.tracer.iface.clone(),
        ports: args.tracer.ports.clone(),
        all_ports: args.tracer.all_ports,
        capture_packets: args.pcap.is_some(),
        ..TracerOptions::default()
    };
    let (tracer, rx) = Tracer::start(opts).map_err(exit::ExitError::from)?;
    tracing::info!(interfaces = ?tracer.interfaces, "tracing");
    if tracer.interfaces.is_empty() {
        eprintln!("netpol-trace: no matching interface yet; waiting for pods to appear");
    } else if args.output == OutputFormat::Table {
        eprintln!(
            "attached to {} interface(s): {}",
            tracer.interfaces.len(),
            tracer.interfaces.join(" ")
        );
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, tracer.interfaces.join("\n") + "\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    let mut pcap = match &args.pcap {
        Some(path) => Some(PcapWriter::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))?),
        None => None,
    };

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut printer = Printer { output: args.output, out: std::io::stdout() };
    rt.block_on(async {
        let mut rx = rx;
        let mut term = signal(SignalKind::terminate())?;
        let deadline = async {
            match args.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                () = &mut deadline => break,
                msg = rx.recv() => match msg {
                    Some(TracerMessage::Event(mut ev)) => {
                        if let Some(inv) = &inventory {
                            attribution::attribute_event(inv, &mut ev);
                        }
                        printer.event(&ev)?
                    }
                    Some(TracerMessage::Packet(p)) => {
                        if let Some(w) = pcap.as_mut() {
                            let orig = ip_total_len(&p.header).unwrap_or(p.header.len());
                            w.write(p.time, &p.header, orig)?;
                        }
                    }
                    Some(TracerMessage::Attached(i)) => tracing::info!(iface = %i, "attached"),
                    Some(TracerMessage::Detached(i)) => tracing::info!(iface = %i, "interface gone"),
                    Some(TracerMessage::Counters(_)) => {}
                    Some(TracerMessage::Failed(e)) => anyhow::bail!("tracer failed: {e}"),
                    None => break,
                },
            }
        }
        anyhow::Ok(())
    })?;
    let summary = tracer.stop();
    printer.event(&TraceEvent::Summary(summary))?;
    Ok(exit::OK)
}

struct Printer<W: Write> {
    output: OutputFormat,
    out: W,
}

impl<W: Write> Printer<W> {
    fn event(&mut self, ev: &TraceEvent) -> anyhow::Result<()> {
        match self.output {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Kubectl => {
                writeln!(self.out, "{}", serde_json::to_string(ev)?)?
            }
            OutputFormat::Table => writeln!(self.out, "{}", crate::output::trace_line(ev))?,
        }
        self.out.flush()?;
        Ok(())
    }
}
