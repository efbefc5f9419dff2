//! Namespaces and pods with the indexes that make selectors cheap: pods by name, by IP, and
//! per namespace by label (key → value → pods), so a selector only looks at the pods carrying
//! its most selective label instead of the whole namespace.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;

use super::pods::{NamespaceId, NamespaceInfo, PodId, PodInfo};
use crate::policy::{Labels, Operator, Selector};

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Pods of one namespace (in id order, which is name order) and their label index.
#[derive(Debug, Default)]
struct NamespacePods {
    all: Vec<PodId>,
    by_label: HashMap<String, HashMap<String, Vec<PodId>>>,
}

/// Immutable namespaces and pods with lookup indexes.
#[derive(Debug, Default)]
pub struct Catalog {
    namespaces: Vec<NamespaceInfo>,
    namespace_pods: Vec<NamespacePods>,
    namespace_by_name: HashMap<String, NamespaceId>,
    pods: Vec<Arc<PodInfo>>,
    /// The namespace of each pod.
    pod_namespace: Vec<NamespaceId>,
    pod_by_ip: HashMap<IpAddr, PodId>,
}

/// A declared namespace as selectors see it (its labels with `kubernetes.io/metadata.name`).
pub fn namespace_info(ns: &Namespace) -> Option<NamespaceInfo> {
    let Some(name) = ns.metadata.name.clone() else {
        tracing::debug!("ignoring a Namespace without metadata.name");
        return None;
    };
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
    Some(NamespaceInfo { name, labels, declared: true })
}

impl Catalog {
    /// Builds the catalog. Namespaces are sorted by name, pods by namespace then name; later
    /// duplicates replace earlier ones. `extra_namespaces` are names referenced by other objects
    /// (policies, services): they are synthesised when not declared.
    #[cfg(test)]
    pub fn build<'a>(
        namespaces: &[Namespace],
        pods: &[k8s_openapi::api::core::v1::Pod],
        extra_namespaces: impl IntoIterator<Item = &'a str>,
        default_namespace: &str,
    ) -> Self {
        let infos =
            pods.iter().map(|p| Arc::new(PodInfo::from_pod(p, default_namespace))).collect();
        let namespaces = namespaces.iter().filter_map(namespace_info).collect();
        Self::from_shared(namespaces, infos, extra_namespaces)
    }

    /// Like [`Catalog::build`], from namespaces and pods already reduced to what policies read
    /// (the pods are shared, not copied). Later duplicates replace earlier ones.
    pub fn from_shared<'a>(
        namespaces: Vec<NamespaceInfo>,
        pods: Vec<Arc<PodInfo>>,
        extra_namespaces: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut declared: BTreeMap<String, NamespaceInfo> = BTreeMap::new();
        for ns in namespaces {
            declared.insert(ns.name.clone(), ns);
        }
        let pod_namespaces = pods.iter().map(|p| p.pod.namespace.clone());
        for name in pod_namespaces.chain(extra_namespaces.into_iter().map(str::to_owned)) {
            declared.entry(name.clone()).or_insert_with(|| NamespaceInfo {
                labels: Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), name.clone())]),
                name,
                declared: false,
            });
        }
        let namespaces: Vec<NamespaceInfo> = declared.into_values().collect();
        let namespace_by_name: HashMap<String, NamespaceId> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (ns.name.clone(), NamespaceId(i as u32)))
            .collect();

        let mut unique: BTreeMap<(&str, &str), Arc<PodInfo>> = BTreeMap::new();
        for info in &pods {
            if info.pod.name.is_empty() {
                tracing::debug!(namespace = %info.pod.namespace, "ignoring a Pod without metadata.name");
                continue;
            }
            unique.insert((info.pod.namespace.as_str(), info.pod.name.as_str()), Arc::clone(info));
        }
        let sorted: Vec<Arc<PodInfo>> = unique.into_values().collect();
        drop(pods);
        let pods = sorted;
        let pod_namespace: Vec<NamespaceId> =
            pods.iter().map(|p| namespace_by_name[&p.pod.namespace]).collect();

        let mut namespace_pods: Vec<NamespacePods> =
            namespaces.iter().map(|_| NamespacePods::default()).collect();
        let mut pod_by_ip = HashMap::with_capacity(pods.len());
        for (index, pod) in pods.iter().enumerate() {
            let id = PodId(index as u32);
            let entry = &mut namespace_pods[pod_namespace[index].index()];
            entry.all.push(id);
            for (key, value) in pod.labels.iter() {
                entry
                    .by_label
                    .entry(key.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(id);
            }
            if pod.host_network || pod.finished {
                continue;
            }
            for ip in &pod.ips {
                if let Some(previous) = pod_by_ip.insert(*ip, id) {
                    tracing::debug!(%ip, first = %pods[previous.index()].pod, second = %pod.pod, "two pods claim one IP; keeping the later");
                }
            }
        }
        Self { namespaces, namespace_pods, namespace_by_name, pods, pod_namespace, pod_by_ip }
    }

    /// All namespaces, sorted by name.
    pub fn namespaces(&self) -> &[NamespaceInfo] {
        &self.namespaces
    }

    /// A namespace by id.
    pub fn namespace(&self, id: NamespaceId) -> &NamespaceInfo {
        &self.namespaces[id.index()]
    }

    /// A namespace id by name.
    pub fn namespace_id(&self, name: &str) -> Option<NamespaceId> {
        self.namespace_by_name.get(name).copied()
    }

    /// All pods, sorted by namespace then name; `PodId(i)` is the i-th.
    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    /// A pod by id.
    pub fn pod(&self, id: PodId) -> &PodInfo {
        &self.pods[id.index()]
    }

    /// A pod by namespace and name.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        let ns = self.namespace_id(namespace)?;
        let all = &self.namespace_pods[ns.index()].all;
        let found = all.binary_search_by(|id| self.pod(*id).pod.name.as_str().cmp(name));
        found.ok().map(|i| all[i])
    }

    /// The pod that owns `ip` (host-network pods excluded).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.pod_by_ip.get(&ip).copied()
    }

    /// Labels of the namespace a pod lives in.
    pub fn namespace_labels_of(&self, pod: PodId) -> &Labels {
        &self.namespace(self.pod_namespace[pod.index()]).labels
    }

    /// The pods of a namespace.
    pub fn pods_in(&self, namespace: NamespaceId) -> &[PodId] {
        &self.namespace_pods[namespace.index()].all
    }

    /// The pods of `namespace` that `selector` selects, in id order.
    pub fn select_pods(&self, namespace: NamespaceId, selector: &Selector) -> Vec<PodId> {
        let entry = &self.namespace_pods[namespace.index()];
        let candidates = self.narrowest_candidates(entry, selector);
        let mut selected: Vec<PodId> = match candidates {
            Some(candidates) => candidates
                .into_iter()
                .filter(|&id| selector.matches(&self.pod(id).labels))
                .collect(),
            None => entry
                .all
                .iter()
                .copied()
                .filter(|&id| selector.matches(&self.pod(id).labels))
                .collect(),
        };
        selected.sort_unstable();
        selected.dedup();
        selected
    }

    /// The namespaces `selector` selects.
    pub fn select_namespaces(&self, selector: &Selector) -> Vec<NamespaceId> {
        (0..self.namespaces.len() as u32)
            .map(NamespaceId)
            .filter(|&id| selector.matches(&self.namespace(id).labels))
            .collect()
    }

    /// The smallest candidate set an `In`/`Exists` requirement allows, if any requirement narrows.
    fn narrowest_candidates(
        &self,
        entry: &NamespacePods,
        selector: &Selector,
    ) -> Option<Vec<PodId>> {
        let mut best: Option<Vec<PodId>> = None;
        for requirement in selector.requirements() {
            let Some(by_value) = entry.by_label.get(&requirement.key) else {
                if matches!(requirement.operator, Operator::In(_) | Operator::Exists) {
                    return Some(Vec::new());
                }
                continue;
            };
            let candidates: Vec<PodId> = match &requirement.operator {
                Operator::In(values) => {
                    values.iter().filter_map(|v| by_value.get(v)).flatten().copied().collect()
                }
                Operator::Exists => by_value.values().flatten().copied().collect(),
                Operator::NotIn(_) | Operator::DoesNotExist => continue,
            };
            if best.as_ref().is_none_or(|b| candidates.len() < b.len()) {
                best = Some(candidates);
            }
        }
        best
    }
}
