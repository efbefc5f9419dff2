//! Cluster-wide drops: every agent pod (found by label selector) asked for its `/drops`
//! through the API server's pod proxy, so nothing but the kubeconfig is needed.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};

use super::{http::DROPS, record::FlowRecord};

/// Namespace the agents run in by default.
pub const DEFAULT_AGENT_NAMESPACE: &str = "netpol-trace";
/// Label selector of the agent pods by default.
pub const DEFAULT_AGENT_SELECTOR: &str = "app.kubernetes.io/name=netpol-trace";
/// The agents' HTTP port by default.
pub const DEFAULT_AGENT_PORT: u16 = 9090;

/// How long one agent may take to answer by default.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the agents are.
#[derive(Debug, Clone)]
pub struct AgentLocator {
    /// Their namespace.
    pub namespace: String,
    /// Their label selector.
    pub selector: String,
    /// Their HTTP port.
    pub port: u16,
    /// How long one agent may take to answer.
    pub timeout: Duration,
}

impl Default for AgentLocator {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_AGENT_NAMESPACE.into(),
            selector: DEFAULT_AGENT_SELECTOR.into(),
            port: DEFAULT_AGENT_PORT,
            timeout: DEFAULT_AGENT_TIMEOUT,
        }
    }
}

/// Why drops could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The agent pods could not be listed.
    #[error("listing agent pods in namespace {namespace} ({selector}): {source}")]
    List {
        /// Namespace searched.
        namespace: String,
        /// Selector used.
        selector: String,
        /// The client error.
        source: kube::Error,
    },
    /// No pod matched.
    #[error("no agent pod in namespace {namespace} matches {selector}")]
    NoAgents {
        /// Namespace searched.
        namespace: String,
        /// Selector used.
        selector: String,
    },
}

/// One agent's answer.
#[derive(Debug)]
pub struct AgentAnswer {
    /// The agent pod.
    pub pod: String,
    /// Its node.
    pub node: Option<String>,
    /// Its records, or why they could not be read.
    pub drops: Result<Vec<FlowRecord>, String>,
}

/// The proxy path of an agent's `/drops`, with the namespace filter.
pub fn proxy_path(namespace: &str, pod: &str, port: u16, filter: Option<&str>) -> String {
    let mut path = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{DROPS}");
    if let Some(ns) = filter {
        path.push('?');
        path.push_str(
            &form_urlencoded::Serializer::new(String::new()).append_pair("namespace", ns).finish(),
        );
    }
    path
}

/// Asks every agent pod for its drops (`namespace`: only flows with an end in it). A client
/// without retries (`default_retry = false`) reports an agent that is down at once instead of
/// retrying until the timeout.
pub async fn collect(
    client: &kube::Client,
    locator: &AgentLocator,
    namespace: Option<&str>,
) -> Result<Vec<AgentAnswer>, CollectError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &locator.namespace);
    let list =
        pods.list(&ListParams::default().labels(&locator.selector)).await.map_err(|source| {
            CollectError::List {
                namespace: locator.namespace.clone(),
                selector: locator.selector.clone(),
                source,
            }
        })?;
    if list.items.is_empty() {
        return Err(CollectError::NoAgents {
            namespace: locator.namespace.clone(),
            selector: locator.selector.clone(),
        });
    }
    let asks = list.items.iter().map(|pod| async move {
        let name = pod.name_any();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let path = proxy_path(&locator.namespace, &name, locator.port, namespace);
        let drops = match tokio::time::timeout(locator.timeout, ask(client, &path)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}s", locator.timeout.as_secs_f32())),
        };
        AgentAnswer { pod: name, node, drops }
    });
    Ok(join_all(asks).await)
}

async fn ask(client: &kube::Client, path: &str) -> Result<Vec<FlowRecord>, String> {
    let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
    let text = client.request_text(request).await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not a list of drop records: {e}"))
}

#[cfg(test)]
mod tests {
    use fake_apiserver::{FakeApiServer, ProxyResponse};
    use serde_json::json;

    use super::*;
    use crate::agent::attribute::tests::record;

    fn agent_pod(name: &str, node: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "netpol-trace",
                         "labels": {"app.kubernetes.io/name": "netpol-trace"}},
            "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "netpol-trace"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.1"}})
    }

    #[tokio::test]
    async fn every_agent_is_asked_through_the_pod_proxy() {
        let fake = FakeApiServer::start().await;
        fake.insert(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netpol-trace"}}),
        );
        fake.insert(agent_pod("agent-a", "node-a"));
        fake.insert(agent_pod("agent-b", "node-b"));
        let mut other = agent_pod("unrelated", "node-a");
        other["metadata"]["labels"] = json!({"app": "other"});
        fake.insert(other);
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        r.node = Some("node-a".into());
        let answer = serde_json::to_value(vec![r]).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let seen_by_handler = seen.clone();
        fake.set_pod_proxy("netpol-trace", "agent-a", move |req| {
            seen_by_handler.lock().unwrap().push(req.clone());
            ProxyResponse::json(&answer)
        });
        // agent-b has no handler: the proxy answers 503, as for a pod that does not listen.
        let mut config = kube::Config::new(fake.url().parse().unwrap());
        config.default_retry = false;
        let client = kube::Client::try_from(config).unwrap();
        let answers = tokio::time::timeout(
            Duration::from_secs(5),
            collect(&client, &AgentLocator::default(), Some("db")),
        )
        .await
        .unwrap()
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].port.as_deref(), Some("9090"));
        assert_eq!(seen[0].path, "/drops");
        assert_eq!(seen[0].query, "namespace=db");
        assert_eq!(answers.len(), 2, "only the labelled pods");
        let a = answers.iter().find(|a| a.pod == "agent-a").unwrap();
        assert_eq!(a.node.as_deref(), Some("node-a"));
        let drops = a.drops.as_ref().unwrap();
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].drop.dst.port, 3306);
        let b = answers.iter().find(|a| a.pod == "agent-b").unwrap();
        assert!(b.drops.is_err());
        let proxied: Vec<_> =
            fake.requests().into_iter().filter(|r| r.path.contains("/proxy/")).collect();
        assert_eq!(proxied.len(), 2);
    }

    #[tokio::test]
    async fn no_agent_is_an_error_naming_the_selector() {
        let fake = FakeApiServer::start().await;
        let err = collect(&fake.client(), &AgentLocator::default(), None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no agent pod in namespace netpol-trace matches app.kubernetes.io/name=netpol-trace"
        );
    }
}
