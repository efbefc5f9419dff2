//! The agent's HTTP endpoints: `/healthz` (200 while the loop runs), `/readyz` (200 once the
//! programs are attached and the caches synced, 503 before), `/metrics` (Prometheus text
//! format) and `/drops` (the current dropped flows as a JSON list, most recent first;
//! `?namespace=&pod=` keep the flows with that namespace and/or pod at either end, `?limit=`
//! and `?continue=` page through them).
//!
//! `/metrics` and `/drops` need a bearer token that the API server authenticates and
//! authorizes (see [`super::access`]); the probes stay open. Each connection must send its
//! request header within [`Limits::header_read_timeout`] and lives at most
//! [`Limits::connection_lifetime`]; beyond [`Limits::max_connections`] connections are closed
//! as soon as they are accepted.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::{
    access::{Authorizer, Decision},
    metrics,
    state::AgentState,
};

/// Path of the liveness endpoint.
pub const HEALTHZ: &str = "/healthz";
/// Path of the readiness endpoint.
pub const READYZ: &str = "/readyz";
/// Path of the metrics endpoint.
pub const METRICS: &str = "/metrics";
/// Path of the drops endpoint.
pub const DROPS: &str = "/drops";
/// Flows in one `/drops` answer without `?limit=`.
pub const DEFAULT_LIMIT: usize = 500;
/// Most flows in one `/drops` answer.
pub const MAX_LIMIT: usize = 5000;
/// Response header with the `?continue=` value of the next page (absent on the last page).
pub const CONTINUE_HEADER: &str = "x-continue";
/// Response header with how many flows match in all.
pub const TOTAL_HEADER: &str = "x-total-count";

/// Bounds on the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a whole request header (also while a kept-alive connection
    /// waits for its next request).
    pub header_read_timeout: Duration,
    /// Longest life of one connection; it is then shut down gracefully.
    pub connection_lifetime: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Answers one request that was let through (see [`respond`] for the access check).
pub fn handle(
    state: &AgentState,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match path {
        HEALTHZ if state.running() => reply(StatusCode::OK, TEXT, "ok\n"),
        HEALTHZ => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the agent loop is not running\n"),
        READYZ => match state.not_ready().as_slice() {
            [] => match state.metrics.degraded() {
                None => reply(StatusCode::OK, TEXT, "ready\n"),
                Some(why) => reply(
                    StatusCode::OK,
                    TEXT,
                    format!("ready (degraded: tc-only, drop reason unknown: {why})\n"),
                ),
            },
            waiting => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, waiting.join("; ") + "\n"),
        },
        METRICS => {
            let dropping = state.store().dropping();
            state.metrics.set_flows_dropping(dropping);
            reply(StatusCode::OK, metrics::CONTENT_TYPE, state.metrics.render())
        }
        DROPS => drops(state, query),
        _ => reply(StatusCode::NOT_FOUND, TEXT, format!("no such endpoint: {path}\n")),
    }
}

/// One page of `/drops`: only that page is cloned under the store's lock.
fn drops(state: &AgentState, query: Option<&str>) -> Response<Body> {
    let (mut namespace, mut pod, mut limit, mut offset) = (None, None, DEFAULT_LIMIT, 0);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "namespace" if !v.is_empty() => namespace = Some(v.into_owned()),
            "pod" if !v.is_empty() => pod = Some(v.into_owned()),
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(MAX_LIMIT),
                _ => return reply(StatusCode::BAD_REQUEST, TEXT, "limit: a positive number\n"),
            },
            "continue" if !v.is_empty() => match v.parse() {
                Ok(n) => offset = n,
                Err(_) => return reply(StatusCode::BAD_REQUEST, TEXT, "continue: a number\n"),
            },
            _ => {}
        }
    }
    let (page, total) = state.store().page(namespace.as_deref(), pod.as_deref(), offset, limit);
    let next = offset.saturating_add(page.len());
    let mut resp = match serde_json::to_vec(&page) {
        Ok(body) => reply(StatusCode::OK, JSON, body),
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, e.to_string()),
    };
    resp.headers_mut().insert(TOTAL_HEADER, total.into());
    if next < total {
        resp.headers_mut().insert(CONTINUE_HEADER, next.into());
    }
    resp
}

/// Answers one request: `/metrics` and `/drops` only for a caller the API server authenticates
/// (401 otherwise, with `WWW-Authenticate: Bearer`) and allows to `get` the path (403).
pub async fn respond<B>(
    state: &AgentState,
    authorizer: &Authorizer,
    req: &Request<B>,
) -> Response<Body> {
    let path = req.uri().path();
    if matches!(path, METRICS | DROPS) {
        match authorizer.check(req.headers(), path).await {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Unauthenticated) => {
                let mut resp = reply(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n");
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                return resp;
            }
            Ok(Decision::Forbidden) => {
                return reply(StatusCode::FORBIDDEN, TEXT, format!("Forbidden (get {path})\n"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check access to {path}");
                return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "access check failed\n");
            }
        }
    }
    handle(state, req.method(), path, req.uri().query())
}

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` turns true, within `limits`.
pub fn serve(
    listener: TcpListener,
    state: Arc<AgentState>,
    authorizer: Arc<Authorizer>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("connection limit reached; closing a new connection");
                drop(stream);
                continue;
            };
            let (state, authorizer) = (state.clone(), authorizer.clone());
            connections.spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req: Request<Incoming>| {
                    let (state, authorizer) = (state.clone(), authorizer.clone());
                    async move { Ok::<_, Infallible>(respond(&state, &authorizer, &req).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .keep_alive(true);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    () = tokio::time::sleep(limits.connection_lifetime) => {
                        conn.as_mut().graceful_shutdown();
                        tokio::time::timeout(limits.header_read_timeout, conn.as_mut())
                            .await
                            .unwrap_or(Ok(()))
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
            });
            while connections.try_join_next().is_some() {}
        }
        connections.abort_all();
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fake_apiserver::{FakeApiServer, Identity};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::api::{Api, PostParams};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{
        agent::{access::Access, metrics::tests::parse},
        trace::{DropRecord, Endpoint, Evidence},
    };

    /// GET `path` with `token` as the bearer token: status, head (lowercase) and body.
    async fn get_as(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    /// GET as the scraper: status, content type and body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let (status, head, body) = get_as(addr, path, Some("scraper")).await;
        let ctype = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: ").map(str::to_string))
            .unwrap_or_default();
        (status, ctype, body)
    }

    /// The API server enforcing `deploy/`'s RBAC: the agent's ServiceAccount, `prom` bound to
    /// the metrics reader role, and `eve` bound to nothing.
    async fn cluster() -> FakeApiServer {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let fake = FakeApiServer::builder()
            .with_manifests(deploy.join("deploy"))
            .token("agent", Identity::service_account("netpol-trace", "netpol-trace"))
            .token("scraper", Identity::user("prom", ["monitoring"]))
            .token("nobody", Identity::user("eve", Vec::<String>::new()))
            .admin_token("admin")
            .start()
            .await;
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "prom-reads-netpol-trace"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "netpol-trace-metrics-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "prom"}]
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(fake.client_with_token("admin"))
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        fake
    }

    struct Server {
        addr: SocketAddr,
        state: Arc<AgentState>,
        authorizer: Arc<Authorizer>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    }

    /// The server, checking access with the agent's own token.
    async fn start(fake: &FakeApiServer, limits: Limits) -> Server {
        let state = Arc::new(AgentState::new(100));
        let authorizer =
            Arc::new(Authorizer::new(&Access::api_server(), fake.client_with_token("agent")));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = serve(listener, state.clone(), authorizer.clone(), limits, stop_rx);
        Server { addr, state, authorizer, stop, task }
    }

    fn drop_record(src: &str, ns: &str, pod: &str) -> DropRecord {
        let t = chrono::Utc::now();
        DropRecord {
            time: t,
            first_seen: t,
            reason: "NETFILTER_DROP".into(),
            reason_raw: 11,
            ifname: "cali0".into(),
            count: 2,
            protocol: crate::policy::Protocol::Tcp,
            src: Endpoint::addr(src.parse().unwrap(), 40000),
            dst: Endpoint {
                namespace: Some(ns.into()),
                pod: Some(pod.into()),
                ..Endpoint::addr("10.0.2.7".parse().unwrap(), 3306)
            },
            policies: vec![],
            hint: None,
            evidence: Evidence::default(),
        }
    }

    #[tokio::test]
    async fn endpoints_answer_on_loopback() {
        let fake = cluster().await;
        let Server { addr, state, stop: stop_tx, task: server, .. } =
            start(&fake, Limits::default()).await;

        assert_eq!(get(addr, HEALTHZ).await.0, 503);
        let (status, _, body) = get(addr, READYZ).await;
        assert_eq!(status, 503);
        assert!(body.contains("not attached") && body.contains("not synced"), "{body}");
        state.set_running(true);
        state.set_attached(true);
        assert_eq!(get(addr, HEALTHZ).await.0, 200);
        let (status, _, body) = get(addr, READYZ).await;
        assert_eq!((status, body.trim()), (503, "the cluster caches have not synced yet"));
        state.set_synced(true);
        assert_eq!(get(addr, READYZ).await.0, 200);

        let u = state.store().record_drop(&drop_record("10.0.1.5", "db", "mysql-0"), Some("n1"));
        state.metrics.add_drops(
            metrics::DropKind {
                destination_namespace: Some("db"),
                protocol: "TCP",
                direction: None,
                reason: "NETFILTER_DROP",
            },
            u.new_drops,
        );
        state.store().record_drop(&drop_record("10.0.1.6", "cache", "redis-0"), Some("n1"));
        let (status, ctype, body) = get(addr, DROPS).await;
        assert_eq!((status, ctype.as_str()), (200, JSON));
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        assert_eq!(all[0]["state"], "dropping");
        let (_, _, body) = get(addr, "/drops?namespace=db").await;
        let db: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(db.len(), 1);
        assert_eq!(db[0]["dst"]["pod"], "mysql-0");
        assert_eq!(db[0]["node"], "n1");
        let (_, _, body) = get(addr, "/drops?namespace=db&pod=redis-0").await;
        assert_eq!(body, "[]");
        let (_, _, body) = get(addr, "/drops?pod=cache%2Fredis-0").await;
        assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap().len(), 1);

        // Pages: the first flow, then the rest from where it left off.
        let (status, head, body) = get_as(addr, "/drops?limit=1", Some("scraper")).await;
        let first: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!((status, first.len()), (200, 1));
        assert_eq!(first[0], all[0]);
        assert!(head.contains("x-continue: 1\r\n") && head.contains("x-total-count: 2"), "{head}");
        let (_, head, body) = get_as(addr, "/drops?limit=1&continue=1", Some("scraper")).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!([all[1]]));
        assert!(!head.contains("x-continue"), "the last page: {head}");
        assert_eq!(get(addr, "/drops?limit=0").await.0, 400);
        assert_eq!(get(addr, "/drops?limit=lots").await.0, 400);

        let (status, ctype, body) = get(addr, METRICS).await;
        assert_eq!((status, ctype.as_str()), (200, metrics::CONTENT_TYPE));
        let samples = parse(&body);
        let value = |name: &str| samples.iter().find(|s| s.0 == name).map(|s| s.2);
        assert_eq!(value("netpol_trace_drops_total"), Some(2.0));
        assert_eq!(value("netpol_trace_flows_dropping"), Some(2.0));

        assert_eq!(get(addr, "/nope").await.0, 404);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn the_api_server_decides_who_reads_metrics_and_drops() {
        let fake = cluster().await;
        let server = start(&fake, Limits::default()).await;
        let addr = server.addr;
        for path in [METRICS, DROPS] {
            let (status, head, _) = get_as(addr, path, None).await;
            assert_eq!(status, 401, "{path} without a token");
            assert!(head.contains("www-authenticate: bearer"), "{head}");
            assert_eq!(get_as(addr, path, Some("stolen")).await.0, 401, "{path}: unknown token");
            assert_eq!(get_as(addr, path, Some("nobody")).await.0, 403, "{path}: not bound");
            assert_eq!(get_as(addr, path, Some("scraper")).await.0, 200, "{path}: the reader");
        }
        // Again from the cache: the same answers, no more reviews.
        let reviews = || fake.requests().iter().filter(|r| r.path.contains("review")).count();
        let before = reviews();
        assert_eq!(get_as(addr, METRICS, Some("nobody")).await.0, 403);
        assert_eq!(get_as(addr, DROPS, Some("scraper")).await.0, 200);
        assert_eq!(reviews(), before, "decisions are cached");
        assert_eq!(server.authorizer.cached(), 6);
        // The probes stay open.
        server.state.set_running(true);
        assert_eq!(get_as(addr, HEALTHZ, None).await.0, 200);
        assert_eq!(get_as(addr, READYZ, None).await.0, 503);
        server.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn a_stalled_header_is_cut_off_and_excess_connections_closed() {
        let fake = cluster().await;
        let limits =
            Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
        let server = start(&fake, limits).await;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the stalled connection is still open after 5 s");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        server.stop.send(true).unwrap();

        let limits = Limits { max_connections: 2, ..Limits::default() };
        let server = start(&fake, limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the third connection is closed: {n:?}");
        drop(held);
        server.state.set_running(true);
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let Ok(mut s) = tokio::net::TcpStream::connect(server.addr).await else { continue };
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut out = String::new();
                if s.read_to_string(&mut out).await.is_ok() && out.starts_with("HTTP/1.1 200") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "slots are given back when connections end");
        server.stop.send(true).unwrap();
    }
}
