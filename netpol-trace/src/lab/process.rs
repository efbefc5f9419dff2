//! Daemons the lab starts inside pod namespaces (listeners, MariaDB): spawned with a PID file
//! and a log in the run directory, identified by PID and start time so that a recycled PID is
//! never signalled, and stopped by PID only.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::paths::RunDir;
use crate::netns::{command_in_netns, command_new_session};

/// How long a daemon gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A daemon the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRecord {
    /// Process name (PID and log file stem), e.g. `serve-app.web-1`.
    pub name: String,
    /// The pod it runs in (`namespace/name`).
    pub pod: String,
    /// Its PID.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), to tell it from a later process with the
    /// same PID.
    pub start_time: u64,
    /// Its PID file.
    pub pid_file: PathBuf,
    /// Its log (stdout and stderr).
    pub log_file: PathBuf,
}

/// Starts `program args` as a daemon named `name` inside network namespace `netns`.
pub fn spawn_daemon<I, S>(
    run_dir: &RunDir,
    name: &str,
    pod: &str,
    netns: &str,
    program: &Path,
    args: I,
) -> Result<DaemonRecord>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let pid_file = run_dir.pid_file(name);
    let log_file = run_dir.log_file(name);
    for dir in [pid_file.parent(), log_file.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    }
    let log = File::create(&log_file)
        .map_err(|e| LabError::io(format!("creating {}", log_file.display()), e))?;
    let log_err =
        log.try_clone().map_err(|e| LabError::io(format!("opening {}", log_file.display()), e))?;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(log).stderr(log_err);
    let _netns_file = command_in_netns(&mut command, netns)?;
    command_new_session(&mut command);
    let child = command
        .spawn()
        .map_err(|e| LabError::io(format!("starting {} in {netns}", program.display()), e))?;
    let pid = i32::try_from(child.id()).expect("PIDs fit in i32");
    // The child is never waited for through `Child`: `stop_daemon` reaps it by PID.
    drop(child);
    std::fs::write(&pid_file, format!("{pid}\n"))
        .map_err(|e| LabError::io(format!("writing {}", pid_file.display()), e))?;
    let start_time = process_start_time(pid).unwrap_or_default();
    Ok(DaemonRecord {
        name: name.to_owned(),
        pod: pod.to_owned(),
        pid,
        start_time,
        pid_file,
        log_file,
    })
}

/// The start time of a live (non-zombie) process, in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// Whether the daemon is still the process that was started.
pub fn is_running(record: &DaemonRecord) -> bool {
    process_start_time(record.pid).is_some_and(|t| record.start_time == 0 || t == record.start_time)
}

/// Stops a daemon: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Returns whether it was running.
pub fn stop_daemon(record: &DaemonRecord) -> bool {
    stop_pid(record.pid, || is_running(record))
}

/// Stops process `pid` while `still_ours()` holds; returns whether it was running.
pub fn stop_pid(pid: i32, still_ours: impl Fn() -> bool) -> bool {
    if !still_ours() {
        reap(pid);
        return false;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        reap(pid);
        if !still_ours() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if still_ours() {
        signal(pid, libc::SIGKILL);
        for _ in 0..100 {
            reap(pid);
            if process_start_time(pid).is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    true
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; pid > 0 targets one process.
    if pid > 0 {
        unsafe { libc::kill(pid, signal) };
    }
}

/// Collects the exit status if the daemon is our own child (a lab started in this process);
/// otherwise its parent or init does.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on a single PID with WNOHANG; ECHILD when it is not our child is fine.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Reads a PID file.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok().filter(|pid| *pid > 0)
}
