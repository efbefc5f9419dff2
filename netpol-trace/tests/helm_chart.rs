//! Renders the Helm chart with Helm's own template engine and checks what comes out: every
//! rendered document parses into its Kubernetes type with no field lost in a round trip
//! (prometheus-operator's ServiceMonitor and PodMonitor into models of their CRDs), the
//! optional ServiceMonitor, PodMonitor and Grafana dashboard appear only when enabled and
//! reach the agents with a token the agents accept, and an unknown template function fails
//! the render.
//!
//! The engine: `helm template` when `helm` is on PATH, otherwise Helm's Go library as the
//! `helm-python-sdk` package ships it, in the virtualenv `scripts/setup.sh` creates
//! (`NETPOL_TRACE_HELM_VENV`, default `~/.cache/netpol-trace/helm-venv`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const RELEASE: &str = "np";
const NAMESPACE: &str = "netpol-trace";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/netpol-trace")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn helm_python() -> PathBuf {
    let venv = std::env::var_os("NETPOL_TRACE_HELM_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/netpol-trace/helm-venv")
    });
    venv.join("bin/python")
}

/// Renders `chart` with `values`: the manifests by template path, or Helm's error.
fn try_render(chart: &Path, values: &Value) -> Result<BTreeMap<String, String>, String> {
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    if let Some(helm) = on_path("helm") {
        let out = Command::new(helm)
            .args(["template", RELEASE])
            .arg(chart)
            .args(["--namespace", NAMESPACE, "--values"])
            .arg(&values_file)
            .output()
            .expect("running helm");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8(out.stdout).unwrap();
        let mut manifests: BTreeMap<String, String> = BTreeMap::new();
        for part in text.split("---\n# Source: ").skip(1) {
            let (path, body) = part.split_once('\n').unwrap_or((part, ""));
            let entry = manifests.entry(path.to_string()).or_default();
            entry.push_str("---\n");
            entry.push_str(body);
        }
        return Ok(manifests);
    }
    let python = helm_python();
    assert!(
        python.is_file(),
        "no Helm engine: neither `helm` on PATH nor {} (run scripts/setup.sh, which installs \
         helm-python-sdk there)",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/render.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(chart)
        .args([RELEASE, NAMESPACE])
        .arg(&values_file)
        .output()
        .expect("running the Helm engine");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("the engine's JSON"))
}

/// The rendered documents (NOTES.txt aside), as JSON.
fn render(values: Value) -> Vec<Value> {
    let manifests = try_render(&chart_dir(), &values).unwrap_or_else(|e| panic!("render: {e}"));
    assert!(!manifests.is_empty());
    manifests
        .iter()
        .filter(|(path, _)| !path.ends_with("NOTES.txt"))
        .flat_map(|(path, text)| {
            serde_yaml_ng::Deserializer::from_str(text)
                .map(|doc| {
                    let value = serde_yaml_ng::Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{path}: not YAML: {e}\n{text}"));
                    serde_json::to_value(value).unwrap()
                })
                .filter(|v| !v.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Keys of `original` missing or changed in `back`, as JSON pointers.
fn lost_fields(original: &Value, back: &Value, at: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &format!("{at}/{key}"), out),
                    None => out.push(format!("{at}/{key} (unknown field)")),
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

/// Parses `json` as `T`; fails on any field that does not survive the round trip.
fn typed<T: DeserializeOwned + Serialize>(json: &Value) -> T {
    let object: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{json:#}", json["kind"]));
    let mut lost = vec![];
    lost_fields(json, &serde_json::to_value(&object).unwrap(), "", &mut lost);
    assert!(lost.is_empty(), "{} {}: {lost:#?}", json["kind"], json["metadata"]["name"]);
    object
}

/// The fields of prometheus-operator's `monitoring.coreos.com/v1` monitors the chart uses;
/// any other field is refused.
mod monitoring {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Monitor {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: Spec,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Spec {
        pub namespace_selector: NamespaceSelector,
        pub selector: LabelSelector,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub endpoints: Option<Vec<Endpoint>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub pod_metrics_endpoints: Option<Vec<Endpoint>>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct NamespaceSelector {
        pub match_names: Vec<String>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Endpoint {
        pub port: String,
        pub path: String,
        pub scheme: String,
        pub interval: String,
        pub scrape_timeout: String,
        pub authorization: Authorization,
        pub relabelings: Vec<Relabeling>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Authorization {
        #[serde(rename = "type")]
        pub type_: String,
        pub credentials: SecretKey,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct SecretKey {
        pub name: String,
        pub key: String,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Relabeling {
        pub source_labels: Vec<String>,
        pub target_label: String,
    }
}

/// Every document typed, by kind.
#[derive(Default)]
struct Rendered {
    kinds: Vec<String>,
    daemonsets: Vec<DaemonSet>,
    services: Vec<Service>,
    secrets: Vec<Secret>,
    service_accounts: Vec<ServiceAccount>,
    config_maps: Vec<ConfigMap>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    monitors: Vec<monitoring::Monitor>,
}

fn rendered(values: Value) -> Rendered {
    let mut r = Rendered::default();
    for doc in render(values) {
        let kind = doc["kind"].as_str().expect("kind").to_string();
        match kind.as_str() {
            "DaemonSet" => r.daemonsets.push(typed(&doc)),
            "Deployment" => drop(typed::<Deployment>(&doc)),
            "Role" => drop(typed::<Role>(&doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(&doc)),
            "Service" => r.services.push(typed(&doc)),
            "Secret" => r.secrets.push(typed(&doc)),
            "ServiceAccount" => r.service_accounts.push(typed(&doc)),
            "ConfigMap" => r.config_maps.push(typed(&doc)),
            "ClusterRole" => r.cluster_roles.push(typed(&doc)),
            "ClusterRoleBinding" => r.cluster_role_bindings.push(typed(&doc)),
            "ServiceMonitor" | "PodMonitor" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                r.monitors.push(typed(&doc));
            }
            other => panic!("unexpected kind {other}"),
        }
        r.kinds.push(kind);
    }
    r
}

fn all_enabled() -> Value {
    json!({
        "metrics": {
            "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
            "podMonitor": {"enabled": true}
        },
        "grafana": {"dashboard": {"enabled": true}}
    })
}

#[test]
fn the_default_render_parses_and_has_no_monitor_nor_dashboard() {
    let r = rendered(json!({}));
    let kinds: BTreeSet<&str> = r.kinds.iter().map(String::as_str).collect();
    for kind in ["DaemonSet", "Deployment", "ClusterRole", "ServiceAccount", "ConfigMap"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    for kind in ["ServiceMonitor", "PodMonitor", "Service", "Secret"] {
        assert!(!kinds.contains(kind), "{kind} rendered while off by default");
    }
    assert!(
        r.config_maps.iter().all(|c| !c
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("grafana_dashboard"))
    );
    assert_eq!(r.daemonsets.len(), 1);
}

#[test]
fn monitors_scrape_the_agents_with_a_token_allowed_to_read_metrics() {
    let r = rendered(all_enabled());
    let ds = &r.daemonsets[0];
    let pod = ds.spec.as_ref().unwrap().template.clone();
    let pod_labels = pod.metadata.as_ref().unwrap().labels.clone().unwrap();
    let agent = &pod.spec.as_ref().unwrap().containers[0];
    let port_names: BTreeSet<&str> =
        agent.ports.iter().flatten().filter_map(|p| p.name.as_deref()).collect();

    // The Service selects the agent pods and exposes their named metrics port.
    let [service] = &r.services[..] else { panic!("one Service: {:?}", r.services) };
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless: one endpoint per agent");
    for (k, v) in spec.selector.as_ref().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "the Service selects the agent pods by {k}");
    }
    let svc_port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.name.as_deref(), Some("http"));

    assert_eq!(r.monitors.len(), 2);
    for monitor in &r.monitors {
        assert_eq!(monitor.spec.namespace_selector.match_names, [NAMESPACE]);
        let wanted = monitor.spec.selector.match_labels.as_ref().unwrap();
        let (endpoints, target_labels) = match monitor.kind.as_str() {
            "ServiceMonitor" => {
                assert_eq!(
                    monitor.metadata.labels.as_ref().unwrap()["release"],
                    "kube-prometheus",
                    "extra labels reach the monitor"
                );
                (monitor.spec.endpoints.as_ref().unwrap(), service.metadata.labels.clone().unwrap())
            }
            "PodMonitor" => {
                (monitor.spec.pod_metrics_endpoints.as_ref().unwrap(), pod_labels.clone())
            }
            other => panic!("{other}"),
        };
        for (k, v) in wanted {
            assert_eq!(target_labels.get(k), Some(v), "{} selects by {k}", monitor.kind);
        }
        let [endpoint] = &endpoints[..] else { panic!("one endpoint") };
        assert_eq!(endpoint.path, "/metrics");
        assert!(
            port_names.contains(endpoint.port.as_str()),
            "port {} is the agent's",
            endpoint.port
        );
        assert_eq!(endpoint.authorization.type_, "Bearer");
        // The token: a service-account-token Secret of the scraper identity...
        let secret_name = &endpoint.authorization.credentials.name;
        assert_eq!(endpoint.authorization.credentials.key, "token");
        let secret = r
            .secrets
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(secret_name))
            .unwrap_or_else(|| panic!("no Secret {secret_name}"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/service-account-token"));
        assert_eq!(secret.metadata.namespace.as_deref(), monitor.metadata.namespace.as_deref());
        let account =
            &secret.metadata.annotations.as_ref().unwrap()["kubernetes.io/service-account.name"];
        assert!(r.service_accounts.iter().any(|sa| sa.metadata.name.as_ref() == Some(account)));
        // ... bound to a ClusterRole that may get /metrics (the agent's SubjectAccessReview).
        let binding = r
            .cluster_role_bindings
            .iter()
            .find(|b| {
                b.subjects.iter().flatten().any(|s| {
                    s.kind == "ServiceAccount"
                        && &s.name == account
                        && s.namespace.as_deref() == Some(NAMESPACE)
                })
            })
            .unwrap_or_else(|| panic!("{account} is bound to nothing"));
        let role = r
            .cluster_roles
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(binding.role_ref.name.as_str()))
            .expect("the bound ClusterRole");
        let reads_metrics = role.rules.iter().flatten().any(|rule| {
            rule.non_resource_urls.iter().flatten().any(|u| u == "/metrics")
                && rule.verbs.iter().any(|v| v == "get")
        });
        assert!(reads_metrics, "{} cannot get /metrics", binding.role_ref.name);
        let grants: usize =
            role.rules.iter().flatten().map(|r| r.resources.iter().flatten().count()).sum();
        assert_eq!(grants, 0, "the scraper reads /metrics and /drops only");
    }
}

#[test]
fn the_dashboard_config_map_carries_the_chart_dashboard() {
    let r = rendered(all_enabled());
    let dashboards: Vec<&ConfigMap> = r
        .config_maps
        .iter()
        .filter(|c| {
            c.metadata.labels.as_ref().unwrap().get("grafana_dashboard").map(String::as_str)
                == Some("1")
        })
        .collect();
    let [cm] = &dashboards[..] else { panic!("one dashboard ConfigMap") };
    let json_text = &cm.data.as_ref().unwrap()["netpol-trace.json"];
    let rendered: Value = serde_json::from_str(json_text).expect("dashboard JSON");
    let file = std::fs::read_to_string(chart_dir().join("dashboards/netpol-trace.json")).unwrap();
    assert_eq!(rendered, serde_json::from_str::<Value>(&file).unwrap());
    assert_eq!(rendered["title"], "netpol-trace");
}

#[test]
fn an_unknown_template_function_fails_the_render() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("netpol-trace");
    copy_dir(&chart_dir(), &copy);
    let ok = try_render(&copy, &json!({}));
    assert!(ok.is_ok(), "the copy renders: {ok:?}");
    std::fs::write(copy.join("templates/broken.yaml"), "x: {{ toYamll .Values.ports }}\n").unwrap();
    let err = try_render(&copy, &json!({})).expect_err("an unknown function must fail");
    assert!(err.contains("toYamll"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
