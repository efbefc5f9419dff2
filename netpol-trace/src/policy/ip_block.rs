//! `ipBlock`: a CIDR minus `except` CIDRs, each of which must be a strict subset of it.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::IPBlock;

use super::error::FieldError;

/// A validated `ipBlock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    /// The allowed range (host bits cleared).
    pub cidr: IpNet,
    /// Ranges carved out of it.
    pub except: Vec<IpNet>,
}

impl IpBlock {
    /// Validates `block`; `path` prefixes field paths in errors (e.g. `spec.ingress[0].from[1].ipBlock`).
    pub fn compile(block: &IPBlock, path: &str) -> Result<Self, FieldError> {
        let cidr =
            parse_cidr(&block.cidr).map_err(|m| FieldError::new(format!("{path}.cidr"), m))?;
        let mut except = Vec::new();
        for (index, text) in block.except.iter().flatten().enumerate() {
            let field = format!("{path}.except[{index}]");
            let net = parse_cidr(text).map_err(|m| FieldError::new(&field, m))?;
            if !is_strict_subset(&net, &cidr) {
                return Err(FieldError::new(
                    field,
                    format!("{text} is not a strict subset of cidr {}", block.cidr),
                ));
            }
            except.push(net);
        }
        Ok(Self { cidr, except })
    }

    /// Whether `ip` is inside `cidr` and outside every `except`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }

    /// The `except` entry that holds `ip`, if any.
    pub fn excepted_by(&self, ip: IpAddr) -> Option<(usize, &IpNet)> {
        self.except.iter().enumerate().find(|(_, e)| e.contains(&ip))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        for e in &self.except {
            write!(f, " except {e}")?;
        }
        Ok(())
    }
}

/// Parses `a.b.c.d/n` or an IPv6 CIDR; host bits are allowed and cleared, like the API server's
/// sloppy parser.
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("invalid CIDR {text:?} (want e.g. 10.0.0.0/16 or fd00::/64)"))
}

fn is_strict_subset(inner: &IpNet, outer: &IpNet) -> bool {
    outer.contains(&inner.network())
        && inner.prefix_len() > outer.prefix_len()
        && matches!((inner, outer), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> Result<IpBlock, FieldError> {
        IpBlock::compile(
            &IPBlock {
                cidr: cidr.into(),
                except: (!except.is_empty())
                    .then(|| except.iter().map(|e| e.to_string()).collect()),
            },
            "ipBlock",
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contains_table() {
        let cases = [
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.17.0.5", true),
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.17.1.5", false),
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.17.1.255", false),
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.17.2.0", true),
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.16.255.255", false),
            ("172.17.0.0/16", vec!["172.17.1.0/24"], "172.18.0.0", false),
            ("10.0.1.11/32", vec![], "10.0.1.11", true),
            ("10.0.1.11/32", vec![], "10.0.1.12", false),
            ("0.0.0.0/0", vec![], "255.255.255.255", true),
            ("0.0.0.0/0", vec![], "::1", false),
            ("10.0.0.5/8", vec![], "10.200.0.1", true),
            ("fd00::/64", vec!["fd00::/120"], "fd00::1", false),
            ("fd00::/64", vec!["fd00::/120"], "fd00::100", true),
            ("fd00::/64", vec![], "fd00:0:0:1::1", false),
            ("::/0", vec![], "10.0.0.1", false),
            ("::/0", vec!["2001:db8::/32"], "2001:db9::1", true),
        ];
        for (cidr, except, addr, want) in cases {
            let b = block(cidr, &except).unwrap();
            assert_eq!(b.contains(ip(addr)), want, "{b} contains {addr}");
        }
    }

    proptest::proptest! {
        /// `contains` is "same network bits as the cidr and not those of the except", checked
        /// bit by bit on IPv4 and IPv6.
        #[test]
        fn contains_is_prefix_arithmetic(
            v6 in proptest::bool::ANY,
            base in proptest::num::u128::ANY,
            probe in proptest::num::u128::ANY,
            prefix in 0u8..=120,
            extra in 1u8..=8,
            share in 0u32..=128,
        ) {
            let bits: u32 = if v6 { 128 } else { 32 };
            let prefix = u32::from(prefix).min(bits - 8);
            let except_prefix = prefix + u32::from(extra);
            let mask = |len: u32| if len == 0 { 0 } else { u128::MAX << (128 - len) };
            let width = |x: u128| if v6 { x } else { x >> 96 << 96 };
            let base = width(base);
            // Probes often share a prefix with the base so both sides get exercised.
            let probe = width((base & mask(share.min(128))) | (probe & !mask(share.min(128))));
            let to_ip = |x: u128| -> IpAddr {
                if v6 { std::net::Ipv6Addr::from(x).into() } else { std::net::Ipv4Addr::from((x >> 96) as u32).into() }
            };
            let cidr = format!("{}/{prefix}", to_ip(base));
            let except = format!("{}/{except_prefix}", to_ip(base & mask(except_prefix)));
            let b = block(&cidr, &[&except]).unwrap();
            let in_cidr = (probe ^ base) & mask(prefix) == 0;
            let in_except = (probe ^ base) & mask(except_prefix) == 0;
            proptest::prop_assert_eq!(b.contains(to_ip(probe)), in_cidr && !in_except, "{} in {}", to_ip(probe), b);
        }
    }

    #[test]
    fn invalid_blocks() {
        assert_eq!(block("10.0.0.0", &[]).unwrap_err().field, "ipBlock.cidr");
        assert_eq!(block("10.0.0.0/33", &[]).unwrap_err().field, "ipBlock.cidr");
        assert_eq!(block("nonsense", &[]).unwrap_err().field, "ipBlock.cidr");
        assert_eq!(block("10.0.0.0/8", &["11.0.0.0/16"]).unwrap_err().field, "ipBlock.except[0]");
        // Not strict: equal to the cidr.
        assert_eq!(block("10.0.0.0/8", &["10.0.0.0/8"]).unwrap_err().field, "ipBlock.except[0]");
        // Wider than the cidr.
        assert_eq!(block("10.1.0.0/16", &["10.0.0.0/8"]).unwrap_err().field, "ipBlock.except[0]");
        assert_eq!(
            block("10.0.0.0/8", &["10.1.0.0/16", "fd00::/64"]).unwrap_err().field,
            "ipBlock.except[1]"
        );
        assert_eq!(block("fd00::/64", &["10.0.0.0/8"]).unwrap_err().field, "ipBlock.except[0]");
        assert!(block("fd00::/64", &["fd00::1/128"]).is_ok());
    }
}
