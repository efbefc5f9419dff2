//! Attaching the tc programs to pod veths, keyed by interface index: tcx links placed
//! **first** (an eBPF CNI that redirects or drops in its own tcx program cannot hide the SYN
//! from us; ours return "next" and change nothing), legacy clsact + cls_bpf filters at the
//! top priority on kernels without tcx (or with [`ENV_TC_MODE`]`=legacy`). Legacy filters
//! outlive a killed process, so filters named after our programs are swept from an interface
//! before we attach to it; [`Datapath::verify`] checks that ours are still in place.

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
};
use netpol_trace_common::{PROG_TC_FROM_POD, PROG_TC_TO_POD};

use super::{
    ENV_TC_MODE,
    programs::{Datapath, DatapathError, program},
    tcfilter,
};

/// Priority of our legacy filters: the lowest number runs first.
pub const LEGACY_PRIORITY: u16 = 1;

/// Which tc hook an attachment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// tcx link (Linux >= 6.6), released when the process ends, however it ends.
    Tcx,
    /// clsact qdisc + cls_bpf filter (survives the process: swept at the next start).
    Legacy,
}

/// Our two programs on one interface.
pub struct Attached {
    /// Interface name when attached.
    pub name: String,
    /// The hook used.
    pub hook: Hook,
    from_pod: SchedClassifierLinkId,
    to_pod: SchedClassifierLinkId,
}

const SIDES: [(&str, TcAttachType); 2] =
    [(PROG_TC_FROM_POD, TcAttachType::Ingress), (PROG_TC_TO_POD, TcAttachType::Egress)];

fn legacy_forced() -> bool {
    std::env::var(ENV_TC_MODE).is_ok_and(|v| v == "legacy")
}

/// Index of interface `name` in the calling thread's namespace.
pub fn ifindex_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl Datapath {
    /// Attaches both tc programs to `iface` (calling thread's network namespace).
    pub fn attach(&mut self, iface: &str) -> Result<(), DatapathError> {
        let ifindex = ifindex_of(iface).ok_or_else(|| DatapathError::Attach {
            iface: iface.to_string(),
            reason: "no such interface".into(),
        })?;
        self.attach_ifindex(ifindex, iface)
    }

    /// Attaches both tc programs to interface `ifindex`, named `iface`. Already attached to
    /// that index: nothing to do. Stale legacy filters of a previous run are removed first.
    pub fn attach_ifindex(&mut self, ifindex: u32, iface: &str) -> Result<(), DatapathError> {
        if self.attached.contains_key(&ifindex) {
            return Ok(());
        }
        let swept = sweep_stale(iface);
        if swept > 0 {
            tracing::info!(iface, swept, "removed stale tc filters of a previous run");
        }
        let (from_pod, hook) = self.attach_one(iface, PROG_TC_FROM_POD, TcAttachType::Ingress)?;
        let to_pod = match self.attach_one(iface, PROG_TC_TO_POD, TcAttachType::Egress) {
            Ok((id, _)) => id,
            Err(e) => {
                if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, PROG_TC_FROM_POD) {
                    let _ = p.detach(from_pod);
                }
                return Err(e);
            }
        };
        let attached = Attached { name: iface.to_string(), hook, from_pod, to_pod };
        // The name may have moved to a new interface between the lookup and the attach.
        if ifindex_of(iface) != Some(ifindex) {
            self.release(attached);
            return Err(DatapathError::Attach {
                iface: iface.to_string(),
                reason: format!("interface index {ifindex} went away while attaching"),
            });
        }
        tracing::info!(iface, ifindex, ?hook, "attached");
        self.attached.insert(ifindex, attached);
        Ok(())
    }

    fn attach_one(
        &mut self,
        iface: &str,
        name: &'static str,
        side: TcAttachType,
    ) -> Result<(SchedClassifierLinkId, Hook), DatapathError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
        let mut first_error = None;
        if !legacy_forced() {
            let first = TcAttachOptions::TcxOrder(LinkOrder::first());
            match prog.attach_with_options(iface, side, first) {
                Ok(id) => return Ok((id, Hook::Tcx)),
                Err(e) => first_error = Some(e.to_string()),
            }
        }
        // No tcx: the clsact qdisc ("exists" is fine) and a cls_bpf filter run first.
        let _ = tc::qdisc_add_clsact(iface);
        let legacy =
            TcAttachOptions::Netlink(NlOptions { priority: LEGACY_PRIORITY, ..Default::default() });
        prog.attach_with_options(iface, side, legacy).map(|id| (id, Hook::Legacy)).map_err(|e| {
            DatapathError::Attach {
                iface: iface.to_string(),
                reason: match first_error {
                    Some(tcx) => format!("{e} (tcx: {tcx})"),
                    None => e.to_string(),
                },
            }
        })
    }

    fn release(&mut self, a: Attached) {
        for ((name, _), id) in SIDES.into_iter().zip([a.from_pod, a.to_pod]) {
            if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, name)
                && let Err(e) = p.detach(id)
            {
                tracing::debug!(iface = %a.name, error = %e, "detach (interface probably gone)");
            }
        }
    }

    /// Detaches from interface `ifindex`; one that is already gone is not an error.
    pub fn detach_ifindex(&mut self, ifindex: u32) {
        if let Some(a) = self.attached.remove(&ifindex) {
            let name = a.name.clone();
            self.release(a);
            tracing::info!(iface = %name, ifindex, "detached");
        }
    }

    /// Detaches from the interface named `iface`.
    pub fn detach(&mut self, iface: &str) {
        let found: Vec<u32> =
            self.attached.iter().filter(|(_, a)| a.name == iface).map(|(i, _)| *i).collect();
        for ifindex in found {
            self.detach_ifindex(ifindex);
        }
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) {
        let all: Vec<u32> = self.attached.keys().copied().collect();
        for ifindex in all {
            self.detach_ifindex(ifindex);
        }
    }

    /// Names of the interfaces currently attached.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.values().map(|a| a.name.as_str())
    }

    /// Interface indexes currently attached, with their names and hooks.
    pub fn attachments(&self) -> impl Iterator<Item = (u32, &str, Hook)> {
        self.attached.iter().map(|(i, a)| (*i, a.name.as_str(), a.hook))
    }

    /// Interfaces where one of our programs is no longer attached (someone removed the
    /// filter or link, or replaced the qdisc). The caller re-attaches them.
    pub fn verify(&self) -> Vec<u32> {
        let mut missing = Vec::new();
        for (&ifindex, a) in &self.attached {
            let present = SIDES.iter().zip(self.prog_ids).all(|((_, side), id)| {
                let ids: Vec<u32> = match a.hook {
                    Hook::Tcx => SchedClassifier::query_tcx(&a.name, *side)
                        .map(|(_, infos)| infos.iter().map(|i| i.id()).collect())
                        .unwrap_or_default(),
                    Hook::Legacy => tcfilter::bpf_filters(ifindex, *side)
                        .map(|f| f.iter().map(|f| f.prog_id).collect())
                        .unwrap_or_default(),
                };
                ids.contains(&id)
            });
            if !present {
                missing.push(ifindex);
            }
        }
        missing
    }

    /// Re-attaches interface `ifindex` after [`Datapath::verify`] found it incomplete.
    pub fn reattach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let Some(name) = self.attached.get(&ifindex).map(|a| a.name.clone()) else {
            return Ok(());
        };
        self.detach_ifindex(ifindex);
        self.attach_ifindex(ifindex, &name)
    }
}

/// Removes legacy filters named after our programs from `iface` (left by a previous run that
/// was killed before it could detach). Called only before we attach there ourselves.
/// Returns how many hooks had one.
pub fn sweep_stale(iface: &str) -> usize {
    SIDES
        .into_iter()
        .filter(|(name, side)| match tc::qdisc_detach_program(iface, *side, name) {
            Ok(()) => true,
            Err(e) => {
                tracing::trace!(iface, error = %e, "no stale filter");
                false
            }
        })
        .count()
}
