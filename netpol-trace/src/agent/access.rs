//! Who may read the agent's `/metrics` and `/drops`: the caller's bearer token is authenticated
//! by the API server (TokenReview) and the request authorized by it (SubjectAccessReview on the
//! non-resource URL, verb `get`), as kube-rbac-proxy does. Decisions are cached per (token
//! digest, path) for [`CACHE_TTL`] in a map of at most [`CACHE_ENTRIES`] entries.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use hyper::{HeaderMap, header};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// How long a decision is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most decisions kept; the oldest goes first.
pub const CACHE_ENTRIES: usize = 1024;

/// How the agent decides who may read its protected endpoints (part of the agent options).
#[derive(Debug, Clone, Default)]
pub struct Access {
    allow_all: bool,
}

impl Access {
    /// The API server decides (TokenReview, then SubjectAccessReview): what the agent runs with.
    pub fn api_server() -> Self {
        Self { allow_all: false }
    }

    /// Every request is let through without a token. Only for tests that exercise the
    /// endpoints without an API server that knows their tokens; the command line never builds
    /// it.
    pub fn allow_all_for_tests() -> Self {
        Self { allow_all: true }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allowed,
    /// No bearer token, or one the API server does not authenticate: 401.
    Unauthenticated,
    /// Authenticated, but not allowed to `get` the path: 403.
    Forbidden,
}

/// Why no decision could be made (the API server could not be asked).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The TokenReview failed.
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    /// The SubjectAccessReview failed.
    #[error("SubjectAccessReview failed: {0}")]
    SubjectAccessReview(#[source] kube::Error),
}

type Key = ([u8; 32], String);

/// Bounded, time-limited decisions, oldest evicted first.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, (Instant, Decision)>,
    order: VecDeque<(Key, Instant)>,
}

impl Cache {
    fn get(&mut self, key: &Key, now: Instant) -> Option<Decision> {
        match self.entries.get(key) {
            Some((at, d)) if now.duration_since(*at) < CACHE_TTL => Some(*d),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Key, decision: Decision, now: Instant) {
        self.entries.insert(key.clone(), (now, decision));
        self.order.push_back((key, now));
        while self.entries.len() > CACHE_ENTRIES || self.order.len() > 2 * CACHE_ENTRIES {
            let Some((old, at)) = self.order.pop_front() else { break };
            // Only the newest insertion of a key removes it.
            if self.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                self.entries.remove(&old);
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Checks requests against the API server, caching its decisions.
pub struct Authorizer {
    client: Option<kube::Client>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("api_server", &self.client.is_some())
            .field("cached", &self.cached())
            .finish()
    }
}

impl Authorizer {
    /// Asks the API server behind `client` (the agent's own identity, which may create
    /// tokenreviews and subjectaccessreviews), unless `access` lets everything through.
    pub fn new(access: &Access, client: kube::Client) -> Self {
        Self { client: (!access.allow_all).then_some(client), cache: Mutex::default() }
    }

    /// Whether the request with `headers` may `get` `path`.
    pub async fn check(&self, headers: &HeaderMap, path: &str) -> Result<Decision, AccessError> {
        let Some(client) = &self.client else { return Ok(Decision::Allowed) };
        let Some(token) = bearer(headers) else { return Ok(Decision::Unauthenticated) };
        let key: Key = (Sha256::digest(token.as_bytes()).into(), path.to_string());
        if let Some(d) = self.cache.lock().expect("access cache").get(&key, Instant::now()) {
            return Ok(d);
        }
        let decision = review(client, token, path).await?;
        self.cache.lock().expect("access cache").put(key, decision, Instant::now());
        Ok(decision)
    }

    /// How many decisions are cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("access cache").len()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn review(client: &kube::Client, token: &str, path: &str) -> Result<Decision, AccessError> {
    let tr = TokenReview {
        spec: TokenReviewSpec { token: Some(token.to_string()), audiences: None },
        ..TokenReview::default()
    };
    let tr = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &tr)
        .await
        .map_err(AccessError::TokenReview)?;
    let status = tr.status.unwrap_or_default();
    let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
        return Ok(Decision::Unauthenticated);
    };
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_string()),
                verb: Some("get".into()),
            }),
            resource_attributes: None,
        },
        ..SubjectAccessReview::default()
    };
    let sar = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await
        .map_err(AccessError::SubjectAccessReview)?;
    Ok(match sar.status {
        Some(s) if s.allowed => Decision::Allowed,
        _ => Decision::Forbidden,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        ([0; 32], format!("/p{i}"))
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert_eq!(bearer(&h), Some("s3cret"));
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        c.put(key(0), Decision::Forbidden, t0);
        assert_eq!(c.get(&key(0), t0 + Duration::from_secs(29)), Some(Decision::Forbidden));
        assert_eq!(c.get(&key(0), t0 + CACHE_TTL), None);
        for i in 0..CACHE_ENTRIES + 10 {
            c.put(key(i), Decision::Allowed, t0);
            c.put(key(i), Decision::Allowed, t0 + Duration::from_millis(1));
        }
        assert_eq!(c.len(), CACHE_ENTRIES);
        assert!(c.order.len() <= 2 * CACHE_ENTRIES);
        assert_eq!(c.get(&key(5), t0), None, "the oldest went first");
        assert_eq!(c.get(&key(CACHE_ENTRIES + 9), t0), Some(Decision::Allowed));
    }
}
