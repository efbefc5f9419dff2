//! Errors of the operator feed, each naming the report or object and what went wrong.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while publishing, deciding, applying or restoring a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A NetworkPolicy request (or a cluster read) failed.
    #[error(transparent)]
    K8s(#[from] crate::k8s::Error),
    /// Reading the cluster's objects for planning failed.
    #[error(transparent)]
    Cluster(#[from] crate::manifest::ClusterError),
    /// A DropReport or Lease request failed.
    #[error("{verb} {what}: {source}")]
    Kube {
        /// `get`, `patch`, `replace status`...
        verb: &'static str,
        /// `dropreport db/app-web-to-mysql-...`.
        what: String,
        /// What kube said.
        #[source]
        source: kube::Error,
    },
    /// The report does not exist.
    #[error("dropreport {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The report cannot be acted on as asked.
    #[error("dropreport {report}: {reason}")]
    Report {
        /// `namespace/name`.
        report: String,
        /// Why.
        reason: String,
    },
    /// `restore` found objects changed since the fix and `--force` was not given.
    #[error(
        "dropreport {report}: not restored, changed since the fix: {}; re-run with --force to overwrite",
        changed.join(", ")
    )]
    ChangedSinceFix {
        /// `namespace/name`.
        report: String,
        /// `networkpolicy NS/NAME (resourceVersion A, now B)` per changed object.
        changed: Vec<String>,
    },
    /// The controller stopped at a test crash point (the process would have died here).
    #[error("stopped at crash point {0}")]
    CrashPoint(&'static str),
}

impl Error {
    /// Wraps a kube error of a request on a DropReport.
    pub fn report(verb: &'static str, namespace: &str, name: &str, source: kube::Error) -> Self {
        if let kube::Error::Api(status) = &source
            && status.code == 404
        {
            return Self::NotFound { namespace: namespace.into(), name: name.into() };
        }
        Self::Kube { verb, what: format!("dropreport {namespace}/{name}"), source }
    }

    /// Whether the error is a lost race: 409 Conflict, or the 422 of a failed JSON patch
    /// `test` (what a real API server answers for a failed resourceVersion test).
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::K8s(e) | Self::Cluster(crate::manifest::ClusterError::List(e)) => {
                k8s_is_conflict(e)
            }
            Self::Kube { source: kube::Error::Api(status), .. } => {
                status.code == 409
                    || (status.code == 422 && status.message.starts_with(PATCH_TEST_FAILED))
            }
            _ => false,
        }
    }
}

fn k8s_is_conflict(error: &crate::k8s::Error) -> bool {
    match error {
        crate::k8s::Error::Api(f) => {
            f.code == 409 || (f.code == 422 && f.message.starts_with(PATCH_TEST_FAILED))
        }
        crate::k8s::Error::ConcurrentChange { .. } => true,
        _ => false,
    }
}

/// The start of the message of the 422 a real API server answers when a JSON patch `test`
/// operation fails.
pub const PATCH_TEST_FAILED: &str = "the server rejected our request";
