//! Builds the kernel programs (`netpol-trace-ebpf`) for `bpfel-unknown-none` and hands the
//! object to the crate as `$OUT_DIR/netpol-trace.bpf.o`, embedded by `src/datapath/object.rs`.
//!
//! Toolchains, tried in this order (the first that is complete wins):
//! 1. `NETPOL_TRACE_EBPF_TOOLCHAIN=<rustup toolchain>` or `=system` (explicit choice);
//! 2. the standard aya set-up: rustup's `nightly` with the `rust-src` component;
//! 3. a system Rust with its library source (Debian's `rustc-web` + `rust-web-src`:
//!    `/usr/bin/rustc`, `/usr/lib/rustlib/src/rust/library`), used with `RUSTC_BOOTSTRAP=1`.
//!
//! All need `bpf-linker` built against the same LLVM major version as that rustc.
//! `NETPOL_TRACE_SKIP_EBPF=1` embeds an empty object instead, so `cargo check`, clippy and
//! the unprivileged tests work without any of this; the binary then refuses to trace.
//! `NETPOL_TRACE_EBPF_OBJECT=PATH` embeds a prebuilt object (container builds).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const OBJECT: &str = "netpol-trace.bpf.o";
const TARGET: &str = "bpfel-unknown-none";

fn main() {
    for var in [
        "NETPOL_TRACE_SKIP_EBPF",
        "NETPOL_TRACE_EBPF_TOOLCHAIN",
        "NETPOL_TRACE_EBPF_OBJECT",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for dir in ["netpol-trace-ebpf/src", "netpol-trace-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("netpol-trace-ebpf/Cargo.toml").display());

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let dest = out_dir.join(OBJECT);

    if env::var("NETPOL_TRACE_SKIP_EBPF").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&dest, b"").unwrap();
        println!(
            "cargo:warning=NETPOL_TRACE_SKIP_EBPF is set: the kernel programs are not built; trace/agent/lab will refuse to run"
        );
        return;
    }
    if let Ok(prebuilt) = env::var("NETPOL_TRACE_EBPF_OBJECT") {
        println!("cargo:rerun-if-changed={prebuilt}");
        std::fs::copy(&prebuilt, &dest)
            .unwrap_or_else(|e| fail(&format!("NETPOL_TRACE_EBPF_OBJECT={prebuilt}: {e}")));
        return;
    }

    let linker = find_in_path("bpf-linker").unwrap_or_else(|| {
        fail("bpf-linker was not found on PATH or in ~/.cargo/bin.\n\
              Install it with the LLVM your eBPF rustc uses, e.g. on Debian 12 with rustc-web (LLVM 22):\n  \
              apt-get install llvm-22-dev && LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22\n\
              or run scripts/setup.sh, or set NETPOL_TRACE_SKIP_EBPF=1 to build without the kernel programs.")
    });
    let toolchain = pick_toolchain().unwrap_or_else(|why| fail(&why));

    // Shared by debug and release builds of the user side: target/bpf.
    let target_dir =
        out_dir.ancestors().nth(4).map(|t| t.join("bpf")).unwrap_or_else(|| out_dir.join("bpf"));

    let mut cmd = toolchain.cargo();
    cmd.current_dir(&root)
        .args(["build", "--release", "-p", "netpol-trace-ebpf", "--target", TARGET])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir);
    // Inherit nothing of the outer build's compiler settings.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTUP_TOOLCHAIN"
            || key == "RUSTFLAGS"
        {
            cmd.env_remove(&key);
        }
    }
    toolchain.apply_env(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![linker.parent().unwrap().to_path_buf()];
    dirs.extend(env::split_paths(&path));
    cmd.env("PATH", env::join_paths(dirs).unwrap());

    let status = cmd.status().unwrap_or_else(|e| {
        fail(&format!("running {} for the eBPF build: {e}", toolchain.describe()))
    });
    if !status.success() {
        fail(&format!(
            "building netpol-trace-ebpf with {} failed ({status})",
            toolchain.describe()
        ));
    }
    let built = target_dir.join(TARGET).join("release").join("netpol-trace");
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| fail(&format!("copying {}: {e}", built.display())));
}

enum Toolchain {
    /// A rustup toolchain with rust-src (`cargo +NAME`).
    Rustup(String),
    /// A system Rust (`/usr/bin/cargo`, `/usr/bin/rustc`) with library source, unlocked with
    /// RUSTC_BOOTSTRAP for `-Z build-std`.
    System { cargo: PathBuf, rustc: PathBuf },
}

impl Toolchain {
    fn cargo(&self) -> Command {
        match self {
            Self::Rustup(name) => {
                let mut c = Command::new("rustup");
                c.args(["run", name, "cargo"]);
                c
            }
            Self::System { cargo, .. } => Command::new(cargo),
        }
    }

    fn apply_env(&self, cmd: &mut Command) {
        if let Self::System { rustc, .. } = self {
            cmd.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Rustup(name) => format!("rustup toolchain `{name}`"),
            Self::System { rustc, .. } => format!("{} (RUSTC_BOOTSTRAP=1)", rustc.display()),
        }
    }
}

fn pick_toolchain() -> Result<Toolchain, String> {
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

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(bin)).find(|p| p.is_file())
}

fn fail(msg: &str) -> ! {
    eprintln!("\nnetpol-trace: cannot build the eBPF programs:\n{msg}\n");
    panic!("eBPF build failed (see above)");
}
