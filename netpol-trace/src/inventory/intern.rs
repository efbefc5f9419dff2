//! Deduplication of what many pods share: the pods of one workload carry the same label set
//! and declare the same container ports, so a cache keeps one copy of each, shared by every
//! pod that carries it (and by every inventory built from the cache).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use crate::policy::{ContainerPort, Labels};

/// A set of shared values; a value leaves the set when the last pod holding it is released.
#[derive(Debug)]
struct Shared<T: ?Sized + Eq + Hash>(HashSet<Arc<T>>);

impl<T: ?Sized + Eq + Hash> Default for Shared<T> {
    fn default() -> Self {
        Self(HashSet::new())
    }
}

impl<T: ?Sized + Eq + Hash> Shared<T> {
    fn get_or_insert(&mut self, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(shared) = self.0.get(value) {
            return Arc::clone(shared);
        }
        let shared = make();
        self.0.insert(Arc::clone(&shared));
        shared
    }

    /// Forgets `value` when the set and the caller hold its only references.
    fn release(&mut self, value: &Arc<T>) {
        if Arc::strong_count(value) <= 2
            && self.0.get(&**value).is_some_and(|v| Arc::ptr_eq(v, value))
        {
            self.0.remove(&**value);
        }
    }
}

/// Label sets, container port lists and names (owners, workloads), one copy per distinct
/// value.
#[derive(Debug, Default)]
pub struct Interner {
    labels: Shared<Labels>,
    ports: Shared<[ContainerPort]>,
    names: Shared<str>,
}

impl Interner {
    /// The shared copy of `labels`.
    pub fn labels(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(shared) = self.labels.0.get(&labels) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(labels);
        self.labels.0.insert(Arc::clone(&shared));
        shared
    }

    /// The shared copy of `ports`.
    pub fn ports(&mut self, ports: Vec<ContainerPort>) -> Arc<[ContainerPort]> {
        self.ports.get_or_insert(&ports, || Arc::from(ports.as_slice()))
    }

    /// The shared copy of `name`.
    pub fn name(&mut self, name: &str) -> Arc<str> {
        self.names.get_or_insert(name, || Arc::from(name))
    }

    /// Takes back a name: dropped when no other holder is left.
    pub fn release_name(&mut self, name: &Arc<str>) {
        self.names.release(name);
    }

    /// Takes back a label set and a port list that a pod held: the shared copies no other
    /// pod holds are dropped.
    pub fn release(&mut self, labels: &Arc<Labels>, ports: &Arc<[ContainerPort]>) {
        self.labels.release(labels);
        self.ports.release(ports);
    }

    /// Approximate heap bytes of the shared values.
    pub fn heap_bytes(&self) -> usize {
        let labels: usize =
            self.labels.0.iter().flat_map(|l| l.iter()).map(|(k, v)| k.len() + v.len() + 48).sum();
        let ports: usize = self
            .ports
            .0
            .iter()
            .flat_map(|p| p.iter())
            .map(|p| std::mem::size_of_val(p) + p.name.as_ref().map_or(0, String::len))
            .sum();
        let names: usize = self.names.0.iter().map(|n| n.len() + 16).sum();
        labels + ports + names
    }

    /// How many distinct label sets and port lists are held.
    pub fn counts(&self) -> (usize, usize) {
        (self.labels.0.len(), self.ports.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Protocol;

    #[test]
    fn equal_values_share_one_copy_until_released() {
        let mut interner = Interner::default();
        let l = |v: &str| Labels::from([("app".to_owned(), v.to_owned())]);
        let port =
            || vec![ContainerPort { name: Some("http".into()), protocol: Protocol::Tcp, port: 80 }];
        let a = interner.labels(l("web"));
        let b = interner.labels(l("web"));
        let c = interner.labels(l("db"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        let (p, q) = (interner.ports(port()), interner.ports(port()));
        assert!(Arc::ptr_eq(&p, &q));
        assert_eq!(interner.counts(), (2, 1));

        interner.release(&c, &q);
        drop((c, q));
        assert_eq!(interner.counts(), (1, 1), "db had one holder; the ports still have one");
        interner.release(&b, &p);
        drop((b, p));
        assert_eq!(interner.counts(), (1, 0), "web is still held by a, the ports by nobody");
        let empty: Arc<[ContainerPort]> = interner.ports(vec![]);
        interner.release(&a, &empty);
        drop((a, empty));
        assert_eq!(interner.counts(), (0, 0));
    }
}
