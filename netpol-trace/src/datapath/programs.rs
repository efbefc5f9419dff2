//! The loaded kernel programs: load with the running kernel's offsets and read what they
//! observed (new-flow notices, changed flows, counters). Attaching lives in `attach.rs`.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, SchedClassifier, TcAttachType},
};
use netpol_trace_common::{
    COUNTER_CHANGED_LOST, COUNTER_EVENTS_LOST, COUNTER_FLOW_INSERTS, COUNTER_FLOWS_FULL,
    COUNTER_MATCHED, Config, FlowEvent, GLOBAL_CONFIG, KernelOffsets, MAP_CHANGED, MAP_COUNTERS,
    MAP_EVENTS, MAP_FLOWS, MAP_PORTS, PROG_KFREE_SKB, PROG_TC_FROM_POD, PROG_TC_TO_POD,
};

use super::{
    ENV_TC_ONLY,
    attach::Attached,
    btf::{Btf, BtfError},
    ebpf_log,
    flowmap::{FlowMap, FlowMapPressure, NOTIFY_QUIET},
    kernel::{DropReasons, kernel_offsets},
    object, preflight,
};

/// Errors of the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Preconditions not met.
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// Kernel BTF unreadable or lacking what the programs need.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// Loading the object failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program failed to load or attach.
    #[error("eBPF program {program}: {}", short_error(source))]
    Program {
        /// Program name.
        program: &'static str,
        /// The error.
        source: aya::programs::ProgramError,
    },
    /// A map is missing or has the wrong type.
    #[error("eBPF map {map}: {reason}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Attaching to an interface failed.
    #[error("attaching to interface {iface}: {reason}")]
    Attach {
        /// Interface name.
        iface: String,
        /// What went wrong.
        reason: String,
    },
}

/// The verifier's log can be thousands of lines: keep its first line and its verdict.
fn short_error(e: &aya::programs::ProgramError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 8 {
        return text;
    }
    let tail = &lines[lines.len() - 5..];
    format!("{}\n  ...\n{}", lines[0], tail.join("\n"))
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// TCP server ports to watch (ignored with `all_ports`).
    pub ports: Vec<u16>,
    /// Watch every TCP port.
    pub all_ports: bool,
    /// Inode of the network namespace whose drops count (0: all namespaces).
    pub netns_inum: u32,
}

/// Counters kept by the programs, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Packets that matched (SYN or SYN-ACK of a watched port, or a dropped SYN).
    pub matched: u64,
    /// New-flow notices lost because the ring buffer was full.
    pub events_lost: u64,
    /// Flows that could not be recorded.
    pub flows_full: u64,
    /// Changed-flow notices that did not fit (user space rescans the map once).
    pub changed_lost: u64,
    /// How full the kernel flow map is.
    pub flow_map: FlowMapPressure,
}

/// The loaded programs and their maps. Dropping it detaches everything.
pub struct Datapath {
    pub(super) ebpf: Ebpf,
    events: RingBuf<MapData>,
    flows: FlowMap,
    counters: PerCpuArray<MapData, u64>,
    /// Kept open: the programs were loaded against this map's descriptor.
    _ports: HashMap<MapData, u16, u8>,
    /// Attachments by interface index (a veth recreated under the same name is a new one).
    pub(super) attached: BTreeMap<u32, Attached>,
    /// Kernel ids of the two tc programs (from pod, to pod), to recognise our attachments.
    pub(super) prog_ids: [u32; 2],
    reasons: DropReasons,
    degraded: Option<String>,
    /// The programs' diagnostics, forwarded to `tracing`.
    log: Option<ebpf_log::KernelLog>,
}

/// Why the drop tracepoint cannot run here (tc-only mode), or `None`.
fn drops_unavailable(btf: &Btf) -> Result<(KernelOffsets, DropReasons), String> {
    if std::env::var(ENV_TC_ONLY).is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err(format!("{ENV_TC_ONLY} is set"));
    }
    let offsets = kernel_offsets(btf).map_err(|e| e.to_string())?;
    let reasons = DropReasons::from_btf(btf).map_err(|e| e.to_string())?;
    Ok((offsets, reasons))
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |e| DatapathError::Map { map, reason: e.to_string() }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(name)
        .ok_or_else(|| DatapathError::Map { map: name, reason: "not in the object".into() })
}

impl Datapath {
    /// Loads the embedded programs for this kernel and attaches the drop tracepoint. The tc
    /// programs are loaded but attached only by [`Datapath::attach`]. On a kernel without the
    /// drop-reason enum or without `tp_btf/kfree_skb` (or with [`ENV_TC_ONLY`] set) it runs
    /// tc-only: see [`Datapath::degraded`].
    pub fn load(opts: &DatapathOptions) -> Result<Self, DatapathError> {
        preflight::check(object::is_embedded())?;
        preflight::raise_memlock();
        let btf = Btf::from_sys_fs()?;
        let (offsets, reasons, mut degraded) = match drops_unavailable(&btf) {
            Ok((offsets, reasons)) => (offsets, reasons, None),
            Err(why) => (KernelOffsets::default(), DropReasons::default(), Some(why)),
        };
        let config = Config {
            netns_inum: opts.netns_inum,
            all_ports: u32::from(opts.all_ports),
            drops_enabled: u32::from(degraded.is_none()),
            _pad: 0,
            offsets,
            notify_quiet_ns: NOTIFY_QUIET.as_nanos() as u64,
        };
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| DatapathError::Map {
            map: "BTF",
            reason: format!("reading kernel BTF: {e}"),
        })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global(GLOBAL_CONFIG, &config, true)
            .override_global(aya_log::LEVEL, &ebpf_log::kernel_level(), false)
            .load(object::OBJECT)?;
        let log = ebpf_log::KernelLog::take(&mut ebpf);

        let mut ports: HashMap<_, u16, u8> =
            HashMap::try_from(take_map(&mut ebpf, MAP_PORTS)?).map_err(map_err(MAP_PORTS))?;
        for port in &opts.ports {
            ports.insert(port, 1, 0).map_err(map_err(MAP_PORTS))?;
        }

        let mut prog_ids = [0; 2];
        for (i, name) in [PROG_TC_FROM_POD, PROG_TC_TO_POD].into_iter().enumerate() {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            let wrap = |source| DatapathError::Program { program: name, source };
            prog.load().map_err(wrap)?;
            prog_ids[i] = prog.info().map_err(wrap)?.id();
        }
        if degraded.is_none() {
            let kfree: &mut BtfTracePoint = program(&mut ebpf, PROG_KFREE_SKB)?;
            let attached = kfree.load("kfree_skb", &aya_btf).and_then(|()| kfree.attach());
            if let Err(e) = attached {
                degraded = Some(format!("tp_btf/kfree_skb: {e}"));
            }
        }
        if let Some(why) = &degraded {
            tracing::warn!(
                reason = %why,
                "drop tracepoint unavailable: tc-only mode, drops inferred from retransmitted SYNs, reason \"unknown\""
            );
        }

        let events =
            RingBuf::try_from(take_map(&mut ebpf, MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
        let flows =
            FlowMap::new(take_map(&mut ebpf, MAP_FLOWS)?, take_map(&mut ebpf, MAP_CHANGED)?)?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, MAP_COUNTERS)?)
            .map_err(map_err(MAP_COUNTERS))?;
        Ok(Self {
            ebpf,
            events,
            flows,
            counters,
            _ports: ports,
            attached: BTreeMap::new(),
            prog_ids,
            reasons,
            degraded,
            log,
        })
    }

    /// Why the drop tracepoint is not running (tc-only mode: drops are inferred from
    /// retransmitted SYNs and their reason is "unknown"), or `None` when it runs.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// Forwards the programs' pending diagnostics to `tracing` (target
    /// [`ebpf_log::TARGET`]).
    pub fn flush_logs(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush();
        }
    }

    /// How many diagnostics the programs have sent to user space so far (none unless the
    /// log filter enabled [`ebpf_log::TARGET`] when they were loaded).
    pub fn kernel_log_records(&self) -> u64 {
        self.log.as_ref().map_or(0, ebpf_log::KernelLog::records)
    }

    /// Takes the pending new-flow notices.
    pub fn drain_events(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<FlowEvent>() {
                // SAFETY: FlowEvent is plain repr(C) data and the item holds at least its size.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) });
            }
        }
        out
    }

    /// The kernel flow map, read incrementally.
    pub fn flow_map(&mut self) -> &mut FlowMap {
        &mut self.flows
    }

    /// The programs' counters and the flow map's pressure.
    pub fn counters(&self) -> Counters {
        let get = |i: u32| -> u64 {
            self.counters.get(&i, 0).map(|v| v.iter().sum()).unwrap_or_default()
        };
        let full = get(COUNTER_FLOWS_FULL);
        Counters {
            matched: get(COUNTER_MATCHED),
            events_lost: get(COUNTER_EVENTS_LOST),
            flows_full: full,
            changed_lost: get(COUNTER_CHANGED_LOST),
            flow_map: self.flows.pressure(get(COUNTER_FLOW_INSERTS), full),
        }
    }

    /// The readable name of a kernel drop reason.
    pub fn reason_name(&self, raw: u32) -> String {
        self.reasons.name(raw)
    }

    /// The drop-reason names of this kernel.
    pub fn drop_reasons(&self) -> &DropReasons {
        &self.reasons
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.detach_all();
    }
}

pub(super) fn program<'a, T>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(DatapathError::Program {
        program: name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    prog.try_into().map_err(|source| DatapathError::Program { program: name, source })
}

/// Names of the tcx programs attached to `iface` (calling thread's namespace), ingress then
/// egress; `tcx/ingress:NAME` form. Kernels without tcx answer an error.
pub fn tcx_programs(iface: &str) -> Result<Vec<String>, DatapathError> {
    let mut out = Vec::new();
    for (side, ty) in [("ingress", TcAttachType::Ingress), ("egress", TcAttachType::Egress)] {
        let (_, infos) = SchedClassifier::query_tcx(iface, ty)
            .map_err(|source| DatapathError::Program { program: "tcx query", source })?;
        for info in infos {
            out.push(format!("tcx/{side}:{}", info.name_as_str().unwrap_or("?")));
        }
    }
    Ok(out)
}
