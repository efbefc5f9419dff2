//! Loading: file kinds, List, directories, and errors that name file, document and field.

use std::fs;

use super::*;

fn parse(text: &str, syntax: Syntax) -> Result<ClusterObjects, ManifestError> {
    let mut objects = ClusterObjects::default();
    parse_manifest(text, Path::new("m.yaml"), syntax, &mut objects).map(|()| objects)
}

const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\nspec: {podSelector: {}}\n";

#[test]
fn multi_document_yaml_with_lists_and_ignored_kinds() {
    let text = format!(
        "---\n# comment only\n---\n{POLICY}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: Pod, metadata: {{name: a, namespace: x}}}}\n\
         - {{apiVersion: v1, kind: Namespace, metadata: {{name: x}}}}\n"
    );
    let objects = parse(&text, Syntax::Yaml).unwrap();
    assert_eq!(objects.network_policies.len(), 1);
    assert_eq!(objects.pods.len(), 1);
    assert_eq!(objects.namespaces.len(), 1);
    let policy = &objects.network_policies[0];
    assert_eq!(
        policy.source,
        crate::inventory::PolicySource::File { path: "m.yaml".into(), document: 2 }
    );
    assert_eq!(
        policy.raw,
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "db"}, "spec": {"podSelector": {}}
        })
    );
}

#[test]
fn json_single_and_concatenated() {
    let one = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}]}"#;
    assert_eq!(parse(one, Syntax::Json).unwrap().pods.len(), 1);
    let two = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}} {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}"#;
    assert_eq!(parse(two, Syntax::Json).unwrap().namespaces.len(), 2);
}

#[test]
fn errors_name_file_document_and_field() {
    let bad_port = format!(
        "{POLICY}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  containers:\n  - name: c\n    ports: [{{containerPort: http}}]\n"
    );
    match parse(&bad_port, Syntax::Yaml).unwrap_err() {
        ManifestError::Object { document, field, object, .. } => {
            assert_eq!(
                (document, field.as_str(), object.as_str()),
                (2, "spec.containers[0].ports[0].containerPort", "Pod a")
            );
        }
        other => panic!("{other}"),
    }
    let in_list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: ok}}\n- {apiVersion: v1, kind: Pod, metadata: {name: b, labels: [x]}}\n";
    let err = parse(in_list, Syntax::Yaml).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Object { field, .. } if field == "items[1].metadata.labels"),
        "{err}"
    );
    let err = parse("kind: Pod\napiVersion: v1\n---\nkind: [\n", Syntax::Yaml).unwrap_err();
    assert!(matches!(err, ManifestError::Syntax { document: 2, .. }), "{err}");
    let err = parse("- just\n- a list\n", Syntax::Yaml).unwrap_err();
    assert!(matches!(err, ManifestError::Object { document: 1, .. }), "{err}");
    let err = parse("metadata: {name: x}\n", Syntax::Yaml).unwrap_err();
    assert!(matches!(&err, ManifestError::Object { field, .. } if field == "kind"), "{err}");
    let err = parse(
        "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\n",
        Syntax::Yaml,
    )
    .unwrap_err();
    assert!(matches!(&err, ManifestError::Object { field, .. } if field == "apiVersion"), "{err}");
    assert!(
        err.to_string().starts_with("m.yaml: document 1: NetworkPolicy x: apiVersion: "),
        "{err}"
    );
    let err = parse("{\"kind\": \"Pod\",}", Syntax::Json).unwrap_err();
    assert!(matches!(err, ManifestError::Syntax { document: 1, .. }), "{err}");
}

#[test]
fn directories_are_searched_recursively_for_manifest_extensions() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
    fs::write(dir.path().join("a.yaml"), POLICY).unwrap();
    fs::write(
        dir.path().join("nested/b.yml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("nested/deeper/c.json"),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}"#,
    )
    .unwrap();
    fs::write(dir.path().join("nested/notes.txt"), "not: [a manifest").unwrap();
    let objects = load_paths(&[dir.path().to_owned()]).unwrap();
    assert_eq!(
        (objects.network_policies.len(), objects.namespaces.len(), objects.pods.len()),
        (1, 1, 1)
    );
    let twice = load_paths(&[dir.path().join("a.yaml"), dir.path().join("nested/b.yml")]).unwrap();
    assert_eq!((twice.network_policies.len(), twice.namespaces.len()), (1, 1));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(load_paths(&[empty.path().to_owned()]), Err(ManifestError::Empty { .. })));
    assert!(matches!(
        load_paths(&[dir.path().join("missing.yaml")]),
        Err(ManifestError::Io { .. })
    ));
}
