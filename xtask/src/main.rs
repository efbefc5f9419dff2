//! Chores for netpol-trace: `cargo xtask test` runs everything CI runs (formatting, clippy
//! for the host crates and for the bpf target, unit tests, privileged integration tests) and
//! ends with one summary line.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "netpol-trace chores")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Formatting, clippy (host and bpf), unit tests, then the privileged integration tests.
    Test {
        /// Skip the privileged integration tests (they need root).
        #[arg(long)]
        unprivileged: bool,
    },
    /// Clippy with -D warnings for the host crates and for the bpf target.
    Clippy,
}

#[path = "../../netpol-trace/build/toolchain.rs"]
mod toolchain;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    match cli.command {
        Cmd::Clippy => clippy(&root),
        Cmd::Test { unprivileged } => test(&root, unprivileged),
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(step: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {step}");
    let status = cmd.status().with_context(|| format!("{step}: cannot start"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn clippy(root: &Path) -> anyhow::Result<()> {
    run(
        "clippy (host crates)",
        cargo().current_dir(root).args([
            "clippy",
            "--workspace",
            "--exclude",
            "netpol-trace-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut bpf = bpf_cargo()?;
    bpf.current_dir(root)
        .args(["clippy", "-p", "netpol-trace-ebpf", "--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(root.join("target/bpf-clippy"))
        .args(["--", "-D", "warnings"]);
    run("clippy (bpf target)", &mut bpf)
}

/// Cargo for the bpf target: the toolchain `build.rs` builds the programs with
/// (`NETPOL_TRACE_EBPF_TOOLCHAIN`, else rustup's nightly with rust-src, else the system Rust),
/// which must also have clippy.
fn bpf_cargo() -> anyhow::Result<Command> {
    let toolchain = toolchain::pick_toolchain().map_err(|e| anyhow::anyhow!(e))?;
    let mut cmd = toolchain.cargo();
    toolchain.apply_env(&mut cmd);
    if let toolchain::Toolchain::System { cargo, .. } = &toolchain {
        let clippy = cargo.with_file_name("cargo-clippy");
        if !clippy.exists() {
            bail!(
                "{} has no clippy: apt-get install rust-web-clippy (scripts/setup.sh does)",
                toolchain.describe()
            );
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let bin = cargo.parent().map(|d| d.display().to_string()).unwrap_or_default();
        cmd.env("PATH", format!("{bin}:{path}"));
    }
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    Ok(cmd)
}

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test`, echoing its output and adding up its "test result:" lines.
fn cargo_test(step: &str, cmd: &mut Command, tally: &mut Tally) -> anyhow::Result<bool> {
    eprintln!("xtask: {step}");
    let mut child =
        cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("{step}: cannot start"))?;
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|p| {
                        p.trim().strip_suffix(word).map(|n| {
                            n.trim().rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0)
                        })
                    })
                    .unwrap_or(0)
            };
            tally.passed += num("passed");
            tally.failed += num("failed");
            tally.ignored += num("ignored");
        }
    }
    Ok(child.wait()?.success())
}

fn test(root: &Path, unprivileged: bool) -> anyhow::Result<()> {
    run("format check", cargo().current_dir(root).args(["fmt", "--all", "--", "--check"]))?;
    clippy(root)?;
    let mut tally = Tally::default();
    let mut ok = cargo_test(
        "unit and unprivileged tests",
        cargo().current_dir(root).args([
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "netpol-trace-ebpf",
            "--exclude",
            "netpol-trace-integration",
        ]),
        &mut tally,
    )?;
    if !unprivileged {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            ok &= cargo_test(
                "privileged unit tests (marked `needs root`)",
                cargo().current_dir(root).args([
                    "test",
                    "-p",
                    "netpol-trace",
                    "--lib",
                    "--",
                    "--ignored",
                ]),
                &mut tally,
            )?;
            ok &= cargo_test(
                "privileged integration tests",
                cargo().current_dir(root).args([
                    "test",
                    "--no-fail-fast",
                    "-p",
                    "netpol-trace-integration",
                ]),
                &mut tally,
            )?;
        } else {
            ok &= tests_through_sudo(
                root,
                &["-p", "netpol-trace", "--lib"],
                &["--ignored"],
                &mut tally,
            )?;
            ok &= tests_through_sudo(root, &["-p", "netpol-trace-integration"], &[], &mut tally)?;
        }
    }
    println!("xtask: {} passed, {} failed, {} skipped", tally.passed, tally.failed, tally.ignored);
    if !ok || tally.failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}

/// For a user with sudo: builds the test binaries that `cargo test <select>` would run as that
/// user (the target directory stays theirs), then runs only the binaries as root, with
/// `test_args` (e.g. `--ignored`).
fn tests_through_sudo(
    root: &Path,
    select: &[&str],
    test_args: &[&str],
    tally: &mut Tally,
) -> anyhow::Result<bool> {
    if Command::new("sudo").arg("--version").output().is_err() {
        bail!(
            "the privileged integration tests need root (namespaces, nftables, eBPF) and there is no sudo: run `cargo xtask test` as root, or pass --unprivileged"
        );
    }
    eprintln!("xtask: building the privileged tests ({})", select.join(" "));
    let out = cargo()
        .current_dir(root)
        .arg("test")
        .args(select)
        .arg("--no-run")
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !out.status.success() {
        bail!("building the privileged tests failed ({})", out.status);
    }
    let mut ok = true;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_test = msg["profile"]["test"].as_bool() == Some(true);
        let Some(exe) = msg["executable"].as_str().filter(|_| is_test) else { continue };
        let name = msg["target"]["name"].as_str().unwrap_or(exe);
        let mut cmd = Command::new("sudo");
        cmd.args(["--preserve-env=PATH,RUST_LOG,RUST_BACKTRACE,CI", exe]).args(test_args);
        ok &= cargo_test(&format!("privileged tests: {name} (through sudo)"), &mut cmd, tally)?;
    }
    Ok(ok)
}
