//! Compiled policies with the pods each selects, and the reverse index (pod → policies that
//! isolate it, per direction) that makes one explain independent of the number of policies.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::catalog::Catalog;
use super::pods::PodId;
use crate::policy::{CompiledPolicy, Direction};

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A manifest file; `document` is the 1-based position of the YAML/JSON document in it.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based document number within the file.
        document: usize,
    },
    /// Read from the live cluster.
    Cluster,
    /// Built in memory (e.g. a patched policy passed to `with_policies_replaced`).
    InMemory,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path, document } => write!(f, "{}, document {document}", path.display()),
            Self::Cluster => f.write_str("cluster"),
            Self::InMemory => f.write_str("in memory"),
        }
    }
}

/// A NetworkPolicy as read, with where it came from: what an inventory is built from.
#[derive(Debug, Clone)]
pub struct SourcedPolicy {
    /// The typed object.
    pub policy: NetworkPolicy,
    /// The object exactly as read (JSON patches are built against this); `Null` when it was
    /// not kept because the typed object holds all of it (see [`Self::raw_json`]).
    pub raw: serde_json::Value,
    /// File and document, or cluster.
    pub source: PolicySource,
}

impl SourcedPolicy {
    /// A policy read from the live cluster, kept typed only: its JSON is rebuilt on demand.
    pub fn from_cluster(policy: NetworkPolicy) -> Self {
        Self { policy, raw: serde_json::Value::Null, source: PolicySource::Cluster }
    }

    /// The object as read: `raw`, or the typed object serialised when `raw` was not kept.
    pub fn raw_json(&self) -> Cow<'_, serde_json::Value> {
        match &self.raw {
            serde_json::Value::Null => {
                Cow::Owned(serde_json::to_value(&self.policy).unwrap_or(serde_json::Value::Null))
            }
            raw => Cow::Borrowed(raw),
        }
    }
}

/// A NetworkPolicy as an inventory keeps it once compiled: the object as read, serialised to
/// compact JSON (the compiled form is what analysis reads; the object is only needed whole,
/// for one policy at a time, to build a patch or show it), and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyObject {
    json: Box<[u8]>,
    /// File and document, or cluster.
    pub source: PolicySource,
}

impl PolicyObject {
    /// Keeps `sourced`'s object as read (see [`SourcedPolicy::raw_json`]) and its source.
    pub fn new(sourced: &SourcedPolicy) -> Self {
        let json = serde_json::to_vec(&*sourced.raw_json()).unwrap_or_default();
        Self { json: json.into_boxed_slice(), source: sourced.source.clone() }
    }

    /// The object as read (JSON patches are built against this).
    pub fn raw_json(&self) -> Cow<'_, serde_json::Value> {
        Cow::Owned(serde_json::from_slice(&self.json).unwrap_or(serde_json::Value::Null))
    }

    /// The object typed again, with its raw JSON and source, as it was read.
    pub fn to_sourced(&self) -> Result<SourcedPolicy, serde_json::Error> {
        let raw: serde_json::Value = serde_json::from_slice(&self.json)?;
        let policy = serde_json::from_value(raw.clone())?;
        Ok(SourcedPolicy { policy, raw, source: self.source.clone() })
    }

    /// Bytes of the kept JSON.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }
}

/// Index of a policy in an [`super::Inventory`] (policies sorted by namespace then name).
/// Not stable across [`super::Inventory::with_policies_replaced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub(crate) u32);

/// One policy of the inventory. The compiled and the read forms are shared with the cache
/// they come from (and with every inventory built from it).
#[derive(Debug)]
pub struct PolicyEntry {
    /// The validated, compiled policy.
    pub compiled: Arc<CompiledPolicy>,
    /// The object as read, with its source.
    pub sourced: Arc<PolicyObject>,
    /// The pods `spec.podSelector` selects in the policy's namespace, in id order.
    pub selected: Vec<PodId>,
}

impl PolicyEntry {
    pub(crate) fn new(
        compiled: Arc<CompiledPolicy>,
        sourced: Arc<PolicyObject>,
        catalog: &Catalog,
    ) -> Self {
        let selected = match catalog.namespace_id(&compiled.namespace) {
            Some(ns) => catalog.select_pods(ns, &compiled.pod_selector),
            None => Vec::new(),
        };
        Self { compiled, sourced, selected }
    }
}

/// All policies, sorted, with per-pod isolation lists.
#[derive(Debug, Default, Clone)]
pub(crate) struct PolicySet {
    pub(crate) entries: Vec<Arc<PolicyEntry>>,
    pub(crate) by_key: BTreeMap<(String, String), PolicyId>,
    /// For each pod, the policies that select it and affect ingress.
    ingress_of: Vec<Vec<PolicyId>>,
    /// For each pod, the policies that select it and affect egress.
    egress_of: Vec<Vec<PolicyId>>,
}

impl PolicySet {
    /// Indexes `entries` (any order; duplicates by namespace/name: the last wins).
    pub(crate) fn index(
        entries: impl IntoIterator<Item = Arc<PolicyEntry>>,
        pod_count: usize,
    ) -> Self {
        let mut unique: BTreeMap<(String, String), Arc<PolicyEntry>> = BTreeMap::new();
        for entry in entries {
            let key = (entry.compiled.namespace.clone(), entry.compiled.name.clone());
            if let Some(previous) = unique.insert(key, entry) {
                tracing::debug!(policy = %previous.compiled.key(), "a later definition replaces this policy");
            }
        }
        let mut set = Self {
            ingress_of: vec![Vec::new(); pod_count],
            egress_of: vec![Vec::new(); pod_count],
            ..Self::default()
        };
        for (index, (key, entry)) in unique.into_iter().enumerate() {
            let id = PolicyId(index as u32);
            for &pod in &entry.selected {
                if entry.compiled.affects(Direction::Ingress) {
                    set.ingress_of[pod.index()].push(id);
                }
                if entry.compiled.affects(Direction::Egress) {
                    set.egress_of[pod.index()].push(id);
                }
            }
            set.by_key.insert(key, id);
            set.entries.push(entry);
        }
        set
    }

    /// Policies that select `pod` and affect `direction`, sorted by namespace/name.
    pub(crate) fn isolating(&self, pod: PodId, direction: Direction) -> &[PolicyId] {
        match direction {
            Direction::Ingress => &self.ingress_of[pod.index()],
            Direction::Egress => &self.egress_of[pod.index()],
        }
    }
}
