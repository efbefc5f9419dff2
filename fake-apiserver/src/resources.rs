//! The resource types the fake serves: where they live in the URL space and what they are called.

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
}

/// Every resource type the fake serves.
pub const RESOURCES: &[ResourceType] = &[
    rt("", "v1", "namespaces", "Namespace", false),
    rt("", "v1", "nodes", "Node", false),
    rt("", "v1", "pods", "Pod", true),
    rt("", "v1", "services", "Service", true),
    rt("", "v1", "endpoints", "Endpoints", true),
    rt("", "v1", "configmaps", "ConfigMap", true),
    rt("", "v1", "events", "Event", true),
    rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true),
    rt("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
    rt("events.k8s.io", "v1", "events", "Event", true),
];

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType { group, version, plural, kind, namespaced }
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

    /// Whether its objects carry `metadata.generation` (in Kubernetes 1.33, of the served
    /// types only NetworkPolicy's strategy sets and bumps it).
    pub fn has_generation(&self) -> bool {
        self.plural == "networkpolicies"
    }
}

/// Finds a served resource by group, version and plural (the URL form).
pub fn by_url(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a served resource by `apiVersion` and `kind` (the object form).
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Finds a served resource by a name a test would write: `pods`, `Pod`, `networkpolicies`,
/// `NetworkPolicy`, or group-qualified (`events.events.k8s.io`, `Event.events.k8s.io`).
/// Unqualified `events`/`Event` is the core v1 one.
pub fn by_name(name: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| {
            r.plural == name
                || r.kind == name
                || r.qualified_plural() == name
                || r.qualified_kind() == name
        })
        .or_else(|| RESOURCES.iter().find(|r| r.plural.eq_ignore_ascii_case(name)))
}
