//! TokenReview, SubjectAccessReview, SelfSubjectAccessReview and LocalSubjectAccessReview:
//! creates the server answers from its token table and RBAC, storing nothing.

use serde_json::{Value, json};

use crate::auth::{Auth, Caller, Identity};
use crate::rbac::{self, Attributes};
use crate::resources::ResourceType;
use crate::status::{ApiError, FieldError};
use crate::store::{Store, with_type};

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Answers a review `body` posted to `rt` (in namespace `ns` for the local kind).
pub(crate) fn answer(
    store: &Store,
    auth: &Auth,
    caller: &Caller,
    rt: &'static ResourceType,
    ns: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match rt.plural {
        "tokenreviews" => token_review(auth, &spec),
        "selfsubjectaccessreviews" => {
            let attrs = attributes(rt, &spec, None)?;
            match caller {
                Caller::Anyone => json!({"allowed": true}),
                Caller::Known(who) => decide(store, who, &attrs),
            }
        }
        _ => {
            let who = subject(rt, &spec)?;
            let attrs = attributes(rt, &spec, ns)?;
            decide(store, &who, &attrs)
        }
    };
    let mut out = with_type(rt, body);
    out["metadata"] = json!({"creationTimestamp": null});
    out["spec"] = spec;
    out["status"] = status;
    Ok(out)
}

fn token_review(auth: &Auth, spec: &Value) -> Value {
    let audiences = spec.get("audiences").cloned().unwrap_or_else(|| json!([]));
    match auth.tokens.get(str_at(spec, "/token")) {
        Some(who) => json!({
            "authenticated": true,
            "user": {"username": who.username, "uid": who.uid, "groups": who.groups},
            "audiences": audiences,
        }),
        None => json!({"user": {}, "error": "invalid bearer token"}),
    }
}

fn decide(store: &Store, who: &Identity, attrs: &Attributes) -> Value {
    let decision = rbac::authorize(store, who, attrs);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    status
}

fn subject(rt: &ResourceType, spec: &Value) -> Result<Identity, ApiError> {
    let user = str_at(spec, "/user");
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            rt,
            "",
            &[FieldError::invalid(
                "spec.user",
                "\"\"",
                "at least one of user or group must be specified",
            )],
        ));
    }
    Ok(Identity { username: user.to_string(), uid: str_at(spec, "/uid").to_string(), groups })
}

/// The attributes asked about; a local review's namespace must be the URL's.
fn attributes(rt: &ResourceType, spec: &Value, ns: Option<&str>) -> Result<Attributes, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let invalid = |field: &str, why: &str| {
        ApiError::invalid(rt, "", &[FieldError::invalid(field, "\"object\"", why)])
    };
    match (resource, non_resource) {
        (Some(r), None) => {
            let namespace = str_at(r, "/namespace");
            if let Some(ns) = ns
                && namespace != ns
            {
                return Err(invalid(
                    "spec.resourceAttributes.namespace",
                    "must match metadata.namespace",
                ));
            }
            Ok(Attributes::Resource {
                verb: str_at(r, "/verb").into(),
                group: str_at(r, "/group").into(),
                resource: str_at(r, "/resource").into(),
                subresource: str_at(r, "/subresource").into(),
                namespace: namespace.into(),
                name: str_at(r, "/name").into(),
            })
        }
        (None, Some(n)) if ns.is_none() => Ok(Attributes::NonResource {
            verb: str_at(n, "/verb").into(),
            path: str_at(n, "/path").into(),
        }),
        (Some(_), Some(_)) => Err(invalid(
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        )),
        _ => Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}
