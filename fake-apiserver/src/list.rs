//! LIST: selectors, `limit`/`continue` pagination, and the answer written from the objects'
//! cached encodings.
//!
//! A continue token names the last object sent (namespace and name) and the resourceVersion
//! of the first page; the next page starts right after that object in key order, so no object
//! is sent twice or skipped, however many pages there are. Pages after the first show the
//! current state rather than a snapshot (an object created meanwhile behind the cursor shows
//! up, one deleted does not) — the real server serves a snapshot, which no client should rely
//! on telling apart.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;

use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::Store;

/// A position in a paginated list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContinueToken {
    rv: u64,
    after: (String, String),
}

impl ContinueToken {
    fn encode(&self) -> String {
        format!("{}/{}/{}", self.rv, self.after.0, self.after.1)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
        let mut parts = token.splitn(3, '/');
        let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
        let ns = parts.next().ok_or_else(bad)?;
        let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
        Ok(Self { rv, after: (ns.to_string(), name.to_string()) })
    }
}

/// Answers a list request: HTTP code and body.
pub(crate) fn list(
    store: &Store,
    rt: &'static ResourceType,
    ns: Option<&str>,
    params: &HashMap<String, String>,
) -> Result<(u16, Bytes), ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?;
    let token = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(t) => Some(ContinueToken::decode(t)?),
        None => None,
    };
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                ApiError::bad_request(format!("limit: Invalid value: \"{l}\": must be an integer"))
            })?;
            usize::try_from(n).ok().filter(|n| *n > 0)
        }
        None => None,
    };
    let rv = token.as_ref().map_or_else(|| store.resource_version(), |t| t.rv);
    let page = store.page(rt, ns, &labels, &fields, token.as_ref().map(|t| &t.after), limit);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(after) = page.next {
        meta["continue"] = json!(ContinueToken { rv, after }.encode());
        if let Some(n) = page.remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let head = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta})
        .to_string();
    let size: usize = page.items.iter().map(|o| o.untyped_json().len() + 64).sum();
    let mut out = Vec::with_capacity(head.len() + size + 16);
    // `{"kind":...,"metadata":{...}` then `,"items":[...]}`.
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, obj) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        obj.write_list_item(rt, &mut out);
    }
    out.extend_from_slice(b"]}");
    Ok((200, Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        for t in [
            ContinueToken { rv: 7, after: ("db".into(), "mysql-0".into()) },
            ContinueToken { rv: 9, after: (String::new(), "node-1".into()) },
        ] {
            assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        }
        assert!(ContinueToken::decode("x/y").is_err());
        assert!(ContinueToken::decode("5/db/").is_err());
    }
}
