//! Authentication by bearer token: the token table a test fills, and who a request is.

use std::collections::HashMap;

use crate::status::FAKE_USER;

/// The group every authenticated identity is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group whose members may do anything, before RBAC is asked (as in the real server).
pub const MASTERS: &str = "system:masters";

/// Who a request comes from: what a TokenReview answers and what RBAC is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `system:serviceaccount:NS:NAME` for a ServiceAccount, else the user name.
    pub username: String,
    /// A stable uid for the identity.
    pub uid: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl Identity {
    /// A ServiceAccount's token: user `system:serviceaccount:NS:NAME`, groups
    /// `system:serviceaccounts`, `system:serviceaccounts:NS` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: format!("sa-{namespace}-{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }

    /// A user with groups (`system:authenticated` is added).
    pub fn user<S: Into<String>>(name: &str, groups: impl IntoIterator<Item = S>) -> Self {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        Self { username: name.into(), uid: format!("user-{name}"), groups }
    }

    /// A cluster administrator (group `system:masters`): allowed everything.
    pub fn cluster_admin(name: &str) -> Self {
        Self::user(name, [MASTERS])
    }

    /// The ServiceAccount `(namespace, name)` this identity is, if it is one.
    pub fn service_account_name(&self) -> Option<(&str, &str)> {
        self.username.strip_prefix("system:serviceaccount:")?.split_once(':')
    }

    /// Whether RBAC is bypassed for it.
    pub(crate) fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// Tokens and whether requests must carry one.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    /// Whether requests are authenticated and authorized (on once a token is registered).
    pub enforce: bool,
    pub tokens: HashMap<String, Identity>,
}

/// What authentication decided about a request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// Enforcement is off: everything is allowed, denials armed by tests name [`FAKE_USER`].
    Anyone,
    /// A known token's identity.
    Known(Identity),
}

impl Caller {
    /// The user name messages use.
    pub(crate) fn username(&self) -> &str {
        match self {
            Self::Anyone => FAKE_USER,
            Self::Known(who) => &who.username,
        }
    }
}

impl Auth {
    /// Authenticates an `Authorization` header; `None` means 401.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Option<Caller> {
        if !self.enforce {
            return Some(Caller::Anyone);
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token).cloned().map(Caller::Known)
    }
}
