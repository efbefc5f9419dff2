//! `netpol-trace explain` as a user runs it: output, exit codes, and errors that name the fault.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql.yaml")
}

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .arg("explain")
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn denied_flow_exits_1_with_the_failing_rule() {
    let f = fixture();
    let out = explain(&[
        "-f",
        f.to_str().unwrap(),
        "--from",
        "app/web-1",
        "--to",
        "db/mysql-0",
        "--port",
        "3306",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("DENY  app/web-1 (10.0.1.5) -> db/mysql-0 (10.0.2.7)  TCP/3306\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  ✗ db/mysql-ingress  ← decides: Deny (no rule matched)\n      ✗ rule 0: ports[0].port: want 3307, got 3306\n"
        ),
        "{text}"
    );
}

#[test]
fn json_output_is_one_object_of_the_contract() {
    let f = fixture();
    let out = explain(&[
        "-f",
        f.to_str().unwrap(),
        "-n",
        "db",
        "--from",
        "10.0.1.5",
        "--to",
        "mysql-0",
        "--port",
        "mysql",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["verdict"], "deny");
    assert_eq!(json["flow"]["src"]["pod"], "web-1");
    assert_eq!(json["flow"]["port"], 3306);
    assert_eq!(json["ingress"]["policies"][0]["rules"][0]["mismatches"][0]["want"], "3307");
}

#[test]
fn allowed_flow_exits_0_and_services_resolve_to_backends() {
    let f = fixture();
    let f = f.to_str().unwrap();
    let out = explain(&[
        "-f",
        f,
        "--from",
        "app/web-1",
        "--to",
        "8.8.8.8",
        "--port",
        "53",
        "--protocol",
        "udp",
        "-o",
        "yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("verdict: allow"));
    let out = explain(&["-f", f, "--from", "app/web-1", "--to", "svc/db/mysql", "--port", "mysql"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(
        "via svc/db/mysql:\nDENY  app/web-1 (10.0.1.5) -> db/mysql-0 (10.0.2.7)  TCP/3306"
    ));
}

#[test]
fn bad_input_exits_2_naming_the_fault() {
    let f = fixture();
    let f = f.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-f", f, "--from", "app/nope", "--to", "db/mysql-0", "--port", "3306"],
            "pod app/nope not found",
        ),
        (
            vec!["-f", f, "--from", "app/web-1", "--to", "svc/db/nope", "--port", "3306"],
            "service db/nope not found",
        ),
        (
            vec!["-f", f, "--from", "app/web-1", "--to", "svc/db/mysql", "--port", "9"],
            "service db/mysql has no TCP port 9",
        ),
        (
            vec!["-f", f, "--from", "app/web-1", "--to", "db/mysql-0", "--port", "http"],
            "port name \"http\" not found on pod db/mysql-0",
        ),
        (vec!["-f", f, "--from", "app/web-1", "--to", "db/mysql-0"], "--port is required"),
        (vec!["-f", f, "--from", "a/b/c", "--to", "db/mysql-0", "--port", "1"], "invalid endpoint"),
        (
            vec!["-f", f, "--from", "app/web-1", "--to", "db/mysql-0", "--port", "70000"],
            "out of range",
        ),
        (
            vec![
                "-f",
                f,
                "--from",
                "app/web-1",
                "--to",
                "db/mysql-0",
                "--port",
                "1",
                "--protocol",
                "icmp",
            ],
            "unsupported protocol",
        ),
        (
            vec!["-f", "/nonexistent/x.yaml", "--from", "a", "--to", "b", "--port", "1"],
            "/nonexistent/x.yaml",
        ),
    ];
    for (args, message) in cases {
        let out = explain(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn invalid_manifests_exit_2_naming_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad_object = dir.path().join("bad-object.yaml");
    std::fs::write(&bad_object, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus: {podIPs: [{ip: [1]}]}\n").unwrap();
    let bad_policy = dir.path().join("bad-policy.yaml");
    std::fs::write(&bad_policy, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: a}\nspec:\n  ingress:\n  - ports: [{port: 80}, {port: 90, endPort: 80}]\n").unwrap();
    let cases = [
        (bad_object, "bad-object.yaml: document 2: Pod a/p: status.podIPs[0].ip: "),
        (
            bad_policy,
            "bad-policy.yaml, document 1: networkpolicy a/np: spec.ingress[0].ports[1].endPort: endPort 80 is below port 90",
        ),
    ];
    for (path, message) in cases {
        let out = explain(&[
            "-f",
            path.to_str().unwrap(),
            "--from",
            "1.1.1.1",
            "--to",
            "2.2.2.2",
            "--port",
            "1",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

#[test]
fn help_shows_a_real_example() {
    let out = explain(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("--from app/web-1 --to db/mysql-0 --port 3306"));
    assert!(text.contains("✗ rule 0: ports[0].port: want 3307, got 3306"));
}
