//! Calico-style wiring of a lab with `ip`: a node network namespace without uplink and with
//! `169.254.1.1/32` on its `lo` (so proxy ARP has a route to answer for), and per pod a
//! network namespace joined to the node by a veth pair — `cali...` on the node side with proxy
//! ARP, forwarding and a /32 route to the pod; `eth0` in the pod with the pod IP, a link route
//! to 169.254.1.1 and a default route through it. Forwarding is enabled per interface inside
//! the node namespace only.

use super::error::{LabError, Result};
use super::paths::{NODE_GATEWAY, POD_IFACE};
use super::system::ip;
use super::topology::LabPod;
use crate::netns::in_netns;

/// Creates the node network namespace: loopback up with the pods' gateway address on it.
pub fn create_node(node_netns: &str) -> Result<()> {
    ip(&["netns", "add", node_netns])?;
    ip(&["-n", node_netns, "link", "set", "lo", "up"])?;
    ip(&["-n", node_netns, "addr", "add", &format!("{NODE_GATEWAY}/32"), "dev", "lo"])?;
    Ok(())
}

/// Creates the pod's network namespace (it must be recorded for clean-up before wiring).
pub fn create_pod_netns(pod: &LabPod) -> Result<()> {
    ip(&["netns", "add", &pod.netns])?;
    Ok(())
}

/// Wires a pod whose namespace exists to the node: veth pair, addresses, routes, sysctls.
pub fn wire_pod(node_netns: &str, pod: &LabPod, alias: &str) -> Result<()> {
    wire_veth(node_netns, &pod.netns, &pod.host_iface, pod.ip, alias)
}

/// Joins network namespace `pod_netns` (which exists) to the node with a veth pair: `host`
/// (named `alias` too) in the node with proxy ARP, forwarding and a route to `address`;
/// `eth0` in the pod with `address` and a default route through the link-local gateway. The
/// test topology wires its pods with this too.
pub fn wire_veth(
    node_netns: &str,
    pod_netns: &str,
    host: &str,
    address: std::net::IpAddr,
    alias: &str,
) -> Result<()> {
    let ip_host = format!("{address}/32");
    ip(&[
        "-n", node_netns, "link", "add", host, "type", "veth", "peer", "name", POD_IFACE, "netns",
        pod_netns,
    ])?;
    ip(&["-n", node_netns, "link", "set", host, "alias", alias])?;
    set_node_sysctls(node_netns, host)?;
    ip(&["-n", node_netns, "link", "set", host, "up"])?;
    ip(&["-n", node_netns, "route", "add", &ip_host, "dev", host])?;
    ip(&["-n", pod_netns, "link", "set", "lo", "up"])?;
    ip(&["-n", pod_netns, "addr", "add", &ip_host, "dev", POD_IFACE])?;
    ip(&["-n", pod_netns, "link", "set", POD_IFACE, "up"])?;
    ip(&["-n", pod_netns, "route", "add", NODE_GATEWAY, "dev", POD_IFACE, "scope", "link"])?;
    ip(&["-n", pod_netns, "route", "add", "default", "via", NODE_GATEWAY, "dev", POD_IFACE])?;
    Ok(())
}

/// Proxy ARP (answered at once: `proxy_delay` 0, as Calico sets it, instead of a random delay
/// of up to 0.8 s) and forwarding on the host-side veth, written from a thread inside the node
/// namespace (`/proc/sys/net` shows the namespace of the thread that opens it).
fn set_node_sysctls(node_netns: &str, host_iface: &str) -> Result<()> {
    in_netns(node_netns, || -> Result<()> {
        let settings = [
            ("conf", "proxy_arp", "1"),
            ("conf", "forwarding", "1"),
            ("neigh", "proxy_delay", "0"),
        ];
        for (table, key, value) in settings {
            let path = format!("/proc/sys/net/ipv4/{table}/{host_iface}/{key}");
            std::fs::write(&path, value)
                .map_err(|e| LabError::io(format!("writing {path} in {node_netns}"), e))?;
        }
        Ok(())
    })?
}

/// Deletes a named network namespace; `Ok(false)` when it did not exist.
pub fn delete_netns(netns: &str) -> Result<bool> {
    if !crate::netns::netns_exists(netns) {
        return Ok(false);
    }
    ip(&["netns", "delete", netns])?;
    Ok(true)
}
