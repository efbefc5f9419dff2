//! An in-process fake of the Kubernetes API server for tests.
//!
//! It speaks plain HTTP/1.1 on `127.0.0.1:0` and behaves like the real server for what
//! netpol-trace uses: GET/LIST (label and field selectors, `limit`/`continue` pagination),
//! WATCH (history after a resourceVersion, 410 Expired for compacted ones, bookmarks,
//! `sendInitialEvents`), POST, PUT (optimistic concurrency), PATCH (JSON patch — a failed
//! `test` is a 422 as in the real server —, merge patch, strategic merge patch applied as a
//! merge patch), DELETE (with preconditions), `dryRun=All`, `Status` error bodies, a little
//! validation and defaulting (NetworkPolicy, Namespace, events.k8s.io Event), injected
//! failures, interleaved writes by "another client", and the pod proxy subresource.
//!
//! It also serves what an operator needs: CustomResourceDefinitions (the types they define
//! are served like built-ins, with the `/status` subresource, pruning of unknown fields and
//! schema validation), `coordination.k8s.io` Leases, TokenReview, SubjectAccessReview,
//! SelfSubjectAccessReview and LocalSubjectAccessReview, and **RBAC enforced per bearer
//! token** from Roles, ClusterRoles (aggregated ones included), RoleBindings and
//! ClusterRoleBindings — typically the manifests a project ships:
//!
//! ```no_run
//! # async fn demo() {
//! use fake_apiserver::{FakeApiServer, Identity};
//! let fake = FakeApiServer::builder()
//!     .with_manifests("deploy/")                    // the CRD and the RBAC documents
//!     .token("agent", Identity::service_account("netpol-trace", "netpol-trace"))
//!     .admin_token("admin")                         // system:masters, for the test's setup
//!     .start()
//!     .await;
//! let agent = fake.client_with_token("agent");      // 401 without a token, 403 when RBAC says no
//! let admin = fake.client_with_token("admin");
//! # let _ = (agent, admin);
//! # }
//! ```
//!
//! Without tokens nothing is authenticated and everything is allowed (as before), except the
//! denials a test arms:
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

mod auth;
mod crd;
mod list;
mod manifests;
mod proxy;
mod rbac;
mod resources;
mod reviews;
mod rules;
mod selector;
mod server;
mod status;
mod store;
mod validation;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use auth::Identity;
pub use proxy::{ProxyHandler, ProxyRequest, ProxyResponse};
pub use rbac::{Attributes, Decision};
pub use resources::{RESOURCES, ResourceType};
pub use server::RecordedRequest;
pub use status::{FAKE_USER, JSON_PATCH_REJECTED};

use auth::Auth;
use rules::{InterleavedWrite, RequestPattern, Rules};
use server::{Shared, lock};
use store::Store;

/// Settings for [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiServerBuilder {
    bookmark_interval: Duration,
    history_limit: usize,
    manifests: Vec<PathBuf>,
    tokens: Vec<(String, Identity)>,
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            manifests: Vec::new(),
            tokens: Vec::new(),
        }
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

    /// Loads manifests at start (see [`FakeApiServer::load_manifests`]): a file, or the
    /// `*.yaml|*.yml|*.json` files directly in a directory, such as a project's `deploy/`.
    /// Also adds the ClusterRoles every cluster has (`cluster-admin`, and `admin`, `edit`,
    /// `view` holding what is aggregated into them) so that aggregation labels work.
    pub fn with_manifests(mut self, path: impl AsRef<Path>) -> Self {
        self.manifests.push(path.as_ref().to_path_buf());
        self
    }

    /// Registers a bearer token for an identity, which turns authentication and RBAC on:
    /// from then on a request without a known token gets 401, and one RBAC does not allow
    /// gets 403 (identities in `system:masters` are allowed everything). Also adds the
    /// ClusterRoles every cluster has, as [`Self::with_manifests`] does.
    pub fn token(mut self, token: &str, identity: Identity) -> Self {
        self.tokens.push((token.to_string(), identity));
        self
    }

    /// Registers a token for a cluster administrator (`system:masters`), for a test's setup.
    pub fn admin_token(self, token: &str) -> Self {
        self.token(token, Identity::cluster_admin("cluster-admin"))
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound, or a manifest cannot be read or stored.
    pub async fn start(self) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake-apiserver: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake-apiserver: local address");
        let mut store = Store::new(self.history_limit);
        if !self.manifests.is_empty() || !self.tokens.is_empty() {
            for role in manifests::default_cluster_roles() {
                store.insert(role).unwrap_or_else(|e| panic!("fake-apiserver: {e}"));
            }
        }
        for path in &self.manifests {
            manifests::load(&mut store, path).unwrap_or_else(|e| {
                panic!("fake-apiserver: loading manifests from {}: {e}", path.display())
            });
        }
        let auth =
            Auth { enforce: !self.tokens.is_empty(), tokens: self.tokens.into_iter().collect() };
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            auth: Mutex::new(auth),
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

fn resource(store: &Store, name: &str) -> &'static ResourceType {
    store
        .registry
        .by_name(name)
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

    /// A kube client that sends `token` as its bearer token (namespace `default`).
    ///
    /// # Panics
    /// Never in practice, as [`Self::client`].
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let url = self.url().parse().expect("fake-apiserver: URL");
        let mut config = kube::Config::new(url);
        config.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(config).expect("fake-apiserver: kube client")
    }

    /// A kubeconfig (context `fake`, namespace `default`) pointing at this server, for a
    /// subprocess run with `KUBECONFIG`.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_user("{}")
    }

    /// Like [`Self::kubeconfig_yaml`], with `token` as the user's bearer token.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        let token = serde_json::to_string(token).unwrap_or_default();
        self.kubeconfig_with_user(&format!("{{token: {token}}}"))
    }

    fn kubeconfig_with_user(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {user}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Writes [`Self::kubeconfig_yaml_with_token`] to `path`.
    pub fn write_kubeconfig_with_token(&self, path: &Path, token: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml_with_token(token))
    }

    /// Stores the documents of a manifest file, or of the `*.yaml|*.yml|*.json` files directly
    /// in a directory, as [`Self::insert`] does: CustomResourceDefinitions first (their types
    /// are then served), then every document of a served type (RBAC, Namespaces,
    /// ServiceAccounts, ConfigMaps...); documents of other types (Deployments, DaemonSets,
    /// kustomizations) are skipped. Returns the stored objects.
    ///
    /// # Panics
    /// When a file cannot be read or parsed, or an object cannot be stored.
    pub fn load_manifests(&self, path: impl AsRef<Path>) -> Vec<Value> {
        let path = path.as_ref();
        manifests::load(&mut lock(&self.shared.store), path).unwrap_or_else(|e| {
            panic!("fake-apiserver: loading manifests from {}: {e}", path.display())
        })
    }

    /// Registers a bearer token for an identity and turns authentication and RBAC on (see
    /// [`FakeApiServerBuilder::token`]).
    pub fn add_token(&self, token: &str, identity: Identity) {
        let mut auth = lock(&self.shared.auth);
        auth.enforce = true;
        auth.tokens.insert(token.to_string(), identity);
    }

    /// Asks the fake's RBAC what it would answer a SubjectAccessReview.
    pub fn authorize(&self, identity: &Identity, attributes: &Attributes) -> Decision {
        rbac::authorize(&lock(&self.shared.store), identity, attributes)
    }

    /// Whether RBAC allows `identity` a `verb` on `resource` (a name as [`Self::get`] reads
    /// it, optionally with `/subresource`: `dropreports/status`) in `namespace` (`None`: the
    /// cluster scope), on any object.
    ///
    /// # Panics
    /// On a resource the fake does not serve.
    pub fn can(
        &self,
        identity: &Identity,
        verb: &str,
        resource_name: &str,
        namespace: Option<&str>,
    ) -> bool {
        let (res, sub) = resource_name.split_once('/').unwrap_or((resource_name, ""));
        let store = lock(&self.shared.store);
        let rt = resource(&store, res);
        let attributes = Attributes::Resource {
            verb: verb.to_string(),
            group: rt.group.to_string(),
            resource: rt.plural.to_string(),
            subresource: sub.to_string(),
            namespace: namespace.unwrap_or_default().to_string(),
            name: String::new(),
        };
        rbac::authorize(&store, identity, &attributes).allowed
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
        let store = lock(&self.shared.store);
        let rt = resource(&store, resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        store.get(rt, ns, name).ok()
    }

    /// Every stored object of a resource, in (namespace, name) order.
    pub fn objects(&self, resource_name: &str) -> Vec<Value> {
        let store = lock(&self.shared.store);
        let rt = resource(&store, resource_name);
        store.list(rt, None, &Default::default(), &Default::default())
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
        let mut store = lock(&self.shared.store);
        let rt = resource(&store, resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        store.modify(rt, ns, name, change)
    }

    /// Deletes a stored object as another client would (DELETED event).
    pub fn remove(&self, resource_name: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut store = lock(&self.shared.store);
        let rt = resource(&store, resource_name);
        let ns = if rt.namespaced { namespace } else { "" };
        store.remove(rt, ns, name)
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
        let pattern = self.pattern(verb, resource_name, None);
        lock(&self.shared.rules).forbidden.push(pattern);
    }

    /// Like [`Self::forbid`], in one namespace only.
    pub fn forbid_in_namespace(&self, verb: &str, resource_name: &str, namespace: &str) {
        let pattern = self.pattern(verb, resource_name, Some(namespace));
        lock(&self.shared.rules).forbidden.push(pattern);
    }

    fn pattern(&self, verb: &str, resource_name: &str, namespace: Option<&str>) -> RequestPattern {
        RequestPattern::new(&lock(&self.shared.store).registry, verb, resource_name, namespace)
    }

    /// Lifts every denial armed by [`Self::forbid`].
    pub fn allow_all(&self) {
        lock(&self.shared.rules).forbidden.clear();
    }

    /// Makes the next request matching verb and resource fail with `code` (404, 409, 429,
    /// 500, 503, 504...) and the Status the real server sends for it. Armed failures are used
    /// once each, in order.
    pub fn fail_next(&self, verb: &str, resource_name: &str, code: u16) {
        let pattern = self.pattern(verb, resource_name, None);
        lock(&self.shared.rules).failures.push((pattern, code));
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
        let pattern = self.pattern(verb, resource_name, Some(namespace));
        lock(&self.shared.rules).writes.push(InterleavedWrite {
            pattern,
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
