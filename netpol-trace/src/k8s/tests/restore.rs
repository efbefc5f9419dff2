use fake_apiserver::FakeApiServer;
use serde_json::json;

use super::{add_rule_ops, fake_with_policy, within};
use crate::k8s::apply::{ApplyOptions, apply_json_patch, create_policy, delete_policy};
use crate::k8s::restore::{RestoreOutcome, restore};

#[tokio::test]
async fn restore_undoes_patch_create_and_delete() {
    let fake = FakeApiServer::start().await;
    let original = fake_with_policy(&fake);
    fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "old", "namespace": "db", "annotations": {"note": "keep me"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}));
    let client = fake.client();
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::new(dir.path());
    within(apply_json_patch(&client, "db", "mysql-ingress", add_rule_ops(3306), &opts))
        .await
        .unwrap();
    let new = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "db"}, "spec": {"podSelector": {}}});
    within(create_policy(&client, &new, &opts)).await.unwrap();
    within(delete_policy(&client, "db", "old", &opts)).await.unwrap();
    let folder = opts.backup.path().unwrap();

    let dry = within(restore(&client, &folder, true)).await.unwrap();
    assert!(dry.dry_run && dry.restored());
    assert!(fake.get("networkpolicies", "db", "allow-web").is_some(), "dry run changes nothing");
    assert!(fake.get("networkpolicies", "db", "old").is_none());

    let report = within(restore(&client, &folder, false)).await.unwrap();
    let outcomes: Vec<_> = report.objects.iter().map(|i| (i.name.as_str(), i.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            ("old", RestoreOutcome::Recreated),
            ("allow-web", RestoreOutcome::Deleted),
            ("mysql-ingress", RestoreOutcome::Replaced)
        ]
    );
    assert!(report.restored());
    let back = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(back["spec"], original["spec"]);
    assert_eq!(back["metadata"]["labels"], original["metadata"]["labels"]);
    assert!(fake.get("networkpolicies", "db", "allow-web").is_none());
    let old = fake.get("networkpolicies", "db", "old").unwrap();
    assert_eq!(old["metadata"]["annotations"]["note"], "keep me");

    let again = within(restore(&client, &folder, false)).await.unwrap();
    let outcomes: Vec<_> = again.objects.iter().map(|i| i.outcome).collect();
    assert_eq!(
        outcomes,
        [RestoreOutcome::Unchanged, RestoreOutcome::AlreadyAbsent, RestoreOutcome::Unchanged]
    );
}

#[tokio::test]
async fn restore_leaves_a_same_named_stranger_alone_and_reports_refusals() {
    let fake = FakeApiServer::start().await;
    fake_with_policy(&fake);
    let client = fake.client();
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::new(dir.path());
    let new = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "db"}, "spec": {"podSelector": {}}});
    within(create_policy(&client, &new, &opts)).await.unwrap();
    within(apply_json_patch(&client, "db", "mysql-ingress", add_rule_ops(3306), &opts))
        .await
        .unwrap();
    fake.remove("networkpolicies", "db", "allow-web");
    fake.insert(new);
    fake.forbid("update", "networkpolicies");
    let report = within(restore(&client, &opts.backup.path().unwrap(), false)).await.unwrap();
    assert!(!report.restored());
    assert_eq!(report.objects[0].outcome, RestoreOutcome::Failed);
    assert!(
        report.objects[0].detail.starts_with("forbidden: the service account needs update"),
        "{}",
        report.objects[0].detail
    );
    assert_eq!(report.objects[1].outcome, RestoreOutcome::Skipped);
    assert!(fake.get("networkpolicies", "db", "allow-web").is_some());
}

#[tokio::test]
async fn a_folder_without_manifest_is_invalid() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let err = restore(&fake.client(), dir.path(), false).await.unwrap_err();
    assert!(err.to_string().contains("cannot read manifest.json"), "{err}");
}
