//! The policies of one Calico tier that apply to an endpoint, produced lazily in evaluation
//! order, so that an evaluation that decides early never tests the selectors of the policies
//! after the deciding one.
//!
//! The index numbers Calico policies in evaluation order (order, then namespace/name), so a
//! tier's global list and its per-namespace list are each sorted, and merging them is merging
//! ids. Kubernetes NetworkPolicies (default tier only) take their place at order 1000 under the
//! name `NAMESPACE/knp.default.NAME`; the endpoint's isolating policies all live in its own
//! namespace and come sorted by name, so they form a third sorted stream.

use std::cmp::Ordering;
use std::iter::Peekable;

use super::Step;
use crate::inventory::{CalicoId, Inventory, PodId, PolicyId, TierEntry};
use crate::policy::Direction;
use crate::policy::calico::{
    CalicoPolicy, DEFAULT_TIER, EndpointView, KUBERNETES_POLICY_ORDER, KUBERNETES_POLICY_PREFIX,
    order_key,
};

/// The applying policies of one tier for one endpoint and direction, in evaluation order.
pub struct StepsInOrder<'a> {
    inventory: &'a Inventory,
    view: EndpointView<'a>,
    direction: Direction,
    global: Peekable<std::slice::Iter<'a, CalicoId>>,
    namespaced: Peekable<std::slice::Iter<'a, CalicoId>>,
    kube: Peekable<std::slice::Iter<'a, PolicyId>>,
    /// The next applying Calico policy, once its selector has been tested.
    next_calico: Option<CalicoId>,
}

impl<'a> StepsInOrder<'a> {
    /// The steps of `tier` for pod `endpoint` in `direction`.
    pub fn new(
        inventory: &'a Inventory,
        tier: &'a TierEntry,
        endpoint: PodId,
        direction: Direction,
    ) -> Self {
        let view = super::endpoint_view(inventory, endpoint);
        let namespaced =
            tier.by_namespace.get(view.namespace).map(Vec::as_slice).unwrap_or_default();
        let kube: &[PolicyId] = if tier.tier.name == DEFAULT_TIER {
            inventory.isolating_policies(endpoint, direction)
        } else {
            &[]
        };
        Self {
            inventory,
            view,
            direction,
            global: tier.global.iter().peekable(),
            namespaced: namespaced.iter().peekable(),
            kube: kube.iter().peekable(),
            next_calico: None,
        }
    }

    fn calico(&self, id: CalicoId) -> &'a CalicoPolicy {
        &self.inventory.tiered().calico_policy(id).policy
    }

    /// The next Calico policy of the tier (global and namespaced merged) that applies.
    fn peek_calico(&mut self) -> Option<CalicoId> {
        while self.next_calico.is_none() {
            let id = match (self.global.peek(), self.namespaced.peek()) {
                (Some(g), Some(n)) if g.0 <= n.0 => self.global.next(),
                (Some(_), Some(_)) | (None, Some(_)) => self.namespaced.next(),
                (Some(_), None) => self.global.next(),
                (None, None) => return None,
            };
            let id = *id?;
            let policy = self.calico(id);
            if policy.rules(self.direction).is_some() && policy.selects(&self.view) {
                self.next_calico = Some(id);
            }
        }
        self.next_calico
    }

    /// Whether Kubernetes policy `kube` comes before Calico policy `calico`.
    fn kube_first(&self, kube: PolicyId, calico: CalicoId) -> bool {
        let policy = self.calico(calico);
        let kube_order = order_key(Some(KUBERNETES_POLICY_ORDER));
        match kube_order.partial_cmp(&order_key(policy.order)) {
            Some(Ordering::Less) => true,
            Some(Ordering::Greater) | None => false,
            Some(Ordering::Equal) => {
                let compiled = &self.inventory.policy(kube).compiled;
                let kube_name =
                    format!("{}/{KUBERNETES_POLICY_PREFIX}{}", compiled.namespace, compiled.name);
                kube_name < policy.sort_name()
            }
        }
    }
}

impl Iterator for StepsInOrder<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let calico = self.peek_calico();
        match (self.kube.peek().copied().copied(), calico) {
            (Some(kube), Some(calico)) if !self.kube_first(kube, calico) => {
                self.next_calico = None;
                Some(Step::Calico(calico))
            }
            (Some(kube), _) => {
                self.kube.next();
                Some(Step::Kube(kube))
            }
            (None, Some(calico)) => {
                self.next_calico = None;
                Some(Step::Calico(calico))
            }
            (None, None) => None,
        }
    }
}
