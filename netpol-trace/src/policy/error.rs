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

/// An invalid NetworkPolicy, named by `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("networkpolicy {namespace}/{name}: {error}")]
pub struct PolicyError {
    /// Policy namespace.
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// The offending field and the reason.
    pub error: FieldError,
}
