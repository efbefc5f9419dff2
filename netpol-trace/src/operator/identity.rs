//! Flow identity: which workload a pod belongs to (from its owner references, as every node's
//! agent sees the same Pod object), and the one DropReport name that every node derives for a
//! (source, destination, port, protocol), so that their writes converge on one object.

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

use super::report::FlowEnd;

/// Longest report name: a DNS label, so it reads well in `kubectl get dr` and fits anywhere.
pub const MAX_NAME: usize = 63;

/// Hex digits of the identity hash at the end of every name.
const HASH_LEN: usize = 10;

pub use crate::k8s::pods::workload_of;

/// The report end of a pod.
pub fn end_of_pod(pod: &Pod) -> FlowEnd {
    let (kind, workload) = workload_of(pod);
    FlowEnd::workload(pod.metadata.namespace.as_deref().unwrap_or("default"), &workload, &kind)
}

/// Whether `pod` belongs to the workload `end` names.
pub fn pod_matches(pod: &Pod, end: &FlowEnd) -> bool {
    if end.workload.is_none() {
        return false;
    }
    let (kind, workload) = workload_of(pod);
    pod.metadata.namespace.as_deref() == end.namespace.as_deref()
        && Some(workload.as_str()) == end.workload.as_deref()
        && end.kind.as_deref().is_none_or(|k| k == kind)
}

fn identity_text(end: &FlowEnd) -> String {
    match (&end.ip, &end.workload) {
        (Some(ip), _) => format!("ip={ip}"),
        (None, _) => format!(
            "{}/{}/{}",
            end.namespace.as_deref().unwrap_or_default(),
            end.kind.as_deref().unwrap_or_default(),
            end.workload.as_deref().unwrap_or_default()
        ),
    }
}

/// Lowercase alphanumerics and `-`, no leading/trailing or doubled `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The DropReport name of a flow identity, e.g. `app-web-to-mysql-3306-tcp-3f2a9c01d4`: readable
/// parts (source namespace and workload, or address; destination workload — the report lives
/// in the destination's namespace; port; protocol), shortened to fit [`MAX_NAME`], and always a
/// hash of the whole identity, so that names with dashes in different places never collide.
pub fn report_name(source: &FlowEnd, destination: &FlowEnd, port: u16, protocol: &str) -> String {
    let identity = format!(
        "{}|{}|{port}|{}",
        identity_text(source),
        identity_text(destination),
        protocol.to_ascii_uppercase()
    );
    let digest = Sha256::digest(identity.as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let hash = &hash[..HASH_LEN];
    let src = match &source.ip {
        Some(ip) => slug(&format!("ip-{ip}")),
        None => slug(&format!(
            "{}-{}",
            source.namespace.as_deref().unwrap_or_default(),
            source.workload.as_deref().unwrap_or_default()
        )),
    };
    let dst = match &destination.ip {
        Some(ip) => slug(&format!("ip-{ip}")),
        None => slug(destination.workload.as_deref().unwrap_or_default()),
    };
    let tail = format!("-{port}-{}-{hash}", slug(protocol));
    let budget = MAX_NAME - tail.len();
    let mut head = format!("{src}-to-{dst}");
    if head.len() > budget {
        // Keep both ends readable: shorten each to half the budget.
        let half = (budget - "-to-".len()) / 2;
        let cut =
            |s: &str| s.chars().take(half).collect::<String>().trim_end_matches('-').to_string();
        head = format!("{}-to-{}", cut(&src), cut(&dst));
    }
    format!("{}{tail}", head.trim_start_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deployment_pods_belong_to_the_deployment_and_others_to_their_owner() {
        let web = pod(json!({"metadata": {"name": "web-7d9f8b6c5-x2k4q", "namespace": "app",
            "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d9f8b6c5", "uid": "u1", "controller": true}]}}));
        assert_eq!(workload_of(&web), ("Deployment".into(), "web".into()));
        let mysql = pod(json!({"metadata": {"name": "mysql-0", "namespace": "db",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "mysql", "uid": "u2", "controller": true}]}}));
        assert_eq!(workload_of(&mysql), ("StatefulSet".into(), "mysql".into()));
        let bare = pod(json!({"metadata": {"name": "debug", "namespace": "db"}}));
        assert_eq!(workload_of(&bare), ("Pod".into(), "debug".into()));
        // A ReplicaSet not named after a template hash stays a ReplicaSet.
        let rs = pod(json!({"metadata": {"name": "x-1", "namespace": "db",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "x", "uid": "u3", "controller": true}]}}));
        assert_eq!(workload_of(&rs), ("ReplicaSet".into(), "x".into()));
        assert!(pod_matches(&web, &FlowEnd::workload("app", "web", "Deployment")));
        assert!(!pod_matches(&web, &FlowEnd::workload("app", "web", "StatefulSet")));
        assert!(!pod_matches(&web, &FlowEnd::workload("db", "web", "Deployment")));
    }

    #[test]
    fn names_are_dns_labels_stable_and_distinct() {
        let web = FlowEnd::workload("app", "web", "Deployment");
        let mysql = FlowEnd::workload("db", "mysql", "StatefulSet");
        let name = report_name(&web, &mysql, 3306, "TCP");
        assert!(name.starts_with("app-web-to-mysql-3306-tcp-"), "{name}");
        assert_eq!(name, report_name(&web, &mysql, 3306, "tcp"));
        // Dashes in different places: same readable part, different names.
        let a = report_name(&FlowEnd::workload("a-b", "c", "Deployment"), &mysql, 1, "TCP");
        let b = report_name(&FlowEnd::workload("a", "b-c", "Deployment"), &mysql, 1, "TCP");
        assert_ne!(a, b);
        assert_ne!(name, report_name(&web, &mysql, 3307, "TCP"));
        assert_ne!(name, report_name(&web, &mysql, 3306, "UDP"));

        let outside = FlowEnd::address("2001:db8::5".parse().unwrap());
        let long = FlowEnd::workload(&"n".repeat(60), &"w".repeat(200), "Deployment");
        for name in
            [report_name(&outside, &mysql, 3306, "TCP"), report_name(&long, &long, 65535, "SCTP")]
        {
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
        assert!(report_name(&outside, &mysql, 3306, "TCP").starts_with("ip-2001-db8-5-to-mysql"));
    }
}
