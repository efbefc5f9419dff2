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
    /// Shared by the sets derived with [`Self::with_replaced`] while no policy is added.
    pub(crate) by_key: Arc<BTreeMap<(String, String), PolicyId>>,
    /// For each pod, the policies that select it and affect ingress.
    ingress_of: Arc<PodPolicies>,
    /// For each pod, the policies that select it and affect egress.
    egress_of: Arc<PodPolicies>,
}

/// For each pod, the ids of the policies that select it and affect one direction, ascending:
/// one flat list with per-pod offsets, so that building, cloning and dropping it costs a few
/// allocations, not one per pod.
#[derive(Debug, Default, Clone)]
struct PodPolicies {
    /// `offsets[pod] .. offsets[pod + 1]` is the pod's range of `ids`.
    offsets: Vec<u32>,
    ids: Vec<PolicyId>,
}

impl PodPolicies {
    fn build(entries: &[Arc<PolicyEntry>], pod_count: usize, direction: Direction) -> Self {
        let affecting =
            || entries.iter().enumerate().filter(|(_, e)| e.compiled.affects(direction));
        let mut offsets = vec![0u32; pod_count + 1];
        for (_, entry) in affecting() {
            for pod in &entry.selected {
                offsets[pod.index() + 1] += 1;
            }
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut ids = vec![PolicyId(0); offsets[pod_count] as usize];
        let mut next = offsets.clone();
        for (index, entry) in affecting() {
            for pod in &entry.selected {
                let slot = &mut next[pod.index()];
                ids[*slot as usize] = PolicyId(index as u32);
                *slot += 1;
            }
        }
        Self { offsets, ids }
    }

    fn of(&self, pod: PodId) -> &[PolicyId] {
        match (self.offsets.get(pod.index()), self.offsets.get(pod.index() + 1)) {
            (Some(&start), Some(&end)) => &self.ids[start as usize..end as usize],
            _ => &[],
        }
    }
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
        let mut by_key = BTreeMap::new();
        let mut sorted = Vec::with_capacity(unique.len());
        for (index, (key, entry)) in unique.into_iter().enumerate() {
            by_key.insert(key, PolicyId(index as u32));
            sorted.push(entry);
        }
        Self::over(sorted, Arc::new(by_key), pod_count)
    }

    fn over(
        entries: Vec<Arc<PolicyEntry>>,
        by_key: Arc<BTreeMap<(String, String), PolicyId>>,
        pod_count: usize,
    ) -> Self {
        Self {
            ingress_of: Arc::new(PodPolicies::build(&entries, pod_count, Direction::Ingress)),
            egress_of: Arc::new(PodPolicies::build(&entries, pod_count, Direction::Egress)),
            entries,
            by_key,
        }
    }

    /// This set with `replacements` replacing the policies of the same namespace/name or added
    /// (the last of duplicates wins). When none is new, ids and the key index are kept, and a
    /// direction's per-pod lists are kept too when no replacement changes which pods it isolates
    /// in that direction (a fix that adds a rule or a port), else rebuilt.
    pub(crate) fn with_replaced(
        &self,
        replacements: Vec<Arc<PolicyEntry>>,
        pod_count: usize,
    ) -> Self {
        let id_of = |e: &PolicyEntry| {
            self.by_key.get(&(e.compiled.namespace.clone(), e.compiled.name.clone())).copied()
        };
        if replacements.iter().any(|e| id_of(e).is_none()) {
            return Self::index(self.entries.iter().cloned().chain(replacements), pod_count);
        }
        let mut entries = self.entries.clone();
        let (mut ingress_kept, mut egress_kept) = (true, true);
        for entry in replacements {
            if let Some(id) = id_of(&entry) {
                let old = &entries[id.0 as usize];
                let same = |d| {
                    old.selected == entry.selected
                        && old.compiled.affects(d) == entry.compiled.affects(d)
                };
                ingress_kept &= same(Direction::Ingress);
                egress_kept &= same(Direction::Egress);
                entries[id.0 as usize] = entry;
            }
        }
        let lists = |kept: bool, lists: &Arc<PodPolicies>, d| {
            if kept {
                Arc::clone(lists)
            } else {
                Arc::new(PodPolicies::build(&entries, pod_count, d))
            }
        };
        Self {
            ingress_of: lists(ingress_kept, &self.ingress_of, Direction::Ingress),
            egress_of: lists(egress_kept, &self.egress_of, Direction::Egress),
            by_key: Arc::clone(&self.by_key),
            entries,
        }
    }

    /// Policies that select `pod` and affect `direction`, sorted by namespace/name.
    pub(crate) fn isolating(&self, pod: PodId, direction: Direction) -> &[PolicyId] {
        match direction {
            Direction::Ingress => self.ingress_of.of(pod),
            Direction::Egress => self.egress_of.of(pod),
        }
    }
}
