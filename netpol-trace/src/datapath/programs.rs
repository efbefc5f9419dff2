//! The loaded kernel programs: load with the running kernel's offsets, attach to and detach
//! from veths, and read what they observed (new-flow notices, aggregated flows, counters).

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, SchedClassifier, TcAttachType, tc, tc::SchedClassifierLinkId},
};
use netpol_trace_common::{
    COUNTER_EVENTS_LOST, COUNTER_FLOWS_FULL, COUNTER_MATCHED, Config, FlowEvent, FlowKey,
    FlowStats, GLOBAL_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_FLOWS, MAP_PORTS, PROG_KFREE_SKB,
    PROG_TC_FROM_POD, PROG_TC_TO_POD,
};

use super::{
    btf::{Btf, BtfError},
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
}

struct Attached {
    from_pod: SchedClassifierLinkId,
    to_pod: SchedClassifierLinkId,
}

/// The loaded programs and their maps. Dropping it detaches everything.
pub struct Datapath {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    flows: PerCpuHashMap<MapData, FlowKey, FlowStats>,
    counters: PerCpuArray<MapData, u64>,
    /// Kept open: the programs were loaded against this map's descriptor.
    _ports: HashMap<MapData, u16, u8>,
    attached: BTreeMap<String, Attached>,
    reasons: DropReasons,
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
    /// programs are loaded but attached only by [`Datapath::attach`].
    pub fn load(opts: &DatapathOptions) -> Result<Self, DatapathError> {
        preflight::check(object::is_embedded())?;
        preflight::raise_memlock();
        let btf = Btf::from_sys_fs()?;
        let offsets = kernel_offsets(&btf)?;
        let reasons = DropReasons::from_btf(&btf)?;
        let config = Config {
            netns_inum: opts.netns_inum,
            all_ports: u32::from(opts.all_ports),
            drops_enabled: 1,
            _pad: 0,
            offsets,
        };
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| DatapathError::Map {
            map: "BTF",
            reason: format!("reading kernel BTF for the tracepoint: {e}"),
        })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global(GLOBAL_CONFIG, &config, true)
            .load(object::OBJECT)?;

        let mut ports: HashMap<_, u16, u8> =
            HashMap::try_from(take_map(&mut ebpf, MAP_PORTS)?).map_err(map_err(MAP_PORTS))?;
        for port in &opts.ports {
            ports.insert(port, 1, 0).map_err(map_err(MAP_PORTS))?;
        }

        for name in [PROG_TC_FROM_POD, PROG_TC_TO_POD] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|source| DatapathError::Program { program: name, source })?;
        }
        let kfree: &mut BtfTracePoint = program(&mut ebpf, PROG_KFREE_SKB)?;
        let wrap = |source| DatapathError::Program { program: PROG_KFREE_SKB, source };
        kfree.load("kfree_skb", &aya_btf).map_err(wrap)?;
        kfree.attach().map_err(wrap)?;

        let events =
            RingBuf::try_from(take_map(&mut ebpf, MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
        let flows =
            PerCpuHashMap::try_from(take_map(&mut ebpf, MAP_FLOWS)?).map_err(map_err(MAP_FLOWS))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, MAP_COUNTERS)?)
            .map_err(map_err(MAP_COUNTERS))?;
        Ok(Self {
            ebpf,
            events,
            flows,
            counters,
            _ports: ports,
            attached: BTreeMap::new(),
            reasons,
        })
    }

    /// Attaches both tc programs to `iface` (in the calling thread's network namespace):
    /// tcx links where the kernel has them, clsact + cls_bpf otherwise.
    pub fn attach(&mut self, iface: &str) -> Result<(), DatapathError> {
        if self.attached.contains_key(iface) {
            return Ok(());
        }
        let from_pod = self.attach_one(iface, PROG_TC_FROM_POD, TcAttachType::Ingress)?;
        let to_pod = match self.attach_one(iface, PROG_TC_TO_POD, TcAttachType::Egress) {
            Ok(id) => id,
            Err(e) => {
                if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, PROG_TC_FROM_POD) {
                    let _ = p.detach(from_pod);
                }
                return Err(e);
            }
        };
        self.attached.insert(iface.to_string(), Attached { from_pod, to_pod });
        tracing::info!(iface, "attached");
        Ok(())
    }

    fn attach_one(
        &mut self,
        iface: &str,
        name: &'static str,
        side: TcAttachType,
    ) -> Result<SchedClassifierLinkId, DatapathError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
        match prog.attach(iface, side) {
            Ok(id) => Ok(id),
            Err(first) => {
                // Kernels without tcx need the clsact qdisc; "exists" is fine.
                let _ = tc::qdisc_add_clsact(iface);
                prog.attach(iface, side).map_err(|e| DatapathError::Attach {
                    iface: iface.to_string(),
                    reason: format!("{e} (first attempt: {first})"),
                })
            }
        }
    }

    /// Detaches from `iface`; an interface that is already gone is not an error.
    pub fn detach(&mut self, iface: &str) {
        let Some(a) = self.attached.remove(iface) else { return };
        for (name, id) in [(PROG_TC_FROM_POD, a.from_pod), (PROG_TC_TO_POD, a.to_pod)] {
            if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, name)
                && let Err(e) = p.detach(id)
            {
                tracing::debug!(iface, error = %e, "detach (interface probably gone)");
            }
        }
        tracing::info!(iface, "detached");
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) {
        let names: Vec<String> = self.attached.keys().cloned().collect();
        for name in names {
            self.detach(&name);
        }
    }

    /// Interfaces currently attached.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.keys().map(String::as_str)
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

    /// Every flow in the kernel map, per-CPU slots summed.
    pub fn flows(&self) -> Vec<(FlowKey, FlowStats)> {
        self.flows
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| {
                let mut sum = FlowStats {
                    first_ns: u64::MAX,
                    last_ns: 0,
                    count: 0,
                    reason: 0,
                    sport: 0,
                    _pad: 0,
                };
                for s in per_cpu.iter().filter(|s| s.count > 0) {
                    sum.first_ns = sum.first_ns.min(s.first_ns);
                    if s.last_ns >= sum.last_ns {
                        sum.last_ns = s.last_ns;
                        sum.sport = s.sport;
                        if s.reason != 0 {
                            sum.reason = s.reason;
                        }
                    }
                    sum.count += s.count;
                }
                if sum.count == 0 {
                    sum.first_ns = 0;
                }
                (key, sum)
            })
            .collect()
    }

    /// The programs' counters.
    pub fn counters(&self) -> Counters {
        let get = |i: u32| -> u64 {
            self.counters.get(&i, 0).map(|v| v.iter().sum()).unwrap_or_default()
        };
        Counters {
            matched: get(COUNTER_MATCHED),
            events_lost: get(COUNTER_EVENTS_LOST),
            flows_full: get(COUNTER_FLOWS_FULL),
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

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
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
