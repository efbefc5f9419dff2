//! Inventory: indexes, selection, rule peers and ports, services, policy replacement.

use std::net::IpAddr;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::manifest::{Syntax, parse_manifest};
use crate::policy::{Protocol, Selector};

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: db, labels: {team: data}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: app, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.1.5, podIPs: [{ip: 10.0.1.5}, {ip: "fd00::5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: app, labels: {app: api}}
status: {podIP: 10.0.1.6}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec:
  containers:
  - name: c
    ports:
    - {name: mysql, containerPort: 3306}
    - {name: metrics, containerPort: 9104, protocol: UDP}
status: {podIP: 10.0.2.7}
---
apiVersion: v1
kind: Pod
metadata: {name: lone, namespace: undeclared, labels: {app: web}}
status: {podIP: 10.0.3.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mysql-ingress, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchLabels: {team: web}}
    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}
    ports: [{port: mysql}, {protocol: UDP, port: metrics}, {port: 5000, endPort: 5010}]
  - ports: [{protocol: SCTP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: app}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-peers, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {}}]
  - from: [{namespaceSelector: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: db}
spec:
  selector: {app: mysql}
  clusterIP: 10.96.0.20
  ports: [{name: sql, port: 3306, targetPort: mysql}, {name: stats, port: 80, targetPort: 9104, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: external-db, namespace: db}
spec:
  ports: [{port: 3306}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: external-db-abc, namespace: db, labels: {kubernetes.io/service-name: external-db}}
addressType: IPv4
endpoints: [{addresses: [10.0.2.7]}]
"#;

fn world() -> Inventory {
    let mut objects = ClusterObjects::default();
    parse_manifest(WORLD, Path::new("world.yaml"), Syntax::Yaml, &mut objects).unwrap();
    Inventory::from_objects(objects, InventoryOptions::default()).unwrap()
}

fn pod(inventory: &Inventory, key: &str) -> PodId {
    let (ns, name) = key.split_once('/').unwrap();
    inventory.pod_id(ns, name).unwrap_or_else(|| panic!("{key}"))
}

fn names(inventory: &Inventory, pods: &[PodId]) -> Vec<String> {
    pods.iter().map(|&id| inventory.pod(id).pod.to_string()).collect()
}

fn policy(inventory: &Inventory, key: &str) -> PolicyId {
    let (ns, name) = key.split_once('/').unwrap();
    inventory.policy_id(ns, name).unwrap()
}

#[test]
fn namespaces_carry_their_name_label_and_undeclared_ones_are_synthesised() {
    let inventory = world();
    let app = inventory.namespace_labels("app").unwrap();
    assert_eq!(app.get(NAMESPACE_NAME_LABEL).map(String::as_str), Some("app"));
    assert_eq!(app.get("team").map(String::as_str), Some("web"));
    let undeclared = inventory.namespaces().iter().find(|n| n.name == "undeclared").unwrap();
    assert!(!undeclared.declared);
    assert_eq!(undeclared.labels.len(), 1);
    assert_eq!(undeclared.labels[NAMESPACE_NAME_LABEL], "undeclared");
}

#[test]
fn pods_by_name_and_ip() {
    let inventory = world();
    let web = pod(&inventory, "app/web-1");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(inventory.pod_by_ip(ip("10.0.1.5")), Some(web));
    assert_eq!(inventory.pod_by_ip(ip("fd00::5")), Some(web));
    assert_eq!(inventory.pod_by_ip(ip("10.0.9.9")), None);
    assert_eq!(inventory.pod(web).ips, vec![ip("10.0.1.5"), ip("fd00::5")]);
    assert_eq!(inventory.pod(web).ip_for_peer(Some(ip("fd00::7"))), Some(ip("fd00::5")));
    assert_eq!(inventory.pod_id("app", "nope"), None);
    assert_eq!(inventory.pods().len(), 4);
}

#[test]
fn isolating_policies_per_direction() {
    let inventory = world();
    let keys = |pod_key: &str, direction| {
        let ids = inventory.isolating_policies(pod(&inventory, pod_key), direction);
        ids.iter().map(|&id| inventory.policy(id).compiled.key()).collect::<Vec<_>>()
    };
    assert_eq!(keys("app/web-1", Direction::Ingress), ["app/default-deny", "app/web-peers"]);
    assert_eq!(keys("app/web-1", Direction::Egress), ["app/default-deny"]);
    assert_eq!(keys("app/api-1", Direction::Ingress), ["app/default-deny"]);
    assert_eq!(keys("db/mysql-0", Direction::Ingress), ["db/mysql-ingress"]);
    assert!(keys("db/mysql-0", Direction::Egress).is_empty());
    assert!(
        keys("undeclared/lone", Direction::Ingress).is_empty(),
        "policies never reach into other namespaces"
    );
    let selected = &inventory.policy(policy(&inventory, "app/default-deny")).selected;
    assert_eq!(names(&inventory, selected), ["app/api-1", "app/web-1"]);
}

#[test]
fn rule_peers_resolve_selectors_and_keep_ip_blocks() {
    let inventory = world();
    let mysql = policy(&inventory, "db/mysql-ingress");
    let peers = inventory.rule_peers(mysql, Direction::Ingress, 0).unwrap();
    assert!(!peers.any);
    // podSelector AND namespaceSelector: web pods of team=web namespaces only (not undeclared/lone).
    assert_eq!(names(&inventory, &peers.pods), ["app/web-1"]);
    assert_eq!(peers.ip_blocks.len(), 1);
    assert_eq!(peers.ip_blocks[0].cidr.to_string(), "192.168.0.0/16");
    assert_eq!(peers.ip_blocks[0].except[0].to_string(), "192.168.1.0/24");
    let any = inventory.rule_peers(mysql, Direction::Ingress, 1).unwrap();
    assert!(any.any && any.pods.is_empty());
    assert!(inventory.rule_peers(mysql, Direction::Ingress, 2).is_none());
    assert!(inventory.rule_peers(mysql, Direction::Egress, 0).is_none());

    let web_peers = policy(&inventory, "app/web-peers");
    // podSelector {} alone: every pod of the policy's namespace.
    let same_namespace = inventory.rule_peers(web_peers, Direction::Ingress, 0).unwrap();
    assert_eq!(names(&inventory, &same_namespace.pods), ["app/api-1", "app/web-1"]);
    // namespaceSelector {} alone: every pod of every namespace.
    let everywhere = inventory.rule_peers(web_peers, Direction::Ingress, 1).unwrap();
    assert_eq!(
        names(&inventory, &everywhere.pods),
        ["app/api-1", "app/web-1", "db/mysql-0", "undeclared/lone"]
    );
}

#[test]
fn resolved_ports_per_destination() {
    let inventory = world();
    let mysql_policy = &inventory.policy(policy(&inventory, "db/mysql-ingress")).compiled;
    let rules = mysql_policy.rules(Direction::Ingress).unwrap();
    let mysql_pod = inventory.pod(pod(&inventory, "db/mysql-0"));
    let web_pod = inventory.pod(pod(&inventory, "app/web-1"));
    let range = |protocol, start, end| PortRange { protocol, start, end };
    assert_eq!(
        resolved_ports(&rules[0], Some(mysql_pod)),
        ResolvedPorts::Ranges(vec![
            range(Protocol::Tcp, 3306, 3306),
            range(Protocol::Tcp, 5000, 5010),
            range(Protocol::Udp, 9104, 9104)
        ])
    );
    // web-1 declares neither name: only the numeric range is left.
    assert_eq!(
        resolved_ports(&rules[0], Some(web_pod)),
        ResolvedPorts::Ranges(vec![range(Protocol::Tcp, 5000, 5010)])
    );
    assert_eq!(
        resolved_ports(&rules[0], None),
        ResolvedPorts::Ranges(vec![range(Protocol::Tcp, 5000, 5010)])
    );
    assert_eq!(
        resolved_ports(&rules[1], None),
        ResolvedPorts::Ranges(vec![range(Protocol::Sctp, 1, 65535)])
    );
    let web_rules = inventory
        .policy(policy(&inventory, "app/web-peers"))
        .compiled
        .rules(Direction::Ingress)
        .unwrap();
    assert_eq!(resolved_ports(&web_rules[0], Some(web_pod)), ResolvedPorts::Any);
}

#[test]
fn with_policies_replaced_replaces_adds_and_leaves_the_original_alone() {
    let inventory = world();
    let patched: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml_ng::from_str(
        "{metadata: {name: mysql-ingress, namespace: db}, spec: {podSelector: {matchLabels: {app: nothing}}}}",
    )
    .unwrap();
    let added: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml_ng::from_str(
        "{metadata: {name: extra, namespace: db}, spec: {podSelector: {}}}",
    )
    .unwrap();
    let next = inventory.with_policies_replaced(vec![patched, added]).unwrap();
    let mysql = pod(&next, "db/mysql-0");
    assert_eq!(next.policies().len(), inventory.policies().len() + 1);
    let keys: Vec<String> = next
        .isolating_policies(mysql, Direction::Ingress)
        .iter()
        .map(|&id| next.policy(id).compiled.key())
        .collect();
    assert_eq!(keys, ["db/extra"]);
    let replaced = next.policy(policy(&next, "db/mysql-ingress"));
    assert_eq!(
        replaced.sourced.source,
        PolicySource::File { path: "world.yaml".into(), document: 7 }
    );
    assert_eq!(replaced.sourced.raw_json()["spec"]["podSelector"]["matchLabels"]["app"], "nothing");
    assert_eq!(next.policy(policy(&next, "db/extra")).sourced.source, PolicySource::InMemory);
    // The original is untouched.
    assert_eq!(inventory.isolating_policies(mysql, Direction::Ingress).len(), 1);
    let invalid: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml_ng::from_str(
        "{metadata: {name: mysql-ingress, namespace: db}, spec: {ingress: [{ports: [{port: 0}]}]}}",
    )
    .unwrap();
    let err = inventory.with_policies_replaced(vec![invalid]).unwrap_err();
    assert_eq!(err.error.error.field, "spec.ingress[0].ports[0].port");
}

/// Replaces the policies `keys` of the world with their version in `changed` and checks every
/// pod's isolating policies against an inventory built from `changed`; returns that inventory.
fn replace_as_from_scratch(changed: &str, keys: &[&str]) -> Inventory {
    assert_ne!(changed, WORLD);
    let mut objects = ClusterObjects::default();
    parse_manifest(changed, Path::new("world.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let scratch = Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
    let replacements = keys
        .iter()
        .map(|key| {
            let object = scratch.policy(policy(&scratch, key)).sourced.raw_json().into_owned();
            serde_json::from_value(object).unwrap()
        })
        .collect();
    let next = world().with_policies_replaced(replacements).unwrap();
    for id in scratch.pod_ids() {
        for direction in [Direction::Ingress, Direction::Egress] {
            let keys = |inventory: &Inventory| -> Vec<String> {
                let ids = inventory.isolating_policies(id, direction);
                ids.iter().map(|&p| inventory.policy(p).compiled.key()).collect()
            };
            assert_eq!(keys(&next), keys(&scratch), "{id:?} {direction:?}");
        }
        for (_, entry) in scratch.policies() {
            let (ns, name) = (&entry.compiled.namespace, &entry.compiled.name);
            let replaced = next.policy(next.policy_id(ns, name).unwrap());
            assert_eq!(replaced.compiled, entry.compiled);
        }
    }
    next
}

#[test]
fn replacing_existing_policies_indexes_as_a_build_from_scratch() {
    // Which pods the policies select, and in which directions, changes.
    let selection =
        WORLD.replace("podSelector: {matchLabels: {app: mysql}}", "podSelector: {}").replace(
            "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}",
            "spec: {podSelector: {matchLabels: {app: api}}, policyTypes: [Egress]}",
        );
    let next = replace_as_from_scratch(&selection, &["db/mysql-ingress", "app/default-deny"]);
    assert!(next.isolating_policies(pod(&next, "app/web-1"), Direction::Egress).is_empty());
    // Only the rules change (what a fix does): the per-pod lists are kept.
    let rules = WORLD.replace(
        "  - from: [{namespaceSelector: {}}]",
        "  - from: [{namespaceSelector: {}}]\n    ports: [{port: 80}]",
    );
    let next = replace_as_from_scratch(&rules, &["app/web-peers"]);
    let web = pod(&next, "app/web-1");
    let keys: Vec<String> = next
        .isolating_policies(web, Direction::Ingress)
        .iter()
        .map(|&p| next.policy(p).compiled.key())
        .collect();
    assert_eq!(keys, ["app/default-deny", "app/web-peers"]);
}

#[test]
fn a_kept_policy_object_round_trips_exactly() {
    // From a file: the raw object, with a field the typed object does not know and the
    // source's document position.
    let mut objects = ClusterObjects::default();
    parse_manifest(WORLD, Path::new("world.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let mut read = objects.network_policies.clone();
    read[0].raw["spec"]["x-unknown"] = serde_json::json!({"kept": [1, "two", null, true]});
    objects.network_policies = read.clone();
    let inventory = Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
    for sourced in &read {
        let name = sourced.policy.metadata.name.as_deref().unwrap();
        let namespace = sourced.policy.metadata.namespace.as_deref().unwrap();
        let kept = &inventory.policy(inventory.policy_id(namespace, name).unwrap()).sourced;
        assert_eq!(*kept.raw_json(), sourced.raw, "{name}: the object as read");
        assert_eq!(kept.source, sourced.source);
        let again = kept.to_sourced().unwrap();
        assert_eq!(again.policy, sourced.policy);
        assert_eq!((again.raw, again.source), (sourced.raw.clone(), sourced.source.clone()));
    }
    // From the cluster: kept typed only, so the JSON is the typed object's.
    let typed = read[0].policy.clone();
    let (_, kept) = compile_shared(SourcedPolicy::from_cluster(typed.clone()), "default").unwrap();
    assert_eq!(*kept.raw_json(), serde_json::to_value(&typed).unwrap());
    assert_eq!(kept.source, PolicySource::Cluster);
    assert_eq!(kept.to_sourced().unwrap().policy, typed);
    assert!(kept.json_len() < serde_json::to_string_pretty(&typed).unwrap().len());
}

#[test]
fn service_backends() {
    let inventory = world();
    let mysql = pod(&inventory, "db/mysql-0");
    let tcp = Protocol::Tcp;
    let backend = |port| vec![ServiceBackend { pod: mysql, port }];
    assert_eq!(
        inventory.service_backends("db", "mysql", Some(&PortRef::Number(3306)), tcp).unwrap(),
        backend(3306)
    );
    assert_eq!(
        inventory.service_backends("db", "mysql", Some(&PortRef::Name("sql".into())), tcp).unwrap(),
        backend(3306)
    );
    assert_eq!(inventory.service_backends("db", "mysql", None, tcp).unwrap(), backend(3306));
    assert_eq!(
        inventory.service_backends("db", "mysql", None, Protocol::Udp).unwrap(),
        backend(9104)
    );
    assert_eq!(inventory.service_backends("db", "external-db", None, tcp).unwrap(), backend(3306));
    assert!(matches!(
        inventory.service_backends("db", "mysql", Some(&PortRef::Number(80)), tcp),
        Err(LookupError::UnknownServicePort { .. })
    ));
    assert!(matches!(
        inventory.service_backends("db", "nope", None, tcp),
        Err(LookupError::UnknownService { .. })
    ));
    assert_eq!(
        inventory.service_by_cluster_ip("10.96.0.20".parse().unwrap()),
        Some(("db", "mysql"))
    );
}

#[test]
fn duplicate_objects_later_wins_and_missing_namespace_is_default() {
    let text = "
kind: Pod
apiVersion: v1
metadata: {name: p, labels: {v: one}}
---
kind: Pod
apiVersion: v1
metadata: {name: p, labels: {v: two}}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: np}
spec: {podSelector: {matchLabels: {v: two}}}
";
    let mut objects = ClusterObjects::default();
    parse_manifest(text, Path::new("d.yaml"), Syntax::Yaml, &mut objects).unwrap();
    let inventory = Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
    let p = pod(&inventory, "default/p");
    assert_eq!(inventory.pod(p).labels["v"], "two");
    assert_eq!(inventory.isolating_policies(p, Direction::Ingress).len(), 1);
    assert!(inventory.namespace_labels("default").is_some());
}

fn labels_strategy() -> impl Strategy<Value = crate::policy::Labels> {
    proptest::collection::btree_map("[abc]", "[xy]", 0..3)
}

fn requirement_strategy() -> impl Strategy<Value = crate::policy::Requirement> {
    use crate::policy::{Operator, Requirement, RequirementOrigin};
    let values = proptest::collection::btree_set("[xy]", 1..3);
    let operator = prop_oneof![
        values.clone().prop_map(|v| Operator::In(v.into_iter().collect())),
        values.prop_map(|v| Operator::NotIn(v.into_iter().collect())),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
    ];
    ("[abc]", operator).prop_map(|(key, operator)| Requirement {
        key,
        operator,
        origin: RequirementOrigin::MatchExpression(0),
    })
}

proptest! {
    /// The label index gives exactly what a scan of the namespace gives.
    #[test]
    fn indexed_selection_equals_a_scan(
        pod_labels in proptest::collection::vec(labels_strategy(), 0..12),
        requirements in proptest::collection::vec(requirement_strategy(), 0..3),
    ) {
        let pods: Vec<k8s_openapi::api::core::v1::Pod> = pod_labels
            .iter()
            .enumerate()
            .map(|(i, labels)| k8s_openapi::api::core::v1::Pod {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(format!("p{i}")),
                    namespace: Some("ns".into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        let catalog = catalog::Catalog::build(&[], &pods, ["ns"], DEFAULT_NAMESPACE);
        let selector = Selector::from_requirements(requirements);
        let ns = catalog.namespace_id("ns").unwrap();
        let scanned: Vec<PodId> =
            catalog.pods_in(ns).iter().copied().filter(|&id| selector.matches(&catalog.pod(id).labels)).collect();
        prop_assert_eq!(catalog.select_pods(ns, &selector), scanned);
    }
}
