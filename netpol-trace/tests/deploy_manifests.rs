//! Checks the deployment manifests under `deploy/` without a cluster.
//!
//! Every document of every plain manifest is parsed into its k8s-openapi type and serialized
//! back; a key of the YAML that does not survive the round trip is a field Kubernetes does not
//! know (a typo the API server would silently drop). On top of that the agent's security
//! posture is asserted: no privileged mode, every capability dropped and exactly BPF, PERFMON
//! and NET_ADMIN added back, read-only RBAC unless fixing is enabled, and one ServiceAccount
//! everywhere. Kustomizations must only list files that exist, and the Helm chart's templates
//! may only use values that `values.yaml` defines.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The capabilities the agent adds back after dropping ALL, each justified in daemonset.yaml.
const ADDED_CAPABILITIES: [&str; 3] = ["BPF", "NET_ADMIN", "PERFMON"];
/// The only host path the agent mounts.
/// The node folder for the backups of applied fixes (fix overlay and `fix.enabled` only).
const BACKUP_HOST_PATH: &str = "/var/lib/netpol-trace/backups";
const BTF_HOST_PATH: &str = "/sys/kernel/btf";
/// Verbs that only read.
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
/// Everything the read-only role may read.
const READ_RESOURCES: [&str; 5] =
    ["endpointslices", "namespaces", "networkpolicies", "pods", "services"];
/// Verbs of the opt-in fixing role.
const FIX_VERBS: [&str; 3] = ["create", "get", "patch"];
/// The file holding the opt-in fixing role.
const RBAC_FIX: &str = "rbac-fix.yaml";
/// Name of kustomize's file in a kustomization directory.
const KUSTOMIZATION: &str = "kustomization.yaml";
/// Ports the agent watches when nobody says otherwise.
const DEFAULT_WATCHED_PORT: u16 = 3306;

/// The `deploy/` folder of the repository.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("deploy")
}

/// A path relative to `deploy/`, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(deploy_dir()).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if recursive {
                out.extend(yaml_files(&path, true));
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == KUSTOMIZATION)
}

/// Kustomization files: `deploy/` itself and every overlay.
fn kustomizations() -> Vec<PathBuf> {
    let dir = deploy_dir();
    let mut out: Vec<_> = yaml_files(&dir.join("overlays"), true)
        .into_iter()
        .filter(|p| is_kustomization(p))
        .collect();
    out.insert(0, dir.join(KUSTOMIZATION));
    out
}

/// Plain Kubernetes manifests: `deploy/*.yaml` and `deploy/overlays/**.yaml`, without the
/// kustomization files (the Helm chart holds templates, not manifests).
fn plain_manifests() -> Vec<PathBuf> {
    let dir = deploy_dir();
    yaml_files(&dir, false)
        .into_iter()
        .chain(yaml_files(&dir.join("overlays"), true))
        .filter(|p| !is_kustomization(p))
        .collect()
}

/// The documents of a (multi-document) YAML file as JSON, without empty documents.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} document {i}: not YAML: {e}", rel(path)));
            (!value.is_null()).then(|| {
                serde_json::to_value(value)
                    .unwrap_or_else(|e| panic!("{} document {i}: not JSON-like: {e}", rel(path)))
            })
        })
        .collect()
}

/// A typed object of the manifests.
#[derive(Debug)]
enum Object {
    DaemonSet(Box<DaemonSet>),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Namespace(Namespace),
}

/// One document of a manifest file.
#[derive(Debug)]
struct Document {
    /// Path relative to `deploy/`.
    file: String,
    object: Object,
}

/// Where the keys of `original` are missing or changed in `round_trip`, as JSON pointers.
fn lost_fields(original: &Value, round_trip: &Value, at: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{at}/{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &here, out),
                    None => out.push(format!("{here} (unknown field)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{at}/{i}"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at} ({a} became {b})")),
    }
}

/// Parses `json` as `T` and serializes it back; an error names every field that did not
/// survive the round trip.
fn try_typed<T: DeserializeOwned + Serialize>(json: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields(json, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(object)
    } else {
        Err(format!("fields lost in a round trip: {lost:#?}"))
    }
}

/// [`try_typed`], failing the test with the file and kind.
fn typed<T: DeserializeOwned + Serialize>(json: &Value, file: &str, kind: &str) -> T {
    try_typed(json).unwrap_or_else(|e| panic!("{file}: not a valid {kind}: {e}"))
}

/// Every document of every plain manifest, typed.
fn documents() -> Vec<Document> {
    let mut out = Vec::new();
    for path in plain_manifests() {
        let file = rel(&path);
        for json in yaml_documents(&path) {
            let kind = json.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            let object = match kind.as_str() {
                "DaemonSet" => Object::DaemonSet(Box::new(typed(&json, &file, &kind))),
                "ClusterRole" => Object::ClusterRole(typed(&json, &file, &kind)),
                "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(&json, &file, &kind)),
                "ServiceAccount" => Object::ServiceAccount(typed(&json, &file, &kind)),
                "ConfigMap" => Object::ConfigMap(typed(&json, &file, &kind)),
                "Namespace" => Object::Namespace(typed(&json, &file, &kind)),
                other => panic!("{file}: unexpected kind {other:?}"),
            };
            out.push(Document { file: file.clone(), object });
        }
    }
    out
}

/// The agent's DaemonSet (exactly one in the manifests).
fn daemonset(docs: &[Document]) -> &DaemonSet {
    let all: Vec<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::DaemonSet(ds) => Some(ds.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(all.len(), 1, "expected one DaemonSet");
    all[0]
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("DaemonSet pod spec")
}

fn agent_container(ds: &DaemonSet) -> &Container {
    let containers = &pod_spec(ds).containers;
    assert_eq!(containers.len(), 1, "the agent pod has one container");
    &containers[0]
}

fn string_set<'a>(items: impl IntoIterator<Item = &'a String>) -> BTreeSet<&'a str> {
    items.into_iter().map(String::as_str).collect()
}

/// The `--listen` address of the agent's arguments.
fn listen_address(container: &Container) -> SocketAddr {
    let args = container.args.as_deref().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("agent"), "the container runs `agent`");
    let at = args.iter().position(|a| a == "--listen").expect("--listen among the arguments");
    let value = args.get(at + 1).expect("a value after --listen");
    value.parse().unwrap_or_else(|e| panic!("--listen {value}: {e}"))
}

/// The port number a probe or reference names, resolving named container ports.
fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let docs = documents();
    let kinds: BTreeSet<_> = docs
        .iter()
        .map(|d| match d.object {
            Object::DaemonSet(_) => "DaemonSet",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Namespace(_) => "Namespace",
        })
        .collect();
    let expected = BTreeSet::from([
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Namespace",
        "ServiceAccount",
    ]);
    assert_eq!(kinds, expected);
}

#[test]
fn round_trip_catches_a_misspelled_field() {
    let json = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespace": "y", "lables": {"a": "b"}}
    });
    let err = try_typed::<ServiceAccount>(&json).expect_err("a misspelled field must fail");
    assert!(err.contains("/metadata/lables"), "{err}");
}

#[test]
fn daemonset_drops_all_capabilities_and_adds_back_the_justified_minimum() {
    let docs = documents();
    let ds = daemonset(&docs);
    let spec = pod_spec(ds);
    assert_eq!(spec.host_network, Some(true), "the agent attaches in the node's network namespace");
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_ne!(spec.host_pid, Some(true), "no host PID namespace");
    assert_ne!(spec.host_ipc, Some(true), "no host IPC namespace");
    let pod_seccomp = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    assert_eq!(pod_seccomp, Some("RuntimeDefault"));

    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        let sc =
            c.security_context.as_ref().unwrap_or_else(|| panic!("{}: securityContext", c.name));
        assert_eq!(sc.privileged, Some(false), "{}: privileged must be explicitly false", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        if let Some(profile) = &sc.seccomp_profile {
            assert_eq!(profile.type_, "RuntimeDefault", "{}", c.name);
        }
        let caps = sc.capabilities.as_ref().unwrap_or_else(|| panic!("{}: capabilities", c.name));
        let drop = string_set(caps.drop.iter().flatten());
        assert_eq!(drop, BTreeSet::from(["ALL"]), "{}: drop ALL", c.name);
        let add = string_set(caps.add.iter().flatten());
        assert_eq!(add, BTreeSet::from(ADDED_CAPABILITIES), "{}: added capabilities", c.name);
        assert_eq!(caps.add.as_ref().map(Vec::len), Some(ADDED_CAPABILITIES.len()), "{}", c.name);
    }

    // Host paths: only the kernel's BTF, and only read-only.
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let host_volumes: BTreeMap<_, _> = volumes
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| (v.name.as_str(), h.path.as_str())))
        .collect();
    assert_eq!(host_volumes.values().copied().collect::<Vec<_>>(), vec![BTF_HOST_PATH]);
    let container = agent_container(ds);
    for mount in container.volume_mounts.iter().flatten() {
        if host_volumes.contains_key(mount.name.as_str()) {
            assert_eq!(
                mount.read_only,
                Some(true),
                "hostPath mount {} must be read-only",
                mount.name
            );
        }
    }
    let mounted: BTreeSet<_> =
        container.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
    for path in ["/sys/fs/bpf", "/proc"] {
        assert!(!mounted.contains(path), "{path} is not needed and must not be mounted");
    }
}

#[test]
fn daemonset_runs_everywhere_with_bounded_resources() {
    let docs = documents();
    let ds = daemonset(&docs);
    let spec = pod_spec(ds);
    let tolerates_all =
        spec.tolerations.iter().flatten().any(|t| {
            t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()
        });
    assert!(tolerates_all, "a toleration with operator Exists and no key or effect");

    let resources = agent_container(ds).resources.as_ref().expect("resources");
    for (what, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let list = list.as_ref().unwrap_or_else(|| panic!("resources.{what}"));
        for name in ["cpu", "memory"] {
            assert!(list.contains_key(name), "resources.{what}.{name}");
        }
    }

    let strategy =
        ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let max_unavailable = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_unavailable.as_ref())
        .expect("maxUnavailable");
    match max_unavailable {
        IntOrString::Int(n) => assert!(*n >= 1, "maxUnavailable {n}"),
        IntOrString::String(p) => {
            let pct: u32 = p.strip_suffix('%').and_then(|n| n.parse().ok()).expect("a percentage");
            assert!((1..=50).contains(&pct), "maxUnavailable {p}");
        }
    }
}

#[test]
fn probes_and_metrics_use_the_listen_port() {
    let docs = documents();
    let ds = daemonset(&docs);
    let container = agent_container(ds);
    let listen = listen_address(container);
    let port = i32::from(listen.port());
    assert!(
        listen.ip().is_unspecified(),
        "--listen {listen}: reachable by the kubelet on the node"
    );

    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/healthz"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        let http =
            probe.and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{path} probe"));
        assert_eq!(http.path.as_deref(), Some(path));
        assert_eq!(resolve_port(container, &http.port), port, "{path} probe port");
    }
    let declared: Vec<_> = container.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(declared, vec![port], "containerPort");

    let annotations = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    if let Some(scrape_port) = annotations.and_then(|a| a.get("prometheus.io/port")) {
        assert_eq!(scrape_port, &port.to_string(), "prometheus.io/port");
    }
}

#[test]
fn environment_comes_from_the_downward_api_and_the_configmap() {
    let docs = documents();
    let ds = daemonset(&docs);
    let env = agent_container(ds).env.as_deref().unwrap_or_default();
    let node_name = env.iter().find(|e| e.name == "NODE_NAME").expect("NODE_NAME");
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(field, Some("spec.nodeName"));

    let namespace = ds.metadata.namespace.as_deref().expect("DaemonSet namespace");
    let configmaps: BTreeMap<_, _> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::ConfigMap(cm) if cm.metadata.namespace.as_deref() == Some(namespace) => {
                Some((cm.metadata.name.as_deref().unwrap_or_default(), cm))
            }
            _ => None,
        })
        .collect();
    let mut keys_used = 0;
    for var in env {
        let Some(key_ref) = var.value_from.as_ref().and_then(|v| v.config_map_key_ref.as_ref())
        else {
            continue;
        };
        let cm = configmaps
            .get(key_ref.name.as_str())
            .unwrap_or_else(|| panic!("{}: no ConfigMap {}", var.name, key_ref.name));
        let data = cm.data.as_ref().expect("ConfigMap data");
        assert!(
            data.contains_key(&key_ref.key),
            "{}: ConfigMap {} has no key {}",
            var.name,
            key_ref.name,
            key_ref.key
        );
        keys_used += 1;
    }
    assert!(keys_used >= 2, "ports and log level come from the ConfigMap");

    let ports_var =
        env.iter().find(|e| e.name == "NETPOL_TRACE_PORTS").expect("NETPOL_TRACE_PORTS");
    let key_ref = ports_var
        .value_from
        .as_ref()
        .and_then(|v| v.config_map_key_ref.as_ref())
        .expect("from the ConfigMap");
    let ports = &configmaps[key_ref.name.as_str()].data.as_ref().expect("data")[&key_ref.key];
    let ports: Vec<u16> = ports
        .split(',')
        .map(|p| p.trim().parse().unwrap_or_else(|e| panic!("ConfigMap ports {p:?}: {e}")))
        .collect();
    assert!(ports.contains(&DEFAULT_WATCHED_PORT), "default ports {ports:?}");
    assert!(env.iter().any(|e| e.name == "NETPOL_TRACE_LOG"), "log level from the ConfigMap");
}

/// The rules of every ClusterRole, by file.
fn cluster_roles(docs: &[Document]) -> Vec<(&str, &ClusterRole)> {
    docs.iter()
        .filter_map(|d| match &d.object {
            Object::ClusterRole(r) => Some((d.file.as_str(), r)),
            _ => None,
        })
        .collect()
}

fn rules(role: &ClusterRole) -> &[PolicyRule] {
    role.rules.as_deref().unwrap_or_default()
}

fn is_fix_file(file: &str) -> bool {
    Path::new(file).file_name().is_some_and(|n| n == RBAC_FIX)
}

#[test]
fn rbac_reads_only_and_writing_policies_is_opt_in() {
    let docs = documents();
    for (file, role) in cluster_roles(&docs) {
        let name = role.metadata.name.as_deref().unwrap_or_default();
        for rule in rules(role) {
            let verbs = string_set(&rule.verbs);
            let resources = string_set(rule.resources.iter().flatten());
            let groups = string_set(rule.api_groups.iter().flatten());
            assert!(
                !verbs.contains("*") && !resources.contains("*") && !groups.contains("*"),
                "{file} {name}: no wildcards"
            );
            assert!(rule.non_resource_urls.is_none(), "{file} {name}: no non-resource URLs");
            if is_fix_file(file) {
                assert_eq!(resources, BTreeSet::from(["networkpolicies"]), "{file} {name}");
                assert_eq!(groups, BTreeSet::from(["networking.k8s.io"]), "{file} {name}");
                assert_eq!(verbs, BTreeSet::from(FIX_VERBS), "{file} {name}");
            } else if resources == BTreeSet::from(["events"]) {
                assert_eq!(groups, BTreeSet::from(["", "events.k8s.io"]), "{file} {name}: events");
                assert_eq!(verbs, BTreeSet::from(["create", "patch"]), "{file} {name}: events");
            } else {
                assert!(
                    verbs.is_subset(&BTreeSet::from(READ_VERBS)),
                    "{file} {name}: {verbs:?} on {resources:?} is more than reading"
                );
            }
        }
    }

    let rbac = cluster_roles(&docs)
        .into_iter()
        .find(|(f, _)| *f == "rbac.yaml")
        .expect("rbac.yaml ClusterRole")
        .1;
    let readable: BTreeSet<_> = rules(rbac)
        .iter()
        .filter(|r| string_set(&r.verbs) == BTreeSet::from(READ_VERBS))
        .flat_map(|r| r.resources.iter().flatten().map(String::as_str))
        .collect();
    assert_eq!(
        readable,
        BTreeSet::from(READ_RESOURCES),
        "rbac.yaml reads exactly the reflected kinds"
    );
    assert!(
        cluster_roles(&docs).iter().any(|(f, _)| is_fix_file(f)),
        "the opt-in fixing role exists"
    );
}

#[test]
fn one_service_account_everywhere() {
    let docs = documents();
    let accounts: BTreeSet<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::ServiceAccount(sa) => Some((
                sa.metadata.namespace.as_deref().expect("namespace"),
                sa.metadata.name.as_deref().expect("name"),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(accounts.len(), 1, "one ServiceAccount: {accounts:?}");
    let (namespace, account) = *accounts.first().expect("a ServiceAccount");

    let namespaces: BTreeSet<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::Namespace(ns) => ns.metadata.name.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from([namespace]),
        "namespace.yaml creates the agent's namespace"
    );
    let ns = docs
        .iter()
        .find_map(|d| match &d.object {
            Object::Namespace(ns) => Some(ns),
            _ => None,
        })
        .expect("Namespace");
    let enforce =
        ns.metadata.labels.as_ref().and_then(|l| l.get("pod-security.kubernetes.io/enforce"));
    assert_eq!(
        enforce.map(String::as_str),
        Some("privileged"),
        "Pod Security must admit the agent"
    );

    let ds = daemonset(&docs);
    assert_eq!(ds.metadata.namespace.as_deref(), Some(namespace));
    assert_eq!(pod_spec(ds).service_account_name.as_deref(), Some(account));

    let role_names: BTreeSet<_> =
        cluster_roles(&docs).iter().filter_map(|(_, r)| r.metadata.name.as_deref()).collect();
    let mut bindings = 0;
    for d in &docs {
        let Object::ClusterRoleBinding(b) = &d.object else { continue };
        bindings += 1;
        assert_eq!(b.role_ref.kind, "ClusterRole", "{}", d.file);
        assert!(
            role_names.contains(b.role_ref.name.as_str()),
            "{}: no ClusterRole {}",
            d.file,
            b.role_ref.name
        );
        let subjects = b.subjects.as_deref().unwrap_or_default();
        assert!(!subjects.is_empty(), "{}: subjects", d.file);
        for s in subjects {
            assert_eq!(s.kind, "ServiceAccount", "{}", d.file);
            assert_eq!(
                (s.namespace.as_deref(), s.name.as_str()),
                (Some(namespace), account),
                "{}",
                d.file
            );
        }
    }
    assert!(bindings >= 2, "the read-only and the fixing bindings");
}

/// A kustomization file as generic YAML.
fn kustomization(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "{}: one document", rel(path));
    let k = docs.remove(0);
    assert_eq!(k["kind"], "Kustomization", "{}", rel(path));
    k
}

fn listed(k: &Value, field: &str) -> Vec<String> {
    k.get(field)
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|i| i.as_str().expect("a path").to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn kustomizations_list_existing_files() {
    for path in kustomizations() {
        let dir = path.parent().expect("directory");
        let k = kustomization(&path);
        let resources = listed(&k, "resources");
        assert!(!resources.is_empty(), "{}: resources", rel(&path));
        for entry in &resources {
            let target = dir.join(entry);
            if target.is_dir() {
                assert!(
                    target.join(KUSTOMIZATION).is_file(),
                    "{}: {entry} has no {KUSTOMIZATION}",
                    rel(&path)
                );
            } else {
                assert!(target.is_file(), "{}: {entry} does not exist", rel(&path));
                // kustomize refuses files outside the kustomization's directory.
                assert!(
                    !entry.contains(".."),
                    "{}: file {entry} is outside its directory",
                    rel(&path)
                );
            }
        }
        for patch in k.get("patches").and_then(Value::as_array).into_iter().flatten() {
            if let Some(file) = patch.get("path").and_then(Value::as_str) {
                assert!(dir.join(file).is_file(), "{}: patch {file} does not exist", rel(&path));
            }
        }
    }

    // The base lists every plain manifest of deploy/ except the opt-in fixing role.
    let dir = deploy_dir();
    let base: BTreeSet<_> =
        listed(&kustomization(&dir.join(KUSTOMIZATION)), "resources").into_iter().collect();
    let expected: BTreeSet<_> = yaml_files(&dir, false)
        .iter()
        .filter(|p| !is_kustomization(p))
        .map(|p| p.file_name().expect("file name").to_string_lossy().into_owned())
        .filter(|f| f != RBAC_FIX)
        .collect();
    assert_eq!(base, expected, "deploy/kustomization.yaml resources");
}

#[test]
fn fix_overlay_adds_the_role_and_the_flag() {
    let dir = deploy_dir();
    let overlay_dir = dir.join("overlays/fix");
    let k = kustomization(&overlay_dir.join(KUSTOMIZATION));
    let resources = listed(&k, "resources");
    assert!(resources.iter().any(|r| r == RBAC_FIX), "the overlay adds {RBAC_FIX}");
    assert!(
        resources
            .iter()
            .any(|r| overlay_dir.join(r).canonicalize().ok() == dir.canonicalize().ok()),
        "the overlay builds on deploy/"
    );
    assert_eq!(
        read(&overlay_dir.join(RBAC_FIX)),
        read(&dir.join(RBAC_FIX)),
        "overlays/fix/{RBAC_FIX} is a copy of deploy/{RBAC_FIX}"
    );

    // Apply the overlay's JSON patches to the DaemonSet, as kustomize does.
    let mut daemonset = yaml_documents(&dir.join("daemonset.yaml")).remove(0);
    let mut patched = 0;
    for patch in k.get("patches").and_then(Value::as_array).into_iter().flatten() {
        let target = &patch["target"];
        if target["kind"] != "DaemonSet" || target["name"] != daemonset["metadata"]["name"] {
            continue;
        }
        let text = patch["patch"].as_str().expect("an inline patch");
        let ops: serde_yaml::Value = serde_yaml::from_str(text).expect("patch YAML");
        let ops: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(ops).expect("JSON")).expect("a JSON patch");
        json_patch::patch(&mut daemonset, &ops.0).expect("the patch applies to daemonset.yaml");
        patched += 1;
    }
    assert_eq!(patched, 1, "one patch of the DaemonSet");
    let ds: DaemonSet = typed(&daemonset, "overlays/fix (patched daemonset.yaml)", "DaemonSet");
    let args = agent_container(&ds).args.as_deref().unwrap_or_default();
    assert!(args.iter().any(|a| a == "--enable-fix"), "patched arguments {args:?}");
    assert_eq!(args.first().map(String::as_str), Some("agent"));
    listen_address(agent_container(&ds));
    // Backups go to a node folder mounted at the agent's default backup directory.
    let mounts = agent_container(&ds).volume_mounts.clone().unwrap_or_default();
    let backups = mounts.iter().find(|m| m.name == "backups").expect("a backups mount");
    assert_eq!(backups.mount_path, BACKUP_HOST_PATH);
    let volumes =
        ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.volumes.clone());
    let volume =
        volumes.unwrap_or_default().into_iter().find(|v| v.name == "backups").expect("volume");
    assert_eq!(volume.host_path.map(|h| h.path).as_deref(), Some(BACKUP_HOST_PATH));
}

/// The Helm chart's directory.
fn chart_dir() -> PathBuf {
    deploy_dir().join("helm/netpol-trace")
}

/// The chart's templates, by file name.
fn templates() -> BTreeMap<String, String> {
    let dir = chart_dir().join("templates");
    fs::read_dir(&dir)
        .expect("templates directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), read(&p)))
        .collect()
}

fn chart_values() -> Value {
    let mut docs = yaml_documents(&chart_dir().join("values.yaml"));
    assert_eq!(docs.len(), 1, "values.yaml: one document");
    docs.remove(0)
}

/// Every `.Values.a.b` path of a template text, as its segments.
fn values_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".Values") {
        rest = &rest[at + ".Values".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let segments: Vec<String> =
            path.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !segments.is_empty() {
            out.push(segments);
        }
    }
    out
}

/// Names after a keyword such as `define` or `include`: `{{ include "name" . }}`.
fn quoted_after(text: &str, keyword: &str) -> BTreeSet<String> {
    let needle = format!("{keyword} \"");
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_owned());
        }
    }
    out
}

/// The actions (`{{ ... }}`) of a template, trimmed of `-` markers.
fn actions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let body = &rest[open + 2..];
        let close = body.find("}}").expect("unclosed {{");
        out.push(body[..close].trim_start_matches('-').trim_end_matches('-').trim().to_owned());
        rest = &body[close + 2..];
    }
    out
}

#[test]
fn helm_chart_metadata_and_values_parse() {
    let chart = yaml_documents(&chart_dir().join("Chart.yaml")).remove(0);
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "netpol-trace");
    for field in ["version", "appVersion", "description"] {
        assert!(chart[field].as_str().is_some_and(|v| !v.is_empty()), "Chart.yaml {field}");
    }
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "appVersion follows the crate"
    );

    let values = chart_values();
    assert_eq!(values["fix"]["enabled"], false, "fixing is off by default");
    assert!(
        values["ports"].as_array().is_some_and(|p| p.contains(&Value::from(DEFAULT_WATCHED_PORT)))
    );
    for field in ["repository", "tag", "pullPolicy"] {
        assert!(values["image"].get(field).is_some(), "values.image.{field}");
    }
    assert_eq!(values["tolerations"][0]["operator"], "Exists");

    // The chart's defaults are the plain manifests' settings.
    let docs = documents();
    let container = agent_container(daemonset(&docs));
    assert_eq!(values["listenPort"], Value::from(listen_address(container).port()), "listenPort");
    let resources =
        serde_json::to_value(container.resources.as_ref().expect("resources")).expect("JSON");
    assert_eq!(values["resources"], resources, "resources");
}

#[test]
fn helm_templates_use_only_defined_values_and_helpers() {
    let values = chart_values();
    let templates = templates();
    assert!(templates.contains_key("_helpers.tpl") && templates.contains_key("NOTES.txt"));
    for name in
        ["daemonset.yaml", "rbac.yaml", "rbac-fix.yaml", "serviceaccount.yaml", "configmap.yaml"]
    {
        assert!(templates.contains_key(name), "templates/{name}");
    }
    let defined = quoted_after(&templates["_helpers.tpl"], "define");
    for (file, text) in &templates {
        for path in values_paths(text) {
            let mut node = &values;
            for segment in &path {
                node = node.get(segment).unwrap_or_else(|| {
                    panic!("templates/{file}: .Values.{} is not in values.yaml", path.join("."))
                });
            }
        }
        for used in quoted_after(text, "include").union(&quoted_after(text, "template")) {
            assert!(
                defined.contains(used),
                "templates/{file}: {used:?} is not defined in _helpers.tpl"
            );
        }
        // Every block is closed: no helm here to render, so count them.
        let acts = actions(text);
        let opened = acts
            .iter()
            .filter(|a| ["if ", "range ", "with ", "define "].iter().any(|k| a.starts_with(k)))
            .count();
        let closed = acts.iter().filter(|a| a.as_str() == "end").count();
        assert_eq!(opened, closed, "templates/{file}: {opened} blocks opened, {closed} closed");
    }
}

#[test]
fn helm_chart_keeps_the_security_settings_and_the_fix_switch() {
    let templates = templates();
    let ds = &templates["daemonset.yaml"];
    for needle in [
        "hostNetwork: true",
        "dnsPolicy: ClusterFirstWithHostNet",
        "privileged: false",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "type: RuntimeDefault",
        "fieldPath: spec.nodeName",
        "path: /healthz",
        "path: /readyz",
        "readOnly: true",
    ] {
        assert!(ds.contains(needle), "templates/daemonset.yaml lacks {needle:?}");
    }
    let code: Vec<&str> = ds
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("{{/*"))
        .collect();
    let added: BTreeSet<&str> = code
        .iter()
        .skip_while(|l| **l != "add:")
        .skip(1)
        .take_while(|l| l.starts_with("- "))
        .map(|l| l.trim_start_matches("- "))
        .collect();
    assert_eq!(added, BTreeSet::from(ADDED_CAPABILITIES), "templates/daemonset.yaml capabilities");
    assert!(!code.iter().any(|l| l.contains("SYS_ADMIN") || l.contains("privileged: true")));
    let host_paths: Vec<&str> = code
        .windows(2)
        .filter(|w| w[0] == "hostPath:")
        .map(|w| w[1].trim_start_matches("path:").trim())
        .collect();
    assert_eq!(
        host_paths,
        vec![BTF_HOST_PATH, BACKUP_HOST_PATH],
        "templates/daemonset.yaml host paths"
    );
    // The backups folder (writable) exists only when fixing is enabled.
    let backups = ds.find(&format!("path: {BACKUP_HOST_PATH}")).expect("backups hostPath");
    let guard = ds[..backups].rfind("{{- if .Values.fix.enabled }}").expect("backups guarded");
    assert!(!ds[guard..backups].contains("{{- end }}"), "backups inside the fix.enabled block");

    // --enable-fix and the fixing role exist only under fix.enabled.
    let flag = ds.find("--enable-fix").expect("--enable-fix in the DaemonSet template");
    let guard = ds[..flag]
        .rfind("{{- if .Values.fix.enabled }}")
        .expect("--enable-fix guarded by fix.enabled");
    assert!(!ds[guard..flag].contains("end"), "--enable-fix inside the fix.enabled block");
    let fix = templates["rbac-fix.yaml"].trim();
    assert!(
        fix.starts_with("{{- if .Values.fix.enabled }}") && fix.ends_with("{{- end }}"),
        "rbac-fix.yaml is conditional"
    );
    for (file, text) in &templates {
        if file != "rbac-fix.yaml" && text.contains("networkpolicies") {
            let rules = text
                .lines()
                .skip_while(|l| !l.contains("networkpolicies"))
                .nth(1)
                .unwrap_or_default();
            assert!(
                rules.contains("[\"get\", \"list\", \"watch\"]"),
                "templates/{file}: networkpolicies must be read-only outside rbac-fix.yaml"
            );
        }
    }
}

#[test]
fn dockerfile_builds_one_binary_on_debian() {
    let root = deploy_dir().parent().expect("repository root").to_path_buf();
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let froms: Vec<_> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(froms[0].contains("debian:") && froms[0].ends_with(" AS builder"), "{}", froms[0]);
    assert!(froms[1].contains("-slim"), "runtime stage {}", froms[1]);
    for package in [
        "rustc-web",
        "cargo-web",
        "rust-web-src",
        "llvm-${LLVM_MAJOR}-dev",
        "libpolly-${LLVM_MAJOR}-dev",
        "libzstd-dev",
        "zlib1g-dev",
    ] {
        assert!(dockerfile.contains(package), "Dockerfile installs {package}");
    }
    assert!(dockerfile.contains("ARG LLVM_MAJOR=22"), "LLVM of Debian's rustc-web");
    assert!(
        dockerfile.contains("LLVM_PREFIX=/usr/lib/llvm-${LLVM_MAJOR}"),
        "bpf-linker against that LLVM"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p netpol-trace"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/netpol-trace\"]"));
    assert!(!dockerfile.contains("NETPOL_TRACE_SKIP_EBPF"), "the image carries its eBPF programs");

    let ignore = read(&root.join(".dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore excludes target/");
}
