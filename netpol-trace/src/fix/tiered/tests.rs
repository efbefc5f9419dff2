//! Fixes in the tiered kinds: each plan is proven by the engine (the flow allowed after
//! `apply_to`), names the kind, and an admin-tier change is marked for a cluster admin.

use std::path::Path;

use serde_json::{Value, json};

use crate::explain::{ExplainOptions, Verdict, explain, is_allowed};
use crate::fix::{FixError, FixOptions, FixPlan, PatchAction, plan_fix};
use crate::flow::{EndpointSpec, Flow};
use crate::inventory::{ClusterObjects, Inventory, InventoryOptions};
use crate::policy::{PolicyKind, Protocol};

const WEB: &str = "app/web-7d9f8b6c5-x2k4q";
const PODS: &str = concat!(
    include_str!("../../../scenarios/cross-namespace/namespaces.yaml"),
    "\n---\n",
    include_str!("../../../scenarios/cross-namespace/pods.yaml"),
    "\n---\n",
    r#"
apiVersion: v1
kind: Pod
metadata: {name: batch-1, namespace: app, labels: {app: batch}}
spec: {containers: [{name: batch, image: batch}]}
status: {podIP: 10.244.1.9}
"#
);

fn inventory(policies: &str) -> Inventory {
    let mut objects = ClusterObjects::default();
    let text = format!("{PODS}\n---\n{policies}");
    crate::manifest::parse_manifest(
        &text,
        Path::new("test.yaml"),
        crate::manifest::Syntax::Yaml,
        &mut objects,
    )
    .unwrap();
    Inventory::from_objects(objects, InventoryOptions::default()).unwrap()
}

fn pod(inventory: &Inventory, key: &str) -> EndpointSpec {
    let (ns, name) = key.split_once('/').unwrap();
    EndpointSpec::Pod(inventory.pod_id(ns, name).unwrap())
}

fn flow(inventory: &Inventory, from: &str) -> Flow {
    Flow::new(inventory, pod(inventory, from), pod(inventory, "db/mysql-0"), 3306, Protocol::Tcp)
}

/// Plans the fix of web -> mysql, checks that it is denied before and allowed once applied,
/// and that batch (same namespace as web, another workload) stays denied.
fn proven(policies: &str) -> (Inventory, FixPlan) {
    let inventory = inventory(policies);
    let web = flow(&inventory, WEB);
    let options = ExplainOptions::default();
    assert!(!is_allowed(&inventory, &web, &options), "denied before");
    let plan = plan_fix(&inventory, &web, &FixOptions::default()).unwrap();
    assert_eq!(plan.verdict_before, Verdict::Deny);
    assert_eq!(plan.verdict_after, Verdict::Allow);
    let after = plan.apply_to(&inventory).unwrap();
    assert!(is_allowed(&after, &web, &options), "allowed after");
    let batch = flow(&inventory, "app/batch-1");
    assert!(!is_allowed(&after, &batch, &options), "batch stays denied");
    for pair in &plan.newly_allowed {
        assert_eq!((pair.from.as_str(), pair.to.as_str(), pair.port), (WEB, "db/mysql-0", 3306));
    }
    (inventory, plan)
}

fn json(plan: &FixPlan) -> Value {
    serde_json::to_value(plan).unwrap()
}

#[test]
fn global_default_deny_gets_namespaced_calico_policies_before_it() {
    let (_, plan) = proven(include_str!("../../../scenarios/calico-default-deny/policy.yaml"));
    let value = json(&plan);
    let patches = value["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 2, "{value:#}");
    for (patch, namespace, selector) in
        [(&patches[0], "app", "app == 'web'"), (&patches[1], "db", "app == 'mysql'")]
    {
        assert_eq!(patch["kind"], "NetworkPolicy");
        assert_eq!(patch["tier"], "default");
        assert_eq!(patch["action"], "create");
        assert_eq!(patch["namespace"], namespace);
        assert_eq!(patch["object"]["apiVersion"], "projectcalico.org/v3");
        assert_eq!(patch["object"]["spec"]["selector"], selector);
        assert!(patch.get("requires_cluster_admin").is_none());
        assert!(patch["kubectl"].as_str().unwrap().starts_with("kubectl apply -f -"));
    }
    assert_eq!(patches[1]["object"]["spec"]["ingress"][0]["destination"]["ports"], json!([3306]));
}

#[test]
fn calico_deny_rule_gets_an_allow_rule_inserted_before_it() {
    let (_, plan) = proven(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-guard, namespace: db, resourceVersion: "7"}
spec:
  tier: default
  order: 100
  selector: app == 'mysql'
  ingress:
    - action: Allow
      source: {selector: app == 'admin'}
    - action: Deny
      protocol: TCP
      destination: {ports: [3306]}
"#,
    );
    let value = json(&plan);
    let patch = &value["patches"][0];
    assert_eq!(patch["action"], "patch");
    assert_eq!(patch["kind"], "NetworkPolicy");
    assert_eq!(patch["namespace"], "db");
    assert_eq!(
        patch["json_patch"][0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"})
    );
    assert_eq!(patch["json_patch"][1]["path"], "/spec/ingress/1");
    assert_eq!(patch["json_patch"][1]["value"]["action"], "Allow");
    assert!(
        patch["kubectl"].as_str().unwrap().starts_with(
            "kubectl patch networkpolicies.projectcalico.org -n db db-guard --type=json"
        )
    );
}

#[test]
fn admin_tier_deny_is_left_to_a_cluster_admin_with_a_higher_priority_accept() {
    let (inventory, plan) = proven(include_str!("../../../scenarios/admin-tier-deny/policy.yaml"));
    assert!(plan.requires_cluster_admin());
    assert!(plan.summary.contains("only a cluster admin"), "{}", plan.summary);
    let value = json(&plan);
    let patch = &value["patches"][0];
    assert_eq!(patch["kind"], "ClusterNetworkPolicy");
    assert_eq!(patch["requires_cluster_admin"], true);
    assert!(patch.get("namespace").is_none());
    assert_eq!(patch["object"]["spec"]["priority"], 9);
    assert_eq!(patch["object"]["spec"]["tier"], "Admin");
    let rule = &patch["object"]["spec"]["ingress"][0];
    assert_eq!(rule["action"], "Accept");
    assert_eq!(rule["protocols"], json!([{"tcp": {"destinationPort": {"number": 3306}}}]));
    // The explanation after the fix names the new policy as the decider.
    let after = plan.apply_to(&inventory).unwrap();
    let explanation = explain(&after, &flow(&after, WEB), &ExplainOptions::default());
    let by = explanation.ingress.decided_by.unwrap();
    assert_eq!(
        (by.kind, by.name.as_str(), by.rule),
        (PolicyKind::ClusterNetworkPolicy, "allow-web-to-mysql-3306", Some(0))
    );
}

#[test]
fn admin_deny_at_priority_zero_gets_a_rule_before_the_deny() {
    let (_, plan) = proven(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: lock-db}
spec:
  priority: 0
  subject:
    pods:
      namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: db}}
      podSelector: {matchLabels: {app: mysql}}
  ingress:
    - name: deny-all
      action: Deny
      from: [{namespaces: {}}]
"#,
    );
    let patch = &plan.patches[0];
    assert_eq!(patch.kind, PolicyKind::AdminNetworkPolicy);
    assert_eq!(patch.action, PatchAction::Patch);
    assert!(patch.requires_cluster_admin);
    let ops = serde_json::to_value(patch.json_patch.as_ref().unwrap()).unwrap();
    assert_eq!(ops[0]["path"], "/spec/ingress/0");
    assert_eq!(ops[0]["value"]["action"], "Allow");
    assert_eq!(
        ops[0]["value"]["ports"],
        json!([{"portNumber": {"protocol": "TCP", "port": 3306}}])
    );
    assert!(patch.kubectl.starts_with(
        "kubectl patch adminnetworkpolicies.policy.networking.k8s.io lock-db --type=json"
    ));
}

#[test]
fn admin_deny_whose_only_fix_widens_is_refused() {
    // At priority 0 with a namespace-wide subject, an Accept rule would also open the other
    // pods of namespace db: no safe patch.
    let inventory = inventory(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: cache-0, namespace: db, labels: {app: cache}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 3306}]}]}
status: {podIP: 10.244.2.9}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: lock-db}
spec:
  tier: Admin
  priority: 0
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: db}}}
  ingress:
    - {name: deny-all, action: Deny, from: [{namespaces: {}}]}
"#,
    );
    let web = flow(&inventory, WEB);
    let error = plan_fix(&inventory, &web, &FixOptions::default()).unwrap_err();
    assert!(matches!(error, FixError::Widens { .. }), "{error}");
}

#[test]
fn baseline_deny_is_overridden_by_a_new_network_policy() {
    let (_, plan) = proven(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
    - {name: default-deny, action: Deny, from: [{namespaces: {}}]}
"#,
    );
    let patch = &plan.patches[0];
    assert_eq!(patch.kind, PolicyKind::NetworkPolicy);
    assert_eq!(patch.tier, None);
    assert!(!patch.requires_cluster_admin);
    assert_eq!(patch.action, PatchAction::Create);
    assert_eq!(patch.namespace, "db");
    assert_eq!(patch.object.as_ref().unwrap()["apiVersion"], "networking.k8s.io/v1");
}

#[test]
fn end_of_tier_in_a_calico_network_policy_appends_an_allow_rule() {
    let (_, plan) = proven(
        r#"
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: db-only-admin, namespace: db}
spec:
  selector: app == 'mysql'
  types: [Ingress]
"#,
    );
    let patch = &plan.patches[0];
    assert_eq!((patch.kind, patch.tier.as_deref()), (PolicyKind::NetworkPolicy, Some("default")));
    let ops = serde_json::to_value(patch.json_patch.as_ref().unwrap()).unwrap();
    assert_eq!(ops[0]["op"], "add");
    assert_eq!(ops[0]["path"], "/spec/ingress");
    assert_eq!(ops[0]["value"][0]["source"]["selector"], "app == 'web'");
}
