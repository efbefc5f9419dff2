//! Working copies of the policies a plan touches: each keeps the object exactly as read, its
//! current state, and emits RFC 6902 operations against that state, so that a plan's patches,
//! applied in order to the object as read, give the current state.

use json_patch::Patch;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::error::FixError;
use crate::inventory::PolicySource;
use crate::policy::{Direction, PolicyKind};

/// JSON pointer of the concurrency guard.
pub const RESOURCE_VERSION_POINTER: &str = "/metadata/resourceVersion";

/// A policy being patched or created.
#[derive(Debug, Clone)]
pub struct DraftObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object exactly as read; `None` for a policy the plan creates.
    pub original: Option<Value>,
    /// The object with every change so far.
    pub current: Value,
    /// Where it was read from (in memory for a created one).
    pub source: PolicySource,
    /// Its kind, as the API names it.
    pub kind: PolicyKind,
    /// Its tier for tiered kinds (`Admin`/`Baseline` or a Calico tier); `None` for a
    /// Kubernetes NetworkPolicy.
    pub tier: Option<String>,
    /// Whether an emitted patch already begins with the resourceVersion test.
    guarded: bool,
}

impl DraftObject {
    /// A working copy of a policy as read.
    pub fn existing(namespace: &str, name: &str, raw: Value, source: PolicySource) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            original: Some(raw.clone()),
            current: raw,
            source,
            kind: PolicyKind::NetworkPolicy,
            tier: None,
            guarded: false,
        }
    }

    /// A policy the plan creates.
    pub fn created(namespace: &str, name: &str, object: Value) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            original: None,
            current: object,
            source: PolicySource::InMemory,
            kind: PolicyKind::NetworkPolicy,
            tier: None,
            guarded: false,
        }
    }

    /// The same working copy, of a tiered kind (a cluster-scoped or Calico policy).
    pub fn of_kind(self, kind: PolicyKind, tier: &str) -> Self {
        Self { kind, tier: Some(tier.to_owned()), ..self }
    }

    /// Whether this is a Kubernetes NetworkPolicy (not a tiered kind).
    pub fn is_kubernetes(&self) -> bool {
        self.tier.is_none()
    }

    /// Whether the plan creates this policy.
    pub fn is_created(&self) -> bool {
        self.original.is_none()
    }

    /// `namespace/name`, or `name` for a cluster-scoped policy.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// The current state as a typed object.
    pub fn typed(&self) -> Result<NetworkPolicy, FixError> {
        serde_json::from_value(self.current.clone())
            .map_err(|e| FixError::InvalidResult { policy: self.key(), message: e.to_string() })
    }

    /// Appends `port` to the `ports` of rule `index` of `direction`. Returns the operations (none
    /// for a created policy, which is changed in place).
    pub fn add_port(
        &mut self,
        direction: Direction,
        index: usize,
        port: Value,
    ) -> Result<Option<Patch>, FixError> {
        let ports = format!("/spec/{}/{index}/ports", direction.spec_field());
        if !self.current.pointer(&ports).is_some_and(Value::is_array) {
            return Err(self.unpatchable(format!("{ports} is not a list")));
        }
        self.apply(vec![json!({"op": "add", "path": format!("{ports}/-"), "value": port})])
    }

    /// Appends `rule` to `spec.ingress`/`spec.egress`, creating the list when the field is
    /// missing or null (a policy with `policyTypes: [Ingress]` and no `ingress`).
    ///
    /// Only policies that already isolate `direction` get a rule, so the effective policyTypes
    /// never change: either they list the direction, or they are absent/empty and the
    /// direction's list is already non-empty (egress) or the direction is Ingress (always
    /// implied), and adding a rule keeps it that way.
    pub fn append_rule(
        &mut self,
        direction: Direction,
        rule: Value,
    ) -> Result<Option<Patch>, FixError> {
        let field = direction.spec_field();
        let list = format!("/spec/{field}");
        let op = match (self.current.pointer("/spec"), self.current.pointer(&list)) {
            (_, Some(Value::Array(_))) => {
                json!({"op": "add", "path": format!("{list}/-"), "value": rule})
            }
            (Some(Value::Object(_)), None | Some(Value::Null)) => {
                json!({"op": "add", "path": list, "value": [rule]})
            }
            (None | Some(Value::Null), _) => {
                json!({"op": "add", "path": "/spec", "value": {field: [rule]}})
            }
            (Some(_), Some(_)) => return Err(self.unpatchable(format!("{list} is not a list"))),
            (Some(_), None) => return Err(self.unpatchable("spec is not a mapping".to_owned())),
        };
        self.apply(vec![op])
    }

    /// Inserts `rule` at position `index` of `spec.ingress`/`spec.egress`, before the rule there
    /// (tiered kinds: rules are evaluated in order, so it takes precedence over that rule).
    pub fn insert_rule(
        &mut self,
        direction: Direction,
        index: usize,
        rule: Value,
    ) -> Result<Option<Patch>, FixError> {
        let list = format!("/spec/{}", direction.spec_field());
        match self.current.pointer(&list) {
            Some(Value::Array(rules)) if index <= rules.len() => {}
            _ => return Err(self.unpatchable(format!("{list} has no rule {index}"))),
        }
        self.apply(vec![json!({"op": "add", "path": format!("{list}/{index}"), "value": rule})])
    }

    /// Applies `ops` to the current state, with the resourceVersion test in front of the first
    /// patch of an object that has one.
    fn apply(&mut self, mut ops: Vec<Value>) -> Result<Option<Patch>, FixError> {
        let version = self.current.pointer(RESOURCE_VERSION_POINTER).and_then(Value::as_str);
        if let (false, false, Some(version)) = (self.is_created(), self.guarded, version) {
            let test = json!({"op": "test", "path": RESOURCE_VERSION_POINTER, "value": version});
            ops.insert(0, test);
            self.guarded = true;
        }
        let patch: Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|e| self.unpatchable(format!("building the patch: {e}")))?;
        json_patch::patch(&mut self.current, &patch)
            .map_err(|e| self.unpatchable(e.to_string()))?;
        Ok((!self.is_created()).then_some(patch))
    }

    fn unpatchable(&self, message: String) -> FixError {
        FixError::Unpatchable { policy: self.key(), message }
    }
}
