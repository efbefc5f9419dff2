//! The binary as a kubectl plugin: installed (here: symlinked) as `kubectl-netpol_trace`, it
//! runs and its usage names `kubectl netpol-trace`.

use std::process::Command;

#[test]
fn invoked_as_kubectl_netpol_trace_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-netpol_trace");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_netpol-trace"), &plugin).unwrap();

    let help = Command::new(&plugin).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(text.contains("Usage: kubectl netpol-trace [OPTIONS] <COMMAND>"), "{text}");

    let sub = Command::new(&plugin).args(["explain", "--help"]).output().unwrap();
    let text = String::from_utf8(sub.stdout).unwrap();
    assert!(text.contains("Usage: kubectl netpol-trace explain"), "{text}");

    // Errors name the plugin too, and bad input still exits 2.
    let bad = Command::new(&plugin).arg("explain").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("kubectl netpol-trace explain"));

    let direct = Command::new(env!("CARGO_BIN_EXE_netpol-trace")).arg("--help").output().unwrap();
    assert!(String::from_utf8(direct.stdout).unwrap().contains("Usage: netpol-trace [OPTIONS]"));
}

#[test]
fn the_krew_manifest_installs_the_plugin_file_name() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/krew-netpol-trace.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let manifest: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "netpol-trace");
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for platform in platforms {
        assert_eq!(platform["bin"], netpol_trace::cli::KUBECTL_PLUGIN_BINARY);
        let files = platform["files"].as_array().unwrap();
        assert!(files.iter().any(|f| f["to"] == netpol_trace::cli::KUBECTL_PLUGIN_BINARY));
    }
}
