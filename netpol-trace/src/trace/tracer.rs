//! The tracer: a thread that lives in the node's network namespace, loads the programs,
//! attaches to every pod veth (following links as they come and go), and turns what the
//! kernel observed into [`TraceEvent`]s. Everything is detached when it stops, on every path.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use chrono::{DateTime, Utc};
use netpol_trace_common::Observation;
use tokio::sync::mpsc;

use super::{
    flows::{Clock, FlowTable, monotonic_ns},
    model::{SummaryRecord, TraceEvent},
};
use crate::datapath::{
    Datapath, DatapathError, DatapathOptions,
    links::{self, Link, LinkWatcher},
    netns,
    programs::Counters,
};

/// The port watched when none is given (MySQL / MariaDB).
pub const DEFAULT_PORT: u16 = 3306;

/// What to trace.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    /// Network namespace to work in (`None`: the caller's).
    pub netns: Option<PathBuf>,
    /// Only interfaces whose name matches this glob (default: every veth).
    pub iface_glob: Option<String>,
    /// Server ports to watch.
    pub ports: Vec<u16>,
    /// Watch every TCP port.
    pub all_ports: bool,
    /// How often the kernel's flow map is read.
    pub poll_interval: Duration,
    /// How often an ongoing drop is reported again (and the kernel counters sent).
    pub report_interval: Duration,
    /// Send the captured packet headers ([`TracerMessage::Packet`]); off when nobody writes
    /// a pcap.
    pub capture_packets: bool,
}

impl Default for TracerOptions {
    fn default() -> Self {
        Self {
            netns: None,
            iface_glob: None,
            ports: vec![DEFAULT_PORT],
            all_ports: false,
            poll_interval: Duration::from_millis(100),
            report_interval: Duration::from_secs(1),
            capture_packets: true,
        }
    }
}

/// Errors starting a tracer.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// The programs could not be loaded or attached.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// Interfaces could not be listed.
    #[error("listing interfaces: {0}")]
    Links(std::io::Error),
    /// `--iface` names one interface (no glob) and it does not exist.
    #[error("interface {0} not found in the traced network namespace")]
    NoInterface(String),
    /// The tracer thread ended before it was ready.
    #[error("the tracer stopped before attaching: {0}")]
    Thread(String),
}

/// A packet header captured by the programs (the first of each flow at each point).
#[derive(Debug, Clone)]
pub struct CapturedPacket {
    /// When it was seen.
    pub time: DateTime<Utc>,
    /// Where it was seen.
    pub observation: Observation,
    /// Interface.
    pub ifname: String,
    /// Bytes from the IP header on.
    pub header: Vec<u8>,
}

/// What the tracer reports.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few messages a second through a channel; boxing would only add an allocation"
)]
pub enum TracerMessage {
    /// A drop or a restore, not yet attributed to pods and policies.
    Event(TraceEvent),
    /// A captured header (for pcap output).
    Packet(CapturedPacket),
    /// Now attached to this interface.
    Attached(String),
    /// No longer attached (the interface went away).
    Detached(String),
    /// The kernel-side counters so far, sent every report interval.
    Counters(Counters),
    /// A failure after start (the tracer stops).
    Failed(String),
}

/// A running tracer. Dropping it stops it and detaches everything.
pub struct Tracer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SummaryRecord>>,
    /// Interfaces attached at start.
    pub interfaces: Vec<String>,
    /// Why it runs tc-only (no drop tracepoint; drops inferred, reason "unknown"), if it does.
    pub degraded: Option<String>,
}

impl Tracer {
    /// Starts tracing; returns once the programs are attached (or failed to), with the
    /// channel of what it observes.
    pub fn start(
        opts: TracerOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<TracerMessage>), TracerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("netpol-tracer".into())
            .spawn(move || run(opts, tx, ready_tx, stop_thread))
            .map_err(|e| TracerError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok((interfaces, degraded))) => {
                Ok((Self { stop, thread: Some(thread), interfaces, degraded }, rx))
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(TracerError::Thread("no answer".into()))
            }
        }
    }

    /// Stops, detaches everything, and returns the final counters.
    pub fn stop(mut self) -> SummaryRecord {
        self.shutdown()
    }

    fn shutdown(&mut self) -> SummaryRecord {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type Ready = Result<(Vec<String>, Option<String>), TracerError>;

/// How often the tracer checks that its programs are still attached.
pub const VERIFY_INTERVAL: Duration = Duration::from_secs(5);

struct Session {
    datapath: Datapath,
    links: BTreeMap<u32, Link>,
    glob: Option<String>,
    tx: mpsc::UnboundedSender<TracerMessage>,
}

impl Session {
    fn wanted(&self, link: &Link) -> bool {
        match &self.glob {
            Some(g) => links::glob_match(g, &link.name),
            None => link.is_veth(),
        }
    }

    /// Re-reads the links; attaches to new matching ones, forgets vanished ones. Keyed on
    /// the interface index: a veth deleted and recreated under the same name is re-attached.
    fn sync_links(&mut self) -> Result<(), TracerError> {
        let now: BTreeMap<u32, Link> = links::list()
            .map_err(TracerError::Links)?
            .into_iter()
            .map(|l| (l.ifindex, l))
            .collect();
        let gone: Vec<(u32, String)> = self
            .datapath
            .attachments()
            .filter(|(i, name, _)| now.get(i).is_none_or(|l| &l.name != name))
            .map(|(i, name, _)| (i, name.to_string()))
            .collect();
        for (ifindex, name) in gone {
            self.datapath.detach_ifindex(ifindex);
            let _ = self.tx.send(TracerMessage::Detached(name));
        }
        let wanted: Vec<Link> = now.values().filter(|l| self.wanted(l)).cloned().collect();
        for link in &wanted {
            if self.datapath.attachments().any(|(i, _, _)| i == link.ifindex) {
                continue;
            }
            match self.datapath.attach_ifindex(link.ifindex, &link.name) {
                Ok(()) => {
                    let _ = self.tx.send(TracerMessage::Attached(link.name.clone()));
                }
                // A link that vanished between the dump and the attach is not an error.
                Err(e) => tracing::warn!(iface = %link.name, error = %e, "not attached"),
            }
        }
        self.links = now;
        Ok(())
    }

    /// Re-attaches where one of our programs was removed behind our back.
    fn verify(&mut self) {
        for ifindex in self.datapath.verify() {
            let name = self.ifname(ifindex);
            tracing::warn!(iface = %name, "programs no longer attached; attaching again");
            if let Err(e) = self.datapath.reattach(ifindex) {
                tracing::warn!(iface = %name, error = %e, "re-attach failed");
                let _ = self.tx.send(TracerMessage::Detached(name));
            }
        }
    }

    fn ifname(&self, ifindex: u32) -> String {
        self.links.get(&ifindex).map_or_else(|| format!("if{ifindex}"), |l| l.name.clone())
    }
}

fn run(
    opts: TracerOptions,
    tx: mpsc::UnboundedSender<TracerMessage>,
    ready: std_mpsc::Sender<Ready>,
    stop: Arc<AtomicBool>,
) -> SummaryRecord {
    let mut session = match start_session(&opts, tx.clone()) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return SummaryRecord::default();
        }
    };
    let degraded = session.datapath.degraded().map(str::to_string);
    let _ = ready
        .send(Ok((session.datapath.attached().map(str::to_string).collect(), degraded.clone())));
    let mut watcher = LinkWatcher::new().ok();
    let clock = Clock::now();
    let mut table = FlowTable::new(opts.report_interval);
    if degraded.is_some() {
        table = table.inferring_drops();
    }
    let mut dropped = std::collections::BTreeSet::new();
    let mut restored = 0u64;
    let mut last_counters = std::time::Instant::now();
    let mut last_verify = std::time::Instant::now();
    let mut changed_lost = 0u64;

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(opts.poll_interval);
        if watcher.as_mut().is_some_and(LinkWatcher::changed)
            && let Err(e) = session.sync_links()
        {
            let _ = tx.send(TracerMessage::Failed(e.to_string()));
            break;
        }
        session.datapath.flush_logs();
        for ev in session.datapath.drain_events() {
            if !opts.capture_packets {
                continue;
            }
            let len = (ev.header_len as usize).min(ev.header.len());
            let _ = tx.send(TracerMessage::Packet(CapturedPacket {
                time: clock.wall(ev.ts_ns),
                observation: Observation::from_raw(ev.key.observation),
                ifname: session.ifname(ev.key.ifindex),
                header: ev.header[..len].to_vec(),
            }));
        }
        let now_ns = monotonic_ns();
        let changed = session.datapath.flow_map().poll(now_ns);
        let events = table.update(&changed, now_ns, &clock, |i| session.ifname(i));
        for mut ev in events {
            match &mut ev {
                TraceEvent::Drop(d) => {
                    d.reason = session.datapath.reason_name(d.reason_raw);
                    dropped.insert((d.src.ip, d.dst.ip, d.dst.port));
                }
                TraceEvent::Restored(_) => restored += 1,
                TraceEvent::Summary(_) => {}
            }
            let _ = tx.send(TracerMessage::Event(ev));
        }
        let now = std::time::Instant::now();
        if now.duration_since(last_counters) >= opts.report_interval {
            last_counters = now;
            let counters = session.datapath.counters();
            if counters.changed_lost > changed_lost {
                // Notices were lost: read the whole map once to catch up.
                changed_lost = counters.changed_lost;
                let all = session.datapath.flow_map().rescan(monotonic_ns());
                let _ = table.update(&all, monotonic_ns(), &clock, |i| session.ifname(i));
            }
            let pressure = counters.flow_map;
            let pruned = table.prune(monotonic_ns(), pressure.entries, pressure.capacity);
            let flow_map = session.datapath.flow_map();
            flow_map.remove(&pruned.idle, false);
            flow_map.remove(&pruned.evicted, true);
            let _ = tx.send(TracerMessage::Counters(session.datapath.counters()));
        }
        if now.duration_since(last_verify) >= VERIFY_INTERVAL {
            last_verify = now;
            session.verify();
        }
    }
    let counters = session.datapath.counters();
    let interfaces = session.datapath.attached().map(str::to_string).collect();
    session.datapath.detach_all();
    SummaryRecord {
        matched: counters.matched,
        events_lost: counters.events_lost,
        flows_full: counters.flows_full,
        dropped_flows: dropped.len() as u64,
        restored_flows: restored,
        interfaces,
    }
}

fn start_session(
    opts: &TracerOptions,
    tx: mpsc::UnboundedSender<TracerMessage>,
) -> Result<Session, TracerError> {
    if let Some(path) = &opts.netns {
        netns::enter(path)?;
    }
    let netns_inum = netns::current_inode()?;
    let datapath = Datapath::load(&DatapathOptions {
        ports: opts.ports.clone(),
        all_ports: opts.all_ports,
        netns_inum,
    })?;
    let mut session =
        Session { datapath, links: BTreeMap::new(), glob: opts.iface_glob.clone(), tx };
    session.sync_links()?;
    if let Some(name) = &opts.iface_glob
        && !name.contains(['*', '?'])
        && !session.links.values().any(|l| &l.name == name)
    {
        return Err(TracerError::NoInterface(name.clone()));
    }
    Ok(session)
}
