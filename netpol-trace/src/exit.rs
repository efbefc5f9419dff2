//! Exit codes scripts can rely on (see README "Exit codes").

/// Success: allowed (explain), patch found or nothing to do (fix), restored (lab demo).
pub const OK: i32 = 0;
/// The answer is "no": denied (explain), no safe patch (fix), not restored (lab demo).
pub const NO: i32 = 1;
/// Bad input or an environment that cannot run the command (privileges, BTF, netns...).
pub const BAD_INPUT: i32 = 2;
/// The Kubernetes API server could not be reached (connection refused, timeout, TLS, DNS):
/// the input may be fine, so retrying later may succeed. Kept apart from [`BAD_INPUT`] so
/// that scripts know when to retry.
pub const UNREACHABLE: i32 = 3;

/// An error that carries the exit code the binary should end with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    /// Process exit code.
    pub code: i32,
    /// Human-readable, one line, naming the object and field at fault.
    pub message: String,
}

impl ExitError {
    /// Bad input (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self { code: BAD_INPUT, message: message.into() }
    }

    /// The cluster could not be reached (exit 3).
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self { code: UNREACHABLE, message: message.into() }
    }

    /// The same code with `prefix: ` before the message.
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        Self { code: self.code, message: format!("{prefix}: {}", self.message) }
    }
}

impl From<crate::k8s::Error> for ExitError {
    fn from(error: crate::k8s::Error) -> Self {
        if error.is_unreachable() {
            Self::unreachable(error.to_string())
        } else {
            Self::bad_input(error.to_string())
        }
    }
}

impl From<crate::manifest::ClusterError> for ExitError {
    fn from(error: crate::manifest::ClusterError) -> Self {
        match error {
            crate::manifest::ClusterError::List(inner) => inner.into(),
            other => Self::bad_input(other.to_string()),
        }
    }
}

/// `From` conversions of the library's errors that mean "bad input or cannot run" (exit 2):
/// each keeps its own message, which names the object and field at fault.
macro_rules! bad_input_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ExitError {
            fn from(error: $error) -> Self {
                Self::bad_input(error.to_string())
            }
        }
    )*};
}

bad_input_from!(
    crate::manifest::ManifestError,
    crate::inventory::InvalidPolicy,
    crate::flow::ResolveError,
    crate::apply::plan_files::FilesError,
    crate::netns::NetnsError,
    crate::trace::tracer::TracerError,
    crate::agent::lifecycle::AgentError,
    crate::lab::error::LabError,
);

/// An error of the operator feed at the command line: a report that does not exist is bad
/// input (exit 2) with the report named; anything else keeps its message and context.
pub fn operator_error(error: crate::operator::Error) -> anyhow::Error {
    match error {
        e @ crate::operator::Error::NotFound { .. } => ExitError::bad_input(e.to_string()).into(),
        e => anyhow::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_become_bad_input_with_their_own_message() {
        let error = crate::k8s::Error::InvalidObject("networkpolicy db/x: spec.ingress".into());
        let exit = ExitError::from(error);
        assert_eq!(exit.code, BAD_INPUT);
        assert!(exit.message.contains("networkpolicy db/x: spec.ingress"), "{}", exit.message);
    }

    #[test]
    fn an_unreachable_cluster_is_its_own_exit_code() {
        let down = crate::k8s::Error::Unreachable {
            url: "https://10.0.0.1:6443/".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(ExitError::from(down).code, UNREACHABLE);
        let transport = crate::k8s::Error::Transport {
            what: "list pods in all namespaces".into(),
            reason: "connection reset".into(),
        };
        let listed = crate::manifest::ClusterError::List(transport);
        assert_eq!(ExitError::from(listed).code, UNREACHABLE);
        let config = crate::k8s::Error::Config("context prod: not found".into());
        assert_eq!(ExitError::from(config).code, BAD_INPUT);
        assert_ne!(UNREACHABLE, BAD_INPUT);
        assert_ne!(UNREACHABLE, NO);
    }
}
