//! The agent's HTTP endpoints: `/healthz` (200 while the loop runs), `/readyz` (200 once the
//! programs are attached and the caches synced, 503 before), `/metrics` (Prometheus text
//! format) and `/drops` (the current dropped flows as a JSON list; `?namespace=&pod=` keep
//! the flows with that namespace and/or pod at either end).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use super::{metrics, state::AgentState};

/// Path of the liveness endpoint.
pub const HEALTHZ: &str = "/healthz";
/// Path of the readiness endpoint.
pub const READYZ: &str = "/readyz";
/// Path of the metrics endpoint.
pub const METRICS: &str = "/metrics";
/// Path of the drops endpoint.
pub const DROPS: &str = "/drops";

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

/// Answers one request.
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
        DROPS => {
            let (mut namespace, mut pod) = (None, None);
            for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
                match &*k {
                    "namespace" if !v.is_empty() => namespace = Some(v.into_owned()),
                    "pod" if !v.is_empty() => pod = Some(v.into_owned()),
                    _ => {}
                }
            }
            let records = state.store().records(namespace.as_deref(), pod.as_deref());
            match serde_json::to_vec(&records) {
                Ok(body) => reply(StatusCode::OK, JSON, body),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, e.to_string()),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, format!("no such endpoint: {path}\n")),
    }
}

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
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
            let state = state.clone();
            connections.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let resp = handle(&state, req.method(), req.uri().path(), req.uri().query());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{
        agent::metrics::tests::parse,
        trace::{DropRecord, Endpoint, Evidence},
    };

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let ctype = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string))
            .unwrap_or_default();
        (status, ctype, body.to_string())
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
        let state = Arc::new(AgentState::new(100));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = serve(listener, state.clone(), stop_rx);

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
        state.metrics.add_drops(Some("db"), "NETFILTER_DROP", u.new_drops);
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
}
