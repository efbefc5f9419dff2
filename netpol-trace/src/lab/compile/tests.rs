use std::path::Path;

use super::*;
use crate::inventory::ClusterObjects;
use crate::lab::naming::LabNames;
use crate::lab::objects::lab_inventory;
use crate::lab::topology::build_topology;
use crate::manifest::{Syntax, parse_manifest};
use crate::policy::Protocol;

/// Pods: app/web (10.0.1.1, http=8080), app/batch (10.0.1.2, http=9090),
/// db/mysql (10.0.2.1, mysql=3306, metrics=9104/UDP); namespace db labelled team=data.
const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: db, labels: {team: data}}
---
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web, tier: front}}
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

fn plan(policies: &str) -> EnforcementPlan {
    let mut objects = ClusterObjects::default();
    let text = format!("{PODS}\n---\n{policies}");
    parse_manifest(&text, Path::new("m.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let topology = build_topology(&LabNames::new("t").unwrap(), &objects.pods).unwrap();
    let inventory =
        lab_inventory(&topology, &objects.namespaces, objects.network_policies).unwrap();
    let plan = plan_from_inventory(&inventory, &topology).unwrap();
    plan.validate().unwrap();
    plan
}

fn pod<'a>(plan: &'a EnforcementPlan, key: &str) -> &'a PodPlan {
    plan.pods.iter().find(|p| p.pod.as_deref() == Some(key)).unwrap()
}

fn hosts(ips: &[&str]) -> PeerSet {
    PeerSet::Nets(ips.iter().map(|ip| PeerNet::host(ip.parse().unwrap())).collect())
}

fn tcp(ports: &[(u16, u16)]) -> PortSet {
    PortSet::Ranges(
        ports
            .iter()
            .map(|&(start, end)| PortRange { protocol: Protocol::Tcp, start, end })
            .collect(),
    )
}

fn rule(peers: PeerSet, ports: PortSet, origin: &str) -> AllowRule {
    AllowRule { peers, ports, origin: Some(origin.into()) }
}

#[test]
fn without_policies_nothing_is_isolated() {
    let plan = plan("");
    assert_eq!(plan.pods.len(), 3);
    assert!(plan.pods.iter().all(|p| p.ingress.is_none() && p.egress.is_none()));
    let web = pod(&plan, "app/web");
    assert_eq!(web.ip.to_string(), "10.0.1.1");
    assert!(web.host_iface.starts_with("cali"));
}

#[test]
fn default_deny_isolates_only_the_selected_direction_and_pods() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: deny, namespace: app}
spec: {podSelector: {}}
---
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: db}
spec: {podSelector: {}, policyTypes: [Egress]}
",
    );
    for key in ["app/web", "app/batch"] {
        assert_eq!(pod(&plan, key).ingress, Some(vec![]), "{key}");
        assert_eq!(pod(&plan, key).egress, None, "{key}");
    }
    let mysql = pod(&plan, "db/mysql");
    assert_eq!((mysql.ingress.as_ref(), mysql.egress.as_ref()), (None, Some(&vec![])));
}

#[test]
fn ingress_peers_become_pod_ips_and_ip_blocks_with_excepts() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: mysql-ingress, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}
      podSelector: {matchExpressions: [{key: app, operator: In, values: [web, batch]}]}
    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}
    ports: [{port: 3306}, {port: 5000, endPort: 5010}, {protocol: UDP, port: metrics}]
  - {}
",
    );
    let mysql = pod(&plan, "db/mysql");
    let ingress = mysql.ingress.as_ref().unwrap();
    let mut ports = match tcp(&[(3306, 3306), (5000, 5010)]) {
        PortSet::Ranges(r) => r,
        PortSet::Any => unreachable!(),
    };
    ports.push(PortRange::single(Protocol::Udp, 9104));
    let PeerSet::Nets(mut nets) = hosts(&["10.0.1.2", "10.0.1.1"]) else { unreachable!() };
    nets.push(PeerNet {
        net: "192.168.0.0/16".parse().unwrap(),
        except: vec!["192.168.1.0/24".parse().unwrap()],
    });
    assert_eq!(
        ingress,
        &vec![
            rule(PeerSet::Nets(nets), PortSet::Ranges(ports), "db/mysql-ingress ingress[0]"),
            rule(PeerSet::Any, PortSet::Any, "db/mysql-ingress ingress[1]"),
        ]
    );
    assert_eq!(pod(&plan, "app/web").ingress, None);
}

#[test]
fn ingress_named_ports_resolve_on_the_pod_itself() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: http, namespace: app}
spec: {podSelector: {}, ingress: [{ports: [{port: http}, {port: mysql}]}]}
",
    );
    let origin = "app/http ingress[0]";
    assert_eq!(
        pod(&plan, "app/web").ingress,
        Some(vec![rule(PeerSet::Any, tcp(&[(8080, 8080)]), origin)])
    );
    assert_eq!(
        pod(&plan, "app/batch").ingress,
        Some(vec![rule(PeerSet::Any, tcp(&[(9090, 9090)]), origin)])
    );
}

#[test]
fn egress_named_ports_split_per_destination_and_skip_external_addresses() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: out, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {}}, {namespaceSelector: {matchLabels: {team: data}}}]
    ports: [{port: http}, {port: 53, protocol: UDP}]
  - to: [{ipBlock: {cidr: 10.0.2.0/24}}]
    ports: [{port: mysql}, {port: 443}]
",
    );
    let web = pod(&plan, "app/web");
    assert_eq!(web.ingress, None);
    let udp53 = PortRange::single(Protocol::Udp, 53);
    let with = |port: u16| {
        let mut ranges = vec![PortRange::single(Protocol::Tcp, port), udp53];
        ranges.sort();
        PortSet::Ranges(ranges)
    };
    assert_eq!(
        web.egress.as_ref().unwrap(),
        &vec![
            // Rule 0: web and batch name `http` differently; mysql has no `http`.
            rule(hosts(&["10.0.1.1"]), with(8080), "app/out egress[0]"),
            rule(hosts(&["10.0.1.2"]), with(9090), "app/out egress[0]"),
            rule(hosts(&["10.0.2.1"]), PortSet::Ranges(vec![udp53]), "app/out egress[0]"),
            // Rule 1: the ipBlock keeps 443 for any address in it; mysql, inside, adds 3306.
            rule(
                PeerSet::Nets(vec![PeerNet {
                    net: "10.0.2.0/24".parse().unwrap(),
                    except: vec![]
                }]),
                tcp(&[(443, 443)]),
                "app/out egress[1]"
            ),
            rule(hosts(&["10.0.2.1"]), tcp(&[(443, 443), (3306, 3306)]), "app/out egress[1]"),
        ]
    );
}

#[test]
fn egress_to_anywhere_with_a_named_port_resolves_it_on_every_pod() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: out, namespace: db}
spec:
  podSelector: {}
  egress: [{ports: [{port: http}, {port: 80}]}]
",
    );
    let egress = pod(&plan, "db/mysql").egress.clone().unwrap();
    let origin = "db/out egress[0]";
    assert_eq!(
        egress,
        vec![
            rule(PeerSet::Any, tcp(&[(80, 80)]), origin),
            rule(hosts(&["10.0.1.1"]), tcp(&[(80, 80), (8080, 8080)]), origin),
            rule(hosts(&["10.0.1.2"]), tcp(&[(80, 80), (9090, 9090)]), origin),
        ]
    );
    // `policyTypes` defaulted from `egress`: ingress is isolated too, with no rule.
    assert_eq!(pod(&plan, "db/mysql").ingress, Some(vec![]));
}

#[test]
fn several_policies_are_a_union_in_policy_order() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: b-from-batch, namespace: db}
spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: batch}}}]}]}
---
kind: NetworkPolicy
metadata: {name: a-from-web, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {tier: front}}}], ports: [{port: 3306}]}]
",
    );
    assert_eq!(
        pod(&plan, "db/mysql").ingress,
        Some(vec![
            rule(hosts(&["10.0.1.1"]), tcp(&[(3306, 3306)]), "db/a-from-web ingress[0]"),
            rule(hosts(&["10.0.1.2"]), PortSet::Any, "db/b-from-batch ingress[0]"),
        ])
    );
}

#[test]
fn a_selector_matching_no_pod_allows_nothing() {
    let plan = plan(
        "
kind: NetworkPolicy
metadata: {name: p, namespace: db}
spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: nope}}}]}]}
",
    );
    assert_eq!(
        pod(&plan, "db/mysql").ingress,
        Some(vec![rule(PeerSet::Nets(vec![]), PortSet::Any, "db/p ingress[0]")])
    );
}

#[test]
fn pods_missing_from_the_inventory_are_an_error() {
    let mut objects = ClusterObjects::default();
    parse_manifest(PODS, Path::new("m.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let topology = build_topology(&LabNames::new("t").unwrap(), &objects.pods).unwrap();
    let empty = Topology { pods: vec![], ..topology.clone() };
    let inventory = lab_inventory(&empty, &[], crate::lab::LabPolicies::default()).unwrap();
    let err = plan_from_inventory(&inventory, &topology).unwrap_err().to_string();
    assert!(err.starts_with("Pod app/web: metadata.name: "), "{err}");
}

#[test]
fn long_names_are_cut_to_fit_nft_comments() {
    let name = "p".repeat(200);
    let plan = plan(&format!(
        "kind: NetworkPolicy\nmetadata: {{name: {name}, namespace: db}}\nspec: {{podSelector: {{}}, ingress: [{{}}]}}\n"
    ));
    let origin = pod(&plan, "db/mysql").ingress.as_ref().unwrap()[0].origin.clone().unwrap();
    assert_eq!(origin.len(), crate::lab::plan::MAX_COMMENT_LEN);
    assert!(origin.starts_with("db/ppp") && origin.ends_with('~'), "{origin}");
}
