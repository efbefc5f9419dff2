//! Names of everything a lab creates, all derived from the lab name so that one prefix finds
//! them all: network namespaces `npt_<lab>_node` and `npt_<lab>_<ns>.<pod>`, nft table
//! `npt_<lab>`, host-side veths `cali<11 hex>` hashed from the prefix and the pod.
//!
//! Lab names cannot contain `_` or `.`, so `npt_<lab>_` never matches another lab's objects.

use super::error::{LabError, Result};
use super::paths::{HOST_IFACE_HASH_LEN, HOST_IFACE_HEAD, NODE_NETNS_SUFFIX, PREFIX_HEAD};

/// Longest accepted lab name.
pub const MAX_LAB_NAME_LEN: usize = 24;

/// Checks that `name` is usable as a lab name (DNS-label-like, at most 24 characters).
pub fn validate_lab_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_LAB_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok { Ok(()) } else { Err(LabError::InvalidLabName(name.to_owned())) }
}

/// Names of one lab's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    lab: String,
}

impl LabNames {
    /// Names for lab `lab` (validated).
    pub fn new(lab: &str) -> Result<Self> {
        validate_lab_name(lab)?;
        Ok(Self { lab: lab.to_owned() })
    }

    /// The lab name.
    pub fn lab(&self) -> &str {
        &self.lab
    }

    /// `npt_<lab>_`: the start of every network namespace name of this lab.
    pub fn prefix(&self) -> String {
        format!("{PREFIX_HEAD}_{}_", self.lab)
    }

    /// The node network namespace.
    pub fn node_netns(&self) -> String {
        format!("{}{NODE_NETNS_SUFFIX}", self.prefix())
    }

    /// The network namespace of pod `namespace/name` (`.` cannot occur in a namespace name).
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        format!("{}{namespace}.{name}", self.prefix())
    }

    /// The nftables table (family `inet`) in the node namespace.
    pub fn nft_table(&self) -> String {
        format!("{PREFIX_HEAD}_{}", self.lab.replace('-', "_"))
    }

    /// The host-side veth of pod `namespace/name`: `cali` + 11 hex characters of a hash of
    /// the lab prefix and the pod, like Calico's interface names (15 characters, IFNAMSIZ-1).
    pub fn host_iface(&self, namespace: &str, name: &str) -> String {
        let hash = fnv1a64(format!("{}{namespace}/{name}", self.prefix()).as_bytes());
        let hex = format!("{hash:016x}");
        format!("{HOST_IFACE_HEAD}{}", &hex[..HOST_IFACE_HASH_LEN])
    }

    /// The alias set on host-side veths, so `ip link` shows which lab and pod they belong to.
    pub fn host_iface_alias(&self, namespace: &str, name: &str) -> String {
        format!("{}{namespace}/{name}", self.prefix())
    }
}

/// The process name (PID and log file stem) of a daemon role in a pod.
pub fn process_name(role: &str, namespace: &str, name: &str) -> String {
    format!("{role}-{namespace}.{name}")
}

/// FNV-1a, 64 bits: stable across Rust releases (unlike `DefaultHasher`), so interface names
/// stay the same between the `lab up` that created them and the `lab down` that removes them.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The name of a per-pod chain (`ingress_cali0123456789a`).
pub fn chain_name(direction_name: &str, host_iface: &str) -> String {
    let iface: String =
        host_iface.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{direction_name}_{iface}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_are_validated() {
        for good in ["a", "demo", "port-typo", "t1-x9"] {
            assert!(validate_lab_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "Abc", "a_b", "a.b", "a-", &"a".repeat(25)] {
            assert!(validate_lab_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_carry_the_prefix_and_fit_ifnamsiz() {
        let names = LabNames::new("demo-1").unwrap();
        assert_eq!(names.prefix(), "npt_demo-1_");
        assert_eq!(names.node_netns(), "npt_demo-1_node");
        assert_eq!(names.pod_netns("db", "mysql-0"), "npt_demo-1_db.mysql-0");
        assert_eq!(names.nft_table(), "npt_demo_1");
        let iface = names.host_iface("db", "mysql-0");
        assert_eq!(iface.len(), 15);
        assert!(iface.starts_with("cali"));
        assert!(iface[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(iface, names.host_iface("db", "mysql-0"), "stable");
        assert_ne!(iface, names.host_iface("db", "mysql-1"));
        assert_ne!(iface, LabNames::new("demo-2").unwrap().host_iface("db", "mysql-0"));
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
