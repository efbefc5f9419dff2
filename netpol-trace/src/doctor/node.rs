//! The node's side: kernel, BTF, drop reasons, tc attach mode, capabilities, bpffs,
//! netfilter tools and the CNI, read under a root directory (`/` on a real node).

use std::path::{Path, PathBuf};

use super::Check;
use crate::datapath::btf::{Btf, VMLINUX_BTF};
use crate::datapath::kernel::kernel_offsets;

/// Oldest kernel the programs load on: `tp_btf` and BPF ring buffers (5.8).
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// First kernel with tcx links (6.6); older ones use clsact + cls_bpf.
pub const TCX_KERNEL: (u32, u32) = (6, 6);
/// First kernel whose kfree_skb carries `enum skb_drop_reason` (5.17).
pub const DROP_REASON_KERNEL: (u32, u32) = (5, 17);

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Where the node checks read the system: `/` normally; a replayed tree in tests.
#[derive(Debug, Clone)]
pub struct NodeRoot {
    root: PathBuf,
}

impl Default for NodeRoot {
    fn default() -> Self {
        Self { root: PathBuf::from("/") }
    }
}

impl NodeRoot {
    /// Checks under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Option<String> {
        std::fs::read_to_string(self.path(absolute)).ok()
    }

    /// Every node check; `interfaces` are the names seen in the node's network namespace.
    pub fn checks(&self, interfaces: &[String]) -> Vec<Check> {
        let kernel = self.kernel_version();
        let mut checks = vec![kernel_check(kernel)];
        checks.extend(self.btf_checks());
        checks.push(tc_check(kernel));
        checks.push(self.capabilities_check());
        checks.push(self.bpffs_check());
        checks.push(self.netfilter_check());
        checks.push(cni_check(interfaces));
        checks
    }

    /// `major.minor` of the running kernel (`/proc/sys/kernel/osrelease`).
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        parse_release(self.read("/proc/sys/kernel/osrelease")?.trim())
    }

    fn btf_checks(&self) -> Vec<Check> {
        let path = self.path(VMLINUX_BTF);
        let btf = match Btf::from_file(&path) {
            Ok(btf) => btf,
            Err(e) => {
                return vec![
                    Check::fail(
                        "btf",
                        e.to_string(),
                        "the programs need the kernel's BTF to read sk_buff",
                    ),
                    Check::fail("drop_reasons", "no BTF", "no drop reasons without BTF"),
                ];
            }
        };
        let btf_check = match kernel_offsets(&btf) {
            Ok(_) => {
                Check::ok("btf", format!("{VMLINUX_BTF}: sk_buff and net_device offsets found"))
            }
            Err(e) => Check::fail("btf", e.to_string(), "the drop program cannot read sk_buff"),
        };
        let reasons = if netfilter_drop(&btf) != 0 {
            Check::ok("drop_reasons", "enum skb_drop_reason (NETFILTER_DROP, TC_INGRESS, ...)")
        } else {
            Check::degraded(
                "drop_reasons",
                format!(
                    "no enum skb_drop_reason in the BTF (kernel < {}.{})",
                    DROP_REASON_KERNEL.0, DROP_REASON_KERNEL.1
                ),
                "drops are inferred from tc alone (a SYN that left and never arrived), without the kernel's reason",
            )
        };
        vec![btf_check, reasons]
    }

    fn capabilities_check(&self) -> Check {
        let Some(effective) = self.read("/proc/self/status").and_then(|s| parse_cap_eff(&s)) else {
            return Check::fail(
                "capabilities",
                "cannot read CapEff from /proc/self/status",
                "unknown privileges",
            );
        };
        let has = |cap: u32| effective & (1u64 << cap) != 0;
        let names = [
            (CAP_NET_ADMIN, "NET_ADMIN"),
            (CAP_SYS_ADMIN, "SYS_ADMIN"),
            (CAP_PERFMON, "PERFMON"),
            (CAP_BPF, "BPF"),
        ];
        let held: Vec<&str> = names.iter().filter(|(c, _)| has(*c)).map(|(_, n)| *n).collect();
        let detail = format!(
            "held: {}; needed: NET_ADMIN, BPF and PERFMON (or SYS_ADMIN), SYS_ADMIN for --netns",
            if held.is_empty() { "none of them".to_owned() } else { held.join(", ") }
        );
        let mut missing = vec![];
        if !has(CAP_NET_ADMIN) {
            missing.push("NET_ADMIN (attach to interfaces)");
        }
        if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
            missing.push("BPF (load programs and maps)");
        }
        if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
            missing.push("PERFMON (the kfree_skb tracepoint)");
        }
        if !missing.is_empty() {
            return Check::fail("capabilities", detail, format!("missing {}", missing.join(", ")));
        }
        if !has(CAP_SYS_ADMIN) {
            return Check::degraded(
                "capabilities",
                detail,
                "without SYS_ADMIN only the current network namespace can be traced (no --netns)",
            );
        }
        Check::ok("capabilities", detail)
    }

    fn bpffs_check(&self) -> Check {
        let mounted = self
            .read("/proc/mounts")
            .is_some_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")));
        if mounted {
            Check::ok("bpffs", "mounted")
        } else {
            Check::ok(
                "bpffs",
                "not mounted; not needed (nothing is pinned, programs go with the process)",
            )
        }
    }

    fn netfilter_check(&self) -> Check {
        let found: Vec<&str> = ["nft", "iptables"]
            .into_iter()
            .filter(|tool| {
                ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                    .iter()
                    .any(|dir| self.path(&format!("{dir}/{tool}")).exists())
            })
            .collect();
        if found.is_empty() {
            Check::degraded(
                "netfilter",
                "neither nft nor iptables found",
                "`lab` cannot enforce policies on this machine (the agent does not need them)",
            )
        } else {
            Check::ok("netfilter", format!("{} found", found.join(" and ")))
        }
    }
}

fn netfilter_drop(btf: &Btf) -> u32 {
    btf.enum_values("skb_drop_reason")
        .ok()
        .and_then(|values| {
            values
                .into_iter()
                .find(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP")
                .and_then(|(_, v)| u32::try_from(v).ok())
        })
        .unwrap_or(0)
}

/// `5.15.0-91-generic` → (5, 15).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The effective capability set from `/proc/<pid>/status`.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

fn kernel_check(version: Option<(u32, u32)>) -> Check {
    match version {
        None => Check::fail("kernel", "unknown version", "cannot tell whether the programs load"),
        Some(v) if v < MIN_KERNEL => Check::fail(
            "kernel",
            format!("{}.{}", v.0, v.1),
            format!(
                "the programs need {}.{} or newer (tp_btf, ring buffer)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        Some(v) => Check::ok("kernel", format!("{}.{}", v.0, v.1)),
    }
}

fn tc_check(version: Option<(u32, u32)>) -> Check {
    match version {
        Some(v) if v >= TCX_KERNEL => {
            Check::ok("tc", "tcx links (ours run first and pass every packet on)")
        }
        _ => Check::ok(
            "tc",
            "clsact + cls_bpf (no tcx before 6.6): ours at priority 1, before the CNI's filters",
        ),
    }
}

/// A CNI recognised from its interface names, and where its datapath sits relative to ours.
fn cni_of(name: &str) -> Option<(&'static str, &'static str)> {
    const KNOWN: [(&str, &str, &str); 9] = [
        (
            "cali",
            "Calico",
            "pod veths cali*; policy in netfilter (or Calico eBPF's tc programs after ours)",
        ),
        ("cilium_", "Cilium", "tc/tcx programs on lxc*; ours run first and return 'next'"),
        ("lxc", "Cilium", "tc/tcx programs on lxc*; ours run first and return 'next'"),
        ("antrea-", "Antrea", "Open vSwitch behind antrea-gw0; pod veths seen before OVS"),
        ("ovn-", "OVN-Kubernetes", "Open vSwitch (br-int); pod veths seen before OVS"),
        ("flannel", "Flannel", "no policy of its own (a policy engine such as Calico enforces)"),
        ("weave", "Weave Net", "policy in netfilter on the weave bridge"),
        ("kube-ipvs", "kube-proxy (IPVS)", "Service translation before policy"),
        ("eni", "AWS VPC CNI", "pod veths eni*; policy in the node agent's eBPF programs"),
    ];
    KNOWN
        .iter()
        .find(|(prefix, _, _)| name.starts_with(prefix))
        .map(|(_, cni, order)| (*cni, *order))
}

fn cni_check(interfaces: &[String]) -> Check {
    let mut seen: Vec<(&str, &str, usize)> = vec![];
    for name in interfaces {
        if let Some((cni, order)) = cni_of(name) {
            match seen.iter_mut().find(|(c, _, _)| *c == cni) {
                Some(entry) => entry.2 += 1,
                None => seen.push((cni, order, 1)),
            }
        }
    }
    if seen.is_empty() {
        return Check::ok(
            "cni",
            format!("none recognised among {} interface(s)", interfaces.len()),
        );
    }
    let text: Vec<String> =
        seen.iter().map(|(cni, order, n)| format!("{cni} ({n} interface(s)): {order}")).collect();
    Check::ok("cni", text.join("; "))
}

/// Interface names under `root`'s `/sys/class/net`.
pub fn interfaces_under(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("sys/class/net"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
