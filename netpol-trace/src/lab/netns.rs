//! Entering the lab's network namespaces: a scoped thread that `setns`es before running a
//! closure (probes, sysctls), or a child process that does so before `exec` (daemons, `lab
//! exec`). The calling thread never changes namespace.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::error::{LabError, Result};
use super::paths::{NETNS_DIR, netns_path};

/// Opens the named network namespace `netns` (created by `ip netns add`).
pub fn open_netns(netns: &str) -> Result<File> {
    let path = netns_path(netns);
    File::open(&path)
        .map_err(|e| LabError::io(format!("opening network namespace {}", path.display()), e))
}

/// Whether the named network namespace exists.
pub fn netns_exists(netns: &str) -> bool {
    netns_path(netns).exists()
}

/// Names of all named network namespaces starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Runs `f` on a new thread that has joined network namespace `netns`, and returns its result.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = open_netns(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns_net(file.as_raw_fd())
                    .map_err(|e| LabError::io(format!("entering network namespace {netns}"), e))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Makes `command` join network namespace `netns` between fork and exec. The returned file
/// must stay open until the command has been spawned.
pub fn command_in_netns(command: &mut Command, netns: &str) -> Result<File> {
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
pub fn netns_inode(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}
