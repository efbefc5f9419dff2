//! Running the system tools the lab drives (`ip`, `nft`, `mariadb-install-db`) and the checks
//! around them.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use super::error::{LabError, Result};

/// Fails with [`LabError::NotRoot`] unless the effective user is root.
pub fn ensure_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 { Ok(()) } else { Err(LabError::NotRoot) }
}

/// The one rule for tests that need root (namespaces, nftables, eBPF, the running kernel):
/// they are marked `#[ignore = "needs root"]` where unprivileged runs happen (`cargo test`),
/// run as root by `cargo xtask test` (which includes them), and call this first, so that a
/// run without root fails loudly instead of passing without having checked anything.
pub fn require_root() {
    assert!(
        ensure_root().is_ok(),
        "this test needs root (namespaces, nftables, eBPF): run `cargo xtask test` as root"
    );
}

/// Runs `command` to completion, feeding it `stdin`, and returns its standard output; a
/// non-zero exit becomes [`LabError::Command`] with its standard error.
pub fn run_command(command: &mut Command, stdin: Option<&str>) -> Result<String> {
    let line = command_line(command);
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| LabError::io(format!("starting `{line}`"), e))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .map_err(|e| LabError::io(format!("writing to `{line}`"), e))?;
    }
    let output =
        child.wait_with_output().map_err(|e| LabError::io(format!("waiting for `{line}`"), e))?;
    check_output(&line, output)
}

/// `ip ARGS...` in the current network namespace (`-n NETNS` targets another one).
pub fn ip(args: &[&str]) -> Result<String> {
    run_command(Command::new(super::paths::tool(super::paths::IP_BIN)).args(args), None)
}

fn check_output(line: &str, output: Output) -> Result<String> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(LabError::Command {
        command: line.to_owned(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// The command line as text, for messages.
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
