//! Errors of the lab. Every message names the object (file, lab, pod, command) at fault.

use std::path::PathBuf;

/// Result with [`LabError`] as the default error.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// What can go wrong while building, running or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Manifests cannot be read or parsed.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// A network namespace cannot be found or entered.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// A NetworkPolicy is invalid (the message names its source, the policy and the field).
    #[error(transparent)]
    Policy(#[from] crate::inventory::InvalidPolicy),
    /// An object is unusable: `object` is `Kind namespace/name`, `field` a JSON path.
    #[error("{object}: {field}: {message}")]
    InvalidObject {
        /// `Pod app/web-1`, `EnforcementPlan`...
        object: String,
        /// The offending field, e.g. `status.podIP`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A lab name that cannot be used in interface, namespace and table names.
    #[error(
        "lab name {0:?}: use 1 to 24 characters a-z, 0-9 and '-', starting with a letter and not ending with '-'"
    )]
    InvalidLabName(String),
    /// `lab up` for a name that already has a run directory.
    #[error("lab {0:?} already exists (run `netpol-trace lab down {0}` first)")]
    LabExists(String),
    /// A command for a lab that does not exist.
    #[error("lab {0:?} does not exist (see `netpol-trace lab ls`)")]
    LabNotFound(String),
    /// A pod reference that matches no pod, or more than one.
    #[error("lab {lab:?}: pod {pod:?}: {message}")]
    PodNotFound {
        /// The lab.
        lab: String,
        /// The reference as given (`NS/POD` or `POD`).
        pod: String,
        /// Why it does not resolve.
        message: String,
    },
    /// The lab manipulates network namespaces and nftables: it needs root.
    #[error("the lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo")]
    NotRoot,
    /// An external command (`ip`, `nft`, `mariadb-install-db`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or object.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `state.json` cannot be read or written.
    #[error("{path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A daemon did not become ready in time.
    #[error("{what} did not become ready within {seconds}s (log: {log})")]
    NotReady {
        /// The daemon.
        what: String,
        /// How long we waited.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
    },
}

impl LabError {
    /// An [`LabError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// An [`LabError::InvalidObject`].
    pub fn invalid(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::InvalidObject { object: object.into(), field: field.into(), message: message.into() }
    }
}
