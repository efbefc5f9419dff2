//! Attribution of traced flows on the shared fixture.

use super::*;
use crate::testing::{MYSQL_MANIFESTS, inventory_of};

fn inventory() -> Inventory {
    inventory_of(MYSQL_MANIFESTS)
}

fn record(src: &str, dst: &str) -> DropRecord {
    let t = chrono::Utc::now();
    DropRecord {
        time: t,
        first_seen: t,
        reason: "NETFILTER_DROP".into(),
        reason_raw: 0,
        ifname: "cali0".into(),
        count: 1,
        protocol: Protocol::Tcp,
        src: Endpoint::addr(src.parse().unwrap(), 40000),
        dst: Endpoint::addr(dst.parse().unwrap(), 3306),
        policies: vec![],
        hint: None,
        evidence: Default::default(),
    }
}

#[test]
fn a_port_typo_is_named_with_its_rule() {
    let inv = inventory();
    let mut d = record("10.0.1.5", "10.0.2.7");
    attribute_drop(&inv, &mut d);
    assert_eq!(d.src.pod.as_deref(), Some("web-1"));
    assert_eq!(d.dst.namespace.as_deref(), Some("db"));
    assert_eq!(
        d.policies,
        [PolicyRef {
            kind: crate::policy::PolicyKind::NetworkPolicy,
            tier: None,
            namespace: "db".into(),
            name: "mysql-ingress".into(),
            direction: Direction::Ingress
        }]
    );
    let hint = d.hint.unwrap();
    assert!(hint.contains("rule 0") && hint.contains("3307") && hint.contains("3306"), "{hint}");
}

#[test]
fn unknown_addresses_stay_addresses_and_allowed_flows_say_so() {
    let inv = inventory();
    let mut d = record("192.0.2.1", "10.0.1.5");
    attribute_drop(&inv, &mut d);
    assert_eq!(d.src.pod, None);
    assert_eq!(d.dst.pod.as_deref(), Some("web-1"));
    assert!(d.policies.is_empty());
    assert!(d.hint.unwrap().contains("not a NetworkPolicy decision"));
}

#[test]
fn a_cluster_ip_is_attributed_through_its_backends_like_the_agent_does() {
    let inv = inventory();
    let mut d = record("10.0.1.5", "10.96.0.10");
    d.dst.port = 13306;
    let a = attribute_drop(&inv, &mut d);
    assert_eq!(d.dst.service.as_deref(), Some("mysql"));
    assert_eq!(d.dst.pod.as_deref(), Some("mysql-0"), "the only backend");
    assert_eq!(d.policies.len(), 1);
    assert_eq!(d.policies[0].name, "mysql-ingress");
    assert_eq!(a.destination.map(|(_, port)| port), Some(3306));
    assert!(d.hint.unwrap().contains("3307"));
}

#[test]
fn the_demo_line_names_policies_with_their_direction() {
    let inv = inventory();
    let mut d = record("10.0.1.5", "10.0.2.7");
    attribute_drop(&inv, &mut d);
    assert_eq!(wording::denied_by(&d.policies), "denied by db/mysql-ingress (ingress)");
}
