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

use std::{env, path::PathBuf};

const OBJECT: &str = "netpol-trace.bpf.o";
const TARGET: &str = "bpfel-unknown-none";

#[path = "build/toolchain.rs"]
mod toolchain;

use toolchain::pick_toolchain;

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
