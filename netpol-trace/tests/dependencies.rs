//! The build's dependency set: one version of the crates the code hands to kube.

/// `json-patch` operations go to kube's `Patch::Json`, which takes kube-core's own `json-patch`;
/// a second version in the lock would make them two distinct types.
#[test]
fn the_lock_holds_one_json_patch() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let lock = std::fs::read_to_string(lock).unwrap();
    let versions: Vec<&str> = lock
        .split("[[package]]")
        .filter(|package| package.contains("\nname = \"json-patch\"\n"))
        .filter_map(|package| package.lines().find(|l| l.starts_with("version = ")))
        .collect();
    assert_eq!(versions.len(), 1, "json-patch versions in Cargo.lock: {versions:?}");
}
