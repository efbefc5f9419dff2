//! What the programs need to know about the running kernel: struct offsets for reading an
//! `sk_buff` in the drop tracepoint, and the names of `enum skb_drop_reason`.

use std::collections::BTreeMap;

use netpol_trace_common::KernelOffsets;

use super::btf::{Btf, BtfError};

/// Prefix of the kernel's drop-reason enum variants, stripped for display.
const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// The reason of a drop whose cause the kernel did not say (tc-only mode).
pub const UNKNOWN_REASON: &str = "unknown";

/// Reads the member offsets the drop program uses from the kernel's BTF.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    Ok(KernelOffsets {
        skb_dev: btf.member_offset("sk_buff", &["dev"])?,
        skb_head: btf.member_offset("sk_buff", &["head"])?,
        skb_network_header: btf.member_offset("sk_buff", &["network_header"])?,
        skb_protocol: btf.member_offset("sk_buff", &["protocol"])?,
        dev_ifindex: btf.member_offset("net_device", &["ifindex"])?,
        dev_net: btf.member_offset("net_device", &["nd_net", "net"])?,
        net_inum: btf.member_offset("net", &["ns", "inum"])?,
        _pad: 0,
    })
}

/// Names of the kernel's drop reasons (`NETFILTER_DROP`, `TC_INGRESS`, ...), by value.
#[derive(Debug, Clone, Default)]
pub struct DropReasons {
    names: BTreeMap<u32, String>,
}

impl DropReasons {
    /// Reads `enum skb_drop_reason` from BTF.
    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        let names = btf
            .enum_values("skb_drop_reason")?
            .into_iter()
            .filter_map(|(name, value)| {
                let short = name.strip_prefix(DROP_REASON_PREFIX).unwrap_or(&name).to_string();
                u32::try_from(value).ok().map(|v| (v, short))
            })
            .collect();
        Ok(Self { names })
    }

    /// The readable name of a raw reason; `UNKNOWN_<n>` when the kernel did not name it,
    /// and `unknown` for 0 (no reason: drops inferred in tc-only mode).
    pub fn name(&self, raw: u32) -> String {
        match self.names.get(&raw) {
            Some(name) => name.clone(),
            None if raw == 0 => UNKNOWN_REASON.to_string(),
            None => format!("UNKNOWN_{raw}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::btf::tests::Builder;

    #[test]
    fn names_strip_the_prefix_and_unknown_values_stay_visible() {
        let mut b = Builder::new();
        b.enumeration(
            "skb_drop_reason",
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_CONSUMED", 1), ("SKB_DROP_REASON_TC_INGRESS", 64)],
        );
        let reasons = DropReasons::from_btf(&Btf::parse(&b.build()).unwrap()).unwrap();
        assert_eq!(reasons.name(64), "TC_INGRESS");
        assert_eq!(reasons.name(1), "SKB_CONSUMED");
        assert_eq!(reasons.name(999), "UNKNOWN_999");
        assert_eq!(DropReasons::default().name(0), UNKNOWN_REASON);
    }

    #[test]
    #[ignore = "needs root"]
    fn running_kernel_offsets_are_consistent() {
        crate::lab::system::require_root();
        let btf = Btf::from_sys_fs().expect("the running kernel's BTF");
        let off = kernel_offsets(&btf).unwrap();
        assert!(off.skb_head > off.skb_dev);
        assert_ne!(off.net_inum, 0);
        let reasons = DropReasons::from_btf(&btf).unwrap();
        assert!(reasons.names.values().any(|n| n == "NETFILTER_DROP"));
    }
}
