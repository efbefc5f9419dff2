//! Network namespaces, the one module for them: naming one (`ip netns` name or path),
//! entering it (the calling thread, a scoped thread running a closure, or a child process
//! between fork and exec), identifying it, listing the named ones.

use std::{
    fs::File,
    os::{
        fd::{AsRawFd, RawFd},
        unix::{fs::MetadataExt, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::Command,
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

/// Opens the named network namespace `netns` (created by `ip netns add`).
pub fn open_netns(netns: &str) -> Result<File, NetnsError> {
    let path = netns_path(netns);
    File::open(&path)
        .map_err(|source| NetnsError::Enter { path: path.display().to_string(), source })
}

/// The path of the named network namespace `netns`.
pub fn netns_path(netns: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(netns)
}

/// Whether the named network namespace exists.
pub fn netns_exists(netns: &str) -> bool {
    netns_path(netns).exists()
}

/// Names of all named network namespaces starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Runs `f` on a new thread that has joined network namespace `netns`, and returns its result.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = open_netns(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns_net(file.as_raw_fd())
                    .map_err(|source| NetnsError::Enter { path: netns.to_string(), source })?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Makes `command` join network namespace `netns` between fork and exec. The returned file
/// must stay open until the command has been spawned.
pub fn command_in_netns(command: &mut Command, netns: &str) -> Result<File, NetnsError> {
    let file = open_netns(netns)?;
    let fd = file.as_raw_fd();
    // SAFETY: the closure only makes async-signal-safe system calls (setns).
    unsafe {
        command.pre_exec(move || setns_net(fd));
    }
    Ok(file)
}

/// Makes `command` start a new session (so a terminal's signals do not reach a daemon).
pub fn command_new_session(command: &mut Command) {
    // SAFETY: setsid is async-signal-safe; failing only means we already lead a session.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Makes `command` run in a fresh, anonymous network namespace that disappears with it.
pub fn command_in_private_netns(command: &mut Command) {
    // SAFETY: unshare is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

fn setns_net(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fd is an open network namespace file for the duration of the call.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The inode of a network namespace file (`/run/netns/X` or `/proc/PID/ns/net`), which
/// identifies the namespace.
pub fn netns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
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
