//! Synthesis and proof on the four classic scenarios, JSON patch application against the raw
//! object, and the refusals.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::explain::{ExplainOptions, Verdict, is_allowed};
use crate::flow::EndpointSpec;
use crate::inventory::{InventoryOptions, PolicySource};
use crate::manifest::load_paths;
use crate::policy::{Direction, Protocol};

const WEB: &str = "app/web-7d9f8b6c5-x2k4q";

fn scenario_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn load_dir(dir: &Path) -> Inventory {
    Inventory::from_objects(load_paths(&[dir.to_owned()]).unwrap(), InventoryOptions::default())
        .unwrap()
}

fn inventory_from_yaml(yaml: &str) -> Inventory {
    let mut objects = crate::inventory::ClusterObjects::default();
    crate::manifest::parse_manifest(
        yaml,
        Path::new("test.yaml"),
        crate::manifest::Syntax::Yaml,
        &mut objects,
    )
    .unwrap();
    Inventory::from_objects(objects, InventoryOptions::default()).unwrap()
}

fn pod(inventory: &Inventory, key: &str) -> EndpointSpec {
    let (ns, name) = key.split_once('/').unwrap();
    EndpointSpec::Pod(inventory.pod_id(ns, name).unwrap_or_else(|| panic!("{key}")))
}

fn flow(inventory: &Inventory, from: &str, to: &str, port: u16) -> Flow {
    Flow::new(inventory, pod(inventory, from), pod(inventory, to), port, Protocol::Tcp)
}

fn fix(inventory: &Inventory, flow: &Flow) -> Result<FixPlan, FixError> {
    plan_fix(inventory, flow, &FixOptions::default())
}

fn ops(patch: &PolicyPatch) -> Value {
    serde_json::to_value(patch.json_patch.as_ref().unwrap()).unwrap()
}

fn web_to_mysql(scenario: &str) -> (Inventory, Flow, FixPlan) {
    let inventory = load_dir(&scenario_dir(scenario));
    let flow = flow(&inventory, WEB, "db/mysql-0", 3306);
    let plan = fix(&inventory, &flow).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    (inventory, flow, plan)
}

/// What every scenario must show: denied before, allowed after (also re-evaluated through
/// `apply_to`), and the blast radius is exactly the flow.
fn assert_proven(scenario: &str, inventory: &Inventory, flow: &Flow, plan: &FixPlan) {
    assert_eq!(plan.verdict_before, Verdict::Deny, "{scenario}");
    assert_eq!(plan.verdict_after, Verdict::Allow, "{scenario}");
    let after = plan.apply_to(inventory).unwrap();
    assert!(is_allowed(&after, flow, &ExplainOptions::default()), "{scenario}");
    let pairs: Vec<String> = plan.newly_allowed.iter().map(ToString::to_string).collect();
    assert_eq!(pairs, [format!("{WEB} -> db/mysql-0 TCP/3306")], "{scenario}");
}

#[test]
fn scenarios_table() {
    struct Case {
        scenario: &'static str,
        action: PatchAction,
        policy: &'static str,
        direction: Direction,
        ops: Value,
        hint: Option<&'static str>,
    }
    let web_peer = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                          "podSelector": {"matchLabels": {"app": "web"}}});
    let cases = [
        Case {
            scenario: "port-typo",
            action: PatchAction::Patch,
            policy: "db/mysql-ingress",
            direction: Direction::Ingress,
            ops: json!([
                {"op": "add", "path": "/spec/ingress/0/ports/-", "value": {"protocol": "TCP", "port": 3306}}
            ]),
            hint: Some("rule 0 allows 3307; the destination declares 3306 (mysql) — a typo?"),
        },
        Case {
            scenario: "cross-namespace",
            action: PatchAction::Patch,
            policy: "db/mysql-ingress",
            direction: Direction::Ingress,
            ops: json!([{"op": "add", "path": "/spec/ingress/-",
                         "value": {"from": [web_peer.clone()], "ports": [{"protocol": "TCP", "port": 3306}]}}]),
            hint: Some(
                "rule 0 selects pods app=web without a namespaceSelector, so only in db; the source is in app",
            ),
        },
        Case {
            scenario: "no-ingress-list",
            action: PatchAction::Patch,
            policy: "db/mysql-ingress",
            direction: Direction::Ingress,
            ops: json!([{"op": "add", "path": "/spec/ingress",
                         "value": [{"from": [web_peer.clone()], "ports": [{"protocol": "TCP", "port": 3306}]}]}]),
            hint: Some("it has no ingress rules: it denies all ingress of the pods it selects"),
        },
        Case {
            scenario: "egress-default-deny",
            action: PatchAction::Create,
            policy: "app/allow-web-to-mysql-3306",
            direction: Direction::Egress,
            ops: Value::Null,
            hint: None,
        },
    ];
    for case in cases {
        let (inventory, flow, plan) = web_to_mysql(case.scenario);
        assert_proven(case.scenario, &inventory, &flow, &plan);
        assert_eq!(plan.patches.len(), 1, "{}", case.scenario);
        let patch = &plan.patches[0];
        assert_eq!(
            (patch.action, patch.key(), patch.direction),
            (case.action, case.policy.to_owned(), case.direction),
            "{}",
            case.scenario
        );
        if case.action == PatchAction::Patch {
            assert_eq!(ops(patch), case.ops, "{}", case.scenario);
            assert!(
                patch.kubectl.starts_with(
                    "kubectl patch networkpolicy -n db mysql-ingress --type=json -p '"
                )
            );
        }
        if let Some(hint) = case.hint {
            assert!(
                patch.hints.iter().any(|h| h.message == hint),
                "{}: {:?}",
                case.scenario,
                patch.hints
            );
        }
    }
}

#[test]
fn egress_default_deny_creates_a_policy_for_the_client_workload() {
    let (_, _, plan) = web_to_mysql("egress-default-deny");
    let patch = &plan.patches[0];
    assert_eq!(patch.json_patch, None);
    let object = patch.object.as_ref().unwrap();
    assert_eq!(object["metadata"]["namespace"], "app");
    assert_eq!(object["spec"]["podSelector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(object["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        object["spec"]["egress"],
        json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}},
                        "podSelector": {"matchLabels": {"app": "mysql"}}}],
                "ports": [{"protocol": "TCP", "port": 3306}]}])
    );
    assert!(
        patch.kubectl.starts_with("kubectl apply -f - <<'EOF'\napiVersion: networking.k8s.io/v1\n")
    );
    assert!(
        patch.hints.iter().any(|h| h.policy == "app/default-deny-egress"
            && h.message.contains("a new policy is created instead")),
        "{:?}",
        patch.hints
    );
}

/// The JSON patch applies to the object exactly as read, for each shape of `spec`.
#[test]
fn json_patch_against_the_raw_object() {
    let rule = json!({"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"protocol": "TCP", "port": 80}]});
    // (raw spec and metadata, expected ops without the rule value, expected ingress after)
    let cases = [
        (
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            json!({}),
            "add",
            "/spec/ingress",
            false,
        ),
        (json!({"podSelector": {}, "ingress": null}), json!({}), "add", "/spec/ingress", false),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 22}]}]}),
            json!({}),
            "add",
            "/spec/ingress/-",
            false,
        ),
        (
            json!({"podSelector": {}, "ingress": []}),
            json!({"resourceVersion": "12"}),
            "add",
            "/spec/ingress/-",
            true,
        ),
        (Value::Null, json!({"resourceVersion": "3"}), "add", "/spec", true),
    ];
    for (spec, metadata, op, path, guarded) in cases {
        let mut raw = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                             "metadata": {"name": "p", "namespace": "x"}});
        raw["metadata"].as_object_mut().unwrap().extend(metadata.as_object().unwrap().clone());
        if !spec.is_null() {
            raw["spec"] = spec.clone();
        }
        let mut draft = draft::DraftObject::existing("x", "p", raw.clone(), PolicySource::InMemory);
        let patch = draft.append_rule(Direction::Ingress, rule.clone()).unwrap().unwrap();
        let ops = serde_json::to_value(&patch).unwrap();
        let ops = ops.as_array().unwrap();
        assert_eq!(ops.len(), 1 + usize::from(guarded), "{spec}");
        if guarded {
            assert_eq!(
                ops[0],
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": raw["metadata"]["resourceVersion"]})
            );
        }
        let last = ops.last().unwrap();
        assert_eq!(
            (last["op"].as_str().unwrap(), last["path"].as_str().unwrap()),
            (op, path),
            "{spec}"
        );
        // Applying to the raw object gives the draft's state, whose last ingress rule is ours.
        let mut applied = raw.clone();
        json_patch::patch(&mut applied, &patch).unwrap();
        assert_eq!(applied, draft.current);
        assert_eq!(applied["spec"]["ingress"].as_array().unwrap().last().unwrap(), &rule);
        // Only the first patch of an object carries the test.
        let second = draft.append_rule(Direction::Egress, rule.clone()).unwrap().unwrap();
        assert_eq!(second.0.len(), 1);
        // A changed resourceVersion makes the guarded patch fail instead of applying.
        if guarded {
            let mut moved = raw.clone();
            moved["metadata"]["resourceVersion"] = json!("999");
            assert!(json_patch::patch(&mut moved, &patch).is_err());
        }
    }
    let mut broken = draft::DraftObject::existing(
        "x",
        "p",
        json!({"spec": {"ingress": "no"}}),
        PolicySource::InMemory,
    );
    assert!(matches!(
        broken.append_rule(Direction::Ingress, rule),
        Err(FixError::Unpatchable { .. })
    ));
}

#[test]
fn already_allowed_is_nothing_to_do() {
    let (inventory, _, plan) = web_to_mysql("port-typo");
    let after = plan.apply_to(&inventory).unwrap();
    let flow = flow(&after, WEB, "db/mysql-0", 3306);
    let again = fix(&after, &flow).unwrap();
    assert!(again.is_noop());
    assert_eq!((again.verdict_before, again.verdict_after), (Verdict::Allow, Verdict::Allow));
    assert!(again.summary.starts_with("nothing to do"));
}

const TWO_WORKLOADS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: app, labels: {app.kubernetes.io/name: web, app.kubernetes.io/instance: blue, pod-template-hash: a1}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: app, labels: {app.kubernetes.io/name: web, app.kubernetes.io/instance: blue, pod-template-hash: b2}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-green, namespace: app, labels: {app.kubernetes.io/name: web, app.kubernetes.io/instance: green}}
status: {podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: app, labels: {app: api}}
spec: {containers: [{name: api, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: cache-0, namespace: app, labels: {app: cache}}
status: {podIP: 10.0.0.5}
";

#[test]
fn workload_is_the_smallest_preferred_selector_that_is_exact() {
    let inventory = inventory_from_yaml(TWO_WORKLOADS);
    let id = inventory.pod_id("app", "web-1").unwrap();
    let workload = Workload::of_pod(&inventory, id).unwrap();
    // app.kubernetes.io/name alone would also pick web-green: instance is needed.
    assert_eq!(
        workload.describe_selector(),
        "app.kubernetes.io/instance=blue,app.kubernetes.io/name=web"
    );
    let names: Vec<&str> =
        workload.pods.iter().map(|&p| inventory.pod(p).pod.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2"]);
    assert_eq!(workload.name, "web");
    let green =
        Workload::of_pod(&inventory, inventory.pod_id("app", "web-green").unwrap()).unwrap();
    assert_eq!(green.pods.len(), 1);
    let cache = Workload::of_pod(&inventory, inventory.pod_id("app", "cache-0").unwrap()).unwrap();
    assert_eq!(cache.describe_selector(), "app=cache");
}

#[test]
fn adding_a_port_to_a_shared_rule_would_widen_so_a_rule_is_appended() {
    // Rule 0 names web AND cache on 9090: adding 8080 there would open it to cache too.
    let yaml = format!("{TWO_WORKLOADS}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: api, namespace: app}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app.kubernetes.io/instance: blue}}}}}}, {{podSelector: {{matchLabels: {{app: cache}}}}}}]
    ports: [{{port: 9090}}]
  - from: [{{podSelector: {{matchLabels: {{app.kubernetes.io/instance: blue, app.kubernetes.io/name: web}}}}}}]
    ports: [{{port: http}}]
");
    let inventory = inventory_from_yaml(&yaml);
    let flow = flow(&inventory, "app/web-1", "app/api-0", 8080);
    assert!(
        is_allowed(&inventory, &flow, &ExplainOptions::default()),
        "named port rule 1 allows it already"
    );
    let flow = Flow { port: 8081, ..flow };
    let plan = fix(&inventory, &flow).unwrap();
    let added = ops(&plan.patches[0]);
    // Rule 1's peers are exactly web-blue: the port goes there, by number (8081 has no name).
    assert_eq!(
        added,
        json!([{"op": "add", "path": "/spec/ingress/1/ports/-", "value": {"protocol": "TCP", "port": 8081}}])
    );
    let pairs: Vec<String> = plan.newly_allowed.iter().map(ToString::to_string).collect();
    assert_eq!(pairs, ["app/web-1 -> app/api-0 TCP/8081", "app/web-2 -> app/api-0 TCP/8081"]);

    // Without rule 1, only the shared rule 0 has the peer: a new rule, never a port on rule 0.
    let yaml = yaml.split("  - from: [{podSelector: {matchLabels: {app.kubernetes.io/instance: blue, app.kubernetes.io/name: web}}}]").next().unwrap().to_owned();
    let inventory = inventory_from_yaml(&yaml);
    let flow = self::flow(&inventory, "app/web-1", "app/api-0", 8080);
    let plan = fix(&inventory, &flow).unwrap();
    let added = ops(&plan.patches[0]);
    assert_eq!(added[0]["path"], "/spec/ingress/-");
    assert_eq!(
        added[0]["value"]["from"],
        json!([{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "blue", "app.kubernetes.io/name": "web"}}}])
    );
    // The policy uses a named port nowhere now, so the number.
    assert_eq!(added[0]["value"]["ports"], json!([{"protocol": "TCP", "port": 8080}]));
}

#[test]
fn named_ports_follow_the_policy_habit() {
    let (_, _, plan) = web_to_mysql("egress-default-deny");
    // The created egress policy uses a number; the ingress side already allowed the name.
    assert_eq!(
        plan.patches[0].object.as_ref().unwrap()["spec"]["egress"][0]["ports"][0]["port"],
        3306
    );
    let yaml = format!(
        "{TWO_WORKLOADS}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: api, namespace: app}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: cache}}}}}}]
    ports: [{{port: http}}]
"
    );
    let inventory = inventory_from_yaml(&yaml);
    let plan = fix(&inventory, &flow(&inventory, "app/web-green", "app/api-0", 8080)).unwrap();
    assert_eq!(
        ops(&plan.patches[0])[0]["value"]["ports"],
        json!([{"protocol": "TCP", "port": "http"}])
    );
}

#[test]
fn refusals_name_the_reason() {
    // A pod with only controller labels.
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: job-x, namespace: a, labels: {job-name: x, controller-uid: u}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
status: {podIP: 10.1.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec: {podSelector: {matchLabels: {app: db}}}
";
    let inventory = inventory_from_yaml(yaml);
    let error = fix(&inventory, &flow(&inventory, "a/job-x", "a/db", 5432)).unwrap_err();
    assert!(matches!(error, FixError::NoStableLabels { .. }), "{error}");
    assert!(error.to_string().starts_with("pod a/job-x has no stable labels"), "{error}");

    // An except that carves out the source.
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
status: {podIP: 10.1.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}}], ports: [{port: 5432}]}]
";
    let inventory = inventory_from_yaml(yaml);
    let db = pod(&inventory, "a/db");
    let excepted = Flow::new(
        &inventory,
        EndpointSpec::Ip("172.17.1.5".parse().unwrap()),
        db,
        5432,
        Protocol::Tcp,
    );
    let error = fix(&inventory, &excepted).unwrap_err();
    assert_eq!(
        error.to_string(),
        "172.17.1.5 is excluded on purpose by except 172.17.1.0/24 in ingress rule 0 of a/db; \
         no patch overrides an except (edit it by hand if it is wrong)"
    );
    // Outside the CIDR altogether: an ipBlock of that one address.
    let outside = Flow::new(
        &inventory,
        EndpointSpec::Ip("192.0.2.9".parse().unwrap()),
        db,
        5432,
        Protocol::Tcp,
    );
    let plan = fix(&inventory, &outside).unwrap();
    assert_eq!(
        ops(&plan.patches[0]),
        json!([{"op": "add", "path": "/spec/ingress/-", "value": {"from": [{"ipBlock": {"cidr": "192.0.2.9/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]}}])
    );
    assert_eq!(plan.newly_allowed[0].to_string(), "192.0.2.9 -> a/db TCP/5432");
    // The same address on another port: the rule's peers are exactly it, so the port is added.
    let after = plan.apply_to(&inventory).unwrap();
    let other_port = Flow { port: 5433, ..outside };
    let plan = fix(&after, &other_port).unwrap();
    assert_eq!(ops(&plan.patches[0])[0]["path"], "/spec/ingress/1/ports/-");
}

#[test]
fn creating_would_isolate_pods_that_are_open_today() {
    // deny-some isolates web-1 (and `other`) for egress by pod name; web-2 (same workload,
    // app=web) is not isolated: a new policy for app=web would cut web-2's egress.
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: a, labels: {app: web, statefulset.kubernetes.io/pod-name: web-1}}
status: {podIP: 10.2.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: a, labels: {app: web, statefulset.kubernetes.io/pod-name: web-2}}
status: {podIP: 10.2.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a, labels: {app: other, statefulset.kubernetes.io/pod-name: other}}
status: {podIP: 10.2.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-some, namespace: a}
spec:
  podSelector: {matchExpressions: [{key: statefulset.kubernetes.io/pod-name, operator: In, values: [web-1, other]}]}
  policyTypes: [Egress]
";
    let inventory = inventory_from_yaml(yaml);
    let error = fix(&inventory, &flow(&inventory, "a/web-1", "a/other", 80)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a new egress policy selecting app=web in a would isolate a/web-2, which no policy \
         isolates for egress today, and cut their other traffic"
    );
}

#[test]
fn both_directions_in_one_namespace_get_distinct_policies() {
    // e2e "default deny all": x/a -> x/b is denied by egress of a and ingress of b.
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
status: {podIP: 10.3.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
status: {podIP: 10.3.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
";
    let inventory = inventory_from_yaml(yaml);
    let plan = fix(&inventory, &flow(&inventory, "x/a", "x/b", 80)).unwrap();
    let names: Vec<(String, Direction)> =
        plan.patches.iter().map(|p| (p.key(), p.direction)).collect();
    assert_eq!(
        names,
        [
            ("x/allow-a-to-b-80".to_owned(), Direction::Egress),
            ("x/allow-a-to-b-80-ingress".to_owned(), Direction::Ingress)
        ]
    );
    // Same namespace: no namespaceSelector in the peers.
    assert_eq!(
        plan.patches[1].object.as_ref().unwrap()["spec"]["ingress"][0]["from"],
        json!([{"podSelector": {"matchLabels": {"pod": "a"}}}])
    );
    let pairs: Vec<String> = plan.newly_allowed.iter().map(ToString::to_string).collect();
    assert_eq!(pairs, ["x/a -> x/b TCP/80"]);
    assert_eq!(plan.patches[0].newly_allowed, plan.patches[1].newly_allowed);
}

#[test]
fn typo_detection() {
    for (a, b, typo) in [
        (3307, 3306, true),
        (3360, 3306, true),
        (8080, 8081, true),
        (80, 8080, false),
        (5432, 3306, false),
        (443, 8443, false),
    ] {
        assert_eq!(hints::looks_like_typo(a, b), typo, "{a} {b}");
    }
}
