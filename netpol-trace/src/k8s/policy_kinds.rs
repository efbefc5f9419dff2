//! The policy kinds beyond NetworkPolicy as API servers serve them: which group, versions
//! (newest first) and plural each kind has, which of them a cluster serves (a kind whose CRD
//! or API is not installed is simply absent), and how a served object joins
//! [`TieredObjects`] — the same models the manifest loader fills.

use kube::discovery::ApiResource;
use serde_json::Value;

use super::error::{Error, Result};
use super::list::{is_served, list_resource};
use crate::inventory::{PolicySource, Sourced, TieredObjects};
use crate::policy::calico::KUBERNETES_POLICY_PREFIX;

/// Which list of [`TieredObjects`] a kind's objects go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy.
    Admin,
    /// Calico NetworkPolicy and GlobalNetworkPolicy.
    Calico,
    /// Calico Tier.
    Tier,
}

/// One policy kind as served by API servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyKindSpec {
    /// The kind, as the API names it.
    pub kind: &'static str,
    /// The plural resource name.
    pub plural: &'static str,
    /// The apiVersions it may be served in, preferred first (the newest, or Calico's API
    /// server before the CRDs it stores into).
    pub api_versions: &'static [&'static str],
    /// Where its objects go.
    pub slot: Slot,
}

const CNP_VERSIONS: &[&str] =
    &["policy.networking.k8s.io/v1beta1", "policy.networking.k8s.io/v1alpha2"];
const ANP_VERSIONS: &[&str] = &["policy.networking.k8s.io/v1alpha1"];
const CALICO_VERSIONS: &[&str] = &["projectcalico.org/v3", "crd.projectcalico.org/v1"];

/// Every kind read besides the core ones, in the order they are listed.
pub const POLICY_KINDS: [PolicyKindSpec; 6] = [
    PolicyKindSpec {
        kind: "ClusterNetworkPolicy",
        plural: "clusternetworkpolicies",
        api_versions: CNP_VERSIONS,
        slot: Slot::Admin,
    },
    PolicyKindSpec {
        kind: "AdminNetworkPolicy",
        plural: "adminnetworkpolicies",
        api_versions: ANP_VERSIONS,
        slot: Slot::Admin,
    },
    PolicyKindSpec {
        kind: "BaselineAdminNetworkPolicy",
        plural: "baselineadminnetworkpolicies",
        api_versions: ANP_VERSIONS,
        slot: Slot::Admin,
    },
    PolicyKindSpec {
        kind: "Tier",
        plural: "tiers",
        api_versions: CALICO_VERSIONS,
        slot: Slot::Tier,
    },
    PolicyKindSpec {
        kind: "GlobalNetworkPolicy",
        plural: "globalnetworkpolicies",
        api_versions: CALICO_VERSIONS,
        slot: Slot::Calico,
    },
    PolicyKindSpec {
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        api_versions: CALICO_VERSIONS,
        slot: Slot::Calico,
    },
];

impl PolicyKindSpec {
    /// The resource in one of its apiVersions.
    pub fn resource(&self, api_version: &str) -> ApiResource {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: self.kind.to_owned(),
            plural: self.plural.to_owned(),
        }
    }

    /// `plural.group` of its preferred version, as RBAC and kubectl name it
    /// (`globalnetworkpolicies.projectcalico.org`).
    pub fn name(&self) -> String {
        let group = self.api_versions[0].split_once('/').map_or("", |(g, _)| g);
        format!("{}.{group}", self.plural)
    }
}

/// Whether and how a cluster serves a kind.
#[derive(Debug)]
pub enum Served {
    /// In this version (the first of [`PolicyKindSpec::api_versions`] the server answers).
    Version(ApiResource),
    /// In none: the CRD or API is not installed.
    Absent,
    /// The client may not list it (403); the error says which permission is missing.
    Forbidden(Error),
}

/// Asks the server which version of `spec` it serves, trying them in order of preference:
/// a 404 means "not this one", a 403 ends the search (RBAC does not depend on the version).
/// Other failures (unreachable, 5xx) are errors.
pub async fn find_served(client: &kube::Client, spec: &PolicyKindSpec) -> Result<Served> {
    for api_version in spec.api_versions {
        let resource = spec.resource(api_version);
        match is_served(client, &resource).await {
            Ok(true) => return Ok(Served::Version(resource)),
            Ok(false) => {}
            Err(e) if e.status_code() == Some(403) => return Ok(Served::Forbidden(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(Served::Absent)
}

/// Adds one object of `spec`, as the server returned it, to `objects` (with the same models
/// and checks as manifest files). Calico's views of Kubernetes NetworkPolicies
/// (`knp.default.*`, which its API server may list among its own) are left out: the
/// NetworkPolicies themselves are read. The error names the kind, the object and the field.
pub fn add_object(
    objects: &mut TieredObjects,
    spec: &PolicyKindSpec,
    raw: Value,
    source: PolicySource,
) -> Result<()> {
    fn read<T: serde::de::DeserializeOwned>(
        spec: &PolicyKindSpec,
        raw: &Value,
        source: PolicySource,
    ) -> Result<Sourced<T>> {
        let object = serde_path_to_error::deserialize::<_, T>(raw.clone()).map_err(|error| {
            let name = object_name(raw);
            let field = error.path().to_string();
            Error::InvalidObject(format!(
                "{} {name} from the API server: {field}: {}",
                spec.kind,
                error.into_inner()
            ))
        })?;
        Ok(Sourced { object, raw: raw.clone(), source })
    }
    let name = raw.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if spec.slot == Slot::Calico && name.starts_with(KUBERNETES_POLICY_PREFIX) {
        return Ok(());
    }
    match spec.slot {
        Slot::Admin => objects.admin.push(read(spec, &raw, source)?),
        Slot::Calico => objects.calico.push(read(spec, &raw, source)?),
        Slot::Tier => objects.tiers.push(read(spec, &raw, source)?),
    }
    Ok(())
}

/// `namespace/name` or `name` of a raw object.
pub fn object_name(raw: &Value) -> String {
    let text = |p: &str| raw.pointer(p).and_then(Value::as_str).unwrap_or_default();
    match text("/metadata/namespace") {
        "" => text("/metadata/name").to_owned(),
        ns => format!("{ns}/{}", text("/metadata/name")),
    }
}

/// Lists every object of every kind of [`POLICY_KINDS`] the cluster serves. A kind not
/// installed is absent (debug log); one the client may not list is skipped with a warning
/// naming it; other failures are errors.
pub async fn list_policy_kinds(client: &kube::Client) -> Result<TieredObjects> {
    let lists = futures::future::try_join_all(POLICY_KINDS.iter().map(|spec| async move {
        match find_served(client, spec).await? {
            Served::Version(resource) => {
                let items = list_resource(client, &resource).await?;
                tracing::debug!(resource = %spec.name(), version = %resource.api_version, objects = items.len(), "listed");
                Ok::<_, Error>((spec, items))
            }
            Served::Absent => {
                tracing::debug!(resource = %spec.name(), "not served by this cluster");
                Ok((spec, Vec::new()))
            }
            Served::Forbidden(e) => {
                tracing::warn!(resource = %spec.name(), error = %e, "cannot list this policy kind; analysis goes on without it");
                Ok((spec, Vec::new()))
            }
        }
    }))
    .await?;
    let mut objects = TieredObjects::default();
    for (spec, items) in lists {
        for raw in items {
            add_object(&mut objects, spec, raw, PolicySource::Cluster)?;
        }
    }
    Ok(objects)
}
