//! The pod proxy subresource: `/api/v1/namespaces/{ns}/pods/{name}[:{port}]/proxy/{path}`.

/// A request the API server would forward to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// HTTP method.
    pub method: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// The port from `name:port`, if given (a number or a port name).
    pub port: Option<String>,
    /// Path inside the pod, starting with `/`.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Request body.
    pub body: Vec<u8>,
}

/// What the pod answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: String,
    /// Response body.
    pub body: Vec<u8>,
}

impl ProxyResponse {
    /// 200 with a JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json".into(),
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// A plain-text answer with a status.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: text.into().into_bytes(),
        }
    }
}

/// A test's stand-in for the pod's HTTP server.
pub type ProxyHandler = dyn Fn(&ProxyRequest) -> ProxyResponse + Send + Sync;

/// Splits `name`, `name:port` or `scheme:name:port`.
pub(crate) fn split_pod_port(segment: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = segment.split(':').collect();
    match parts.as_slice() {
        [name] => (name.to_string(), None),
        [name, port] => (name.to_string(), Some(port.to_string())),
        [_, name, port, ..] => (name.to_string(), Some(port.to_string())),
        [] => (String::new(), None),
    }
}
