//! Validation errors: which policy, which field, what is wrong.

/// A problem with one field, located by its path relative to some object (e.g.
/// `spec.ingress[0].ports[1].endPort`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Field path, JSON-path style without a leading dot.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An invalid policy object, named by kind and `namespace/name` (just `name` when cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {error}", object = self.object())]
pub struct PolicyError {
    /// The object's kind in lower case, as kubectl names it (`networkpolicy`,
    /// `clusternetworkpolicy`, `globalnetworkpolicy`, `tier`, ...).
    pub kind: &'static str,
    /// Policy namespace.
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// The offending field and the reason.
    pub error: FieldError,
}

impl PolicyError {
    /// `kind namespace/name`, or `kind name` for a cluster-scoped object.
    pub fn object(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
