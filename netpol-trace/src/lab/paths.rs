//! Every name, path and fixed address the lab uses, in one place.

use std::path::{Path, PathBuf};

/// Where labs keep their run directories (one sub-directory per lab).
pub const DEFAULT_LABS_DIR: &str = "/run/netpol-trace/labs";
/// Environment variable overriding [`DEFAULT_LABS_DIR`] (tests use a private directory).
pub const LABS_DIR_ENV: &str = "NETPOL_TRACE_LAB_DIR";

/// First component of every lab object name; the full prefix is `npt_<lab>_`.
pub const PREFIX_HEAD: &str = "npt";
/// Suffix of the node network namespace name (`npt_<lab>_node`).
pub const NODE_NETNS_SUFFIX: &str = "node";
/// Host-side veth names: this head plus 11 hex characters (Calico's shape, 15 characters).
pub const HOST_IFACE_HEAD: &str = "cali";
/// Number of hex characters after [`HOST_IFACE_HEAD`].
pub const HOST_IFACE_HASH_LEN: usize = 11;
/// The pod-side interface name.
pub const POD_IFACE: &str = "eth0";

/// The link-local next hop every pod routes through (on the node namespace's `lo`).
pub const NODE_GATEWAY: &str = "169.254.1.1";
/// Pool for pods without `status.podIP`.
pub const POD_CIDR: &str = "10.244.0.0/16";

/// Pod annotation choosing the workload the lab runs in a pod.
pub const WORKLOAD_ANNOTATION: &str = "netpol-trace.io/lab-workload";
/// Value of [`WORKLOAD_ANNOTATION`] that runs a real MariaDB server on 3306.
pub const WORKLOAD_MARIADB: &str = "mariadb";

/// The state file inside a lab's run directory.
pub const STATE_FILE: &str = "state.json";
/// The last rendered nftables ruleset inside a lab's run directory.
pub const RULESET_FILE: &str = "ruleset.nft";
/// Sub-directory of the run directory with one `<process>.pid` file per daemon.
pub const PID_DIR: &str = "pids";
/// Sub-directory of the run directory with one `<process>.log` file per daemon.
pub const LOG_DIR: &str = "logs";
/// Sub-directory of the run directory holding one MariaDB data directory per pod.
pub const MARIADB_DIR: &str = "mysql";

/// `ip` from iproute2.
pub const IP_BIN: &str = "ip";
/// `nft` from nftables.
pub const NFT_BIN: &str = "nft";
/// MariaDB's data directory initialiser.
pub const MARIADB_INSTALL_DB_BIN: &str = "mariadb-install-db";
/// The MariaDB server.
pub const MARIADBD_BIN: &str = "/usr/sbin/mariadbd";

/// Where system tools live besides `PATH`: `su` without `-` and some sudo set-ups leave the
/// sbin folders off `PATH`, while `ip` and `nft` live there.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The path of the system tool `name` (one of the `*_BIN` constants): the first match on
/// `PATH`, then in the sbin folders; the bare name when none has it (running it then fails
/// with "not found", naming the tool).
pub fn tool(name: &str) -> PathBuf {
    tool_in(name, &std::env::var_os("PATH").unwrap_or_default())
}

/// [`tool`] with `path` in place of `$PATH`.
fn tool_in(name: &str, path: &std::ffi::OsStr) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    std::env::split_paths(path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The directory holding all labs: `$NETPOL_TRACE_LAB_DIR` or [`DEFAULT_LABS_DIR`].
pub fn labs_dir() -> PathBuf {
    std::env::var_os(LABS_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_LABS_DIR), PathBuf::from)
}

/// Paths inside one lab's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory of lab `name` under `labs_dir`.
    pub fn new(labs_dir: &Path, name: &str) -> Self {
        Self { root: labs_dir.join(name) }
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// The last rendered ruleset.
    pub fn ruleset_file(&self) -> PathBuf {
        self.root.join(RULESET_FILE)
    }

    /// PID file of a daemon.
    pub fn pid_file(&self, process: &str) -> PathBuf {
        self.root.join(PID_DIR).join(format!("{process}.pid"))
    }

    /// Log file of a daemon.
    pub fn log_file(&self, process: &str) -> PathBuf {
        self.root.join(LOG_DIR).join(format!("{process}.log"))
    }

    /// MariaDB files (data directory, socket, init file) of one pod.
    pub fn mariadb_dir(&self, pod_key: &str) -> PathBuf {
        self.root.join(MARIADB_DIR).join(pod_key)
    }
}

#[cfg(test)]
mod tool_tests {
    use super::*;

    #[test]
    fn tools_in_sbin_are_found_without_sbin_on_path() {
        // `nft` (nftables) lives in /usr/sbin; a PATH without it still finds it.
        let found = tool_in(NFT_BIN, std::ffi::OsStr::new("/nonexistent:/usr/bin"));
        assert!(found.is_absolute() && found.is_file(), "nft not found: {}", found.display());
        assert!(found.parent().unwrap().ends_with("sbin"), "{}", found.display());
    }

    #[test]
    fn an_unknown_tool_keeps_its_name() {
        assert_eq!(tool("no-such-tool-npt"), PathBuf::from("no-such-tool-npt"));
        assert_eq!(tool("/usr/sbin/mariadbd"), PathBuf::from("/usr/sbin/mariadbd"));
    }
}
