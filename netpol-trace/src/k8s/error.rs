//! Errors of the Kubernetes layer, each naming the object and what the server said.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// RBAC verb of the request (`get`, `list`, `patch`...).
    pub verb: String,
    /// Plural resource (`networkpolicies`).
    pub resource: String,
    /// Namespace, if the request had one.
    pub namespace: Option<String>,
    /// Object name, if the request had one.
    pub name: Option<String>,
    /// HTTP status code.
    pub code: u16,
    /// The Status reason (`Forbidden`, `Conflict`...).
    pub reason: String,
    /// The Status message.
    pub message: String,
}

impl ApiFailure {
    fn object(&self) -> String {
        let kind = match self.resource.strip_suffix("ies") {
            Some(stem) => format!("{stem}y"),
            None => self.resource.trim_end_matches('s').to_string(),
        };
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
            (None, Some(n)) => format!("{kind} {n}"),
            (Some(ns), None) => format!("{} in namespace {ns}", self.resource),
            (None, None) => format!("{} in all namespaces", self.resource),
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let object = self.object();
        match self.code {
            403 => {
                let scope = match &self.namespace {
                    Some(ns) => format!("in namespace {ns}"),
                    None => "at cluster scope".to_string(),
                };
                write!(
                    f,
                    "forbidden: the service account needs {} on {} {scope} (see the roles in deploy/); the server said: {}",
                    self.verb, self.resource, self.message
                )
            }
            404 => write!(f, "{object} not found ({})", self.message),
            409 => write!(f, "conflict on {object}: {} ({})", self.message, self.reason),
            422 => write!(f, "{object} rejected as invalid: {}", self.message),
            _ => write!(
                f,
                "{} {object} failed: HTTP {} {}: {}",
                self.verb, self.code, self.reason, self.message
            ),
        }
    }
}

/// Everything that can go wrong in the Kubernetes layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot load the Kubernetes client configuration: {0}")]
    Config(String),
    /// The API server did not answer.
    #[error(
        "no Kubernetes cluster reachable at {url}: {reason} (check --kubeconfig, --context or KUBECONFIG, or pass manifests with -f)"
    )]
    Unreachable {
        /// Server URL tried.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The API server answered with a failure Status.
    #[error("{0}")]
    Api(Box<ApiFailure>),
    /// The request could not be sent or its answer not read.
    #[error("{what}: {reason}")]
    Transport {
        /// The request, e.g. "patch networkpolicy db/mysql-ingress".
        what: String,
        /// What failed.
        reason: String,
    },
    /// The object changed while we were writing and the change no longer applies; nothing
    /// was written.
    #[error(
        "networkpolicy {namespace}/{name} changed while being patched and {detail}; nothing was changed, re-run to compute a fresh patch"
    )]
    ConcurrentChange {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why giving up.
        detail: String,
    },
    /// The patch does not apply to the object as read; nothing was written.
    #[error("the patch does not apply to networkpolicy {namespace}/{name}: {detail}")]
    PatchDoesNotApply {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The JSON-patch failure.
        detail: String,
    },
    /// An object handed in is not what the call needs.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A backup folder or file that cannot be used.
    #[error("invalid backup {path}: {reason}")]
    InvalidBackup {
        /// The backup path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A manifest file that cannot be edited as asked.
    #[error("{path}: {reason}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The start of the message the API server gives a JSON patch whose `test` failed (422).
const PATCH_TEST_FAILED: &str = "the server rejected our request";

impl Error {
    /// The HTTP status code when the API server refused the request.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Api(f) => Some(f.code),
            _ => None,
        }
    }

    /// Whether the object changed under us, so that re-reading and planning again may
    /// succeed: our resourceVersion check failed before sending, or the server answered 409
    /// Conflict, or the 422 it gives a JSON patch whose `test` operation failed.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::ConcurrentChange { .. } | Self::PatchDoesNotApply { .. } => true,
            Self::Api(f) => {
                f.code == 409 || (f.code == 422 && f.message.starts_with(PATCH_TEST_FAILED))
            }
            _ => false,
        }
    }

    /// Whether the API server could not be reached at all (retrying later may help), as
    /// opposed to a request it refused or input that is wrong.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Transport { .. })
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Unreachable { .. } => "unreachable",
            Self::Api(f) if f.code == 403 => "forbidden",
            Self::Api(f) if f.code == 404 => "not_found",
            Self::Api(f) if f.code == 409 => "conflict",
            Self::Api(f) if f.code == 422 => "invalid",
            Self::Api(_) => "api",
            Self::Transport { .. } => "transport",
            Self::ConcurrentChange { .. } => "concurrent_change",
            Self::PatchDoesNotApply { .. } => "patch_does_not_apply",
            Self::InvalidObject(_) => "invalid_object",
            Self::InvalidBackup { .. } => "invalid_backup",
            Self::Manifest { .. } => "manifest",
            Self::Io { .. } => "io",
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Maps a kube error for a request on one object or collection.
    pub fn from_kube(
        err: kube::Error,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        match err {
            kube::Error::Api(status) => Self::Api(Box::new(ApiFailure {
                verb: verb.to_string(),
                resource: resource.to_string(),
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            })),
            other => {
                let target = match (namespace, name) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    (None, Some(n)) => n.to_string(),
                    (Some(ns), None) => format!("in namespace {ns}"),
                    (None, None) => "in all namespaces".to_string(),
                };
                Self::Transport {
                    what: format!("{verb} {resource} {target}"),
                    reason: other.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_the_missing_permission() {
        let f = ApiFailure {
            verb: "patch".into(),
            resource: "networkpolicies".into(),
            namespace: Some("db".into()),
            name: Some("mysql-ingress".into()),
            code: 403,
            reason: "Forbidden".into(),
            message: "denied".into(),
        };
        assert!(Error::Api(Box::new(f)).to_string().starts_with(
            "forbidden: the service account needs patch on networkpolicies in namespace db (see the roles in deploy/)"
        ));
    }
}
