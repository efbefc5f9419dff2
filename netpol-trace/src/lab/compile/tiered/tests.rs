use std::net::IpAddr;
use std::path::Path;

use crate::explain::{ExplainOptions, is_allowed};
use crate::flow::Flow;
use crate::inventory::{ClusterObjects, Inventory};
use crate::lab::naming::LabNames;
use crate::lab::objects::{LabPolicies, lab_inventory};
use crate::lab::plan::{
    EnforcementPlan, Packet, PeerNet, PeerSet, PodPlan, PortRange, PortSet, TierEnd, TierPlan,
    TieredRule, Verdict,
};
use crate::lab::plan_from_inventory;
use crate::lab::topology::{Topology, build_topology};
use crate::manifest::{Syntax, parse_manifest};
use crate::policy::Protocol;
use crate::policy::calico::entity::protocol_number;

/// Namespaces app (env=prod) and db (env=prod, team=data); pods app/web (10.0.1.1, http=8080),
/// app/batch (10.0.1.2, http=9090), db/mysql (10.0.2.1, mysql=3306, metrics=9104/UDP).
const PODS: &str = "
kind: Namespace
metadata: {name: app, labels: {env: prod}}
---
kind: Namespace
metadata: {name: db, labels: {env: prod, team: data}}
---
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.0.1.1}
---
kind: Pod
metadata: {name: batch, namespace: app, labels: {app: batch}}
spec: {containers: [{name: c, ports: [{containerPort: 9090, name: http}]}]}
status: {podIP: 10.0.1.2}
---
kind: Pod
metadata: {name: mysql, namespace: db, labels: {app: mysql}}
spec:
  containers:
  - name: c
    ports: [{containerPort: 3306, name: mysql}, {containerPort: 9104, name: metrics, protocol: UDP}]
status: {podIP: 10.0.2.1}
";

fn lab(text: &str) -> (Inventory, Topology, crate::lab::Result<EnforcementPlan>) {
    let mut objects = ClusterObjects::default();
    parse_manifest(text, Path::new("m.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let topology = build_topology(&LabNames::new("t").unwrap(), &objects.pods).unwrap();
    let inventory =
        lab_inventory(&topology, &objects.namespaces, LabPolicies::from_objects(&objects)).unwrap();
    let plan = plan_from_inventory(&inventory, &topology);
    (inventory, topology, plan)
}

fn plan(policies: &str) -> (Inventory, Topology, EnforcementPlan) {
    let (inventory, topology, plan) = lab(&format!("{PODS}\n---\n{policies}"));
    let plan = plan.unwrap();
    plan.validate().unwrap();
    (inventory, topology, plan)
}

fn pod<'a>(plan: &'a EnforcementPlan, key: &str) -> &'a PodPlan {
    plan.pods.iter().find(|p| p.pod.as_deref() == Some(key)).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Every pod pair × (each declared port of the destination, each of `extra` in TCP, UDP and
/// SCTP): the plan's verdict against the engine's. Returns the number of flows compared.
fn agrees_with_engine(
    inventory: &Inventory,
    topology: &Topology,
    plan: &EnforcementPlan,
    extra: &[u16],
) -> usize {
    let mut compared = 0;
    let mut disagreements = Vec::new();
    for src in &topology.pods {
        for dst in &topology.pods {
            if src.ip == dst.ip {
                continue;
            }
            let mut ports: Vec<(u16, Protocol)> =
                dst.ports.iter().map(|p| (p.port, p.protocol)).collect();
            for &port in extra {
                for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                    ports.push((port, protocol));
                }
            }
            for (port, protocol) in ports {
                let flow = Flow::from_packet(inventory, src.ip, dst.ip, port, protocol);
                let engine = is_allowed(inventory, &flow, &ExplainOptions::default());
                let packet =
                    Packet { src: src.ip, dst: dst.ip, protocol: protocol_number(protocol), port };
                compared += 1;
                if plan.allows(&packet) != engine {
                    disagreements.push(format!(
                        "{} -> {} {protocol}/{port}: engine {engine}",
                        src.key(),
                        dst.key()
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}\n{plan:#?}");
    compared
}

#[test]
fn calico_default_deny_isolates_both_directions_at_the_end_of_the_default_tier() {
    let (inventory, topology, plan) = plan(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec:
  selector: projectcalico.org/namespace not in {'kube-system'}
  types: [Ingress, Egress]
",
    );
    let mysql = pod(&plan, "db/mysql");
    let expected = vec![TierPlan {
        tier: "default".into(),
        rules: vec![],
        end: TierEnd::Drop,
        end_origin: Some("GlobalNetworkPolicy default-deny".into()),
    }];
    assert_eq!(mysql.ingress_tiers.as_ref(), Some(&expected));
    assert_eq!(mysql.egress_tiers.as_ref(), Some(&expected));
    assert_eq!((mysql.ingress.as_ref(), mysql.egress.as_ref()), (None, None));
    assert!(!plan.allows(&Packet {
        src: ip("10.0.1.1"),
        dst: ip("10.0.2.1"),
        protocol: 6,
        port: 3306
    }));
    agrees_with_engine(&inventory, &topology, &plan, &[1, 3306]);
}

#[test]
fn an_admin_deny_comes_before_every_network_policy_and_pass_hands_over() {
    let (inventory, topology, plan) = plan(
        "
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: isolate-db}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: data}}}
  ingress:
  - {name: batch-passes, action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: batch}}}}]}
  - {name: deny-others, action: Deny, from: [{namespaces: {matchExpressions: [{key: team, operator: DoesNotExist}]}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mysql, namespace: db}
spec:
  podSelector: {}
  ingress: [{ports: [{port: mysql}]}]
",
    );
    let tiers = pod(&plan, "db/mysql").ingress_tiers.clone().unwrap();
    assert_eq!(tiers.len(), 2, "{tiers:#?}");
    assert_eq!((tiers[0].tier.as_str(), tiers[0].end), ("Admin", TierEnd::Next));
    let actions: Vec<(Verdict, &PeerSet)> =
        tiers[0].rules.iter().map(|r| (r.action, &r.peers)).collect();
    let host = |s: &str| PeerSet::Nets(vec![PeerNet::host(ip(s))]);
    assert_eq!(
        actions,
        vec![
            (Verdict::Pass, &host("10.0.1.2")),
            (
                Verdict::Deny,
                &PeerSet::Nets(vec![PeerNet::host(ip("10.0.1.1")), PeerNet::host(ip("10.0.1.2"))])
            ),
        ]
    );
    assert_eq!((tiers[1].tier.as_str(), tiers[1].end), ("default", TierEnd::Drop));
    assert_eq!(tiers[1].rules[0].action, Verdict::Allow);
    let tcp = |src: &str, port| Packet { src: ip(src), dst: ip("10.0.2.1"), protocol: 6, port };
    assert!(!plan.allows(&tcp("10.0.1.1", 3306)), "web is denied by the admin tier");
    assert!(plan.allows(&tcp("10.0.1.2", 3306)), "batch passes to the NetworkPolicy");
    assert!(!plan.allows(&tcp("10.0.1.2", 3307)), "and is isolated by it");
    agrees_with_engine(&inventory, &topology, &plan, &[1, 3306, 3307]);
}

#[test]
fn calico_rules_render_protocols_named_ports_per_peer_not_ports_and_skip_log() {
    let (inventory, topology, plan) = plan(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-out, namespace: app}
spec:
  order: 10
  selector: app == 'web'
  egress:
  - {action: Log}
  - action: Allow
    protocol: TCP
    destination: {namespaceSelector: team == 'data', ports: [mysql, http]}
  - action: Deny
    protocol: 17
  - action: Allow
    protocol: TCP
    destination: {selector: all(), notPorts: ['9000:9100']}
  - action: Allow
    notProtocol: TCP
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-rest}
spec:
  order: 20
  selector: all()
  types: [Egress]
",
    );
    let tiers = pod(&plan, "app/web").egress_tiers.clone().unwrap();
    assert_eq!(tiers.len(), 1);
    let rules = &tiers[0].rules;
    // Log is left out; the named ports resolve on mysql only (namespace db).
    assert_eq!(
        rules[0],
        TieredRule {
            action: Verdict::Allow,
            peers: PeerSet::Nets(vec![PeerNet::host(ip("10.0.2.1"))]),
            protocol: Some(6),
            not_protocol: None,
            ports: PortSet::Ranges(vec![PortRange::single(Protocol::Tcp, 3306)]),
            not_ports: vec![],
            origin: Some("projectcalico NetworkPolicy app/web-out egress[1]".into()),
        }
    );
    let of = |index: usize| -> Vec<&TieredRule> {
        let origin = format!("projectcalico NetworkPolicy app/web-out egress[{index}]");
        rules.iter().filter(|r| r.origin.as_deref() == Some(origin.as_str())).collect()
    };
    let all_pods =
        PeerSet::Nets(["10.0.1.1", "10.0.1.2", "10.0.2.1"].map(|s| PeerNet::host(ip(s))).to_vec());
    let outside = PeerSet::Nets(vec![PeerNet {
        net: "0.0.0.0/0".parse().unwrap(),
        except: ["10.0.1.1/32", "10.0.1.2/32", "10.0.2.1/32"].map(|s| s.parse().unwrap()).to_vec(),
    }]);
    // No peer condition: every pod, then every other address of the family.
    let deny_udp = of(2);
    assert_eq!(deny_udp.len(), 2);
    assert_eq!(
        (deny_udp[0].action, deny_udp[0].protocol, &deny_udp[0].ports),
        (Verdict::Deny, Some(17), &PortSet::Any)
    );
    assert_eq!((&deny_udp[0].peers, &deny_udp[1].peers), (&all_pods, &outside));
    // A selector of a namespaced policy sees its namespace only, and no other address.
    let not_ports = of(3);
    assert_eq!(not_ports.len(), 1);
    assert_eq!(
        not_ports[0].peers,
        PeerSet::Nets(["10.0.1.1", "10.0.1.2"].map(|s| PeerNet::host(ip(s))).to_vec())
    );
    assert_eq!(
        not_ports[0].not_ports,
        vec![PortRange { protocol: Protocol::Tcp, start: 9000, end: 9100 }]
    );
    assert_eq!(of(4).iter().map(|r| r.not_protocol).collect::<Vec<_>>(), vec![Some(6), Some(6)]);
    let n =
        agrees_with_engine(&inventory, &topology, &plan, &[1, 80, 3306, 8080, 9050, 9090, 9104]);
    assert!(n > 100, "{n}");
}

#[test]
fn ports_of_protocols_nft_cannot_name_are_refused_with_the_rule() {
    let (_, _, plan) = lab(&format!(
        "{PODS}\n---\n
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: lite}}
spec:
  ingress: [{{action: Allow, protocol: UDPLite, destination: {{ports: [5000]}}}}]
"
    ));
    let err = plan.unwrap_err().to_string();
    assert!(err.contains("GlobalNetworkPolicy lite ingress[0]"), "{err}");
    assert!(err.contains("protocol"), "{err}");
}

/// The cases built from the upstream conformance suites and Calico's documentation
/// (`tests/kinds/`) and the lab's own (`../tests/conformance/kinds-lab`): every probe's expected
/// verdict, and every pod pair on every declared port and probe port, agree between the plan
/// and the engine.
#[test]
fn the_kinds_corpus_plans_agree_with_the_engine_and_the_probes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases = 0;
    let mut probes = 0;
    let mut flows = 0;
    let mut entries = Vec::new();
    // The upstream-derived cases, then the lab's own (`tests/conformance/kinds-lab`).
    for dir in [root.join("tests/kinds"), root.join("../tests/conformance/kinds-lab")] {
        let mut found: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        found.sort_by_key(|e| e.file_name());
        entries.extend(found);
    }
    for entry in entries.into_iter().filter(|e| e.path().is_dir()) {
        let text = std::fs::read_to_string(entry.path().join("manifests.yaml")).unwrap();
        let (inventory, topology, plan) = lab(&text);
        let plan = plan.unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        plan.validate().unwrap();
        let lines = std::fs::read_to_string(entry.path().join("probes.jsonl")).unwrap();
        let mut ports = vec![1];
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            let probe: serde_json::Value = serde_json::from_str(line).unwrap();
            let find = |key: &str| {
                let name = probe[key].as_str().unwrap();
                topology.pods.iter().find(|p| p.key() == name).unwrap().ip
            };
            let protocol: Protocol = probe["protocol"].as_str().unwrap().parse().unwrap();
            let port = u16::try_from(probe["port"].as_u64().unwrap()).unwrap();
            ports.push(port);
            let packet = Packet {
                src: find("from"),
                dst: find("to"),
                protocol: protocol_number(protocol),
                port,
            };
            assert_eq!(
                plan.allows(&packet),
                probe["expect"] == "allow",
                "{}: {line}",
                entry.path().display()
            );
            probes += 1;
        }
        flows += agrees_with_engine(&inventory, &topology, &plan, &ports);
        cases += 1;
    }
    println!("{cases} cases, {probes} probes, {flows} pod-to-pod flows: plan = engine");
    assert!(cases >= 18 && probes >= 89, "{cases} cases, {probes} probes");
    assert!(flows > 1000, "{flows}");
}
