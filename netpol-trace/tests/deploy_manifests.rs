//! Checks the deployment manifests under `deploy/` without a cluster.
//!
//! Every document of every plain manifest is parsed into its k8s-openapi type and serialized
//! back; a key of the YAML that does not survive the round trip is a field Kubernetes does not
//! know (a typo the API server would silently drop). On top of that the security posture is
//! asserted: the agent runs without privileged mode, every capability dropped and exactly BPF,
//! PERFMON and NET_ADMIN added back; the controller runs with no capability at all; no RBAC
//! document but the controller's grants a NetworkPolicy write (Helm templates included); the
//! DropReport CRD is the one of the design. Kustomizations must only list files that exist, and
//! the Helm chart's templates may only use values that `values.yaml` defines. What each
//! identity may do against an API server is tested in fake-apiserver's `rbac_deploy` tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The capabilities the agent adds back after dropping ALL, each justified in daemonset.yaml.
const ADDED_CAPABILITIES: [&str; 3] = ["BPF", "NET_ADMIN", "PERFMON"];
/// The only host path the agent mounts.
const BTF_HOST_PATH: &str = "/sys/kernel/btf";
/// Verbs that only read.
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
/// Everything the agent reads (policy kinds of other APIs included).
const READ_RESOURCES: [&str; 10] = [
    "adminnetworkpolicies",
    "baselineadminnetworkpolicies",
    "clusternetworkpolicies",
    "endpointslices",
    "globalnetworkpolicies",
    "namespaces",
    "networkpolicies",
    "pods",
    "services",
    "tiers",
];
/// The controller's verbs on NetworkPolicies: no update, no delete.
const CONTROLLER_POLICY_VERBS: [&str; 5] = ["create", "get", "list", "patch", "watch"];
/// The agent's ServiceAccount and ClusterRole.
const AGENT: &str = "netpol-trace";
/// The controller's ServiceAccount, ClusterRole and Deployment.
const CONTROLLER: &str = "netpol-trace-controller";
/// The file of the controller's RBAC (the only one that may write NetworkPolicies).
const RBAC_CONTROLLER: &str = "rbac-controller.yaml";
/// The DropReport CRD, in deploy/ and (the same file) in the chart's crds/.
const CRD_FILE: &str = "crd-dropreport.yaml";
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

/// Overlay directories, if any (every RBAC document in them counts too).
fn overlay_files() -> Vec<PathBuf> {
    let overlays = deploy_dir().join("overlays");
    if overlays.is_dir() { yaml_files(&overlays, true) } else { Vec::new() }
}

/// Kustomization files: `deploy/` itself and every overlay.
fn kustomizations() -> Vec<PathBuf> {
    let mut out: Vec<_> = overlay_files().into_iter().filter(|p| is_kustomization(p)).collect();
    out.insert(0, deploy_dir().join(KUSTOMIZATION));
    out
}

/// Plain Kubernetes manifests: `deploy/*.yaml` and `deploy/overlays/**.yaml`, without the
/// kustomization files (the Helm chart holds templates, not manifests).
fn plain_manifests() -> Vec<PathBuf> {
    yaml_files(&deploy_dir(), false)
        .into_iter()
        .chain(overlay_files())
        .filter(|p| !is_kustomization(p))
        .collect()
}

/// The documents of a (multi-document) YAML file as JSON, without empty documents.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
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
    Deployment(Box<Deployment>),
    Crd(Box<CustomResourceDefinition>),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
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
        // The schema's numbers are f64 in k8s-openapi: 1 and 1.0 are the same bound.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
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
                "Deployment" => Object::Deployment(Box::new(typed(&json, &file, &kind))),
                "CustomResourceDefinition" => Object::Crd(Box::new(typed(&json, &file, &kind))),
                "ClusterRole" => Object::ClusterRole(typed(&json, &file, &kind)),
                "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(&json, &file, &kind)),
                "Role" => Object::Role(typed(&json, &file, &kind)),
                "RoleBinding" => Object::RoleBinding(typed(&json, &file, &kind)),
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
            Object::Deployment(_) => "Deployment",
            Object::Crd(_) => "CustomResourceDefinition",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Namespace(_) => "Namespace",
        })
        .collect();
    let expected = BTreeSet::from([
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "Namespace",
        "Role",
        "RoleBinding",
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

/// Every rule of every Role and ClusterRole, with its file and role name.
fn all_rules(docs: &[Document]) -> Vec<(&str, &str, &PolicyRule)> {
    let mut out = Vec::new();
    for d in docs {
        let (meta, rules) = match &d.object {
            Object::ClusterRole(r) => (&r.metadata, r.rules.as_deref()),
            Object::Role(r) => (&r.metadata, r.rules.as_deref()),
            _ => continue,
        };
        let name = meta.name.as_deref().unwrap_or_default();
        out.extend(rules.unwrap_or_default().iter().map(|r| (d.file.as_str(), name, r)));
    }
    out
}

fn cluster_role<'a>(docs: &'a [Document], name: &str) -> &'a ClusterRole {
    docs.iter()
        .find_map(|d| match &d.object {
            Object::ClusterRole(r) if r.metadata.name.as_deref() == Some(name) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ClusterRole {name}"))
}

/// The verbs a role grants on `group`/`resource`.
fn verbs_on<'a>(role: &'a ClusterRole, group: &str, resource: &str) -> BTreeSet<&'a str> {
    role.rules
        .iter()
        .flatten()
        .filter(|r| r.api_groups.iter().flatten().any(|g| g == group))
        .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
        .flat_map(|r| r.verbs.iter().map(String::as_str))
        .collect()
}

#[test]
fn only_the_controller_writes_network_policies() {
    let docs = documents();
    for (file, name, rule) in all_rules(&docs) {
        let verbs = string_set(&rule.verbs);
        let resources = string_set(rule.resources.iter().flatten());
        let groups = string_set(rule.api_groups.iter().flatten());
        assert!(
            !verbs.contains("*") && !resources.contains("*") && !groups.contains("*"),
            "{file} {name}: no wildcards"
        );
        if let Some(urls) = &rule.non_resource_urls {
            assert_eq!(name, "netpol-trace-metrics-reader", "{file}: non-resource URLs");
            assert_eq!(string_set(urls), BTreeSet::from(["/drops", "/metrics"]), "{file}");
            assert_eq!(verbs, BTreeSet::from(["get"]), "{file} {name}");
        }
        if resources.contains("networkpolicies") && groups.contains("networking.k8s.io") {
            if file == RBAC_CONTROLLER && name == CONTROLLER {
                assert_eq!(verbs, BTreeSet::from(CONTROLLER_POLICY_VERBS), "{file} {name}");
            } else {
                assert!(
                    verbs.is_subset(&BTreeSet::from(READ_VERBS)),
                    "{file} {name}: {verbs:?} on networkpolicies; only the controller writes them"
                );
            }
        }
        assert!(
            !verbs.contains("escalate")
                && !verbs.contains("bind")
                && !verbs.contains("impersonate")
        );
    }

    // The agent: reads what it attributes with, publishes reports (status through /status),
    // Events, and checks scrapers' tokens. Never a decision: no patch/update of the report.
    let agent = cluster_role(&docs, AGENT);
    let readable: BTreeSet<_> = rules(agent)
        .iter()
        .filter(|r| string_set(&r.verbs) == BTreeSet::from(READ_VERBS))
        .flat_map(|r| r.resources.iter().flatten().map(String::as_str))
        .collect();
    assert_eq!(readable, BTreeSet::from(READ_RESOURCES), "{AGENT} reads exactly these kinds");
    let reports = verbs_on(agent, "netpol-trace.io", "dropreports");
    assert!(reports.contains("create") && reports.contains("get") && reports.contains("watch"));
    assert!(!reports.contains("patch") && !reports.contains("update"), "agents never approve");
    assert!(!reports.contains("delete"), "garbage collection is the controller leader's");
    assert!(verbs_on(agent, "netpol-trace.io", "dropreports/status").contains("patch"));
    assert_eq!(
        verbs_on(agent, "authentication.k8s.io", "tokenreviews"),
        BTreeSet::from(["create"])
    );
    assert_eq!(
        verbs_on(agent, "authorization.k8s.io", "subjectaccessreviews"),
        BTreeSet::from(["create"])
    );

    let controller = cluster_role(&docs, CONTROLLER);
    assert_eq!(
        verbs_on(controller, "networking.k8s.io", "networkpolicies"),
        BTreeSet::from(CONTROLLER_POLICY_VERBS)
    );
    assert_eq!(
        verbs_on(controller, "netpol-trace.io", "dropreports/status"),
        BTreeSet::from(["patch", "update"])
    );
    assert_eq!(
        verbs_on(controller, "netpol-trace.io", "dropreports"),
        BTreeSet::from(["delete", "get", "list", "patch", "watch"])
    );

    let approver = cluster_role(&docs, "netpol-trace-approver");
    assert_eq!(
        verbs_on(approver, "netpol-trace.io", "dropreports"),
        BTreeSet::from(["get", "list", "patch", "watch"])
    );
    assert!(verbs_on(approver, "netpol-trace.io", "dropreports/status").is_empty());
    let labels = approver.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("rbac.authorization.k8s.io/aggregate-to-admin").map(String::as_str),
        Some("true"),
        "namespace admins may approve"
    );
}

fn rules(role: &ClusterRole) -> &[PolicyRule] {
    role.rules.as_deref().unwrap_or_default()
}

/// Whether a binding subject is the ServiceAccount `namespace/name`.
fn is_account(s: &Subject, namespace: &str, name: &str) -> bool {
    s.kind == "ServiceAccount" && s.namespace.as_deref() == Some(namespace) && s.name == name
}

#[test]
fn each_workload_has_its_own_service_account_and_bindings() {
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
    let namespace = "netpol-trace";
    assert_eq!(accounts, BTreeSet::from([(namespace, AGENT), (namespace, CONTROLLER)]));

    let namespaces: BTreeSet<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::Namespace(ns) => ns.metadata.name.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(namespaces, BTreeSet::from([namespace]), "namespace.yaml creates the namespace");
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
    assert_eq!(pod_spec(ds).service_account_name.as_deref(), Some(AGENT));
    let deploy = controller_deployment(&docs);
    assert_eq!(deploy.metadata.namespace.as_deref(), Some(namespace));
    let spec = deploy.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some(CONTROLLER));

    // Every binding names an existing role and only our two accounts; the agent's account is
    // bound to the agent's role only, the controller's to the controller's roles only.
    let cluster_roles: BTreeSet<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::ClusterRole(r) => r.metadata.name.as_deref(),
            _ => None,
        })
        .collect();
    let roles: BTreeSet<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::Role(r) => {
                Some((r.metadata.namespace.as_deref()?, r.metadata.name.as_deref()?))
            }
            _ => None,
        })
        .collect();
    let mut bound = BTreeSet::new();
    for d in &docs {
        let (role_ref, subjects, binding_ns) = match &d.object {
            Object::ClusterRoleBinding(b) => (&b.role_ref, b.subjects.as_deref(), None),
            Object::RoleBinding(b) => {
                (&b.role_ref, b.subjects.as_deref(), b.metadata.namespace.as_deref())
            }
            _ => continue,
        };
        match (role_ref.kind.as_str(), binding_ns) {
            ("ClusterRole", _) => {
                assert!(cluster_roles.contains(role_ref.name.as_str()), "{}", d.file)
            }
            ("Role", Some(ns)) => {
                assert!(roles.contains(&(ns, role_ref.name.as_str())), "{}", d.file)
            }
            other => panic!("{}: roleRef {other:?}", d.file),
        }
        let subjects = subjects.unwrap_or_default();
        assert!(!subjects.is_empty(), "{}: subjects", d.file);
        for s in subjects {
            let owner = if is_account(s, namespace, AGENT) {
                AGENT
            } else if is_account(s, namespace, CONTROLLER) {
                CONTROLLER
            } else {
                panic!("{}: unexpected subject {s:?}", d.file)
            };
            assert!(
                role_ref.name.starts_with(owner)
                    && (owner == CONTROLLER || !role_ref.name.starts_with(CONTROLLER)),
                "{}: {owner} bound to {}",
                d.file,
                role_ref.name
            );
            bound.insert((owner, role_ref.name.as_str()));
        }
    }
    assert!(bound.contains(&(AGENT, AGENT)), "the agent's binding");
    assert!(bound.contains(&(CONTROLLER, CONTROLLER)), "the controller's binding");
    assert!(
        bound.iter().any(|(who, role)| *who == CONTROLLER && role.ends_with("leader-election")),
        "the controller's Lease role"
    );
}

fn controller_deployment(docs: &[Document]) -> &Deployment {
    let all: Vec<_> = docs
        .iter()
        .filter_map(|d| match &d.object {
            Object::Deployment(dep) => Some(dep.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(all.len(), 1, "expected one Deployment");
    all[0]
}

#[test]
fn controller_runs_two_replicas_without_privileges() {
    let docs = documents();
    let deploy = controller_deployment(&docs);
    assert_eq!(deploy.metadata.name.as_deref(), Some(CONTROLLER));
    let spec = deploy.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2), "a standby takes over the Lease");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_ne!(pod.host_network, Some(true));
    assert!(pod.volumes.as_deref().unwrap_or_default().iter().all(|v| v.host_path.is_none()));
    assert_eq!(pod.security_context.as_ref().and_then(|s| s.run_as_non_root), Some(true));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["controller".to_string()][..]));
    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(string_set(caps.drop.iter().flatten()), BTreeSet::from(["ALL"]));
    assert!(caps.add.as_deref().unwrap_or_default().is_empty(), "no capability added");
    let env = c.env.as_deref().unwrap_or_default();
    for (var, path) in [("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")] {
        let field = env
            .iter()
            .find(|e| e.name == var)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(field, Some(path), "{var} from the downward API");
    }
    assert!(c.resources.as_ref().and_then(|r| r.limits.as_ref()).is_some(), "bounded resources");
}

/// The JSON schema at a dotted path of properties under `schema`.
fn schema_at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(schema, |node, key| {
        if key == "[]" { &node["items"] } else { &node["properties"][key] }
    })
}

#[test]
fn dropreport_crd_is_the_designed_one() {
    let docs = documents();
    let crd = docs
        .iter()
        .find_map(|d| match &d.object {
            Object::Crd(c) => Some(c.as_ref()),
            _ => None,
        })
        .expect("the DropReport CRD");
    assert_eq!(crd.metadata.name.as_deref(), Some("dropreports.netpol-trace.io"));
    let spec = &crd.spec;
    assert_eq!(spec.group, "netpol-trace.io");
    assert_eq!(spec.scope, "Namespaced");
    assert_eq!(spec.names.kind, "DropReport");
    assert_eq!(spec.names.plural, "dropreports");
    assert_eq!(spec.names.short_names.as_deref(), Some(&["dr".to_string()][..]));
    assert_eq!(spec.versions.len(), 1);
    let v = &spec.versions[0];
    assert_eq!((v.name.as_str(), v.served, v.storage), ("v1alpha1", true, true));
    assert!(
        v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
        "status subresource"
    );
    let columns: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.json_path.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            ".spec.source.workload",
            ".spec.destination.workload",
            ".spec.port",
            ".status.state",
            ".status.fix.phase",
            ".status.count",
            ".status.lastSeen"
        ]
    );
    let schema = serde_json::to_value(
        v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema"),
    )
    .expect("JSON");
    assert_eq!(
        schema_at(&schema, "spec.decision")["enum"],
        serde_json::json!(["Approved", "Rejected"])
    );
    for kept in ["status.fix.patches.[]", "status.fix.applied.backup.[].object"] {
        assert_eq!(
            schema_at(&schema, kept)["x-kubernetes-preserve-unknown-fields"],
            true,
            "{kept} is kept whole"
        );
    }
    assert_eq!(schema_at(&schema, "status.fix.applied.backup.[].object")["nullable"], true);

    let chart_copy = chart_dir().join("crds/dropreports.yaml");
    assert_eq!(
        read(&chart_copy),
        read(&deploy_dir().join(CRD_FILE)),
        "the chart ships the same CRD"
    );
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

    // The base lists every plain manifest of deploy/.
    let dir = deploy_dir();
    let base: BTreeSet<_> =
        listed(&kustomization(&dir.join(KUSTOMIZATION)), "resources").into_iter().collect();
    let expected: BTreeSet<_> = yaml_files(&dir, false)
        .iter()
        .filter(|p| !is_kustomization(p))
        .map(|p| p.file_name().expect("file name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(base, expected, "deploy/kustomization.yaml resources");
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
    assert!(values.get("fix").is_none(), "the agent has no fixing switch any more");
    let docs = documents();
    let replicas = controller_deployment(&docs).spec.as_ref().and_then(|s| s.replicas);
    assert_eq!(values["controller"]["replicas"], Value::from(replicas), "controller.replicas");
    assert_eq!(values["approver"]["aggregateToAdmin"], true, "approvers aggregate into admin");
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
    for name in [
        "daemonset.yaml",
        "controller.yaml",
        "rbac.yaml",
        "rbac-controller.yaml",
        "rbac-users.yaml",
        "serviceaccount.yaml",
        "configmap.yaml",
    ] {
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
fn helm_chart_keeps_the_security_settings_and_only_the_controller_writes_policies() {
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
    assert_eq!(host_paths, vec![BTF_HOST_PATH], "templates/daemonset.yaml host paths");
    assert!(!ds.contains("--enable-fix"), "the agent never fixes");

    // No template but the controller's grants a NetworkPolicy write.
    for (file, text) in &templates {
        for (i, line) in text.lines().enumerate() {
            if !line.contains("networkpolicies") || !line.contains("resources:") {
                continue;
            }
            let verbs = text.lines().skip(i).find(|l| l.contains("verbs:")).unwrap_or_default();
            let policy_group = text
                .lines()
                .take(i + 1)
                .filter(|l| l.contains("apiGroups:"))
                .last()
                .is_some_and(|g| g.contains("\"networking.k8s.io\""));
            if !policy_group {
                continue;
            }
            if file == RBAC_CONTROLLER {
                assert!(
                    verbs.contains(r#"["get", "list", "watch", "patch", "create"]"#),
                    "templates/{file}: {verbs}"
                );
            } else {
                assert!(
                    verbs.contains(r#"["get", "list", "watch"]"#),
                    "templates/{file}: networkpolicies must be read-only outside {RBAC_CONTROLLER}"
                );
            }
        }
        assert!(!text.contains(r#"verbs: ["*"]"#), "templates/{file}: no wildcard verbs");
    }

    // The controller: no capability, read-only root, the downward API for its Lease.
    let controller = &templates["controller.yaml"];
    for needle in [
        "args: [\"controller\"]",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "fieldPath: metadata.namespace",
        "fieldPath: metadata.name",
    ] {
        assert!(controller.contains(needle), "templates/controller.yaml lacks {needle:?}");
    }
    assert!(!controller.contains("add:") && !controller.contains("hostPath"));
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
