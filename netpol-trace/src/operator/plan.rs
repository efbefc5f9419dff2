//! Planning a report's fix from the live cluster: its workloads resolved to pods of today, the
//! existing minimal-patch planner run on a fresh read, and the plan as the report stores it.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value};

use super::identity::pod_matches;
use super::report::DropReportSpec;
use crate::fix::{FixOptions, FixPlan, PatchAction, plan_fix};
use crate::flow::{EndpointSpec, Flow};
use crate::inventory::ClusterObjects;
use crate::inventory::{Inventory, InventoryOptions};
use crate::manifest::load_cluster_with;
use crate::policy::Protocol;

/// What planning found.
#[derive(Debug)]
pub enum Planned {
    /// The live policies allow the flow already.
    AlreadyAllowed,
    /// No safe patch (or the flow's ends cannot be found): the reason.
    Unfixable(String),
    /// The changes to make, with the objects as read.
    Changes(Box<LivePlan>),
}

/// A plan and the live objects it was computed from.
#[derive(Debug)]
pub struct LivePlan {
    /// The plan.
    pub plan: FixPlan,
    /// One write per object, in order.
    pub writes: Vec<ObjectWrite>,
}

/// One object the plan changes.
#[derive(Debug, Clone)]
pub struct ObjectWrite {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object as read (`None` when the plan creates it).
    pub before: Option<Value>,
    /// What to send: the JSON patch operations (patch) or the new object (create).
    pub change: Change,
}

/// How an object changes.
#[derive(Debug, Clone)]
pub enum Change {
    /// RFC 6902 operations, guarded by a `test` of the resourceVersion read.
    Patch(Vec<json_patch::PatchOperation>),
    /// A new NetworkPolicy.
    Create(Value),
}

/// A pod of the workload `end` names: a running one with an address first, then by name, so
/// that every planner picks the same one.
fn representative<'a>(pods: &'a [Pod], end: &super::report::FlowEnd) -> Option<&'a Pod> {
    let mut matching: Vec<&Pod> = pods.iter().filter(|p| pod_matches(p, end)).collect();
    matching.sort_by_key(|p| {
        let status = p.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let has_ip = status.and_then(|s| s.pod_ip.as_deref()).is_some();
        (!(running || has_ip), !has_ip, p.metadata.name.clone())
    });
    matching.first().copied()
}

/// The flow of a report in `inventory`, or why it cannot be formed.
pub fn flow_of(spec: &DropReportSpec, pods: &[Pod], inventory: &Inventory) -> Result<Flow, String> {
    let protocol = Protocol::from_api(Some(&spec.protocol))
        .map_err(|_| format!("spec.protocol {:?} is not TCP, UDP or SCTP", spec.protocol))?;
    let end = |end: &super::report::FlowEnd, role: &str| -> Result<EndpointSpec, String> {
        if let Some(ip) = &end.ip {
            return ip
                .parse()
                .map(EndpointSpec::Ip)
                .map_err(|_| format!("spec.{role}.ip {ip:?} is not an IP address"));
        }
        let pod = representative(pods, end)
            .ok_or_else(|| format!("no pod of the {role} workload {} exists now", end.display()))?;
        let (ns, name) = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        inventory
            .pod_id(ns, name)
            .map(EndpointSpec::Pod)
            .ok_or_else(|| format!("pod {ns}/{name} of the {role} is not in the cluster view"))
    };
    let src = end(&spec.source, "source")?;
    let dst = end(&spec.destination, "destination")?;
    Ok(Flow::new(inventory, src, dst, spec.port, protocol))
}

/// Reads the cluster and plans the fix of `spec`.
pub async fn plan_live(client: &kube::Client, spec: &DropReportSpec) -> super::Result<Planned> {
    let objects = load_cluster_with(client.clone()).await?;
    Ok(plan_objects(objects, spec))
}

/// Plans the fix of `spec` over `objects` (pure).
pub fn plan_objects(objects: ClusterObjects, spec: &DropReportSpec) -> Planned {
    let pods = objects.pods.clone();
    let raw: Vec<Value> = objects.network_policies.iter().map(|p| p.raw.clone()).collect();
    let inventory = match Inventory::from_objects(objects, InventoryOptions::default()) {
        Ok(i) => i,
        Err(e) => return Planned::Unfixable(format!("a live policy is invalid: {e}")),
    };
    let flow = match flow_of(spec, &pods, &inventory) {
        Ok(flow) => flow,
        Err(reason) => return Planned::Unfixable(reason),
    };
    let plan = match plan_fix(&inventory, &flow, &FixOptions::default()) {
        Ok(plan) => plan,
        Err(e) => return Planned::Unfixable(e.to_string()),
    };
    if plan.is_noop() {
        return Planned::AlreadyAllowed;
    }
    let mut writes: Vec<ObjectWrite> = Vec::new();
    for entry in &plan.patches {
        let before = raw
            .iter()
            .find(|p| {
                p.pointer("/metadata/namespace").and_then(Value::as_str)
                    == Some(entry.namespace.as_str())
                    && p.pointer("/metadata/name").and_then(Value::as_str)
                        == Some(entry.name.as_str())
            })
            .cloned();
        let ops = entry.json_patch.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        match writes.iter_mut().find(|w| w.namespace == entry.namespace && w.name == entry.name) {
            Some(ObjectWrite { change: Change::Patch(existing), .. }) => existing.extend(ops),
            Some(ObjectWrite { change: Change::Create(object), .. }) => {
                object.clone_from(&entry.result);
            }
            None => writes.push(ObjectWrite {
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                change: match entry.action {
                    PatchAction::Create => Change::Create(entry.result.clone()),
                    PatchAction::Patch => Change::Patch(ops),
                    PatchAction::Delete => {
                        return Planned::Unfixable(
                            "the plan deletes a policy; only people may do that".into(),
                        );
                    }
                },
                before: if entry.action == PatchAction::Create { None } else { before },
            }),
        }
    }
    if let Some(missing) =
        writes.iter().find(|w| matches!(w.change, Change::Patch(_)) && w.before.is_none())
    {
        return Planned::Unfixable(format!(
            "networkpolicy {}/{} was not in the cluster read",
            missing.namespace, missing.name
        ));
    }
    Planned::Changes(Box::new(LivePlan { plan, writes }))
}

/// The plan's patches as the report stores them: `fix -o json` entries with camelCase keys.
pub fn patches_for_status(plan: &FixPlan) -> Vec<Value> {
    let value = serde_json::to_value(&plan.patches).unwrap_or_default();
    value.as_array().cloned().unwrap_or_default().into_iter().map(camel_keys).collect()
}

/// Entries of a patch's newly-allowed list that the agent keeps per flow and writes into its
/// DropReport; the count field next to the list gives them all.
pub const NEWLY_ALLOWED_SAMPLE: usize = 20;

/// Bounds the blast radius of each patch entry in `entries` (`fix -o json` entries, or the
/// report's camelCase ones): keeps the first `limit` pairs of the list under `key` and records
/// the full number under `<key>Count` (`newly_allowed_count`, `newlyAllowedCount`).
pub fn bound_newly_allowed(entries: &mut [Value], key: &str, limit: usize) {
    let count_key = if key.contains('_') { format!("{key}_count") } else { format!("{key}Count") };
    for entry in entries {
        let Value::Object(map) = entry else { continue };
        let Some(Value::Array(pairs)) = map.get_mut(key) else { continue };
        let count = pairs.len();
        pairs.truncate(limit);
        pairs.shrink_to_fit();
        map.insert(count_key.clone(), Value::from(count));
    }
}

fn camel_keys(entry: Value) -> Value {
    let Value::Object(map) = entry else { return entry };
    let renamed: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            let mut out = String::new();
            let mut upper = false;
            for c in k.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            (out, v)
        })
        .collect();
    Value::Object(renamed)
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    fn pairs(n: usize) -> Value {
        (0..n)
            .map(|i| serde_json::json!({"from": format!("app/web-{i}"), "to": "db/mysql-0"}))
            .collect()
    }

    #[test]
    fn the_blast_radius_sample_is_bounded_and_its_count_exact() {
        let mut entries = vec![
            serde_json::json!({"name": "a", "newlyAllowed": pairs(45)}),
            serde_json::json!({"name": "b", "newlyAllowed": pairs(3)}),
        ];
        bound_newly_allowed(&mut entries, "newlyAllowed", 20);
        assert_eq!(entries[0]["newlyAllowed"].as_array().unwrap().len(), 20);
        assert_eq!(entries[0]["newlyAllowed"][0]["from"], "app/web-0", "the first pairs kept");
        assert_eq!(entries[0]["newlyAllowedCount"], 45);
        assert_eq!(entries[1]["newlyAllowed"].as_array().unwrap().len(), 3);
        assert_eq!(entries[1]["newlyAllowedCount"], 3);
        let mut snake = vec![serde_json::json!({"newly_allowed": pairs(21)})];
        bound_newly_allowed(&mut snake, "newly_allowed", 20);
        assert_eq!(snake[0]["newly_allowed_count"], 21);
        assert_eq!(snake[0]["newly_allowed"].as_array().unwrap().len(), 20);
    }
}
