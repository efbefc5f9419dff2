//! The lab's shape, computed from Pods without touching the system: which pods exist, their
//! IPs (from `status.podIP`, or assigned from the pod CIDR), network namespaces, host-side
//! interfaces, listening ports and workloads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::naming::LabNames;
use super::paths::{NODE_GATEWAY, POD_CIDR, WORKLOAD_ANNOTATION, WORKLOAD_MARIADB};
use super::plan::Protocol;

/// The namespace of a Pod without `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What the lab runs inside a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `netpol-trace lab serve` on every declared port (TCP accept, UDP echo).
    Listener,
    /// A real MariaDB server on 3306, plus listeners on the other declared ports.
    Mariadb,
}

/// A declared container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPort {
    /// The port's name (named ports in policies resolve against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The number.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// One pod of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPod {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Labels, as in the manifest.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The pod IP.
    pub ip: IpAddr,
    /// Its network namespace.
    pub netns: String,
    /// Its host-side veth in the node namespace.
    pub host_iface: String,
    /// Declared container ports; a repeated number/protocol only when it adds a name.
    pub ports: Vec<PodPort>,
    /// What runs in it.
    pub workload: Workload,
    /// `spec.serviceAccountName`, when the manifest sets one (Calico rules select by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl LabPod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Resolves a port given as a number or as the name of one of the pod's ports.
    pub fn resolve_port(&self, port: &str) -> Option<(u16, Option<Protocol>)> {
        if let Ok(number) = port.parse::<u16>() {
            return Some((number, None));
        }
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(port))
            .map(|p| (p.port, Some(p.protocol)))
    }
}

/// All pods of a lab, plus the node's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The node network namespace.
    pub node_netns: String,
    /// The nftables table (family inet) in the node namespace.
    pub nft_table: String,
    /// The pods, in manifest order.
    pub pods: Vec<LabPod>,
}

/// Computes the topology of lab `names` from `pods`.
pub fn build_topology(names: &LabNames, pods: &[Pod]) -> Result<Topology> {
    let gateway: IpAddr = NODE_GATEWAY.parse().expect("NODE_GATEWAY is an address");
    let mut lab_pods = Vec::with_capacity(pods.len());
    let mut seen_pods = HashSet::new();
    let mut used_ips: HashMap<IpAddr, String> = HashMap::new();
    let mut pending = Vec::new();
    for (index, pod) in pods.iter().enumerate() {
        let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            LabError::invalid(format!("Pod #{}", index + 1), "metadata.name", "missing")
        })?;
        let namespace =
            pod.metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let object = format!("Pod {namespace}/{name}");
        if !seen_pods.insert((namespace.clone(), name.clone())) {
            return Err(LabError::invalid(
                object,
                "metadata.name",
                "appears twice in the manifests",
            ));
        }
        let ip = match pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
            Some(text) => {
                let ip = parse_pod_ip(&object, text, gateway)?;
                if let Some(other) = used_ips.insert(ip, object.clone()) {
                    return Err(LabError::invalid(
                        object,
                        "status.podIP",
                        format!("{ip} is also the IP of {other}"),
                    ));
                }
                Some(ip)
            }
            None => None,
        };
        let lab_pod = LabPod {
            netns: names.pod_netns(&namespace, &name),
            host_iface: names.host_iface(&namespace, &name),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ports: pod_ports(&object, pod)?,
            workload: workload(&object, pod)?,
            service_account: pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
            ip: ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            namespace,
            name,
        };
        if ip.is_none() {
            pending.push(lab_pods.len());
        }
        lab_pods.push(lab_pod);
    }
    let pool: Ipv4Net = POD_CIDR.parse().expect("POD_CIDR is a network");
    let mut free = pool.hosts().map(IpAddr::V4).filter(|ip| !used_ips.contains_key(ip));
    for index in pending {
        let pod = &mut lab_pods[index];
        pod.ip = free.next().ok_or_else(|| {
            LabError::invalid(
                format!("Pod {}", pod.key()),
                "status.podIP",
                format!("{POD_CIDR} is full"),
            )
        })?;
    }
    Ok(Topology { node_netns: names.node_netns(), nft_table: names.nft_table(), pods: lab_pods })
}

fn parse_pod_ip(object: &str, text: &str, gateway: IpAddr) -> Result<IpAddr> {
    let ip: IpAddr = text.parse().map_err(|_| {
        LabError::invalid(object, "status.podIP", format!("{text:?} is not an IP address"))
    })?;
    let IpAddr::V4(v4) = ip else {
        return Err(LabError::invalid(
            object,
            "status.podIP",
            format!("{ip}: the lab wires IPv4 pods only"),
        ));
    };
    if v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_multicast()
        || v4.is_broadcast()
        || ip == gateway
    {
        return Err(LabError::invalid(
            object,
            "status.podIP",
            format!("{ip} cannot be a pod address"),
        ));
    }
    Ok(ip)
}

fn pod_ports(object: &str, pod: &Pod) -> Result<Vec<PodPort>> {
    let mut ports: Vec<PodPort> = Vec::new();
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    for (c, container) in containers.iter().enumerate() {
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let field = format!("spec.containers[{c}].ports[{p}]");
            let number =
                u16::try_from(port.container_port).ok().filter(|n| *n > 0).ok_or_else(|| {
                    LabError::invalid(
                        object,
                        format!("{field}.containerPort"),
                        format!("{} is not a port", port.container_port),
                    )
                })?;
            let protocol = match port.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(text) => text.parse().map_err(|e: String| {
                    LabError::invalid(object, format!("{field}.protocol"), e)
                })?,
            };
            let entry = PodPort { name: port.name.clone(), port: number, protocol };
            // A repeated number is kept only for a name not seen yet (named ports resolve by it).
            let known = ports.iter().any(|known| {
                known.port == number
                    && known.protocol == protocol
                    && (entry.name.is_none() || known.name == entry.name)
            });
            if !known {
                ports.push(entry);
            }
        }
    }
    Ok(ports)
}

fn workload(object: &str, pod: &Pod) -> Result<Workload> {
    let annotation = pod.metadata.annotations.as_ref().and_then(|a| a.get(WORKLOAD_ANNOTATION));
    match annotation.map(String::as_str) {
        None => Ok(Workload::Listener),
        Some(WORKLOAD_MARIADB) => Ok(Workload::Mariadb),
        Some(other) => Err(LabError::invalid(
            object,
            format!("metadata.annotations[{WORKLOAD_ANNOTATION}]"),
            format!("unknown workload {other:?} (known: {WORKLOAD_MARIADB})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(yaml: &str) -> Vec<Pod> {
        serde_yaml_ng::Deserializer::from_str(yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: app, labels: {app: web}}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80, name: http}, {containerPort: 53, protocol: UDP}, {containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, annotations: {netpol-trace.io/lab-workload: mariadb}}
spec: {containers: [{name: db, image: mariadb, ports: [{containerPort: 3306, name: mysql}]}]}
status: {podIP: 10.244.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: other}
spec: {containers: [{name: c, image: busybox}]}
";

    #[test]
    fn ips_come_from_status_or_the_pool_skipping_used_ones() {
        let names = LabNames::new("t").unwrap();
        let topo = build_topology(&names, &pods(PODS)).unwrap();
        let ips: Vec<String> = topo.pods.iter().map(|p| p.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.0.2", "10.244.0.1", "10.244.0.3"]);
        assert_eq!(topo.pods[2].namespace, "default");
        assert_eq!(topo.pods[1].workload, Workload::Mariadb);
        assert_eq!(topo.pods[0].ports.len(), 2, "duplicate 80/TCP dropped");
        assert_eq!(topo.pods[0].resolve_port("http"), Some((80, Some(Protocol::Tcp))));
        assert_eq!(topo.pods[1].resolve_port("3306"), Some((3306, None)));
        assert_eq!(topo.pods[1].netns, "npt_t_db.mysql-0");
        assert_eq!(topo.node_netns, "npt_t_node");
    }

    #[test]
    fn bad_pods_are_named_with_their_field() {
        let names = LabNames::new("t").unwrap();
        let dup_ip = "
kind: Pod
metadata: {name: a}
status: {podIP: 10.244.0.5}
---
kind: Pod
metadata: {name: b}
status: {podIP: 10.244.0.5}
";
        let err = build_topology(&names, &pods(dup_ip)).unwrap_err().to_string();
        assert_eq!(err, "Pod default/b: status.podIP: 10.244.0.5 is also the IP of Pod default/a");
        let v6 = "kind: Pod\nmetadata: {name: a}\nstatus: {podIP: 'fd00::1'}\n";
        let err = build_topology(&names, &pods(v6)).unwrap_err().to_string();
        assert!(err.starts_with("Pod default/a: status.podIP: fd00::1"), "{err}");
        let workload =
            "kind: Pod\nmetadata: {name: a, annotations: {netpol-trace.io/lab-workload: redis}}\n";
        let err = build_topology(&names, &pods(workload)).unwrap_err().to_string();
        assert!(err.contains("metadata.annotations[netpol-trace.io/lab-workload]"), "{err}");
        let proto = "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, ports: [{containerPort: 1, protocol: ICMP}]}]}\n";
        let err = build_topology(&names, &pods(proto)).unwrap_err().to_string();
        assert!(err.contains("spec.containers[0].ports[0].protocol"), "{err}");
    }
}
