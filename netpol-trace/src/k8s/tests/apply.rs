use fake_apiserver::FakeApiServer;
use serde_json::json;

use super::{add_rule_ops, fake_with_policy, within};
use crate::k8s::apply::{ApplyOptions, apply_json_patch, create_policy, delete_policy};
use crate::k8s::backup::{self, BackupAction, MANIFEST_FILE};
use crate::k8s::error::Error;

#[tokio::test]
async fn patch_is_backed_up_dry_run_first_and_guarded() {
    let fake = FakeApiServer::start().await;
    let before = fake_with_policy(&fake);
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::new(dir.path());
    let report =
        within(apply_json_patch(&fake.client(), "db", "mysql-ingress", add_rule_ops(3306), &opts))
            .await
            .unwrap();
    assert!(!report.retried && !report.dry_run);
    let stored = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(stored["spec"]["ingress"][1]["ports"][0]["port"], 3306);
    assert_eq!(
        report.resource_version_after.as_deref(),
        stored["metadata"]["resourceVersion"].as_str()
    );

    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert!(patches[0].is_dry_run() && !patches[1].is_dry_run(), "dry run comes first");
    let guard = &patches[1].body.as_ref().unwrap()[0];
    assert_eq!(
        guard,
        &json!({"op": "test", "path": "/metadata/resourceVersion",
                               "value": before["metadata"]["resourceVersion"]})
    );

    let folder = report.backup.unwrap();
    assert!(folder.starts_with(dir.path()));
    let manifest = backup::read_manifest(&folder).unwrap();
    assert_eq!(manifest.objects.len(), 1);
    let entry = &manifest.objects[0];
    assert_eq!(
        (entry.action, entry.applied, entry.file.as_str()),
        (BackupAction::Patch, true, "db__mysql-ingress.yaml")
    );
    assert_eq!(entry.resource_version.as_deref(), before["metadata"]["resourceVersion"].as_str());
    assert_eq!(backup::read_object(&folder, entry).unwrap(), before);
    assert!(folder.join(MANIFEST_FILE).is_file());
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let fake = FakeApiServer::start().await;
    let before = fake_with_policy(&fake);
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::dry_run(dir.path().join("backups"));
    let report =
        within(apply_json_patch(&fake.client(), "db", "mysql-ingress", add_rule_ops(3306), &opts))
            .await
            .unwrap();
    assert!(report.dry_run && report.backup.is_none());
    assert_eq!(report.object["spec"]["ingress"][1]["ports"][0]["port"], 3306);
    assert_eq!(fake.get("networkpolicies", "db", "mysql-ingress").unwrap(), before);
    assert!(!dir.path().join("backups").exists());
    assert!(fake.requests().iter().filter(|r| r.method != "GET").all(|r| r.is_dry_run()));
}

#[tokio::test]
async fn lost_race_is_retried_once_when_the_patch_still_applies() {
    let fake = FakeApiServer::start().await;
    fake_with_policy(&fake);
    fake.write_before_next("patch", "networkpolicies", "db", "mysql-ingress", |o| {
        o["metadata"]["labels"]["other"] = json!("writer");
    });
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::new(dir.path());
    let report =
        within(apply_json_patch(&fake.client(), "db", "mysql-ingress", add_rule_ops(3306), &opts))
            .await
            .unwrap();
    assert!(report.retried);
    let stored = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(stored["metadata"]["labels"]["other"], "writer", "the other write is kept");
    assert_eq!(stored["spec"]["ingress"].as_array().unwrap().len(), 2);
    let manifest = backup::read_manifest(&report.backup.unwrap()).unwrap();
    assert_eq!(manifest.objects[0].resource_version, report.resource_version_before);
}

#[tokio::test]
async fn lost_race_stops_when_the_patch_no_longer_applies() {
    let fake = FakeApiServer::start().await;
    fake_with_policy(&fake);
    let replace_second_rule: Vec<json_patch::PatchOperation> = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/ingress/1/ports/0/port", "value": 3306}]))
    .unwrap();
    fake.modify("networkpolicies", "db", "mysql-ingress", |o| {
        o["spec"]["ingress"] = json!([{"ports": [{"port": 1}]}, {"ports": [{"port": 2}]}]);
    });
    fake.write_before_next("patch", "networkpolicies", "db", "mysql-ingress", |o| {
        o["spec"]["ingress"] = json!([{"ports": [{"port": 1}]}]);
    });
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::new(dir.path());
    let err =
        within(apply_json_patch(&fake.client(), "db", "mysql-ingress", replace_second_rule, &opts))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::ConcurrentChange { .. }), "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    let stored = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(stored["spec"]["ingress"], json!([{"ports": [{"port": 1}]}]));
}

#[tokio::test]
async fn forbidden_and_invalid_are_clear() {
    let fake = FakeApiServer::start().await;
    let before = fake_with_policy(&fake);
    let dir = tempfile::tempdir().unwrap();
    let client = fake.client();
    fake.forbid("patch", "networkpolicies");
    let opts = ApplyOptions::new(dir.path());
    let err = within(apply_json_patch(&client, "db", "mysql-ingress", add_rule_ops(3306), &opts))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "forbidden: the service account needs patch on networkpolicies in namespace db (see the roles in deploy/)"
        ),
        "{err}"
    );
    fake.allow_all();
    let err = within(apply_json_patch(&client, "db", "mysql-ingress", add_rule_ops(70000), &opts))
        .await
        .unwrap_err();
    assert_eq!(err.status_code(), Some(422));
    assert!(
        err.to_string().starts_with("networkpolicy db/mysql-ingress rejected as invalid:"),
        "{err}"
    );
    assert_eq!(fake.get("networkpolicies", "db", "mysql-ingress").unwrap(), before);

    let missing =
        within(apply_json_patch(&client, "db", "nope", add_rule_ops(1), &opts)).await.unwrap_err();
    assert_eq!(
        missing.to_string(),
        "networkpolicy db/nope not found (networkpolicies.networking.k8s.io \"nope\" not found)"
    );
    let bad_path: Vec<json_patch::PatchOperation> =
        serde_json::from_value(json!([{"op": "remove", "path": "/spec/egress/0"}])).unwrap();
    let err = within(apply_json_patch(&client, "db", "mysql-ingress", bad_path, &opts))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PatchDoesNotApply { .. }), "{err}");
}

#[tokio::test]
async fn create_and_delete_are_recorded() {
    let fake = FakeApiServer::start().await;
    fake_with_policy(&fake);
    let dir = tempfile::tempdir().unwrap();
    let client = fake.client();
    let opts = ApplyOptions::new(dir.path());
    let new = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                 "ingress": [{"ports": [{"port": 3306}]}]}});
    let created = within(create_policy(&client, &new, &opts)).await.unwrap();
    assert_eq!(created.action, BackupAction::Create);
    let deleted = within(delete_policy(&client, "db", "mysql-ingress", &opts)).await.unwrap();
    assert_eq!(deleted.backup, created.backup);
    assert!(fake.get("networkpolicies", "db", "mysql-ingress").is_none());
    let manifest = backup::read_manifest(&created.backup.unwrap()).unwrap();
    let actions: Vec<_> =
        manifest.objects.iter().map(|e| (e.name.as_str(), e.action, e.applied)).collect();
    assert_eq!(
        actions,
        [("allow-web", BackupAction::Create, true), ("mysql-ingress", BackupAction::Delete, true)]
    );
    assert!(manifest.objects[0].uid.is_some());

    let dup = within(create_policy(&client, &new, &opts)).await.unwrap_err();
    assert_eq!(dup.status_code(), Some(409));
}
