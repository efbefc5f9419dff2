//! Namespaces and pods with the indexes that make selectors cheap: pods by name, by IP, and
//! per namespace by label (key → value → pods), so a selector only looks at the pods carrying
//! its most selective label instead of the whole namespace.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;

use super::pods::{NamespaceId, NamespaceInfo, PodId, PodInfo};
use crate::policy::{Labels, Operator, Selector};

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Pods of one namespace and their label index.
#[derive(Debug, Default)]
struct NamespacePods {
    all: Vec<PodId>,
    by_name: HashMap<String, PodId>,
    by_label: HashMap<String, HashMap<String, Vec<PodId>>>,
}

/// Immutable namespaces and pods with lookup indexes.
#[derive(Debug, Default)]
pub struct Catalog {
    namespaces: Vec<NamespaceInfo>,
    namespace_pods: Vec<NamespacePods>,
    namespace_by_name: HashMap<String, NamespaceId>,
    pods: Vec<PodInfo>,
    pod_by_ip: HashMap<IpAddr, PodId>,
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
        // The namespace id is assigned by `from_pod_infos`, once namespaces are sorted.
        let infos =
            pods.iter().map(|p| PodInfo::from_pod(p, NamespaceId(0), default_namespace)).collect();
        Self::from_pod_infos(namespaces, infos, extra_namespaces)
    }

    /// Like [`Catalog::build`], from pods already reduced to what policies read (their
    /// `namespace_id` is assigned here). Later duplicates replace earlier ones.
    pub fn from_pod_infos<'a>(
        namespaces: &[Namespace],
        pods: Vec<PodInfo>,
        extra_namespaces: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut declared: BTreeMap<String, NamespaceInfo> = BTreeMap::new();
        for ns in namespaces {
            let Some(name) = ns.metadata.name.clone() else {
                tracing::debug!("ignoring a Namespace without metadata.name");
                continue;
            };
            let mut labels = ns.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
            declared.insert(name.clone(), NamespaceInfo { name, labels, declared: true });
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

        let mut unique: BTreeMap<(String, String), PodInfo> = BTreeMap::new();
        for mut info in pods {
            info.namespace_id = namespace_by_name[&info.pod.namespace];
            if info.pod.name.is_empty() {
                tracing::debug!(namespace = %info.pod.namespace, "ignoring a Pod without metadata.name");
                continue;
            }
            unique.insert((info.pod.namespace.clone(), info.pod.name.clone()), info);
        }
        let pods: Vec<PodInfo> = unique.into_values().collect();

        let mut namespace_pods: Vec<NamespacePods> =
            namespaces.iter().map(|_| NamespacePods::default()).collect();
        let mut pod_by_ip = HashMap::with_capacity(pods.len());
        for (index, pod) in pods.iter().enumerate() {
            let id = PodId(index as u32);
            let entry = &mut namespace_pods[pod.namespace_id.index()];
            entry.all.push(id);
            entry.by_name.insert(pod.pod.name.clone(), id);
            for (key, value) in &pod.labels {
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
        Self { namespaces, namespace_pods, namespace_by_name, pods, pod_by_ip }
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
    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    /// A pod by id.
    pub fn pod(&self, id: PodId) -> &PodInfo {
        &self.pods[id.index()]
    }

    /// A pod by namespace and name.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        let ns = self.namespace_id(namespace)?;
        self.namespace_pods[ns.index()].by_name.get(name).copied()
    }

    /// The pod that owns `ip` (host-network pods excluded).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.pod_by_ip.get(&ip).copied()
    }

    /// Labels of the namespace a pod lives in.
    pub fn namespace_labels_of(&self, pod: PodId) -> &Labels {
        &self.namespace(self.pod(pod).namespace_id).labels
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
