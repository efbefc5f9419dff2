//! The cluster's side: is the API server reachable, and may this identity do what the agent
//! does (SelfSubjectAccessReview per permission, as `kubectl auth can-i`).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::Check;
use crate::k8s::client::{ClusterArgs, connect};

/// One permission the agent uses, and what is lost without it.
struct Need {
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    lost: &'static str,
}

/// What the agent's ClusterRole (deploy/rbac.yaml) grants and the agent relies on.
const AGENT_NEEDS: &[Need] = &[
    Need { group: "", resource: "pods", verb: "list", lost: "drops are not attributed to pods" },
    Need { group: "", resource: "pods", verb: "watch", lost: "pods are not followed live" },
    Need {
        group: "",
        resource: "namespaces",
        verb: "list",
        lost: "namespaceSelectors cannot be evaluated",
    },
    Need {
        group: "",
        resource: "services",
        verb: "list",
        lost: "Service destinations are not resolved",
    },
    Need {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        verb: "list",
        lost: "Service backends are not resolved",
    },
    Need {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verb: "list",
        lost: "drops are not attributed to policies",
    },
    Need {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verb: "watch",
        lost: "policy changes are not followed live",
    },
    Need {
        group: "events.k8s.io",
        resource: "events",
        verb: "create",
        lost: "no Events on the destination pods",
    },
    Need {
        group: "netpol-trace.io",
        resource: "dropreports",
        verb: "create",
        lost: "no DropReports are published",
    },
    Need {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        verb: "create",
        lost: "/metrics and /drops cannot authenticate callers",
    },
    Need {
        group: "authorization.k8s.io",
        resource: "subjectaccessreviews",
        verb: "create",
        lost: "/metrics and /drops cannot authorize callers",
    },
];

/// The API server and RBAC checks. Without a reachable API server the agent cannot start
/// (it waits for its caches); `trace` works without one.
pub async fn checks(args: &ClusterArgs) -> Vec<Check> {
    let client = match connect(args).await {
        Ok(client) => client,
        Err(e) => {
            return vec![Check::fail(
                "api",
                e.to_string(),
                "the agent needs the API server (`netpol-trace trace` works without one)",
            )];
        }
    };
    let version = match client.apiserver_version().await {
        Ok(info) => format!("reachable, Kubernetes {}", info.git_version),
        Err(_) => "reachable".to_owned(),
    };
    vec![Check::ok("api", version), rbac_check(&client).await]
}

async fn rbac_check(client: &kube::Client) -> Check {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = vec![];
    let mut lost = vec![];
    for need in AGENT_NEEDS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(need.group.to_owned()),
                    resource: Some(need.resource.to_owned()),
                    verb: Some(need.verb.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let allowed = match api.create(&PostParams::default(), &review).await {
            Ok(answer) => answer.status.is_some_and(|s| s.allowed),
            Err(e) => {
                return Check::degraded(
                    "rbac",
                    format!("cannot ask the API server (SelfSubjectAccessReview): {e}"),
                    "unknown which features work",
                );
            }
        };
        if !allowed {
            let group =
                if need.group.is_empty() { String::new() } else { format!(".{}", need.group) };
            denied.push(format!("{} {}{group}", need.verb, need.resource));
            if !lost.contains(&need.lost) {
                lost.push(need.lost);
            }
        }
    }
    if denied.is_empty() {
        return Check::ok(
            "rbac",
            format!("all {} permissions of the agent held", AGENT_NEEDS.len()),
        );
    }
    Check::degraded("rbac", format!("denied: {}", denied.join(", ")), lost.join("; "))
}
