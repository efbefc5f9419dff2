//! HTTP/1.1 serving: routing, the verbs, and the request log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::proxy::{ProxyHandler, ProxyRequest, split_pod_port};
use crate::resources::{self, ResourceType};
use crate::rules::{RequestFacts, Rules};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{PatchKind, Store};
use crate::watch::{self, WatchRequest};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the fake received it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method (`GET`, `PATCH`...).
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string (without `?`), possibly empty.
    pub query: String,
    /// `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// The request body when it was JSON.
    pub body: Option<Value>,
    /// HTTP status of the answer.
    pub status: u16,
}

impl RecordedRequest {
    /// A query parameter's value.
    pub fn query_param(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether the request was a server-side dry run (`dryRun=All`).
    pub fn is_dry_run(&self) -> bool {
        self.query_param("dryRun").as_deref() == Some("All")
    }

    /// Whether the request was a watch.
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }
}

/// State shared by the server task and the test-side handle.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub rules: Mutex<Rules>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub proxies: Mutex<HashMap<(String, String), Arc<ProxyHandler>>>,
    pub bookmark_interval: Duration,
}

/// Locks a mutex; a test that panicked while holding it must not hide the original failure.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Accepts connections until the task is aborted; aborting drops every connection with it.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    // A client that goes away mid-request is not the server's failure.
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Where a URL points.
enum Route {
    Version,
    Collection { rt: &'static ResourceType, ns: Option<String> },
    Item { rt: &'static ResourceType, ns: Option<String>, name: String },
    PodProxy { ns: String, pod: String, port: Option<String>, path: String },
}

fn parse_route(path: &str) -> Option<Route> {
    let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs == ["version"] {
        return Some(Route::Version);
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", ..] => ("", "v1", 2),
        ["apis", g, v, ..] => (*g, *v, 3),
        _ => return None,
    };
    let rest = segs.split_off(rest);
    if let ["namespaces", ns, "pods", pod, "proxy", tail @ ..] = rest.as_slice()
        && group.is_empty()
    {
        let (pod, port) = split_pod_port(pod);
        let path = format!("/{}", tail.join("/"));
        return Some(Route::PodProxy { ns: ns.to_string(), pod, port, path });
    }
    let mut rest = rest;
    if rest.last() == Some(&"") {
        rest.pop();
    }
    let found = |plural: &str| resources::by_url(group, version, plural);
    match rest.as_slice() {
        [plural] => found(plural).map(|rt| Route::Collection { rt, ns: None }),
        ["namespaces", ns, plural] => found(plural)
            .filter(|rt| rt.namespaced)
            .map(|rt| Route::Collection { rt, ns: Some(ns.to_string()) }),
        ["namespaces", ns, plural, name] => found(plural)
            .filter(|rt| rt.namespaced)
            .map(|rt| Route::Item { rt, ns: Some(ns.to_string()), name: name.to_string() }),
        [plural, name] => found(plural).filter(|rt| !rt.namespaced).map(|rt| Route::Item {
            rt,
            ns: None,
            name: name.to_string(),
        }),
        _ => None,
    }
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

fn page_not_found() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let params: HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let resp = match route_request(
        &shared,
        &parts.method,
        &path,
        &query,
        &params,
        content_type.as_deref(),
        &body,
    ) {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    };
    lock(&shared.requests).push(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query,
        content_type,
        body: serde_json::from_slice(&body).ok(),
        status: resp.status().as_u16(),
    });
    Ok(resp)
}

fn verb_of(
    method: &Method,
    route: &Route,
    params: &HashMap<String, String>,
) -> Result<&'static str, ApiError> {
    let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    Ok(match (method.as_str(), route) {
        ("GET", Route::Collection { .. }) if watch => "watch",
        ("GET", Route::Collection { .. }) => "list",
        ("GET", Route::Item { .. } | Route::PodProxy { .. }) => "get",
        ("POST", Route::Collection { .. } | Route::PodProxy { .. }) => "create",
        ("PUT", Route::Item { .. } | Route::PodProxy { .. }) => "update",
        ("PATCH", Route::Item { .. } | Route::PodProxy { .. }) => "patch",
        ("DELETE", Route::Item { .. } | Route::PodProxy { .. }) => "delete",
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource ({method})"
                ),
            ));
        }
    })
}

fn route_request(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    params: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let route = parse_route(path).ok_or_else(page_not_found)?;
    if let Route::Version = route {
        return Ok(json_response(200, &version_info()));
    }
    let verb = verb_of(method, &route, params)?;
    let pods = resources::by_name("pods").ok_or_else(page_not_found)?;
    let (rt, sub, ns, name) = match &route {
        Route::Collection { rt, ns } => (*rt, None, ns.as_deref(), None),
        Route::Item { rt, ns, name } => (*rt, None, ns.as_deref(), Some(name.as_str())),
        Route::PodProxy { ns, pod, .. } => {
            (pods, Some("proxy"), Some(ns.as_str()), Some(pod.as_str()))
        }
        Route::Version => return Err(page_not_found()),
    };
    let facts = RequestFacts { verb, resource: rt, subresource: sub, namespace: ns, name };
    let writes = {
        let mut rules = lock(&shared.rules);
        if rules.is_forbidden(&facts) {
            return Err(ApiError::forbidden(rt, verb, sub, ns, name));
        }
        if let Some(code) = rules.take_failure(&facts) {
            return Err(ApiError::injected(code, rt, name.unwrap_or_default()));
        }
        rules.take_writes(&facts)
    };
    if !writes.is_empty() {
        let mut store = lock(&shared.store);
        for w in writes {
            store.modify(rt, ns.unwrap_or_default(), &w.name, w.change);
        }
    }
    let dry_run = match params.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}; supported values: \"All\""
            )));
        }
    };
    match route {
        Route::PodProxy { ns, pod, port, path } => proxy(
            shared,
            pods,
            ProxyRequest {
                method: method.to_string(),
                namespace: ns,
                pod,
                port,
                path,
                query: query.to_string(),
                body: body.to_vec(),
            },
        ),
        Route::Collection { rt, ns } if verb == "watch" => Ok(start_watch(shared, rt, ns, params)?),
        Route::Collection { rt, ns } if verb == "list" => list(shared, rt, ns.as_deref(), params),
        Route::Collection { rt, ns } => {
            let obj = parse_body(body)?;
            let created = lock(&shared.store).create(rt, ns.as_deref(), obj, dry_run)?;
            Ok(json_response(201, &created))
        }
        Route::Item { rt, ns, name } => {
            let ns = ns.unwrap_or_default();
            let mut store = lock(&shared.store);
            let obj = match verb {
                "get" => store.get(rt, &ns, &name)?,
                "update" => store.replace(rt, &ns, &name, parse_body(body)?, dry_run)?,
                "patch" => store.patch(rt, &ns, &name, patch_kind(content_type)?, body, dry_run)?,
                _ => {
                    let options = if body.is_empty() { None } else { Some(parse_body(body)?) };
                    // DeleteOptions may carry dryRun in the body instead of the query.
                    let body_dry_run = options
                        .as_ref()
                        .and_then(|o| o.get("dryRun"))
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|v| v == "All"));
                    store.delete(rt, &ns, &name, options.as_ref(), dry_run || body_dry_run)?
                }
            };
            Ok(json_response(200, &obj))
        }
        Route::Version => Err(page_not_found()),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

fn patch_kind(content_type: Option<&str>) -> Result<PatchKind, ApiError> {
    let ct = content_type.unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim();
    match ct {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::StrategicMerge),
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
            ),
        )),
    }
}

fn selectors(params: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?;
    Ok((labels, fields))
}

fn list(
    shared: &Shared,
    rt: &'static ResourceType,
    ns: Option<&str>,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(params)?;
    let (items, rv) = {
        let store = lock(&shared.store);
        (store.list(rt, ns, &labels, &fields), store.resource_version())
    };
    let offset: usize = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .split_once(':')
            .and_then(|(_, o)| o.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token}")))?,
        None => 0,
    };
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        meta["continue"] = json!(format!("{rv}:{end}"));
        meta["remainingItemCount"] = json!(items.len() - end);
    }
    // Like the real server, list items carry no apiVersion/kind: the list says it once.
    let page: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    Ok(json_response(
        200,
        &json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta, "items": page}),
    ))
}

fn start_watch(
    shared: &Shared,
    rt: &'static ResourceType,
    ns: Option<String>,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(params)?;
    let resource_version = match params.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{rv}\": must be an integer"
            ))
        })?),
    };
    let request = WatchRequest {
        resource: rt,
        namespace: ns,
        labels,
        fields,
        resource_version,
        send_initial_events: params.get("sendInitialEvents").map(String::as_str) == Some("true"),
        bookmarks: params.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
        timeout: params.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs),
    };
    let rx = watch::start(&lock(&shared.store), request, shared.bookmark_interval);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn proxy(
    shared: &Shared,
    pods: &'static ResourceType,
    req: ProxyRequest,
) -> Result<Response<Body>, ApiError> {
    let pod = lock(&shared.store).get(pods, &req.namespace, &req.pod)?;
    let handler = lock(&shared.proxies).get(&(req.namespace.clone(), req.pod.clone())).cloned();
    let Some(handler) = handler else {
        let ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("0.0.0.0");
        let port = req.port.as_deref().unwrap_or("80");
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "error trying to reach service: dial tcp {ip}:{port}: connect: connection refused"
            ),
        ));
    };
    let answer = handler(&req);
    let mut resp = Response::new(Full::new(Bytes::from(answer.body)).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Ok(ct) = header::HeaderValue::from_str(&answer.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(resp)
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64",
    })
}
