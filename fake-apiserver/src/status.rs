//! Failure answers shaped like the real API server's `Status` objects.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// The message the API server puts on a 422 raised while applying a JSON patch (a failed `test`
/// operation, a path that does not exist): `jsonPatcher.applyJSPatch` answers with
/// `NewGenericServerResponse(422, ...)`, which carries this fixed text, reason `Invalid` and
/// empty details. Validation failures of the patched object name the object and field instead.
pub const JSON_PATCH_REJECTED: &str =
    "the server rejected our request due to an error in our request";

/// The user the fake reports in Forbidden messages when it does not authenticate requests.
pub const FAKE_USER: &str = "system:serviceaccount:netpol-trace:netpol-trace";

/// A failed request: HTTP code plus the `Status` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Invalid`...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The `details` object, when the real server sends one.
    pub details: Option<Value>,
}

impl ApiError {
    /// A plain failure with a code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self { code, reason: reason.to_string(), message: message.into(), details: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404: `pods "web-1" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", rt.qualified_plural()))
            .with_details(details(rt, name))
    }

    /// 404 for a namespaced write into a namespace that does not exist.
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"))
            .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified_plural()),
        )
        .with_details(details(rt, name))
    }

    /// 409 Conflict: the optimistic-concurrency failure.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", rt.qualified_plural()),
        )
        .with_details(details(rt, name))
    }

    /// 409 Conflict for a stale `metadata.resourceVersion`.
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid from validation, one cause per field error.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[FieldError]) -> Self {
        let list: Vec<String> = causes.iter().map(FieldError::to_string).collect();
        let joined =
            if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut d = details(rt, name);
        d["kind"] = json!(rt.kind);
        d["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.detail(), "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", rt.qualified_kind()),
        )
        .with_details(d)
    }

    /// 422 for a JSON patch that does not apply (see [`JSON_PATCH_REJECTED`]).
    pub fn json_patch_rejected() -> Self {
        Self::new(422, "Invalid", JSON_PATCH_REJECTED).with_details(json!({}))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 for a request without a valid bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 for a path that is not an API resource: `forbidden: User "u" cannot get path "/x"`.
    pub fn forbidden_path(user: &str, method: &http::Method, path: &str) -> Self {
        let verb = method.as_str().to_ascii_lowercase();
        Self::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
        )
        .with_details(json!({}))
    }

    /// 403 Forbidden, worded like the RBAC authorizer, for `user`.
    pub fn forbidden(
        rt: &ResourceType,
        verb: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
        name: Option<&str>,
        user: &str,
    ) -> Self {
        let resource = match subresource {
            Some(sub) => format!("{}/{sub}", rt.plural),
            None => rt.plural.to_string(),
        };
        let subject = match name {
            Some(n) => format!("{} \"{n}\"", rt.qualified_plural()),
            None => rt.qualified_plural(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                rt.group
            ),
        )
        .with_details(json!({"name": name.unwrap_or_default(), "group": rt.group, "kind": rt.plural}))
    }

    /// A failure injected by a test for a given HTTP code, with the reason the real server uses.
    pub fn injected(code: u16, rt: &ResourceType, name: &str) -> Self {
        match code {
            404 => Self::not_found(rt, name),
            409 => Self::stale(rt, name),
            // What a write answers when a JSON patch `test` op fails.
            422 => Self::json_patch_rejected(),
            403 => Self::forbidden(rt, "access", None, None, Some(name), FAKE_USER),
            429 => Self::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => Self::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => Self::new(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted",
            ),
            _ => Self::new(
                code,
                "InternalError",
                format!("Internal error occurred: injected failure ({code})"),
            ),
        }
    }

    /// The JSON `Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

/// One field-level validation error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`...
    pub reason: &'static str,
    /// Field path, e.g. `spec.ingress[0].ports[0].port`.
    pub field: String,
    /// The offending value as the server prints it (empty for Required).
    pub value: String,
    /// Why it is wrong.
    pub why: String,
}

impl FieldError {
    /// An invalid value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        why: impl Into<String>,
    ) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            value: value.to_string(),
            why: why.into(),
        }
    }

    /// A missing required value.
    pub fn required(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            value: String::new(),
            why: why.into(),
        }
    }

    /// A value outside an enumeration.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            value: format!("\"{value}\""),
            why: format!("supported values: {}", list.join(", ")),
        }
    }

    fn detail(&self) -> String {
        match self.reason {
            "FieldValueRequired" if self.why.is_empty() => "Required value".to_string(),
            "FieldValueRequired" => format!("Required value: {}", self.why),
            "FieldValueNotSupported" => format!("Unsupported value: {}: {}", self.value, self.why),
            _ => format!("Invalid value: {}: {}", self.value, self.why),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail())
    }
}
