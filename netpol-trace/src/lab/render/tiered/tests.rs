use super::super::render_ruleset;
use super::*;
use crate::lab::plan::{EnforcementPlan, PeerNet, PortRange, Protocol};

fn host(ip: &str) -> PeerNet {
    PeerNet::host(ip.parse().unwrap())
}

fn rule(action: Verdict, peers: PeerSet, ports: PortSet, origin: &str) -> TieredRule {
    TieredRule::new(action, peers, ports, Some(origin.into()))
}

/// db/mysql: an admin tier (Pass for batch, Deny for web), then the default tier (a Calico
/// policy allowing TCP 3306 from web and batch, end-of-tier drop), then the baseline tier.
fn db_plan() -> EnforcementPlan {
    let mut db =
        PodPlan::open(Some("db/mysql".into()), "10.0.2.1".parse().unwrap(), "calidb".into());
    db.ingress_tiers = Some(vec![
        TierPlan {
            tier: "Admin".into(),
            rules: vec![
                rule(
                    Verdict::Pass,
                    PeerSet::Nets(vec![host("10.0.1.2")]),
                    PortSet::Any,
                    "ClusterNetworkPolicy isolate-db ingress[0]",
                ),
                rule(
                    Verdict::Deny,
                    PeerSet::Nets(vec![host("10.0.1.1")]),
                    PortSet::Any,
                    "ClusterNetworkPolicy isolate-db ingress[1]",
                ),
            ],
            end: TierEnd::Next,
            end_origin: None,
        },
        TierPlan {
            tier: "default".into(),
            rules: vec![rule(
                Verdict::Allow,
                PeerSet::Nets(vec![host("10.0.1.1"), host("10.0.1.2")]),
                PortSet::Ranges(vec![PortRange::single(Protocol::Tcp, 3306)]),
                "projectcalico NetworkPolicy db/allow-app ingress[0]",
            )],
            end: TierEnd::Drop,
            end_origin: Some("GlobalNetworkPolicy default-deny".into()),
        },
        TierPlan { tier: "Baseline".into(), rules: vec![], end: TierEnd::Next, end_origin: None },
    ]);
    EnforcementPlan { pods: vec![db] }
}

#[test]
fn tiers_render_as_chains_joined_by_goto() {
    let expected = "\
# netpol-trace lab: policy enforcement in tier order, replaced as a whole on every apply.
table inet npt_t
delete table inet npt_t
table inet npt_t {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\toifname \"calidb\" jump ingress_calidb
\t}
\tchain ingress_calidb {
\t\t# db/mysql 10.0.2.1 ingress: tier Admin (1 of 3), 2 rule(s)
\t\tip saddr 10.0.1.2 goto ingress_calidb_t1 comment \"ClusterNetworkPolicy isolate-db ingress[0]\"
\t\tip saddr 10.0.1.1 counter drop comment \"ClusterNetworkPolicy isolate-db ingress[1]\"
\t\tgoto ingress_calidb_t1
\t}
\tchain ingress_calidb_t1 {
\t\t# db/mysql 10.0.2.1 ingress: tier default (2 of 3), 1 rule(s)
\t\tip saddr { 10.0.1.1, 10.0.1.2 } tcp dport 3306 return comment \"projectcalico NetworkPolicy db/allow-app ingress[0]\"
\t\tcounter drop comment \"end of tier default: GlobalNetworkPolicy default-deny\"
\t}
\tchain ingress_calidb_t2 {
\t\t# db/mysql 10.0.2.1 ingress: tier Baseline (3 of 3), 0 rule(s)
\t\treturn
\t}
}
";
    let plan = db_plan();
    plan.validate().unwrap();
    assert_eq!(render_ruleset("npt_t", &plan), expected);
}

#[test]
fn protocols_and_excluded_ports_become_conditions() {
    let mut r = rule(Verdict::Deny, PeerSet::Any, PortSet::Any, "x");
    r.protocol = Some(17);
    assert_eq!(tiered_matchers(&r, Direction::Ingress), vec!["meta l4proto udp"]);
    r.protocol = Some(47);
    r.not_protocol = Some(6);
    assert_eq!(
        tiered_matchers(&r, Direction::Ingress),
        vec!["meta l4proto 47 meta l4proto != tcp"]
    );
    let mut r = rule(
        Verdict::Allow,
        PeerSet::Nets(vec![host("10.0.0.1"), host("fd00::1")]),
        PortSet::Ranges(vec![PortRange { protocol: Protocol::Tcp, start: 1, end: 9999 }]),
        "y",
    );
    r.protocol = Some(6);
    r.not_ports = vec![
        PortRange { protocol: Protocol::Tcp, start: 9000, end: 9100 },
        PortRange::single(Protocol::Tcp, 22),
    ];
    assert_eq!(
        tiered_matchers(&r, Direction::Egress),
        vec![
            "ip daddr 10.0.0.1 tcp dport 1-9999 tcp dport != { 22, 9000-9100 }",
            "ip6 daddr fd00::1 tcp dport 1-9999 tcp dport != { 22, 9000-9100 }",
        ]
    );
    let nothing = rule(Verdict::Allow, PeerSet::Nets(vec![]), PortSet::Any, "z");
    assert!(tiered_matchers(&nothing, Direction::Ingress).is_empty());
}

#[test]
fn a_plan_with_both_rules_and_tiers_for_a_direction_is_refused() {
    let mut plan = db_plan();
    plan.pods[0].ingress = Some(vec![]);
    let err = plan.validate().unwrap_err().to_string();
    assert!(err.contains("pods[0].ingress_tiers"), "{err}");
}

#[test]
fn interface_names_cannot_collide_with_tier_chains() {
    let mut plan = db_plan();
    plan.pods[0].host_iface = "calidb_t1".into();
    let err = plan.validate().unwrap_err().to_string();
    assert!(err.contains("pods[0].host_iface") && err.contains("_t<number>"), "{err}");
}

/// The kernel's own verdict on the rendered syntax, in a throw-away network namespace.
#[test]
#[ignore = "needs root"]
fn rendered_tiers_load_in_the_kernel() {
    crate::lab::system::require_root();
    let mut plan = db_plan();
    let mut web =
        PodPlan::open(Some("app/web".into()), "10.0.1.1".parse().unwrap(), "caliweb".into());
    let mut any_udp =
        rule(Verdict::Deny, PeerSet::Any, PortSet::Any, "GlobalNetworkPolicy g egress[0]");
    any_udp.protocol = Some(17);
    let mut gre = rule(
        Verdict::Pass,
        PeerSet::Nets(vec![PeerNet {
            net: "0.0.0.0/0".parse().unwrap(),
            except: vec!["10.0.0.0/8".parse().unwrap()],
        }]),
        PortSet::Any,
        "p",
    );
    gre.protocol = Some(47);
    gre.not_protocol = Some(6);
    let mut not_ports = rule(
        Verdict::Allow,
        PeerSet::Nets(vec![host("10.0.2.1"), host("fd00::2")]),
        PortSet::Any,
        "a",
    );
    not_ports.protocol = Some(6);
    not_ports.not_ports = vec![PortRange { protocol: Protocol::Tcp, start: 9000, end: 9100 }];
    web.egress_tiers = Some(vec![
        TierPlan {
            tier: "security".into(),
            rules: vec![any_udp, gre],
            end: TierEnd::Next,
            end_origin: None,
        },
        TierPlan {
            tier: "default".into(),
            rules: vec![not_ports],
            end: TierEnd::Drop,
            end_origin: Some("GlobalNetworkPolicy default-deny".into()),
        },
    ]);
    plan.pods.push(web);
    plan.validate().unwrap();
    let ruleset = render_ruleset("npt_unit_tiers", &plan);
    crate::lab::enforce::check_ruleset(&ruleset).unwrap_or_else(|e| panic!("{e}\n{ruleset}"));
}
