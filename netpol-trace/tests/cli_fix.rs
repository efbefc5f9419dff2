//! `netpol-trace fix` as a user runs it on manifest files: exit codes, the `-o json` contract,
//! kubectl commands that survive a shell, `--apply` writing the files with backups (and
//! `explain` agreeing afterwards), `--dry-run` writing nothing, and the delete fallback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const WEB: &str = "app/web-7d9f8b6c5-x2k4q";

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn netpol_trace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .args(args)
        .env_remove("NETPOL_TRACE_LOG")
        .output()
        .expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A writable copy of a scenario folder.
fn copy_scenario(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(scenario(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn web_to_mysql<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["fix", "-f", dir, "--from", WEB, "--to", "db/mysql-0", "--port", "3306"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn json_output_follows_the_contract() {
    // The policy as a cluster would hand it out, with a resourceVersion to guard the patch.
    let copy = copy_scenario("port-typo");
    let policy = copy.path().join("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let versioned =
        text.replace("  namespace: db\n", "  namespace: db\n  resourceVersion: \"4711\"\n");
    assert_ne!(versioned, text);
    std::fs::write(&policy, versioned).unwrap();
    let dir = copy.path();
    let out = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &["-o", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["flow"]["src"]["pod"], "web-7d9f8b6c5-x2k4q");
    assert_eq!(json["flow"]["port"], 3306);
    assert_eq!(
        (json["verdict_before"].as_str(), json["verdict_after"].as_str()),
        (Some("deny"), Some("allow"))
    );
    let patch = &json["patches"][0];
    for (field, want) in [
        ("namespace", "db"),
        ("name", "mysql-ingress"),
        ("direction", "ingress"),
        ("action", "patch"),
    ] {
        assert_eq!(patch[field], want, "{field}");
    }
    assert_eq!(patch["json_patch"][0]["op"], "test");
    assert_eq!(patch["json_patch"][1]["path"], "/spec/ingress/0/ports/-");
    assert!(
        patch["kubectl"]
            .as_str()
            .unwrap()
            .starts_with("kubectl patch networkpolicy -n db mysql-ingress --type=json -p '")
    );
    assert_eq!(
        patch["newly_allowed"],
        serde_json::json!([{"from": WEB, "to": "db/mysql-0", "port": 3306, "protocol": "TCP"}])
    );
    assert!(patch.get("object").is_none());

    let dir = scenario("egress-default-deny");
    let out = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &["-o", "json"]));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let patch = &json["patches"][0];
    assert_eq!(
        (patch["action"].as_str(), patch["direction"].as_str()),
        (Some("create"), Some("egress"))
    );
    assert_eq!(patch["object"]["kind"], "NetworkPolicy");
    assert!(patch.get("json_patch").is_none());
}

#[test]
fn table_shows_verdicts_added_lines_blast_radius_and_hint() {
    let dir = scenario("port-typo");
    let out = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "DENY -> ALLOW  {WEB} (10.244.1.5) -> db/mysql-0 (10.244.2.7)  TCP/3306\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("    spec.ingress[0].ports:\n  +   - protocol: TCP\n  +     port: 3306\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  newly allowed (1):\n    {WEB} -> db/mysql-0 TCP/3306\n")),
        "{text}"
    );
    assert!(
        text.contains(
            "  hint: rule 0 allows 3307; the destination declares 3306 (mysql) — a typo?\n"
        ),
        "{text}"
    );
}

#[test]
fn kubectl_commands_survive_a_shell() {
    for (name, want_create) in [("cross-namespace", false), ("egress-default-deny", true)] {
        let dir = scenario(name);
        let out = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &["-o", "kubectl"]));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &["-o", "json"]));
        let plan: Value = serde_json::from_str(&stdout(&json)).unwrap();
        // A stand-in kubectl prints what it receives: the -p argument, or the heredoc.
        let script = format!(
            "kubectl() {{ if [ \"$1\" = patch ]; then printf '%s' \"$8\"; else cat; fi; }}\n{}",
            stdout(&out)
        );
        let shell = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(shell.status.success(), "{}", String::from_utf8_lossy(&shell.stderr));
        let received = String::from_utf8(shell.stdout).unwrap();
        if want_create {
            let object: Value = serde_yaml_ng::from_str(&received).unwrap();
            assert_eq!(object, plan["patches"][0]["object"], "{name}");
        } else {
            let ops: Value = serde_json::from_str(&received).unwrap();
            assert_eq!(ops, plan["patches"][0]["json_patch"], "{name}");
        }
    }
}

#[test]
fn yaml_output_is_the_corrected_policy_ready_for_apply() {
    let dir = scenario("no-ingress-list");
    let out = netpol_trace(&web_to_mysql(dir.to_str().unwrap(), &["-o", "yaml"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let policy: Value = serde_yaml_ng::from_str(&stdout(&out)).unwrap();
    assert_eq!(policy["metadata"]["name"], "mysql-ingress");
    assert_eq!(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"], "web");
    // The corrected policy, fed back as a manifest, allows the flow.
    let fixed = tempfile::tempdir().unwrap();
    for file in ["namespaces.yaml", "pods.yaml"] {
        std::fs::copy(dir.join(file), fixed.path().join(file)).unwrap();
    }
    std::fs::write(fixed.path().join("policy.yaml"), stdout(&out)).unwrap();
    let args = [
        "explain",
        "-f",
        fixed.path().to_str().unwrap(),
        "--from",
        WEB,
        "--to",
        "db/mysql-0",
        "--port",
        "3306",
    ];
    assert_eq!(netpol_trace(&args).status.code(), Some(0));
}

#[test]
fn apply_writes_the_files_with_backups_and_explain_agrees() {
    for name in ["port-typo", "cross-namespace", "no-ingress-list", "egress-default-deny"] {
        let dir = copy_scenario(name);
        let path = dir.path().to_str().unwrap();
        let explain =
            ["explain", "-f", path, "--from", WEB, "--to", "db/mysql-0", "--port", "3306"];
        assert_eq!(netpol_trace(&explain).status.code(), Some(1), "{name}: denied before");
        let before = std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap();

        let out = netpol_trace(&web_to_mysql(path, &["--apply"]));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let after = std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap();
        assert_ne!(after, before, "{name}: policy.yaml changed");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pods.yaml")).unwrap(),
            std::fs::read_to_string(scenario(name).join("pods.yaml")).unwrap()
        );
        let names = files(dir.path());
        let backup = names
            .iter()
            .find(|n| n.starts_with("policy.yaml.netpol-trace-") && n.ends_with(".bak"));
        let backup = backup.unwrap_or_else(|| panic!("{name}: no backup in {names:?}"));
        assert_eq!(std::fs::read_to_string(dir.path().join(backup)).unwrap(), before, "{name}");
        assert!(stderr(&out).contains("undo: netpol-trace restore"), "{}", stderr(&out));

        let out = netpol_trace(&explain);
        assert_eq!(out.status.code(), Some(0), "{name}: allowed after --apply\n{}", stdout(&out));
        // Running fix again finds nothing to do.
        let again = netpol_trace(&web_to_mysql(path, &["-o", "json"]));
        assert_eq!(again.status.code(), Some(0));
        let plan: Value = serde_json::from_str(&stdout(&again)).unwrap();
        assert_eq!(plan["patches"], serde_json::json!([]), "{name}");
        assert_eq!(plan["verdict_before"], "allow");

        // And restore puts the file back.
        let restore = netpol_trace(&["restore", dir.path().join(backup).to_str().unwrap()]);
        assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
        assert_eq!(std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap(), before);
    }
}

#[test]
fn dry_run_writes_nothing() {
    let dir = copy_scenario("egress-default-deny");
    let before = files(dir.path());
    let policy = std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap();
    let out = netpol_trace(&web_to_mysql(
        dir.path().to_str().unwrap(),
        &["--apply", "--dry-run", "-o", "json"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["applied"]["dry_run"], true);
    assert_eq!(json["applied"]["files"][0]["backup"], Value::Null);
    assert!(
        stderr(&out).contains("dry run: would write networkpolicy app/allow-web-to-mysql-3306 to "),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(dir.path()), before);
    assert_eq!(std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap(), policy);
}

const EXCEPT: &str = "
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec: {containers: [{name: db, ports: [{containerPort: 6379}]}]}
status: {podIP: 10.9.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}}], ports: [{port: 6379}]}]
";

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(&file, EXCEPT).unwrap();
    let f = file.to_str().unwrap();
    let flow = ["fix", "-f", f, "--from", "172.17.1.5", "--to", "default/db", "--port", "6379"];

    // 1: no safe patch, with the reason.
    let out = netpol_trace(&[&flow[..], &["-o", "json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (json["verdict_before"].as_str(), json["verdict_after"].as_str()),
        (Some("deny"), Some("deny"))
    );
    assert_eq!(json["patches"], serde_json::json!([]));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("172.17.1.5 is excluded on purpose by except 172.17.1.0/24")
    );
    assert!(stderr(&out).starts_with("error: no safe patch: 172.17.1.5 is excluded on purpose"));

    // 0: nothing to do.
    let out = netpol_trace(&[
        "fix",
        "-f",
        f,
        "--from",
        "172.17.9.9",
        "--to",
        "default/db",
        "--port",
        "6379",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to do: the flow is already allowed"),
        "{}",
        stdout(&out)
    );

    // 2: bad input, and the fallback without --yes.
    for args in [
        vec!["fix", "-f", f, "--from", "default/nope", "--to", "default/db", "--port", "6379"],
        vec!["fix", "-f", "/nonexistent.yaml", "--from", "a/b", "--to", "c/d", "--port", "1"],
        [&flow[..], &["--fallback", "delete-policy"]].concat(),
    ] {
        let out = netpol_trace(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = netpol_trace(&[&flow[..], &["--fallback", "delete-policy"]].concat());
    assert!(stderr(&out).contains("add --yes to confirm"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), EXCEPT);
}

#[test]
fn fallback_deletes_the_denying_policy_after_a_backup_and_a_loud_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(&file, EXCEPT).unwrap();
    let f = file.to_str().unwrap();
    let args = [
        "fix",
        "-f",
        f,
        "--from",
        "172.17.1.5",
        "--to",
        "default/db",
        "--port",
        "6379",
        "--fallback",
        "delete-policy",
        "--yes",
        "--apply",
        "-o",
        "json",
    ];
    let out = netpol_trace(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("WARNING: DELETING networkpolicy default/db"),
        "{}",
        stderr(&out)
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["patches"][0]["action"], "delete");
    assert_eq!(json["verdict_after"], "allow");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("NetworkPolicy"));
    let backups: Vec<String> =
        files(dir.path()).into_iter().filter(|n| n.ends_with(".bak")).collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(dir.path().join(&backups[0])).unwrap(), EXCEPT);
}
