//! Logs on stderr as text or JSON; tables styled only when colour is wanted.

use std::process::{Command, Output};

fn doctor(root: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netpol-trace"));
    command
        .args(extra)
        .args(["doctor", "--node-only", "--root"])
        .arg(root)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// `explain` over the fixture plus a ConfigMap, which it ignores with a debug log line.
fn explain_logging(dir: &std::path::Path, extra: &[&str]) -> Output {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql.yaml");
    let configmap = dir.join("configmap.yaml");
    std::fs::write(
        &configmap,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: app}\n",
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .args(extra)
        .args(["--log-level", "debug", "explain", "-f"])
        .arg(fixture)
        .arg("-f")
        .arg(configmap)
        .args(["--from", "app/web-1", "--to", "db/mysql-0", "--port", "3306"])
        .env_remove("RUST_LOG")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap()
}

#[test]
fn json_logs_are_one_object_a_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = explain_logging(dir.path(), &["--log-format", "json"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(stderr.contains("ignoring object of unused kind"), "{stderr}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string() && value["timestamp"].is_string(), "{line}");
    }
    // The results stay on stdout.
    assert!(String::from_utf8(out.stdout).unwrap().contains("db/mysql-0"));
}

#[test]
fn text_logs_are_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = explain_logging(dir.path(), &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let first = stderr.lines().next().expect("no log line at debug level");
    assert!(first.contains("ignoring object of unused kind"), "{stderr}");
    assert!(serde_json::from_str::<serde_json::Value>(first).is_err(), "{first}");
    assert!(!stderr.contains('\x1b'), "colour on a non-terminal stderr: {stderr:?}");
}

#[test]
fn tables_are_plain_off_a_terminal_and_with_no_color() {
    let root = tempfile::tempdir().unwrap();
    let plain = doctor(root.path(), &[], &[]).stdout;
    assert!(!plain.contains(&0x1b), "{}", String::from_utf8_lossy(&plain));
    // Forcing colour shows the styles exist; NO_COLOR wins over the force.
    let forced = doctor(root.path(), &[("CLICOLOR_FORCE", "1")], &[]).stdout;
    assert!(forced.contains(&0x1b), "{}", String::from_utf8_lossy(&forced));
    let refused = doctor(root.path(), &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]).stdout;
    assert!(!refused.contains(&0x1b), "{}", String::from_utf8_lossy(&refused));
    assert_eq!(refused, plain);
}

#[test]
fn with_json_logs_the_final_error_is_json_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .args(["--log-format", "json", "explain", "-f", "/nonexistent/netpol-trace.yaml"])
        .args(["--from", "a/b", "--to", "c/d", "--port", "1"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().expect("an error line");
    let value: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(value["level"], "ERROR", "{last}");
    assert_eq!(value["fields"]["exit_code"], 2, "{last}");
}
