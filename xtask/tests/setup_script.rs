//! `scripts/setup.sh` on a "fresh machine" made of PATH shims: every system command it may run
//! (`apt-get`, `apt-cache`, `dpkg-query`, `debconf-set-selections`, `sudo`, `id`, `rustup`,
//! `cargo`, `ldd`, Debian's `rustc`, `python3` and the virtualenv's `pip`) is a small script that records its call, so the install
//! path runs here for real, as root and as a user with sudo, without installing anything.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// What the fake machine has.
#[derive(Clone, Copy)]
struct Machine {
    uid: u32,
    /// dpkg reports every package installed (else none).
    all_installed: bool,
    /// `bpf-linker` exists, linked against this LLVM major version.
    bpf_linker_llvm: Option<u32>,
    /// apt knows every package (else none: another distribution).
    apt_knows_packages: bool,
    /// `apt-get` and `dpkg-query` exist at all.
    has_apt: bool,
    /// Tools that stay missing even after their packages are installed.
    missing_tools: &'static [&'static str],
}

impl Machine {
    fn fresh(uid: u32) -> Self {
        Self {
            uid,
            all_installed: false,
            bpf_linker_llvm: None,
            apt_knows_packages: true,
            has_apt: true,
            missing_tools: &[],
        }
    }

    fn ready() -> Self {
        Self { all_installed: true, bpf_linker_llvm: Some(22), ..Self::fresh(0) }
    }
}

struct Run {
    output: Output,
    /// One line per shim call: `<command> <args...>`.
    calls: Vec<String>,
    /// DEBIAN_FRONTEND as `apt-get` saw it, one line per call.
    apt_frontend: Vec<String>,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn calls_of(&self, command: &str) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|c| c.split(' ').next() == Some(command))
            .map(String::as_str)
            .collect()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the real `scripts/setup.sh` on the fake machine.
fn run_setup(machine: Machine) -> Run {
    run_setup_with_env(machine, &[])
}

/// [`run_setup`] with extra environment variables.
fn run_setup_with_env(machine: Machine, extra_env: &[(&str, &str)]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let home = tmp.path().join("home");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&home).unwrap();
    let log = tmp.path().join("calls.log");
    let frontend_log = tmp.path().join("frontend.log");
    let rec = format!("echo \"$(basename \"$0\") $*\" >> '{}'", log.display());

    // The real tools the script needs besides the shims; nothing else of /usr/bin is visible,
    // so a missing shim shows up as "command not found" instead of touching the real system.
    for tool in ["sed", "grep", "head", "env", "cat", "basename", "bash"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    write_script(
        &bin,
        "id",
        &format!("{rec}\n[ \"$1\" = -u ] && echo {} || echo uid={}", machine.uid, machine.uid),
    );
    write_script(&bin, "sudo", &format!("{rec}\nexec \"$@\""));
    if machine.has_apt {
        write_script(
            &bin,
            "apt-get",
            &format!("{rec}\necho \"${{DEBIAN_FRONTEND:-unset}}\" >> '{}'", frontend_log.display()),
        );
        let candidate = if machine.apt_knows_packages { "1.0-1" } else { "(none)" };
        write_script(
            &bin,
            "apt-cache",
            &format!(
                "{rec}\necho \"$2:\"; echo '  Installed: (none)'; echo '  Candidate: {candidate}'"
            ),
        );
        let dpkg = if machine.all_installed {
            "printf 'install ok installed'".to_string()
        } else {
            "echo \"dpkg-query: no packages found matching ${@: -1}\" >&2; exit 1".to_string()
        };
        write_script(&bin, "dpkg-query", &format!("{rec}\n{dpkg}"));
        write_script(&bin, "debconf-set-selections", &format!("{rec}\ncat > /dev/null"));
    }
    // The tools the packages bring; the script checks they are found once installed.
    for tool in
        ["ip", "nft", "iptables", "bpftool", "tshark", "mariadb-install-db", "mariadb", "chromium"]
    {
        if !machine.missing_tools.contains(&tool) {
            write_script(&bin, tool, &rec);
        }
    }
    // `python3 -m venv DIR` makes a virtualenv whose `pip install` makes the import work; a
    // ready machine has it already.
    let venv_body = format!(
        r#"{rec}
[ "$1 $2" = '-m venv' ] || exit 1
/bin/mkdir -p "$3/bin"
printf '#!/bin/bash\nexit 1\n' > "$3/bin/python"
cat > "$3/bin/pip" <<PIP
#!/bin/bash
echo "pip \$*" >> '{log}'
printf '#!/bin/bash\\nexit 0\\n' > "$3/bin/python"
PIP
/bin/chmod +x "$3/bin/python" "$3/bin/pip""#,
        log = log.display()
    );
    write_script(&bin, "python3", &venv_body);
    if machine.all_installed {
        let venv_bin = home.join(".cache/netpol-trace/helm-venv/bin");
        fs::create_dir_all(&venv_bin).unwrap();
        write_script(&venv_bin, "python", "exit 0");
    }
    // rustup's nightly has no rust-src here: the Debian toolchain path.
    write_script(
        &bin,
        "rustup",
        &format!(
            "{rec}\n[ \"$1 $3\" = 'run rustc' ] && echo /nonexistent/sysroot && exit 0; exit 1"
        ),
    );
    write_script(&bin, "cargo", &format!("{rec}\n[ \"$1\" = fmt ] && echo rustfmt 1.9.0; exit 0"));
    let rustc = bin.join("debian-rustc");
    write_script(
        &bin,
        "debian-rustc",
        &format!("{rec}\necho 'rustc 1.96.0'; echo 'LLVM version: 22.1.8'"),
    );
    if let Some(llvm) = machine.bpf_linker_llvm {
        write_script(&bin, "bpf-linker", &format!("{rec}\necho 'bpf-linker 0.13.0'"));
        write_script(
            &bin,
            "ldd",
            &format!(
                "{rec}\necho \"\tlibLLVM.so.{llvm}.1 => /usr/lib/llvm-{llvm}/lib/libLLVM.so.{llvm}.1\""
            ),
        );
    }

    let output = Command::new("/bin/bash")
        .arg(repo_root().join("scripts/setup.sh"))
        .env_clear()
        .env("PATH", &bin)
        .env("HOME", &home)
        .env("NETPOL_TRACE_SYSTEM_RUSTC", &rustc)
        .envs(extra_env.iter().copied())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let read = |p: &Path| -> Vec<String> {
        fs::read_to_string(p).unwrap_or_default().lines().map(str::to_owned).collect()
    };
    Run { output, calls: read(&log), apt_frontend: read(&frontend_log) }
}

fn assert_success(run: &Run) {
    assert!(
        run.output.status.success(),
        "setup.sh failed ({}):\n{}\ncalls:\n{}",
        run.output.status,
        run.stderr(),
        run.calls.join("\n")
    );
}

fn assert_fresh_install(run: &Run) {
    assert_success(run);
    let installs: Vec<_> =
        run.calls_of("apt-get").into_iter().filter(|c| c.contains(" install ")).collect();
    let all = installs.join(" ");
    for package in ["nftables", "iproute2", "bpftool", "mariadb-server", "rustc-web", "llvm-22-dev"]
    {
        assert!(all.contains(package), "{package} not installed: {installs:?}");
    }
    assert!(run.calls_of("apt-get").iter().any(|c| c.contains(" update")), "no apt-get update");
    assert!(
        run.apt_frontend.iter().all(|f| f == "noninteractive"),
        "apt-get ran without DEBIAN_FRONTEND=noninteractive: {:?}",
        run.apt_frontend
    );
    let builds: Vec<_> =
        run.calls_of("cargo").into_iter().filter(|c| c.contains("install")).collect();
    assert_eq!(builds.len(), 1, "bpf-linker built once: {builds:?}");
    for flag in ["bpf-linker", "--locked", "--features llvm-22", "--no-default-features"] {
        assert!(builds[0].contains(flag), "{flag} missing in {}", builds[0]);
    }
    assert!(all.contains("python3-venv"), "python3-venv not installed: {installs:?}");
    let pips = run.calls_of("pip");
    assert!(
        pips.len() == 1 && pips[0].contains("install") && pips[0].contains("helm-python-sdk=="),
        "Helm's template engine installed once, pinned: {pips:?}"
    );
}

#[test]
fn fresh_machine_as_root_installs_without_sudo() {
    let run = run_setup(Machine::fresh(0));
    assert_fresh_install(&run);
    assert!(run.calls_of("sudo").is_empty(), "root must not use sudo: {:?}", run.calls);
}

#[test]
fn fresh_machine_as_user_installs_through_sudo() {
    let run = run_setup(Machine::fresh(1000));
    assert_fresh_install(&run);
    let sudo = run.calls_of("sudo");
    assert!(
        sudo.iter().any(|c| c.contains("env DEBIAN_FRONTEND=noninteractive")
            && c.contains("apt-get")
            && c.contains(" install ")),
        "apt-get install not run through sudo with the frontend kept: {sudo:?}"
    );
    assert!(sudo.iter().any(|c| c.contains("debconf-set-selections")), "{sudo:?}");
    // The toolchain is the user's own: bpf-linker is not built as root.
    assert!(!sudo.iter().any(|c| c.starts_with("sudo cargo")), "{sudo:?}");
}

#[test]
fn ready_machine_changes_nothing() {
    let run = run_setup(Machine::ready());
    assert_success(&run);
    assert!(run.calls_of("apt-get").is_empty(), "apt-get called: {:?}", run.calls);
    assert!(
        !run.calls_of("cargo").iter().any(|c| c.contains("install")),
        "bpf-linker rebuilt: {:?}",
        run.calls
    );
    assert!(run.stderr().contains("built for LLVM 22"), "{}", run.stderr());
    assert!(
        run.calls_of("python3").is_empty() && run.calls_of("pip").is_empty(),
        "the Helm template engine reinstalled: {:?}",
        run.calls
    );
}

#[test]
fn bpf_linker_for_another_llvm_is_rebuilt_with_a_warning() {
    let run = run_setup(Machine { bpf_linker_llvm: Some(21), ..Machine::ready() });
    assert_success(&run);
    assert!(
        run.stderr().contains("built for LLVM 21 but the eBPF toolchain uses LLVM 22"),
        "{}",
        run.stderr()
    );
    assert!(
        run.calls_of("cargo").iter().any(|c| c.contains("install") && c.contains("llvm-22")),
        "{:?}",
        run.calls
    );
}

#[test]
fn quiet_mode_prints_nothing_on_success() {
    let run = run_setup_with_env(Machine::ready(), &[("NETPOL_TRACE_SETUP_QUIET", "1")]);
    assert_success(&run);
    assert_eq!(run.stderr(), "", "quiet mode printed something");
}

#[test]
fn refuses_a_system_without_apt() {
    let run = run_setup(Machine { has_apt: false, ..Machine::fresh(0) });
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("no apt-get"), "{}", run.stderr());
    assert!(run.stderr().contains("nftables"), "names what to install: {}", run.stderr());
}

#[test]
fn refuses_a_distribution_without_the_packages() {
    let run = run_setup(Machine { apt_knows_packages: false, ..Machine::fresh(0) });
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("apt has no package named"), "{}", run.stderr());
    assert!(
        !run.calls_of("apt-get").iter().any(|c| c.contains(" install ")),
        "installed something anyway: {:?}",
        run.calls
    );
}

#[test]
fn names_a_tool_still_missing_after_the_install() {
    let run = run_setup(Machine { missing_tools: &["chromium"], ..Machine::ready() });
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("chromium (package chromium)"), "{}", run.stderr());
}

#[test]
fn shellcheck_is_clean() {
    let Ok(out) = Command::new("shellcheck").arg("--version").output() else {
        // scripts/setup.sh installs shellcheck; without it there is nothing to check.
        eprintln!("WARNING: shellcheck not installed (scripts/setup.sh installs it): not checked");
        return;
    };
    assert!(out.status.success());
    let scripts: Vec<PathBuf> = fs::read_dir(repo_root().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
