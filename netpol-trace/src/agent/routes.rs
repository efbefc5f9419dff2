//! Which host interface a pod address is routed to on this node: the IPv4 route table of the
//! node's network namespace (`/proc/net/route` as seen from inside it), longest prefix first.
//! CNIs such as Calico route every local pod through a /32 to its own host-side veth, so this
//! names the veth a pod's packets leave it by; a SYN claiming that pod's address but seen on
//! another interface did not come from the pod.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

/// The route table of the current thread's network namespace.
const ROUTE_TABLE: &str = "/proc/thread-self/net/route";

/// The interface the node routes `ip` to (`None`: an IPv6 address, or no route). Reads the
/// table from inside `netns` (`None`: the agent's own namespace) on a short-lived thread, so
/// that no other thread changes namespace.
pub fn interface_of(netns: Option<PathBuf>, ip: IpAddr) -> io::Result<Option<String>> {
    let IpAddr::V4(ip) = ip else { return Ok(None) };
    std::thread::spawn(move || -> io::Result<Option<String>> {
        if let Some(path) = &netns {
            crate::netns::enter(path).map_err(io::Error::other)?;
        }
        Ok(lookup(&std::fs::read_to_string(ROUTE_TABLE)?, ip))
    })
    .join()
    .map_err(|_| io::Error::other("the route lookup thread panicked"))?
}

/// The interface of the longest prefix of `table` (the `/proc/net/route` format: addresses
/// and masks as the kernel's network-order words printed in hex) that contains `ip`.
pub fn lookup(table: &str, ip: Ipv4Addr) -> Option<String> {
    let ip = u32::from(ip);
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, mask) = (cols.first()?, cols.get(1)?, cols.get(7)?);
            let dest = u32::from_be(u32::from_str_radix(dest, 16).ok()?);
            let mask = u32::from_be(u32::from_str_radix(mask, 16).ok()?);
            (ip & mask == dest & mask).then(|| (mask.count_ones(), iface.to_string()))
        })
        .max_by_key(|(bits, _)| *bits)
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Calico node: default route, the pod /26 block, and one /32 per local pod.
    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
cali1234\t0501000A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
cali5678\t0601000A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
";

    #[test]
    fn a_pod_address_goes_to_its_own_veth() {
        assert_eq!(lookup(TABLE, "10.0.1.5".parse().unwrap()).as_deref(), Some("cali1234"));
        assert_eq!(lookup(TABLE, "10.0.1.6".parse().unwrap()).as_deref(), Some("cali5678"));
        assert_eq!(lookup(TABLE, "10.0.1.7".parse().unwrap()).as_deref(), Some("eth0"));
        assert_eq!(lookup(TABLE, "203.0.113.5".parse().unwrap()).as_deref(), Some("eth0"));
        assert_eq!(lookup("Iface\n", "10.0.1.5".parse().unwrap()), None);
    }
}
