//! What tests arrange before a request arrives: RBAC denials, injected failures, and writes by
//! "another client" that land between two requests of the code under test.

use serde_json::Value;

use crate::resources::{Registry, ResourceType};

/// A verb, resource (optionally `resource/subresource`) and namespace pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPattern {
    verb: String,
    resource: Option<&'static ResourceType>,
    subresource: Option<String>,
    namespace: Option<String>,
}

impl RequestPattern {
    /// `verb` is an RBAC verb or `*`; `resource` a name as [`Registry::by_name`] reads it,
    /// optionally with `/subresource`, or `*`.
    ///
    /// # Panics
    /// On a resource the fake does not serve (a mistake in the test).
    pub(crate) fn new(
        registry: &Registry,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Self {
        let (res, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        let resource = if res == "*" {
            None
        } else {
            Some(registry.by_name(res).unwrap_or_else(|| {
                panic!("fake-apiserver does not serve a resource named {res:?}")
            }))
        };
        Self {
            verb: verb.to_string(),
            resource,
            subresource: sub,
            namespace: namespace.map(Into::into),
        }
    }

    pub(crate) fn matches(&self, req: &RequestFacts<'_>) -> bool {
        (self.verb == "*" || self.verb == req.verb)
            && self.resource.is_none_or(|r| r == req.resource)
            && self.subresource.as_deref() == req.subresource
            && self.namespace.as_deref().is_none_or(|ns| Some(ns) == req.namespace)
    }
}

/// What a request is about, for matching patterns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    pub verb: &'a str,
    pub resource: &'static ResourceType,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A change made by another writer just before a matching request is served.
pub(crate) struct InterleavedWrite {
    pub pattern: RequestPattern,
    pub name: String,
    pub change: Box<dyn FnOnce(&mut Value) + Send>,
}

/// Everything armed by the test.
#[derive(Default)]
pub(crate) struct Rules {
    pub forbidden: Vec<RequestPattern>,
    pub failures: Vec<(RequestPattern, u16)>,
    pub writes: Vec<InterleavedWrite>,
}

impl Rules {
    pub(crate) fn is_forbidden(&self, req: &RequestFacts<'_>) -> bool {
        self.forbidden.iter().any(|p| p.matches(req))
    }

    /// Takes the first armed failure matching the request.
    pub(crate) fn take_failure(&mut self, req: &RequestFacts<'_>) -> Option<u16> {
        let i = self.failures.iter().position(|(p, _)| p.matches(req))?;
        Some(self.failures.remove(i).1)
    }

    /// Takes every armed write matching the request.
    pub(crate) fn take_writes(&mut self, req: &RequestFacts<'_>) -> Vec<InterleavedWrite> {
        let (hit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.writes)
            .into_iter()
            .partition(|w| w.pattern.matches(req) && req.name.is_none_or(|n| n == w.name));
        self.writes = keep;
        hit
    }
}
