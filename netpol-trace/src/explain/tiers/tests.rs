//! `decided_by` in every case of the contract, for each kind. Cases follow the upstream
//! documentation: network-policy-api's ClusterNetworkPolicy/AdminNetworkPolicy examples (Admin
//! Deny over NetworkPolicy, Pass to NetworkPolicy, Baseline default deny) and Calico's
//! "get started with policy" / tiers docs (GlobalNetworkPolicy default deny, end-of-tier deny,
//! Pass, Log, order then name).

use serde_json::{Value, json};

use crate::explain::{ExplainOptions, explain};
use crate::flow::{EndpointSpec, Flow};
use crate::policy::Protocol;
use crate::testing::inventory_of;

const CLUSTER: &str = r#"
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
spec: {serviceAccountName: web, containers: [{name: web, image: web}]}
status: {podIP: 10.0.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec: {containers: [{name: db, image: mariadb, ports: [{containerPort: 3306, name: mysql}]}]}
status: {podIP: 10.0.2.7}
"#;

const NP_ALLOW_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}}], ports: [{port: 3306}]}]
"#;

const NP_DENY_ALL: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: zz-deny-all, namespace: db}
spec: {podSelector: {}}
"#;

fn ingress(extra: &[&str], port: u16) -> Value {
    let text =
        std::iter::once(CLUSTER).chain(extra.iter().copied()).collect::<Vec<_>>().join("\n---\n");
    let inventory = inventory_of(&text);
    let src = inventory.pod_id("app", "web-1").unwrap();
    let dst = inventory.pod_id("db", "mysql-0").unwrap();
    let flow =
        Flow::new(&inventory, EndpointSpec::Pod(src), EndpointSpec::Pod(dst), port, Protocol::Tcp);
    let explanation = explain(&inventory, &flow, &ExplainOptions::default());
    let allowed = crate::explain::is_allowed(&inventory, &flow, &ExplainOptions::default());
    assert_eq!(allowed, explanation.allowed(), "is_allowed agrees with explain");
    serde_json::to_value(&explanation.ingress).unwrap()
}

#[test]
fn networkpolicy_rule_decides_and_isolation_is_charged_to_the_last_by_name() {
    let allowed = ingress(&[NP_ALLOW_WEB, NP_DENY_ALL], 3306);
    assert_eq!(
        allowed["decided_by"],
        json!({"kind": "NetworkPolicy", "namespace": "db", "name": "allow-web", "rule": 0, "action": "Allow"})
    );
    assert_eq!(allowed["policies"][0]["kind"], "NetworkPolicy");
    let denied = ingress(&[NP_ALLOW_WEB, NP_DENY_ALL], 3307);
    assert_eq!(
        denied["decided_by"],
        json!({"kind": "NetworkPolicy", "namespace": "db", "name": "zz-deny-all", "rule": null, "action": "Deny"})
    );
    assert_eq!(ingress(&[], 3306)["decided_by"], Value::Null, "nothing selects the endpoint");
}

const CNP_ADMIN_DENY: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: protect-db}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: data}}}
  ingress:
  - {name: pass-monitoring, action: Pass, from: [{namespaces: {matchLabels: {team: monitoring}}}]}
  - name: deny-web
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]
    protocols: [{tcp: {destinationPort: {number: 3306}}}]
"#;

#[test]
fn admin_tier_deny_overrides_networkpolicy_allow() {
    let v = ingress(&[NP_ALLOW_WEB, CNP_ADMIN_DENY], 3306);
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["decided_by"],
        json!({"kind": "ClusterNetworkPolicy", "name": "protect-db", "tier": "Admin", "rule": 1, "action": "Deny"})
    );
    assert_eq!(v["policies"][0]["kind"], "ClusterNetworkPolicy");
    assert!(v["policies"][0].get("namespace").is_none(), "cluster-scoped: no namespace");
    assert_eq!(v["policies"][1]["kind"], "NetworkPolicy");
    // Another port: the admin rule does not match, the NetworkPolicy decides (isolation).
    let other = ingress(&[NP_ALLOW_WEB, CNP_ADMIN_DENY], 80);
    assert_eq!(other["decided_by"]["name"], "allow-web");
    assert_eq!(other["decided_by"]["rule"], Value::Null);
}

#[test]
fn admin_pass_and_baseline_deny() {
    let pass = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: pass-web}
spec:
  priority: 5
  subject: {pods: {namespaceSelector: {matchLabels: {team: data}}, podSelector: {}}}
  ingress: [{action: Pass, from: [{namespaces: {matchLabels: {team: web}}}], ports: [{portNumber: {protocol: TCP, port: 3306}}]}]
"#;
    let banp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
"#;
    // Pass skips the admin tier; no NetworkPolicy selects mysql; the baseline denies.
    let v = ingress(
        &[CNP_ADMIN_DENY.replace("priority: 10", "priority: 20").as_str(), pass, banp],
        3306,
    );
    assert_eq!(
        v["decided_by"],
        json!({"kind": "BaselineAdminNetworkPolicy", "name": "default", "tier": "Baseline", "rule": 0, "action": "Deny"})
    );
    // A NetworkPolicy selecting the pod overrides the baseline.
    let v = ingress(&[pass, banp, NP_ALLOW_WEB], 3306);
    assert_eq!(v["decided_by"]["name"], "allow-web");
    assert_eq!(v["allowed"], true);
    // Passed through with nothing else: default allow, decided by nobody.
    let v = ingress(&[pass], 3306);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["decided_by"], Value::Null);
    assert_eq!(v["isolated"], true);
}

const GNP_DEFAULT_DENY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec:
  selector: projectcalico.org/namespace not in {'kube-system', 'calico-system'}
  types: [Ingress, Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination: {selector: k8s-app == 'kube-dns', ports: [53]}
"#;

#[test]
fn calico_global_default_deny_is_an_end_of_tier_deny() {
    let v = ingress(&[GNP_DEFAULT_DENY], 3306);
    assert_eq!(
        v["decided_by"],
        json!({"kind": "GlobalNetworkPolicy", "name": "default-deny", "tier": "default", "rule": null, "action": "Deny"})
    );
    // A Calico NetworkPolicy ordered before it allows; the default tier charges the last
    // selecting policy in order (the GNP has no order: last).
    let allow = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: db}
spec:
  order: 100
  selector: app == 'mysql'
  ingress:
  - action: Log
  - action: Allow
    protocol: TCP
    source: {namespaceSelector: team == 'web', serviceAccounts: {names: [web]}}
    destination: {ports: [mysql]}
"#;
    let v = ingress(&[GNP_DEFAULT_DENY, allow], 3306);
    assert_eq!(
        v["decided_by"],
        json!({"kind": "NetworkPolicy", "namespace": "db", "name": "allow-web", "tier": "default", "rule": 1, "action": "Allow"})
    );
    let v = ingress(&[GNP_DEFAULT_DENY, allow], 3307);
    assert_eq!(v["decided_by"]["name"], "default-deny");
    assert_eq!(v["decided_by"]["rule"], Value::Null);
    // A Kubernetes NetworkPolicy (order 1000) allows before the order-less GNP.
    let v = ingress(&[GNP_DEFAULT_DENY, NP_ALLOW_WEB], 3306);
    assert_eq!(v["decided_by"]["kind"], "NetworkPolicy");
    assert_eq!(v["decided_by"]["name"], "allow-web");
}

#[test]
fn calico_tiers_pass_and_default_action() {
    let tier = |action: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 100, defaultAction: {action}}}\n"
        )
    };
    let policy = |action: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.db}}\nspec:\n  tier: security\n  order: 1\n  selector: app == 'mysql'\n  ingress: [{{action: {action}, source: {{selector: app == 'other'}}}}]\n"
        )
    };
    // The only security policy does not match: end of tier, deny.
    let v = ingress(&[&tier("Deny"), &policy("Allow")], 3306);
    assert_eq!(
        v["decided_by"],
        json!({"kind": "GlobalNetworkPolicy", "name": "security.db", "tier": "security", "rule": null, "action": "Deny"})
    );
    // defaultAction Pass: on to the default tier, where nothing applies: profile allow.
    let v = ingress(&[&tier("Pass"), &policy("Allow")], 3306);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["decided_by"], Value::Null);
    // A Pass rule that matches jumps to the next tier: the NetworkPolicy decides.
    let pass = policy("Pass").replace("app == 'other'", "app == 'web'");
    let v = ingress(&[&tier("Deny"), &pass, NP_ALLOW_WEB], 3306);
    assert_eq!(v["decided_by"]["name"], "allow-web");
    assert_eq!(v["policies"][0]["tier"], "security");
}

#[test]
fn invalid_objects_name_the_field() {
    let bad = [
        (GNP_DEFAULT_DENY.replace("not in {", "not in ("), "spec.selector"),
        (CNP_ADMIN_DENY.replace("priority: 10", "priority: 1001"), "spec.priority"),
        (CNP_ADMIN_DENY.replace("action: Deny", "action: Allow"), "spec.ingress[1].action"),
        (
            GNP_DEFAULT_DENY.replace(
                "ports: [53]",
                "ports: [53]}\n  - {action: Allow, destination: {ports: [80]}",
            ),
            "spec.egress[1].destination.ports",
        ),
        (
            GNP_DEFAULT_DENY
                .replace("metadata: {name: default-deny}", "metadata: {name: x}\nspec2: {}")
                .replace("spec:\n  selector", "spec:\n  tier: missing\n  selector"),
            "spec.tier",
        ),
    ];
    for (text, field) in bad {
        let mut objects = crate::inventory::ClusterObjects::default();
        crate::manifest::parse_manifest(
            &text,
            std::path::Path::new("t.yaml"),
            crate::manifest::Syntax::Yaml,
            &mut objects,
        )
        .unwrap();
        let error =
            crate::inventory::Inventory::from_objects(objects, Default::default()).unwrap_err();
        assert_eq!(error.error.error.field, field, "{error}");
    }
}

const CALICO_TIER_SECURITY: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.allow-web}
spec:
  tier: security
  selector: app == 'mysql'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
"#;

const CALICO_TIER_LATE: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: late}
spec: {order: 2000000}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: late.allow-web}
spec:
  tier: late
  selector: app == 'mysql'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
"#;

#[test]
fn calico_orders_the_admin_tier_at_1000_and_the_baseline_tier_at_ten_million() {
    // A Calico tier at order 100 comes before Calico's adminnetworkpolicy tier (order 1000).
    let v = ingress(&[CALICO_TIER_SECURITY, CNP_ADMIN_DENY], 3306);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["decided_by"]["name"], "security.allow-web");
    assert_eq!(v["policies"][0]["tier"], "security");
    assert_eq!(v["policies"][1]["tier"], "Admin");
    // A tier at order 2,000,000 comes after the default tier and before the baseline tier
    // (10,000,000): its Allow wins over a Baseline Deny.
    let baseline_deny = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{name: deny, action: Deny, from: [{namespaces: {}}]}]
"#;
    let v = ingress(&[CALICO_TIER_LATE, baseline_deny], 3306);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["decided_by"]["name"], "late.allow-web");
    let order: Vec<&str> =
        v["policies"].as_array().unwrap().iter().map(|p| p["tier"].as_str().unwrap()).collect();
    assert_eq!(order, ["late", "Baseline"]);
}

/// The first v1alpha1 releases wrote peers as `namespaces: {namespaceSelector: ...}` and
/// `pods: {namespaces: {namespaceSelector: ...}, podSelector: ...}`; read as plain selectors
/// they would match every namespace.
fn anp_deny_from(peer: &str) -> String {
    format!(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: early-peers}}
spec:
  priority: 5
  subject: {{namespaces: {{matchLabels: {{team: data}}}}}}
  ingress:
  - name: deny-from-peer
    action: Deny
    from: [{peer}]
"#
    )
}

#[test]
fn early_v1alpha1_peer_forms_select_only_their_namespaces() {
    for (peer, denies) in [
        ("{namespaces: {namespaceSelector: {matchLabels: {team: web}}}}", true),
        ("{namespaces: {namespaceSelector: {matchLabels: {team: other}}}}", false),
        (
            "{pods: {namespaces: {namespaceSelector: {matchLabels: {team: other}}}, podSelector: {}}}",
            false,
        ),
        (
            "{pods: {namespaces: {namespaceSelector: {matchLabels: {team: web}}}, podSelector: {matchLabels: {app: web}}}}",
            true,
        ),
        ("{namespaces: {matchLabels: {team: other}}}", false),
    ] {
        let v = ingress(&[&anp_deny_from(peer)], 3306);
        assert_eq!(v["allowed"], !denies, "{peer}: {v}");
        if denies {
            assert_eq!(v["decided_by"]["name"], "early-peers", "{peer}");
            assert_eq!(v["decided_by"]["action"], "Deny", "{peer}");
        } else {
            assert_eq!(v["decided_by"], Value::Null, "{peer}: nothing else decides");
        }
    }
}

#[test]
fn early_same_labels_peers_are_refused_not_widened() {
    let text = format!("{CLUSTER}\n---\n{}", anp_deny_from("{namespaces: {sameLabels: [team]}}"));
    let mut objects = crate::inventory::ClusterObjects::default();
    crate::manifest::parse_manifest(
        &text,
        std::path::Path::new("t.yaml"),
        crate::manifest::Syntax::Yaml,
        &mut objects,
    )
    .unwrap();
    let error = crate::inventory::Inventory::from_objects(objects, Default::default()).unwrap_err();
    assert_eq!(error.error.error.field, "spec.ingress[0].from[0].namespaces.sameLabels", "{error}");
}
