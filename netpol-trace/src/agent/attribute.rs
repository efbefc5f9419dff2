//! The agent's attribution of a flow record: [`crate::attribution`] on the record's latest
//! drop, plus the suggested fix served on `/drops`.

use crate::attribution::{self, Attribution};
use crate::fix::FixPlan;
use crate::inventory::Inventory;
use crate::operator::plan::{NEWLY_ALLOWED_SAMPLE, bound_newly_allowed};

use super::record::{FixDetails, FlowRecord, SuggestedFix};

/// Attributes `record` in place with the engine alone (names, policies, hint): the per-drop
/// path. The suggested fix is left as it was; [`attribute`] plans it.
pub fn attribute_drop(inventory: &Inventory, record: &mut FlowRecord) -> Attribution {
    attribution::attribute_drop(inventory, &mut record.drop)
}

/// Attributes `record` in place (names, policies, hint, suggested fix) and returns the
/// attribution with the fix plan, when there is a safe one.
pub fn attribute(inventory: &Inventory, record: &mut FlowRecord) -> (Attribution, Option<FixPlan>) {
    let a = attribution::attribute_drop(inventory, &mut record.drop);
    let plan = a.suggest_fix(inventory);
    record.fix = plan.as_ref().map(|plan| {
        SuggestedFix::from(FixDetails {
            summary: plan.summary.clone(),
            kubectl: plan.patches.iter().map(|p| p.kubectl.clone()).collect(),
            patches: bounded_patches(plan),
        })
    });
    (a, plan)
}

/// The plan's patches as `fix -o json` prints them, each with at most
/// [`NEWLY_ALLOWED_SAMPLE`] newly allowed pairs and their full number in `newly_allowed_count`:
/// what a flow keeps in memory and serves on `/drops`.
fn bounded_patches(plan: &FixPlan) -> serde_json::Value {
    let mut value = serde_json::to_value(&plan.patches).unwrap_or_default();
    if let serde_json::Value::Array(entries) = &mut value {
        bound_newly_allowed(entries, "newly_allowed", NEWLY_ALLOWED_SAMPLE);
    }
    value
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::Protocol;
    use crate::trace::{DropRecord, Endpoint, Evidence};

    pub(crate) use crate::testing::{MYSQL_MANIFESTS as MANIFESTS, inventory_of};

    pub(crate) fn record(src: &str, dst: &str, port: u16) -> FlowRecord {
        let t = chrono::Utc::now();
        FlowRecord::from_drop(
            &DropRecord {
                time: t,
                first_seen: t,
                reason: "NETFILTER_DROP".into(),
                reason_raw: 11,
                ifname: "cali0".into(),
                count: 12,
                protocol: Protocol::Tcp,
                src: Endpoint::addr(src.parse().unwrap(), 40000),
                dst: Endpoint::addr(dst.parse().unwrap(), port),
                policies: vec![],
                hint: None,
                evidence: Evidence::default(),
            },
            None,
        )
    }

    #[test]
    fn a_pod_to_pod_drop_names_the_policy_and_the_rule() {
        let inv = inventory_of(MANIFESTS);
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        let (a, _) = attribute(&inv, &mut r);
        assert_eq!(r.drop.src.pod.as_deref(), Some("web-1"));
        assert_eq!(r.drop.dst.pod.as_deref(), Some("mysql-0"));
        assert_eq!(r.drop.policies.len(), 1);
        assert_eq!(r.drop.policies[0].name, "mysql-ingress");
        assert_eq!(
            a.denial.as_deref(),
            Some("denied by NetworkPolicy db/mysql-ingress, rule 0 allows port 3307")
        );
        assert!(a.destination.is_some());
        let fix = r.fix.expect("a fix for a port typo");
        assert_eq!(fix.kubectl.len(), 1);
        assert!(
            fix.kubectl[0]
                .starts_with("kubectl patch networkpolicy -n db mysql-ingress --type=json"),
            "{}",
            fix.kubectl[0]
        );
        assert_eq!(fix.patches[0]["action"], "patch");
        assert_eq!(fix.patches[0]["newly_allowed_count"], 1, "web-1 -> mysql-0 only");
        assert_eq!(fix.patches[0]["newly_allowed"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_cluster_ip_is_evaluated_on_its_backends_and_target_port() {
        let inv = inventory_of(MANIFESTS);
        let mut r = record("10.0.1.5", "10.96.0.10", 13306);
        let (a, _) = attribute(&inv, &mut r);
        assert_eq!(r.drop.dst.service.as_deref(), Some("mysql"));
        assert_eq!(r.drop.dst.namespace.as_deref(), Some("db"));
        assert_eq!(r.drop.dst.pod.as_deref(), Some("mysql-0"), "the only backend");
        assert_eq!(r.drop.policies[0].name, "mysql-ingress");
        let (_, port) = a.destination.unwrap();
        assert_eq!(port, 3306, "the target port, not the Service port");
        assert!(a.denial.unwrap().contains("allows port 3307"));
    }

    #[test]
    fn re_attribution_follows_a_policy_change() {
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        attribute(&inventory_of(MANIFESTS), &mut r);
        assert!(!r.drop.policies.is_empty());
        let fixed = inventory_of(&MANIFESTS.replace("port: 3307", "port: 3306"));
        let (a, _) = attribute(&fixed, &mut r);
        assert!(r.drop.policies.is_empty());
        assert!(r.fix.is_none(), "nothing to fix any more");
        assert_eq!(a.denial, None);
        assert!(r.drop.hint.unwrap().contains("not a NetworkPolicy decision"));
    }

    #[test]
    fn a_policy_without_rules_denies_all() {
        let deny_all = format!(
            "{MANIFESTS}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-all, namespace: app}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}\n"
        );
        let mut r = record("10.0.1.5", "10.0.2.7", 3307);
        let (a, _) = attribute(&inventory_of(&deny_all), &mut r);
        assert_eq!(
            a.denial.as_deref(),
            Some("denied by egress NetworkPolicy app/deny-all, which allows no egress")
        );
    }
}
