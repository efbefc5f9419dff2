//! Semantics end to end (one rule per case) and near-miss attribution.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::flow::EndpointSpec;
use crate::inventory::{ClusterObjects, InventoryOptions};
use crate::manifest::{Syntax, parse_manifest};

/// Namespaces app (team=web) and db (team=data); app/web-1, app/api-1, db/mysql-0 (named port
/// mysql=3306/TCP, dns=53/UDP), db/web-2 (app=web in db); dual-stack mysql.
const PODS: &str = r#"
kind: Namespace
apiVersion: v1
metadata: {name: app, labels: {team: web}}
---
kind: Namespace
apiVersion: v1
metadata: {name: db, labels: {team: data}}
---
kind: Pod
apiVersion: v1
metadata: {name: web-1, namespace: app, labels: {app: web}}
status: {podIP: 10.0.1.5}
---
kind: Pod
apiVersion: v1
metadata: {name: api-1, namespace: app, labels: {app: api}}
status: {podIP: 10.0.1.6}
---
kind: Pod
apiVersion: v1
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec:
  containers:
  - name: c
    ports: [{name: mysql, containerPort: 3306}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIPs: [{ip: 10.0.2.7}, {ip: "fd00::7"}]}
---
kind: Pod
apiVersion: v1
metadata: {name: web-2, namespace: db, labels: {app: web}}
status: {podIP: 10.0.2.8}
"#;

fn inventory(policies: &str) -> Inventory {
    let mut objects = ClusterObjects::default();
    parse_manifest(
        &format!("{PODS}\n---\n{policies}"),
        Path::new("t.yaml"),
        Syntax::Yaml,
        &mut objects,
    )
    .unwrap();
    Inventory::from_objects(objects, InventoryOptions::default()).unwrap()
}

fn spec(inventory: &Inventory, end: &str) -> EndpointSpec {
    match end.parse::<IpAddr>() {
        Ok(ip) => EndpointSpec::Ip(ip),
        Err(_) => {
            let (ns, name) = end.split_once('/').unwrap();
            EndpointSpec::Pod(inventory.pod_id(ns, name).unwrap())
        }
    }
}

fn run(
    inventory: &Inventory,
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
    mode: IpBlockPodMode,
) -> Explanation {
    let flow = Flow::new(inventory, spec(inventory, from), spec(inventory, to), port, protocol);
    let options = ExplainOptions { ip_block_pod_mode: mode };
    let explanation = explain(inventory, &flow, &options);
    assert_eq!(
        is_allowed(inventory, &flow, &options),
        explanation.allowed(),
        "fast path disagrees"
    );
    explanation
}

fn allowed(policies: &str, from: &str, to: &str, port: u16, protocol: Protocol) -> bool {
    run(&inventory(policies), from, to, port, protocol, IpBlockPodMode::MatchesPods).allowed()
}

fn ingress_to_mysql(rule: &str) -> String {
    format!(
        "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {{name: p, namespace: db}}\n\
         spec: {{podSelector: {{matchLabels: {{app: mysql}}}}, ingress: [{rule}]}}"
    )
}

fn egress_from_web(rule: &str) -> String {
    format!(
        "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {{name: e, namespace: app}}\n\
         spec: {{podSelector: {{matchLabels: {{app: web}}}}, egress: [{rule}]}}"
    )
}

use Protocol::{Sctp, Tcp, Udp};

#[test]
fn semantics_table() {
    // (what, policies, from, to, port, protocol, allowed)
    let cases: Vec<(&str, String, &str, &str, u16, Protocol, bool)> = vec![
        ("no policy: allowed", String::new(), "app/web-1", "db/mysql-0", 3306, Tcp, true),
        (
            "podSelector alone = policy's namespace (same ns)",
            ingress_to_mysql("{from: [{podSelector: {matchLabels: {app: web}}}]}"),
            "db/web-2",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "podSelector alone = policy's namespace (other ns)",
            ingress_to_mysql("{from: [{podSelector: {matchLabels: {app: web}}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "namespaceSelector alone = all pods there",
            ingress_to_mysql("{from: [{namespaceSelector: {matchLabels: {team: web}}}]}"),
            "app/api-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "namespaceSelector alone, other ns",
            ingress_to_mysql("{from: [{namespaceSelector: {matchLabels: {team: web}}}]}"),
            "db/web-2",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "both in one peer = AND (both hold)",
            ingress_to_mysql(
                "{from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: web}}}]}",
            ),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "both in one peer = AND (pod fails)",
            ingress_to_mysql(
                "{from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: web}}}]}",
            ),
            "app/api-1",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "both in one peer = AND (namespace fails)",
            ingress_to_mysql(
                "{from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: web}}}]}",
            ),
            "db/web-2",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "two peers = OR",
            ingress_to_mysql(
                "{from: [{namespaceSelector: {matchLabels: {team: web}}}, {podSelector: {matchLabels: {app: web}}}]}",
            ),
            "db/web-2",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "empty from = all sources (pod)",
            ingress_to_mysql("{ports: [{port: 3306}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "empty from = all sources (external)",
            ingress_to_mysql("{from: [], ports: [{port: 3306}]}"),
            "203.0.113.9",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "no ingress rules = deny all",
            ingress_to_mysql("").replace("ingress: []", "policyTypes: [Ingress]"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "selector peers never match external",
            ingress_to_mysql("{from: [{namespaceSelector: {}}]}"),
            "203.0.113.9",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "ipBlock inside",
            ingress_to_mysql(
                "{from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}",
            ),
            "203.0.113.9",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "ipBlock except",
            ingress_to_mysql(
                "{from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}",
            ),
            "203.0.113.200",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "ipBlock matches pod IPs by default",
            ingress_to_mysql("{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "ipBlock IPv6 egress",
            egress_from_web("{to: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::/126']}}]}"),
            "app/web-1",
            "fd00::1:1",
            443,
            Tcp,
            true,
        ),
        (
            "ipBlock IPv6 egress except",
            egress_from_web("{to: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::/126']}}]}"),
            "app/web-1",
            "fd00::2",
            443,
            Tcp,
            false,
        ),
        (
            "ipBlock IPv4 does not match IPv6",
            egress_from_web("{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}"),
            "app/web-1",
            "fd00::2",
            443,
            Tcp,
            false,
        ),
        (
            "protocol defaults to TCP",
            ingress_to_mysql("{ports: [{port: 3306}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Udp,
            false,
        ),
        (
            "protocol without port = every port",
            ingress_to_mysql("{ports: [{protocol: UDP}]}"),
            "app/web-1",
            "db/mysql-0",
            9999,
            Udp,
            true,
        ),
        (
            "protocol without port, other protocol",
            ingress_to_mysql("{ports: [{protocol: UDP}]}"),
            "app/web-1",
            "db/mysql-0",
            9999,
            Sctp,
            false,
        ),
        (
            "ports {} = TCP any port",
            ingress_to_mysql("{ports: [{}]}"),
            "app/web-1",
            "db/mysql-0",
            1,
            Tcp,
            true,
        ),
        (
            "endPort lower bound",
            ingress_to_mysql("{ports: [{port: 3300, endPort: 3310}]}"),
            "app/web-1",
            "db/mysql-0",
            3300,
            Tcp,
            true,
        ),
        (
            "endPort upper bound",
            ingress_to_mysql("{ports: [{port: 3300, endPort: 3310}]}"),
            "app/web-1",
            "db/mysql-0",
            3310,
            Tcp,
            true,
        ),
        (
            "endPort past",
            ingress_to_mysql("{ports: [{port: 3300, endPort: 3310}]}"),
            "app/web-1",
            "db/mysql-0",
            3311,
            Tcp,
            false,
        ),
        (
            "named port on destination (ingress)",
            ingress_to_mysql("{ports: [{port: mysql}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "named port, other number",
            ingress_to_mysql("{ports: [{port: mysql}]}"),
            "app/web-1",
            "db/mysql-0",
            3307,
            Tcp,
            false,
        ),
        (
            "named port, protocol mismatch",
            ingress_to_mysql("{ports: [{port: dns}]}"),
            "app/web-1",
            "db/mysql-0",
            53,
            Tcp,
            false,
        ),
        (
            "named port with matching protocol",
            ingress_to_mysql("{ports: [{protocol: UDP, port: dns}]}"),
            "app/web-1",
            "db/mysql-0",
            53,
            Udp,
            true,
        ),
        (
            "named port resolved on destination (egress)",
            egress_from_web("{ports: [{port: mysql}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "named port never matches external",
            egress_from_web("{ports: [{port: mysql}]}"),
            "app/web-1",
            "198.51.100.1",
            3306,
            Tcp,
            false,
        ),
        (
            "egress isolation denies even if ingress open",
            egress_from_web("{to: [{podSelector: {}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            false,
        ),
        (
            "egress with namespaceSelector",
            egress_from_web("{to: [{namespaceSelector: {matchLabels: {team: data}}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "egress present without policyTypes isolates egress",
            egress_from_web("{to: [{podSelector: {}}]}"),
            "app/web-1",
            "203.0.113.1",
            80,
            Tcp,
            false,
        ),
        (
            "egress: [] without policyTypes leaves egress open",
            egress_from_web(""),
            "app/web-1",
            "203.0.113.1",
            80,
            Tcp,
            true,
        ),
        (
            "union of policies",
            format!(
                "{}\n---\n{}",
                ingress_to_mysql("{ports: [{port: 1}]}"),
                ingress_to_mysql("{ports: [{port: 3306}]}").replace("name: p,", "name: q,")
            ),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
        (
            "matchExpressions NotIn admits pods without the key",
            ingress_to_mysql(
                "{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [x]}]}}]}",
            ),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp,
            true,
        ),
    ];
    for (what, policies, from, to, port, protocol, want) in cases {
        assert_eq!(allowed(&policies, from, to, port, protocol), want, "{what}");
    }
}

#[test]
fn ip_block_pod_mode_never_matches_pods() {
    let inv = inventory(&ingress_to_mysql("{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}"));
    assert!(run(&inv, "app/web-1", "db/mysql-0", 3306, Tcp, IpBlockPodMode::MatchesPods).allowed());
    let never = run(&inv, "app/web-1", "db/mysql-0", 3306, Tcp, IpBlockPodMode::NeverMatchesPods);
    assert!(!never.allowed());
    assert_eq!(never.ingress.policies[0].rules[0].mismatches[0].field, "from[0].ipBlock");
    // An address that is no pod still matches in that mode.
    assert!(
        run(&inv, "10.9.9.9", "db/mysql-0", 3306, Tcp, IpBlockPodMode::NeverMatchesPods).allowed()
    );
}

fn mismatches(
    policies: &str,
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
) -> Vec<(String, String, String)> {
    let explanation =
        run(&inventory(policies), from, to, port, protocol, IpBlockPodMode::MatchesPods);
    let direction =
        if explanation.ingress.isolated { &explanation.ingress } else { &explanation.egress };
    let closest = direction.closest_rule().expect("a rule");
    closest
        .rule
        .mismatches
        .iter()
        .map(|m| (m.field.clone(), m.want.clone(), m.got.clone()))
        .collect()
}

fn m(field: &str, want: &str, got: &str) -> (String, String, String) {
    (field.into(), want.into(), got.into())
}

#[test]
fn near_misses_name_the_field() {
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{ports: [{port: 3307}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("ports[0].port", "3307", "3306")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql(
                "{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]}"
            ),
            "app/api-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].podSelector.matchLabels.app", "web", "api")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{from: [{podSelector: {matchLabels: {app: web}}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m(
            "from[0].namespaceSelector",
            "namespace db (no namespaceSelector: only pods of the policy's namespace match)",
            "app"
        )]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{from: [{namespaceSelector: {matchLabels: {team: data}}}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].namespaceSelector.matchLabels.team", "data", "web")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql(
                "{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]}"
            ),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].namespaceSelector.matchLabels[\"kubernetes.io/metadata.name\"]", "x", "app")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql(
                "{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: In, values: [a, b]}]}}]}"
            ),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].podSelector.matchExpressions[0]", "tier In (a, b)", "(no label tier)")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql(
                "{from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}"
            ),
            "203.0.113.200",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].ipBlock.except[0]", "an address outside 203.0.113.128/25", "203.0.113.200")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{from: [{ipBlock: {cidr: 203.0.113.0/24}}]}"),
            "198.51.100.1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("from[0].ipBlock.cidr", "203.0.113.0/24", "198.51.100.1")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{ports: [{protocol: UDP, port: 3306}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("ports[0].protocol", "UDP", "TCP")]
    );
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{ports: [{port: 3300, endPort: 3305}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("ports[0].endPort", "3300-3305", "3306")]
    );
    assert_eq!(
        mismatches(&ingress_to_mysql("{ports: [{port: dns}]}"), "app/web-1", "db/mysql-0", 53, Tcp),
        [m("ports[0].port", "dns (no TCP container port of that name on db/mysql-0)", "53")]
    );
    // Closest port entry: the second one only misses on the number.
    assert_eq!(
        mismatches(
            &ingress_to_mysql("{ports: [{protocol: UDP, port: 1}, {port: 3307}]}"),
            "app/web-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [m("ports[1].port", "3307", "3306")]
    );
    // Peer and port both off.
    assert_eq!(
        mismatches(
            &ingress_to_mysql(
                "{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}], ports: [{port: 3307}]}"
            ),
            "app/api-1",
            "db/mysql-0",
            3306,
            Tcp
        ),
        [
            m("from[0].podSelector.matchLabels.app", "web", "api"),
            m("ports[0].port", "3307", "3306")
        ]
    );
}

#[test]
fn closest_rule_prefers_fewest_mismatches_then_first() {
    let policies = ingress_to_mysql(
        "{from: [{podSelector: {matchLabels: {app: x}}}], ports: [{port: 1}]}, {ports: [{port: 3307}]}, {ports: [{port: 3308}]}",
    );
    let explanation = run(
        &inventory(&policies),
        "app/web-1",
        "db/mysql-0",
        3306,
        Tcp,
        IpBlockPodMode::MatchesPods,
    );
    let closest = explanation.ingress.closest_rule().unwrap();
    assert_eq!((closest.policy.name.as_str(), closest.rule.index), ("p", 1));
    let deny_all = ingress_to_mysql("").replace("ingress: []", "policyTypes: [Ingress]");
    let explanation = run(
        &inventory(&deny_all),
        "app/web-1",
        "db/mysql-0",
        3306,
        Tcp,
        IpBlockPodMode::MatchesPods,
    );
    assert!(explanation.ingress.closest_rule().is_none());
    assert!(explanation.ingress.policies[0].rules.is_empty());
}

#[test]
fn json_matches_the_contract() {
    let inv = inventory(
        &ingress_to_mysql("{ports: [{port: 3307}]}").replace("name: p,", "name: mysql-ingress,"),
    );
    let explanation = run(&inv, "app/web-1", "db/mysql-0", 3306, Tcp, IpBlockPodMode::MatchesPods);
    let want = serde_json::json!({
        "flow": {"src": {"namespace": "app", "pod": "web-1", "ip": "10.0.1.5"},
                 "dst": {"namespace": "db", "pod": "mysql-0", "ip": "10.0.2.7"},
                 "port": 3306, "protocol": "TCP"},
        "verdict": "deny",
        "egress":  {"isolated": false, "allowed": true, "policies": [], "decided_by": null},
        "ingress": {"isolated": true, "allowed": false, "policies": [
           {"kind": "NetworkPolicy", "namespace": "db", "name": "mysql-ingress", "allowed": false, "rules": [
              {"index": 0, "matched": false,
               "mismatches": [{"field": "ports[0].port", "want": "3307", "got": "3306"}]}]}],
           "decided_by": {"kind": "NetworkPolicy", "namespace": "db", "name": "mysql-ingress",
                          "rule": null, "action": "Deny"}}
    });
    assert_eq!(serde_json::to_value(&explanation).unwrap(), want);
    let back: Explanation = serde_json::from_value(want).unwrap();
    assert_eq!(back, explanation);
}

#[test]
fn external_endpoints_have_null_pod_fields_and_no_isolation() {
    let inv = inventory(&egress_from_web("{to: [{ipBlock: {cidr: 198.51.100.0/24}}]}"));
    let explanation = run(&inv, "app/web-1", "198.51.100.1", 443, Tcp, IpBlockPodMode::MatchesPods);
    let json = serde_json::to_value(&explanation).unwrap();
    assert_eq!(
        json["flow"]["dst"],
        serde_json::json!({"namespace": null, "pod": null, "ip": "198.51.100.1"})
    );
    assert_eq!(
        json["ingress"],
        serde_json::json!({"isolated": false, "allowed": true, "policies": [], "decided_by": null})
    );
    assert!(explanation.allowed());
    // A dual-stack destination given by name uses the source's family.
    let v6 = run(&inv, "fd00::99", "db/mysql-0", 1, Tcp, IpBlockPodMode::MatchesPods);
    assert_eq!(v6.flow.dst.ip.as_deref(), Some("fd00::7"));
    let table = table::render(&explanation);
    assert!(
        table.starts_with("ALLOW  app/web-1 (10.0.1.5) -> 198.51.100.1 (external)  TCP/443\n"),
        "{table}"
    );
}
