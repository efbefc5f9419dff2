//! The resource types the fake serves: where they live in the URL space and what they are called.
//!
//! Built-in types are constants; custom resources are added at run time when a
//! CustomResourceDefinition is stored (see [`crate::crd`]), so lookups go through a
//! [`Registry`] owned by the store.

use std::collections::HashMap;

use serde_json::Value;

/// One served resource type (a group/version/resource with its kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Object kind.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `.status` is only written through the `/status` subresource (custom resources
    /// whose definition enables it): main-resource writes keep the stored status and status
    /// writes keep everything else.
    pub status_subresource: bool,
    /// Whether the type comes from a CustomResourceDefinition.
    pub custom: bool,
    /// Whether objects are never stored: a create is answered by the server (TokenReview,
    /// SubjectAccessReview and friends).
    pub review: bool,
}

/// Every built-in resource type the fake serves.
pub const RESOURCES: &[ResourceType] = &[
    rt("", "v1", "namespaces", "Namespace", false),
    rt("", "v1", "nodes", "Node", false),
    rt("", "v1", "pods", "Pod", true),
    rt("", "v1", "services", "Service", true),
    rt("", "v1", "endpoints", "Endpoints", true),
    rt("", "v1", "configmaps", "ConfigMap", true),
    rt("", "v1", "serviceaccounts", "ServiceAccount", true),
    rt("", "v1", "events", "Event", true),
    rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true),
    rt("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
    rt("events.k8s.io", "v1", "events", "Event", true),
    rt("coordination.k8s.io", "v1", "leases", "Lease", true),
    rt("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
    rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
    rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
    rt(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    review("authentication.k8s.io", "tokenreviews", "TokenReview", false),
    review("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", false),
    review("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
    review("authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", true),
];

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
        status_subresource: false,
        custom: false,
        review: false,
    }
}

const fn review(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType { review: true, ..rt(group, "v1", plural, kind, namespaced) }
}

impl ResourceType {
    /// `apiVersion` of its objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name the API server uses in messages: `pods`, `networkpolicies.networking.k8s.io`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind qualified by group, as in validation messages: `NetworkPolicy.networking.k8s.io`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The list kind: `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether its objects carry `metadata.generation`: NetworkPolicy (of the built-in types
    /// served, only its strategy sets and bumps it in Kubernetes 1.33) and every custom resource.
    pub fn has_generation(&self) -> bool {
        self.plural == "networkpolicies" || self.custom
    }
}

/// A custom resource type as registered from its definition.
#[derive(Debug, Clone)]
pub(crate) struct CustomType {
    /// The type, one per served version.
    pub versions: Vec<&'static ResourceType>,
    /// Short names (`dr`), for lookups by tests.
    pub short_names: Vec<String>,
    /// The structural schema per version (`openAPIV3Schema`), when the definition has one.
    pub schemas: HashMap<String, Value>,
}

/// The served types: the built-ins plus the custom types registered so far.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Custom types by (group, plural).
    custom: HashMap<(String, String), CustomType>,
    /// Every custom type ever made `'static`, reused when a definition comes back.
    interned: Vec<&'static ResourceType>,
}

/// Gives a string the `'static` lifetime of the built-in names. Only custom resource
/// definitions do this, once per distinct name: a test registers a handful.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Registry {
    fn all(&self) -> impl Iterator<Item = &'static ResourceType> + '_ {
        RESOURCES.iter().chain(self.custom.values().flat_map(|c| c.versions.iter().copied()))
    }

    /// Finds a served resource by group, version and plural (the URL form).
    pub(crate) fn by_url(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        self.all().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Finds a served resource by `apiVersion` and `kind` (the object form).
    pub(crate) fn by_api_version_kind(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Option<&'static ResourceType> {
        self.all().find(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// Finds a served resource by a name a test would write: `pods`, `Pod`, `networkpolicies`,
    /// `NetworkPolicy`, a custom resource's short name (`dr`), or group-qualified
    /// (`events.events.k8s.io`, `Event.events.k8s.io`, `dropreports.netpol-trace.io`).
    /// Unqualified `events`/`Event` is the core v1 one.
    pub(crate) fn by_name(&self, name: &str) -> Option<&'static ResourceType> {
        self.all()
            .find(|r| {
                r.plural == name
                    || r.kind == name
                    || r.qualified_plural() == name
                    || r.qualified_kind() == name
            })
            .or_else(|| {
                self.custom
                    .values()
                    .find(|c| c.short_names.iter().any(|s| s == name))
                    .and_then(|c| c.versions.first().copied())
            })
            .or_else(|| self.all().find(|r| r.plural.eq_ignore_ascii_case(name)))
    }

    /// The schema of a custom type's version, if it has one.
    pub(crate) fn schema(&self, rt: &ResourceType) -> Option<&Value> {
        self.custom
            .get(&(rt.group.to_string(), rt.plural.to_string()))
            .and_then(|c| c.schemas.get(rt.version))
    }

    /// The `'static` type with these names, made once (see [`leak`]): a definition stored
    /// many times does not grow the process.
    pub(crate) fn intern(&mut self, want: &CustomTypeNames<'_>) -> &'static ResourceType {
        let same = |r: &&&'static ResourceType| {
            r.group == want.group
                && r.version == want.version
                && r.plural == want.plural
                && r.kind == want.kind
                && r.namespaced == want.namespaced
                && r.status_subresource == want.status_subresource
        };
        if let Some(found) = self.interned.iter().find(same) {
            return found;
        }
        let made: &'static ResourceType = Box::leak(Box::new(ResourceType {
            group: leak(want.group),
            version: leak(want.version),
            plural: leak(want.plural),
            kind: leak(want.kind),
            namespaced: want.namespaced,
            status_subresource: want.status_subresource,
            custom: true,
            review: false,
        }));
        self.interned.push(made);
        made
    }

    /// Registers (or re-registers, after a change of the definition) a custom type.
    pub(crate) fn register(&mut self, group: &str, plural: &str, ty: CustomType) {
        self.custom.insert((group.to_string(), plural.to_string()), ty);
    }

    /// Forgets a custom type (its definition was deleted).
    pub(crate) fn unregister(&mut self, group: &str, plural: &str) {
        self.custom.remove(&(group.to_string(), plural.to_string()));
    }
}

/// The names of one version of a custom type, before it is made `'static`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CustomTypeNames<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
    pub namespaced: bool,
    pub status_subresource: bool,
}
