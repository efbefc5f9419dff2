//! Which toolchain builds the eBPF programs: shared by `build.rs` (building them) and xtask
//! (clippy for the bpf target), so both honour `NETPOL_TRACE_EBPF_TOOLCHAIN` the same way.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Rust toolchain that can build for the bpf target (`-Z build-std=core`).
pub enum Toolchain {
    /// A rustup toolchain with rust-src (`cargo +NAME`).
    Rustup(String),
    /// A system Rust (`/usr/bin/cargo`, `/usr/bin/rustc`) with library source, unlocked with
    /// RUSTC_BOOTSTRAP for `-Z build-std`.
    System {
        /// `/usr/bin/cargo`.
        cargo: PathBuf,
        /// `/usr/bin/rustc`.
        rustc: PathBuf,
    },
}

impl Toolchain {
    /// Cargo of this toolchain.
    pub fn cargo(&self) -> Command {
        match self {
            Self::Rustup(name) => {
                let mut c = Command::new("rustup");
                c.args(["run", name, "cargo"]);
                c
            }
            Self::System { cargo, .. } => Command::new(cargo),
        }
    }

    /// The environment cargo needs for it (the system compiler, unlocked).
    pub fn apply_env(&self, cmd: &mut Command) {
        if let Self::System { rustc, .. } = self {
            cmd.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Rustup(name) => format!("rustup toolchain `{name}`"),
            Self::System { rustc, .. } => format!("{} (RUSTC_BOOTSTRAP=1)", rustc.display()),
        }
    }
}

/// `NETPOL_TRACE_EBPF_TOOLCHAIN` when set (a rustup toolchain name or `system`), else
/// rustup's `nightly` with rust-src (the standard aya set-up), else the system Rust with its
/// library source (Debian's rustc-web); the error says what to install.
pub fn pick_toolchain() -> Result<Toolchain, String> {
    let system = system_toolchain();
    match env::var("NETPOL_TRACE_EBPF_TOOLCHAIN").ok().as_deref() {
        Some("system") => return system.ok_or_else(|| "NETPOL_TRACE_EBPF_TOOLCHAIN=system, but /usr/bin/rustc with /usr/lib/rustlib/src/rust/library was not found (apt-get install rustc-web cargo-web rust-web-src)".into()),
        Some(name) if !name.is_empty() => {
            return if rustup_has_rust_src(name) {
                Ok(Toolchain::Rustup(name.into()))
            } else {
                Err(format!("NETPOL_TRACE_EBPF_TOOLCHAIN={name}: that rustup toolchain is missing or has no rust-src (rustup component add rust-src --toolchain {name})"))
            };
        }
        _ => {}
    }
    if rustup_has_rust_src("nightly") {
        return Ok(Toolchain::Rustup("nightly".into()));
    }
    system.ok_or_else(|| {
        "no Rust toolchain can build the eBPF programs (they need `-Z build-std=core`, hence library source).\n\
         Either the standard aya set-up:  rustup toolchain install nightly --component rust-src\n\
         or, on Debian 12:               apt-get install rustc-web cargo-web rust-web-src llvm-22-dev\n\
         (scripts/setup.sh does the latter), or set NETPOL_TRACE_SKIP_EBPF=1 to build without them."
            .into()
    })
}

fn rustup_has_rust_src(toolchain: &str) -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .output()
    else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").exists()
}

fn system_toolchain() -> Option<Toolchain> {
    let rustc = PathBuf::from("/usr/bin/rustc");
    let cargo = PathBuf::from("/usr/bin/cargo");
    let src = Path::new("/usr/lib/rustlib/src/rust/library/core/Cargo.toml");
    // /usr/bin/rustc may be rustup's proxy on some systems; require the real library source.
    (rustc.exists() && cargo.exists() && src.exists()).then_some(Toolchain::System { cargo, rustc })
}
