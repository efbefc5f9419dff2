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

use crate::auth::{Auth, Caller};
use crate::proxy::{ProxyHandler, ProxyRequest, split_pod_port};
use crate::rbac::{self, Attributes};
use crate::resources::{RESOURCES, Registry, ResourceType};
use crate::reviews;
use crate::rules::{RequestFacts, Rules};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Part, PatchKind, Store};
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

    /// Whether the request was a server-side dry run: `dryRun=All` in the query, or in the
    /// DeleteOptions body of a DELETE (where kube's `DeleteParams` puts it).
    pub fn is_dry_run(&self) -> bool {
        let in_body = self
            .body
            .as_ref()
            .and_then(|b| b.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        self.query_param("dryRun").as_deref() == Some("All") || in_body
    }

    /// Whether the request was a watch.
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }
}

/// State shared by the server task and the test-side handle.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub auth: Mutex<Auth>,
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
    Item { rt: &'static ResourceType, ns: Option<String>, name: String, part: Part },
    PodProxy { ns: String, pod: String, port: Option<String>, path: String },
}

fn parse_route(registry: &Registry, path: &str) -> Option<Route> {
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
    let found = |plural: &str| registry.by_url(group, version, plural);
    let item = |rt: &'static ResourceType, ns: Option<&str>, name: &str, part| Route::Item {
        rt,
        ns: ns.map(str::to_string),
        name: name.to_string(),
        part,
    };
    match rest.as_slice() {
        [plural] => found(plural).map(|rt| Route::Collection { rt, ns: None }),
        ["namespaces", ns, plural] => found(plural)
            .filter(|rt| rt.namespaced)
            .map(|rt| Route::Collection { rt, ns: Some(ns.to_string()) }),
        ["namespaces", ns, plural, name] => found(plural)
            .filter(|rt| rt.namespaced && !rt.review)
            .map(|rt| item(rt, Some(ns), name, Part::Main)),
        ["namespaces", ns, plural, name, "status"] => found(plural)
            .filter(|rt| rt.namespaced && rt.status_subresource)
            .map(|rt| item(rt, Some(ns), name, Part::Status)),
        [plural, name] => found(plural)
            .filter(|rt| !rt.namespaced && !rt.review)
            .map(|rt| item(rt, None, name, Part::Main)),
        [plural, name, "status"] => found(plural)
            .filter(|rt| !rt.namespaced && rt.status_subresource)
            .map(|rt| item(rt, None, name, Part::Status)),
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
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = lock(&shared.auth).authenticate(authorization);
    let params: HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let resp = match caller.ok_or_else(ApiError::unauthorized).and_then(|caller| {
        route_request(
            &shared,
            &caller,
            &parts.method,
            &path,
            &query,
            &params,
            content_type.as_deref(),
            &body,
        )
    }) {
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
        _ => return Err(method_not_allowed(method)),
    })
}

/// The RBAC attributes of a request.
fn attributes(facts: &RequestFacts<'_>) -> Attributes {
    Attributes::Resource {
        verb: facts.verb.to_string(),
        group: facts.resource.group.to_string(),
        resource: facts.resource.plural.to_string(),
        subresource: facts.subresource.unwrap_or_default().to_string(),
        namespace: facts.namespace.unwrap_or_default().to_string(),
        // A create names no object yet, as in the real server.
        name: if facts.verb == "create" {
            String::new()
        } else {
            facts.name.unwrap_or_default().to_string()
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn route_request(
    shared: &Shared,
    caller: &Caller,
    method: &Method,
    path: &str,
    query: &str,
    params: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let route = parse_route(&lock(&shared.store).registry, path);
    let Some(route) = route else {
        return match caller {
            Caller::Known(who) if !non_resource_allowed(shared, who, method, path) => {
                Err(ApiError::forbidden_path(&who.username, method, path))
            }
            _ => Err(page_not_found()),
        };
    };
    if let Route::Version = route {
        return Ok(json_response(200, &version_info()));
    }
    let verb = verb_of(method, &route, params)?;
    let pods = RESOURCES.iter().find(|r| r.plural == "pods").ok_or_else(page_not_found)?;
    let (rt, sub, ns, name) = match &route {
        Route::Collection { rt, ns } => (*rt, None, ns.as_deref(), None),
        Route::Item { rt, ns, name, part } => {
            let sub = (*part == Part::Status).then_some("status");
            (*rt, sub, ns.as_deref(), Some(name.as_str()))
        }
        Route::PodProxy { ns, pod, .. } => {
            (pods, Some("proxy"), Some(ns.as_str()), Some(pod.as_str()))
        }
        Route::Version => return Err(page_not_found()),
    };
    let facts = RequestFacts { verb, resource: rt, subresource: sub, namespace: ns, name };
    if let Caller::Known(who) = caller
        && !rbac::authorize(&lock(&shared.store), who, &attributes(&facts)).allowed
    {
        return Err(ApiError::forbidden(rt, verb, sub, ns, name, &who.username));
    }
    let writes = {
        let mut rules = lock(&shared.rules);
        if rules.is_forbidden(&facts) {
            return Err(ApiError::forbidden(rt, verb, sub, ns, name, caller.username()));
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
        Route::Collection { rt, ns } if rt.review => {
            if verb != "create" {
                return Err(method_not_allowed(method));
            }
            let auth = lock(&shared.auth);
            let store = lock(&shared.store);
            let answer =
                reviews::answer(&store, &auth, caller, rt, ns.as_deref(), parse_body(body)?)?;
            Ok(json_response(201, &answer))
        }
        Route::Collection { rt, ns } if verb == "watch" => Ok(start_watch(shared, rt, ns, params)?),
        Route::Collection { rt, ns } if verb == "list" => {
            let answer = crate::list::list(&lock(&shared.store), rt, ns.as_deref(), params);
            answer.map(|(code, bytes)| {
                let mut resp = Response::new(Full::new(bytes).boxed_unsync());
                *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                resp
            })
        }
        Route::Collection { rt, ns } => {
            let obj = parse_body(body)?;
            let created = lock(&shared.store).create(rt, ns.as_deref(), obj, dry_run)?;
            Ok(json_response(201, &created))
        }
        Route::Item { rt, ns, name, part } => {
            let ns = ns.unwrap_or_default();
            let mut store = lock(&shared.store);
            let obj = match verb {
                "get" => store.get(rt, &ns, &name)?,
                "update" => store.replace(rt, &ns, &name, parse_body(body)?, part, dry_run)?,
                "patch" => {
                    let kind = patch_kind(content_type)?;
                    store.patch(rt, &ns, &name, kind, body, part, dry_run)?
                }
                _ if part == Part::Status => return Err(method_not_allowed(method)),
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

/// Whether an authenticated caller may reach a path that is not an API resource (RBAC's
/// nonResourceURLs): the fake serves none of them, but answers 403 before 404 as the real
/// server does.
fn non_resource_allowed(
    shared: &Shared,
    who: &crate::auth::Identity,
    method: &Method,
    path: &str,
) -> bool {
    let attrs = Attributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    rbac::authorize(&lock(&shared.store), who, &attrs).allowed
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
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
