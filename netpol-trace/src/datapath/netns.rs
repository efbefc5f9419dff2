//! Network namespaces: naming one (`ip netns` name or path), entering it, identifying it.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

/// Where `ip netns add NAME` puts its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// The calling thread's own network namespace.
pub const SELF_NETNS: &str = "/proc/thread-self/ns/net";

/// Errors about network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace does not exist.
    #[error("network namespace {0} not found (ip netns list shows the names)")]
    NotFound(String),
    /// It could not be opened or entered.
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        /// Its path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Resolves `--netns`: a path when it contains `/`, else a name under [`NETNS_RUN_DIR`].
pub fn resolve(spec: &str) -> Result<PathBuf, NetnsError> {
    let path =
        if spec.contains('/') { PathBuf::from(spec) } else { Path::new(NETNS_RUN_DIR).join(spec) };
    if path.exists() { Ok(path) } else { Err(NetnsError::NotFound(spec.to_string())) }
}

/// Moves the calling thread into the namespace at `path`. Threads it creates afterwards
/// inherit it; sockets it opens afterwards (netlink included) live there.
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let err = |source| NetnsError::Enter { path: path.display().to_string(), source };
    let file = File::open(path).map_err(err)?;
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Inode number of the namespace at `path` (what the kernel calls `ns.inum`).
pub fn inode(path: &Path) -> Result<u32, NetnsError> {
    let meta = std::fs::metadata(path)
        .map_err(|source| NetnsError::Enter { path: path.display().to_string(), source })?;
    Ok(meta.ino() as u32)
}

/// Inode number of the calling thread's namespace.
pub fn current_inode() -> Result<u32, NetnsError> {
    inode(Path::new(SELF_NETNS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_resolve_and_missing_ones_are_named() {
        let err = resolve("netpol-trace-no-such-ns").unwrap_err().to_string();
        assert!(err.contains("netpol-trace-no-such-ns"), "{err}");
        assert_eq!(resolve(SELF_NETNS).unwrap(), PathBuf::from(SELF_NETNS));
        assert!(current_inode().unwrap() > 0);
    }
}
