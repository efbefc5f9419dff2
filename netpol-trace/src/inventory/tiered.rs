//! The policy kinds beyond NetworkPolicy, compiled and ordered for evaluation: the admin and
//! baseline tiers of cluster-scoped policies (sorted by priority), and Calico's tiers (sorted by
//! order, then name) with their policies bucketed by namespace so that one endpoint only looks
//! at the policies of its namespace and the global ones.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::error::InvalidPolicy;
use super::policies::PolicySource;
use crate::policy::PolicyError;
use crate::policy::admin::model::AdminPolicyObject;
use crate::policy::admin::{AdminPolicy, AdminTier, compile_admin_policy};
use crate::policy::calico::model::{CalicoPolicyObject, TierObject};
use crate::policy::calico::{
    CalicoPolicy, CalicoTier, DEFAULT_TIER, compile_calico_policy, compile_tier, order_key,
};

/// An object as read, with where it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    /// The typed object.
    pub object: T,
    /// The object exactly as read (patches are built against this).
    pub raw: Value,
    /// File and document, or cluster.
    pub source: PolicySource,
}

/// Objects of the other policy kinds, as list calls or manifest files return them.
#[derive(Debug, Clone, Default)]
pub struct TieredObjects {
    /// ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy objects.
    pub admin: Vec<Sourced<AdminPolicyObject>>,
    /// Calico NetworkPolicy and GlobalNetworkPolicy objects.
    pub calico: Vec<Sourced<CalicoPolicyObject>>,
    /// Calico Tiers.
    pub tiers: Vec<Sourced<TierObject>>,
}

impl TieredObjects {
    /// Appends every object of `other`.
    pub fn extend(&mut self, other: TieredObjects) {
        self.admin.extend(other.admin);
        self.calico.extend(other.calico);
        self.tiers.extend(other.tiers);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.calico.is_empty() && self.tiers.is_empty()
    }
}

/// A compiled cluster-scoped policy with its source.
#[derive(Debug)]
pub struct AdminEntry {
    /// The policy.
    pub policy: AdminPolicy,
    /// As read.
    pub raw: Value,
    /// Where from.
    pub source: PolicySource,
}

/// A compiled Calico policy with its source.
#[derive(Debug)]
pub struct CalicoEntry {
    /// The policy.
    pub policy: CalicoPolicy,
    /// As read.
    pub raw: Value,
    /// Where from.
    pub source: PolicySource,
}

/// Index of a Calico policy in [`TieredIndex::calico`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalicoId(pub u32);

/// One Calico tier and its policies, each list in evaluation order.
#[derive(Debug)]
pub struct TierEntry {
    /// The tier.
    pub tier: CalicoTier,
    /// GlobalNetworkPolicies.
    pub global: Vec<CalicoId>,
    /// NetworkPolicies by namespace.
    pub by_namespace: HashMap<String, Vec<CalicoId>>,
}

/// The other kinds, compiled and ordered.
#[derive(Debug, Default)]
pub struct TieredIndex {
    /// Admin tier, in evaluation order.
    pub admin: Vec<AdminEntry>,
    /// Baseline tier, in evaluation order.
    pub baseline: Vec<AdminEntry>,
    /// Calico policies (ids index this).
    pub calico: Vec<CalicoEntry>,
    /// Calico tiers in evaluation order; the default tier is always there (it holds the
    /// Kubernetes NetworkPolicies).
    pub tiers: Vec<TierEntry>,
    /// The Tier objects as read (kept to rebuild the index after a change).
    tier_objects: Vec<Sourced<TierObject>>,
}

impl TieredIndex {
    /// Validates and orders `objects`. Later duplicates (same kind, namespace and name) replace
    /// earlier ones. A policy naming a tier that does not exist is refused, as Calico does.
    pub fn build(objects: TieredObjects, default_namespace: &str) -> Result<Self, InvalidPolicy> {
        let invalid = |source: &PolicySource, error| InvalidPolicy {
            source_location: source.clone(),
            error: Box::new(error),
        };
        let mut admin: BTreeMap<(String, String), AdminEntry> = BTreeMap::new();
        for sourced in objects.admin {
            let policy =
                compile_admin_policy(&sourced.object).map_err(|e| invalid(&sourced.source, e))?;
            let key = (policy.kind.as_str().to_owned(), policy.name.clone());
            admin.insert(key, AdminEntry { policy, raw: sourced.raw, source: sourced.source });
        }
        let (mut admin_tier, mut baseline): (Vec<_>, Vec<_>) =
            admin.into_values().partition(|e| e.policy.tier == AdminTier::Admin);
        admin_tier.sort_by(|a, b| a.policy.order_key().cmp(&b.policy.order_key()));
        baseline.sort_by(|a, b| a.policy.order_key().cmp(&b.policy.order_key()));

        let mut tiers: BTreeMap<String, CalicoTier> =
            BTreeMap::from([(DEFAULT_TIER.to_owned(), CalicoTier::default_tier())]);
        let tier_objects = objects.tiers.clone();
        for sourced in &objects.tiers {
            let tier = compile_tier(&sourced.object).map_err(|e| invalid(&sourced.source, e))?;
            let mut tier = tier;
            if tier.name == DEFAULT_TIER && tier.order.is_none() {
                tier.order = CalicoTier::default_tier().order;
            }
            tiers.insert(tier.name.clone(), tier);
        }
        let mut calico: BTreeMap<(bool, String, String), CalicoEntry> = BTreeMap::new();
        for sourced in objects.calico {
            let policy = compile_calico_policy(&sourced.object, default_namespace)
                .map_err(|e| invalid(&sourced.source, e))?;
            if !tiers.contains_key(&policy.tier) {
                let error = PolicyError {
                    kind: if policy.namespace.is_some() {
                        "networkpolicy.projectcalico.org"
                    } else {
                        "globalnetworkpolicy"
                    },
                    namespace: policy.namespace.clone().unwrap_or_default(),
                    name: policy.name.clone(),
                    error: crate::policy::FieldError::new(
                        "spec.tier",
                        format!(
                            "tier {:?} does not exist (no Tier object of that name)",
                            policy.tier
                        ),
                    ),
                };
                return Err(invalid(&sourced.source, error));
            }
            let key = (
                policy.namespace.is_none(),
                policy.namespace.clone().unwrap_or_default(),
                policy.name.clone(),
            );
            calico.insert(key, CalicoEntry { policy, raw: sourced.raw, source: sourced.source });
        }
        let mut calico: Vec<CalicoEntry> = calico.into_values().collect();
        calico.sort_by(|a, b| {
            let key = |e: &CalicoEntry| (order_key(e.policy.order), e.policy.sort_name());
            key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut tiers: Vec<TierEntry> = tiers
            .into_values()
            .map(|tier| TierEntry { tier, global: Vec::new(), by_namespace: HashMap::new() })
            .collect();
        tiers.sort_by(|a, b| {
            let key = |t: &TierEntry| (order_key(t.tier.order), t.tier.name.clone());
            key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let position: HashMap<String, usize> =
            tiers.iter().enumerate().map(|(i, t)| (t.tier.name.clone(), i)).collect();
        for (index, entry) in calico.iter().enumerate() {
            let tier = &mut tiers[position[&entry.policy.tier]];
            let id = CalicoId(index as u32);
            match &entry.policy.namespace {
                Some(ns) => tier.by_namespace.entry(ns.clone()).or_default().push(id),
                None => tier.global.push(id),
            }
        }
        Ok(Self { admin: admin_tier, baseline, calico, tiers, tier_objects })
    }

    /// Whether there is nothing beyond NetworkPolicies (the default tier alone, empty).
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty()
            && self.baseline.is_empty()
            && self.calico.is_empty()
            && self.tiers.len() == 1
    }

    /// Whether Calico objects are present (the Calico tier model applies).
    pub fn has_calico(&self) -> bool {
        !self.calico.is_empty() || self.tiers.len() > 1
    }

    /// The objects this index was built from, as read (policies re-read from their raw form),
    /// so that a changed copy can be built with [`TieredIndex::build`].
    pub fn objects(&self) -> TieredObjects {
        let admin = self.admin.iter().chain(&self.baseline).filter_map(|entry| {
            let object = serde_json::from_value(entry.raw.clone()).ok()?;
            Some(Sourced { object, raw: entry.raw.clone(), source: entry.source.clone() })
        });
        let calico = self.calico.iter().filter_map(|entry| {
            let object = serde_json::from_value(entry.raw.clone()).ok()?;
            Some(Sourced { object, raw: entry.raw.clone(), source: entry.source.clone() })
        });
        TieredObjects {
            admin: admin.collect(),
            calico: calico.collect(),
            tiers: self.tier_objects.clone(),
        }
    }

    /// A Calico policy by id.
    pub fn calico_policy(&self, id: CalicoId) -> &CalicoEntry {
        &self.calico[id.0 as usize]
    }
}
