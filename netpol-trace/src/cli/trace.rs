//! `netpol-trace trace`: watch a node's pod veths for dropped SYNs.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::explain::load_inventory;
use crate::attribution;
use crate::{
    datapath::netns,
    exit,
    inventory::Inventory,
    trace::{
        TraceEvent, Tracer, TracerMessage, TracerOptions,
        pcap::{PcapWriter, ip_total_len},
        tracer::DEFAULT_PORT,
    },
};

/// Output formats of `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceOutput {
    /// One line per event, for people.
    Table,
    /// NDJSON: one JSON object per line (`drop`, `restored`, and a final `summary`).
    Json,
}

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
    /// Network namespace of the node: an `ip netns` name or a path (default: the current one).
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,
    /// Only interfaces matching this glob (default: every veth), e.g. 'cali*'.
    #[arg(long, value_name = "GLOB")]
    pub iface: Option<String>,
    /// TCP server port to watch (repeatable).
    #[arg(long = "port", short = 'p', value_name = "PORT", default_values_t = [DEFAULT_PORT])]
    pub ports: Vec<u16>,
    /// Watch every TCP port.
    #[arg(long, conflicts_with = "ports")]
    pub all_ports: bool,
    /// Stop after this long (e.g. 10s, 2m); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Write this file once the programs are attached (for scripts: no sleeping).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Write the captured SYN headers (first of each flow at each point) to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = TraceOutput::Table)]
    pub output: TraceOutput,
    /// Manifests (file, directory, repeatable) to attribute drops to pods and policies;
    /// without it, the cluster of the kubeconfig (or in-cluster) when one is configured.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,
}

/// Whether a cluster is configured (kubeconfig or in-cluster), so `trace` may try it.
fn cluster_configured() -> bool {
    std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists())
}

/// The objects that attribute drops: `-f` manifests (errors are bad input), else the
/// configured cluster (unreachable: a warning, and drops stay unattributed).
fn attribution_inventory(args: &Args) -> anyhow::Result<Option<Inventory>> {
    if !args.filenames.is_empty() {
        return load_inventory(&args.filenames).map(Some);
    }
    if !cluster_configured() {
        return Ok(None);
    }
    match load_inventory(&[]) {
        Ok(inv) => Ok(Some(inv)),
        Err(e) => {
            eprintln!("netpol-trace: drops will not be attributed: {e:#}");
            Ok(None)
        }
    }
}

/// Checks `--netns` (must exist) and `--port` (no 0); errors are bad input (exit 2).
pub(crate) fn netns_and_ports(
    netns: Option<&str>,
    ports: &[u16],
) -> anyhow::Result<Option<PathBuf>> {
    if ports.contains(&0) {
        return Err(exit::ExitError::bad_input("--port: 0 is not a port").into());
    }
    Ok(netns
        .map(netns::resolve)
        .transpose()
        .map_err(|e| exit::ExitError::bad_input(e.to_string()))?)
}

/// Runs `trace`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let netns = netns_and_ports(args.netns.as_deref(), &args.ports)?;
    let inventory = attribution_inventory(&args)?;
    let opts = TracerOptions {
        netns,
        iface_glob: args.iface.clone(),
        ports: args.ports.clone(),
        all_ports: args.all_ports,
        capture_packets: args.pcap.is_some(),
        ..TracerOptions::default()
    };
    let (tracer, rx) =
        Tracer::start(opts).map_err(|e| exit::ExitError::bad_input(e.to_string()))?;
    tracing::info!(interfaces = ?tracer.interfaces, "tracing");
    if tracer.interfaces.is_empty() {
        eprintln!("netpol-trace: no matching interface yet; waiting for pods to appear");
    } else if args.output == TraceOutput::Table {
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
    output: TraceOutput,
    out: W,
}

impl<W: Write> Printer<W> {
    fn event(&mut self, ev: &TraceEvent) -> anyhow::Result<()> {
        match self.output {
            TraceOutput::Json => writeln!(self.out, "{}", serde_json::to_string(ev)?)?,
            TraceOutput::Table => writeln!(self.out, "{}", render(ev))?,
        }
        self.out.flush()?;
        Ok(())
    }
}

/// One line for people.
pub fn render(ev: &TraceEvent) -> String {
    match ev {
        TraceEvent::Drop(d) => {
            let mut line = format!(
                "{}  DROP      {:<16} {:<16} {}:{} -> {}:{}  x{}",
                d.time.format("%H:%M:%S%.3f"),
                d.reason,
                d.ifname,
                d.src.display_name(),
                d.src.port,
                d.dst.display_name(),
                d.dst.port,
                d.count
            );
            for p in &d.policies {
                line.push_str(&format!("  [{} {}/{}]", p.direction, p.namespace, p.name));
            }
            if let Some(hint) = &d.hint {
                line.push_str(&format!("  {hint}"));
            }
            line
        }
        TraceEvent::Restored(r) => format!(
            "{}  RESTORED  {} -> {}:{} handshake completed after {} dropped SYN(s) since {}",
            r.time.format("%H:%M:%S%.3f"),
            r.src.display_name(),
            r.dst.display_name(),
            r.dst.port,
            r.drops,
            r.first_drop.format("%H:%M:%S%.3f"),
        ),
        TraceEvent::Summary(s) => format!(
            "summary: {} dropped flow(s), {} restored, {} packets matched, {} events lost, interfaces: {}",
            s.dropped_flows,
            s.restored_flows,
            s.matched,
            s.events_lost,
            s.interfaces.join(" ")
        ),
    }
}
