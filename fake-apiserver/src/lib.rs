//! An in-process fake of the Kubernetes API server for tests.
//!
//! It speaks plain HTTP/1.1 on `127.0.0.1:0` and behaves like the real server for what
//! netpol-trace uses: GET/LIST (label and field selectors, pagination), WATCH (history after a
//! resourceVersion, 410 Expired for compacted ones, bookmarks, `sendInitialEvents`), POST, PUT
//! (optimistic concurrency), PATCH (JSON patch, merge patch, strategic merge patch applied as a
//! merge patch), DELETE (with preconditions), `dryRun=All`, `Status` error bodies, a little
//! validation and defaulting (NetworkPolicy, Namespace, events.k8s.io Event), RBAC denials
//! armed by the test, injected failures, interleaved writes by "another client", and the pod
//! proxy subresource.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_apiserver::FakeApiServer;
//! let fake = FakeApiServer::start().await;
//! fake.insert(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}
//! }));
//! let client = fake.client();
//! fake.forbid("patch", "networkpolicies");
//! # let _ = client;
//! # }
//! ```
//!
//! Core v1 and events.k8s.io/v1 Events are stored separately (the real server shares them).

mod proxy;
mod resources;
mod rules;
mod selector;
mod server;
mod status;
mod store;
mod validation;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use proxy::{ProxyHandler, ProxyRequest, ProxyResponse};
pub use resources::{RESOURCES, ResourceType};
pub use server::RecordedRequest;
pub use status::{FAKE_USER, JSON_PATCH_REJECTED};

use rules::{InterleavedWrite, RequestPattern, Rules};
use server::{Shared, lock};
use store::Store;

/// Settings for [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiServerBuilder {
    bookmark_interval: Duration,
    history_limit: usize,
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        Self { bookmark_interval: Duration::from_secs(1), history_limit: 10_000 }
    }
}

impl FakeApiServerBuilder {
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 1 s).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// How many writes the watch history keeps before older resourceVersions expire
    /// (default 10 000).
    pub fn history_limit(mut self, writes: usize) -> Self {
        self.history_limit = writes.max(1);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(self) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake-apiserver: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake-apiserver: local address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(self.history_limit)),
            rules: Mutex::new(Rules::default()),
            requests: Mutex::new(Vec::new()),
            proxies: Mutex::new(HashMap::new()),
            bookmark_interval: self.bookmark_interval,
        });
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        FakeApiServer { addr, shared, task }
    }
}

/// A running fake API server; it stops (and drops every connection) when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn resource(name: &str) -> &'static ResourceType {
    resources::by_name(name)
        .unwrap_or_else(|| panic!("fake-apiserver does not serve a resource named {name:?}"))
}

impl FakeApiServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        FakeApiServerBuilder::default().start().await
    }

    /// Settings for a server started with [`FakeApiServerBuilder::start`].
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// Base URL, e.g. `http://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client talking to this server (plain HTTP, no auth, namespace `default`).
    ///
    /// # Panics
    /// Never in practice: the URL is well formed and kube accepts plain-HTTP configs.
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("fake-apiserver: URL");
        kube::Client::try_from(kube::Config::new(url)).expect("fake-apiserver: kube client")
    }

    /// A kubeconfig (context `fake`, namespace `default`) pointing at this server, for a
    /// subprocess run with `KUBECONFIG`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Stores an object as given, bypassing admission (no validation or defaulting, except a
    /// Namespace's `kubernetes.io/metadata.name` label), as if it had been there before.
    /// Namespaced objects without a namespace go to `default`. Replaces an existing object
    /// (MODIFIED) or adds it (ADDED). Returns the stored object.
    ///
    /// # Panics
    /// On an object that is not JSON with apiVersion, kind and metadata.name of a served type.
    pub fn insert(&self, obj: impl Serialize) -> Value {
        let obj = serde_json::to_value(obj).expect("fake-apiserver: object serializes to JSON");
        lock(&self.shared.store)
            .insert(obj)
            .unwrap_or_else(|e| panic!("fake-apiserver: cannot insert: {e}"))
    }

    /// Reads one object (`namespace` is ignored for cluster-scoped resources). `resource` is a
    /// plural or kind: `networkpolicies`, `NetworkPolicy`, `Event.events.k8s.io`.
    pub fn get(&self, resource_name: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource(resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        lock(&self.shared.store).get(rt, ns, name).ok()
    }

    /// Every stored object of a resource, in (namespace, name) order.
    pub fn objects(&self, resource_name: &str) -> Vec<Value> {
        let rt = resource(resource_name);
        lock(&self.shared.store).list(rt, None, &Default::default(), &Default::default())
    }

    /// Changes a stored object as another client would: new resourceVersion, MODIFIED event,
    /// generation bumped when the spec changed. Returns the new object, `None` if absent.
    pub fn modify(
        &self,
        resource_name: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let rt = resource(resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        lock(&self.shared.store).modify(rt, ns, name, change)
    }

    /// Deletes a stored object as another client would (DELETED event).
    pub fn remove(&self, resource_name: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource(resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        lock(&self.shared.store).remove(rt, ns, name)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version()
    }

    /// Forgets the watch history, as etcd compaction does: a watch from any older
    /// resourceVersion gets a 410 Expired ERROR event.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Denies a verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `*`) on a
    /// resource (`networkpolicies`, `pods/proxy`, `*`) in every namespace, with the 403 the
    /// RBAC authorizer sends.
    pub fn forbid(&self, verb: &str, resource_name: &str) {
        lock(&self.shared.rules).forbidden.push(RequestPattern::new(verb, resource_name, None));
    }

    /// Like [`Self::forbid`], in one namespace only.
    pub fn forbid_in_namespace(&self, verb: &str, resource_name: &str, namespace: &str) {
        lock(&self.shared.rules).forbidden.push(RequestPattern::new(
            verb,
            resource_name,
            Some(namespace),
        ));
    }

    /// Lifts every denial armed by [`Self::forbid`].
    pub fn allow_all(&self) {
        lock(&self.shared.rules).forbidden.clear();
    }

    /// Makes the next request matching verb and resource fail with `code` (404, 409, 429,
    /// 500, 503, 504...) and the Status the real server sends for it. Armed failures are used
    /// once each, in order.
    pub fn fail_next(&self, verb: &str, resource_name: &str, code: u16) {
        lock(&self.shared.rules)
            .failures
            .push((RequestPattern::new(verb, resource_name, None), code));
    }

    /// Arms a write by another client that lands just before the next matching request on
    /// that object is served (e.g. between the GET and the PATCH of a read-modify-write):
    /// `change` edits the stored object, which gets a new resourceVersion.
    pub fn write_before_next(
        &self,
        verb: &str,
        resource_name: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        lock(&self.shared.rules).writes.push(InterleavedWrite {
            pattern: RequestPattern::new(verb, resource_name, Some(namespace)),
            name: name.to_string(),
            change: Box::new(change),
        });
    }

    /// Answers the pod proxy subresource for one pod with `handler` (the pod must also exist
    /// as an object; without a handler the proxy answers 503 "connection refused").
    pub fn set_pod_proxy(
        &self,
        namespace: &str,
        pod: &str,
        handler: impl Fn(&ProxyRequest) -> ProxyResponse + Send + Sync + 'static,
    ) {
        lock(&self.shared.proxies)
            .insert((namespace.to_string(), pod.to_string()), Arc::new(handler));
    }
}
