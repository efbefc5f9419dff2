//! The drop store: the agent's current dropped flows, bounded (least recently updated flows
//! are forgotten first), with each flow's lifecycle `dropping` → `restored` (→ `dropping`
//! again when the drops come back).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::trace::{DropRecord, RestoredRecord, flows::ConnKey};

use super::record::{FlowRecord, FlowState};

/// How many flows the store keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A flow neither dropped nor restored for this long is forgotten.
pub const IDLE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What a drop report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropUpdate {
    /// Drops not counted before (for counters).
    pub new_drops: u64,
    /// The flow was not dropping before (new, or restored earlier).
    pub started: bool,
}

#[derive(Debug)]
struct Slot {
    record: FlowRecord,
    touched: u64,
}

/// Current dropped flows, at most `capacity`, least recently updated evicted first.
#[derive(Debug)]
pub struct DropStore {
    capacity: usize,
    flows: HashMap<ConnKey, Slot>,
    order: BTreeMap<u64, ConnKey>,
    seq: u64,
    evicted: u64,
    expired: u64,
}

impl Default for DropStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl DropStore {
    /// An empty store keeping at most `capacity` flows (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            flows: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            evicted: 0,
            expired: 0,
        }
    }

    fn touch(&mut self, key: ConnKey) {
        self.seq += 1;
        if let Some(slot) = self.flows.get_mut(&key) {
            self.order.remove(&slot.touched);
            slot.touched = self.seq;
            self.order.insert(self.seq, key);
        }
    }

    /// Records a drop report (already attributed). A report of the same outage replaces the
    /// latest drop and count; a report after a restore starts a new outage.
    pub fn record_drop(&mut self, drop: &DropRecord, node: Option<&str>) -> DropUpdate {
        let key = ConnKey { src: drop.src.ip, dst: drop.dst.ip, dport: drop.dst.port };
        let update = match self.flows.get_mut(&key) {
            Some(slot) => {
                let rec = &mut slot.record;
                // The tracer counts drops per outage: a later first drop, a smaller count or a
                // restored flow is a new outage.
                let same_outage = rec.state == FlowState::Dropping
                    && drop.first_seen == rec.drop.first_seen
                    && drop.count >= rec.drop.count;
                let new_drops = if same_outage { drop.count - rec.drop.count } else { drop.count };
                let started = rec.state != FlowState::Dropping;
                rec.update_from(drop);
                DropUpdate { new_drops, started }
            }
            None => {
                self.flows
                    .insert(key, Slot { record: FlowRecord::from_drop(drop, node), touched: 0 });
                DropUpdate { new_drops: drop.count, started: true }
            }
        };
        self.touch(key);
        self.evict();
        update
    }

    /// Marks a flow restored; returns its record when it was dropping.
    pub fn record_restored(&mut self, restored: &RestoredRecord) -> Option<&FlowRecord> {
        let key = ConnKey { src: restored.src.ip, dst: restored.dst.ip, dport: restored.dst.port };
        let slot = self.flows.get_mut(&key)?;
        if slot.record.state != FlowState::Dropping {
            return None;
        }
        slot.record.state = FlowState::Restored;
        slot.record.restored_at = Some(restored.time);
        slot.record.drop.evidence = restored.evidence.clone();
        self.touch(key);
        self.flows.get(&key).map(|s| &s.record)
    }

    /// Forgets the flows with no drop and no restore since `now - idle`; returns how many.
    pub fn expire_idle(&mut self, now: DateTime<Utc>, idle: std::time::Duration) -> usize {
        let Ok(idle) = chrono::Duration::from_std(idle) else { return 0 };
        let cutoff = now - idle;
        let stale: Vec<(ConnKey, u64)> = self
            .flows
            .iter()
            .filter(|(_, s)| s.record.restored_at.unwrap_or(s.record.drop.time) < cutoff)
            .map(|(k, s)| (*k, s.touched))
            .collect();
        for (key, touched) in &stale {
            self.flows.remove(key);
            self.order.remove(touched);
        }
        if self.flows.capacity() > 64 && self.flows.len() < self.flows.capacity() / 4 {
            self.flows.shrink_to_fit();
        }
        self.expired += stale.len() as u64;
        stale.len()
    }

    /// Flows forgotten because they were idle.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    fn evict(&mut self) {
        while self.flows.len() > self.capacity {
            let Some((_, key)) = self.order.pop_first() else { break };
            self.flows.remove(&key);
            self.evicted += 1;
        }
    }

    /// A flow's record.
    pub fn get(&self, key: &ConnKey) -> Option<&FlowRecord> {
        self.flows.get(key).map(|s| &s.record)
    }

    /// Changes a flow's record in place (attribution, fix); not an update for eviction.
    pub fn get_mut(&mut self, key: &ConnKey) -> Option<&mut FlowRecord> {
        self.flows.get_mut(key).map(|s| &mut s.record)
    }

    /// Records of flows that `namespace`/`pod` names an end of (both optional), most recent
    /// drop first.
    pub fn records(&self, namespace: Option<&str>, pod: Option<&str>) -> Vec<FlowRecord> {
        self.page(namespace, pod, 0, usize::MAX).0
    }

    /// At most `limit` of the [`records`](Self::records), from the `offset`-th on, and how many
    /// match in all. Only the page is cloned.
    pub fn page(
        &self,
        namespace: Option<&str>,
        pod: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> (Vec<FlowRecord>, usize) {
        let mut all: Vec<&FlowRecord> =
            self.flows.values().map(|s| &s.record).filter(|r| r.concerns(namespace, pod)).collect();
        all.sort_by(|a, b| b.drop.time.cmp(&a.drop.time).then_with(|| a.key().cmp(&b.key())));
        let total = all.len();
        (all.into_iter().skip(offset).take(limit).cloned().collect(), total)
    }

    /// Keys of the flows currently dropping.
    pub fn dropping_keys(&self) -> Vec<ConnKey> {
        self.flows
            .iter()
            .filter(|(_, s)| s.record.state == FlowState::Dropping)
            .map(|(k, _)| *k)
            .collect()
    }

    /// How many flows are dropping.
    pub fn dropping(&self) -> usize {
        self.flows.values().filter(|s| s.record.state == FlowState::Dropping).count()
    }

    /// How many flows are kept.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is kept.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows forgotten to stay within capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Endpoint, Evidence};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn drop_of(src: u8, first: i64, last: i64, count: u64) -> DropRecord {
        DropRecord {
            time: t(last),
            first_seen: t(first),
            reason: "NETFILTER_DROP".into(),
            reason_raw: 11,
            ifname: "cali0".into(),
            count,
            protocol: crate::policy::Protocol::Tcp,
            src: Endpoint::addr(format!("10.0.1.{src}").parse().unwrap(), 40000),
            dst: Endpoint::addr("10.0.2.7".parse().unwrap(), 3306),
            policies: vec![],
            hint: None,
            evidence: Evidence::default(),
        }
    }

    trait Key {
        fn src_key(&self) -> ConnKey;
    }

    impl Key for DropRecord {
        fn src_key(&self) -> ConnKey {
            ConnKey { src: self.src.ip, dst: self.dst.ip, dport: self.dst.port }
        }
    }

    fn restored_of(src: u8, at: i64) -> RestoredRecord {
        RestoredRecord {
            time: t(at),
            first_drop: t(0),
            drops: 3,
            protocol: crate::policy::Protocol::Tcp,
            src: Endpoint::addr(format!("10.0.1.{src}").parse().unwrap(), 40001),
            dst: Endpoint::addr("10.0.2.7".parse().unwrap(), 3306),
            evidence: Evidence { synack_returned: 1, ..Evidence::default() },
        }
    }

    #[test]
    fn a_flow_goes_dropping_restored_dropping() {
        let mut store = DropStore::new(10);
        let u = store.record_drop(&drop_of(1, 0, 0, 1), Some("node-1"));
        assert_eq!(u, DropUpdate { new_drops: 1, started: true });
        store.get_mut(&drop_of(1, 0, 0, 1).src_key()).unwrap().drop.policies =
            vec![crate::trace::PolicyRef {
                kind: crate::policy::PolicyKind::NetworkPolicy,
                tier: None,
                namespace: "db".into(),
                name: "p".into(),
                direction: crate::policy::Direction::Ingress,
            }];
        let u = store.record_drop(&drop_of(1, 0, 2, 3), Some("node-1"));
        assert_eq!(u, DropUpdate { new_drops: 2, started: false });
        assert_eq!(store.records(None, None)[0].drop.policies.len(), 1, "attribution is kept");
        let rec = &store.records(None, None)[0];
        assert_eq!(
            (rec.state, rec.drop.count, rec.drop.first_seen, rec.drop.time),
            (FlowState::Dropping, 3, t(0), t(2))
        );
        assert_eq!(rec.node.as_deref(), Some("node-1"));
        assert_eq!(store.dropping(), 1);

        let r = store.record_restored(&restored_of(1, 5)).expect("was dropping");
        assert_eq!((r.state, r.restored_at, r.drop.count), (FlowState::Restored, Some(t(5)), 3));
        assert!(store.record_restored(&restored_of(1, 6)).is_none(), "restored once");
        assert_eq!(store.dropping(), 0);

        // Drops come back: a new outage, counted from its own first drop.
        let u = store.record_drop(&drop_of(1, 10, 10, 1), None);
        assert_eq!(u, DropUpdate { new_drops: 1, started: true });
        let rec = &store.records(None, None)[0];
        assert_eq!(
            (rec.state, rec.drop.count, rec.drop.first_seen, rec.restored_at),
            (FlowState::Dropping, 1, t(10), None)
        );
    }

    #[test]
    fn idle_flows_expire_and_active_ones_stay() {
        let mut store = DropStore::new(10);
        store.record_drop(&drop_of(1, 0, 0, 1), None);
        store.record_drop(&drop_of(2, 0, 100, 1), None);
        store.record_drop(&drop_of(3, 0, 10, 1), None);
        store.record_restored(&restored_of(3, 200));
        let idle = std::time::Duration::from_secs(150);
        assert_eq!(store.expire_idle(t(200), idle), 1, "flow 1 dropped last at 0");
        let srcs: Vec<String> =
            store.records(None, None).iter().map(|r| r.drop.src.ip.to_string()).collect();
        assert_eq!(srcs.len(), 2);
        assert!(!srcs.contains(&"10.0.1.1".to_string()), "{srcs:?}");
        assert_eq!(store.expire_idle(t(300), idle), 1, "flow 2 dropped last at 100");
        assert_eq!(store.expire_idle(t(400), idle), 1, "flow 3 was restored at 200");
        assert!(store.is_empty());
        assert_eq!((store.expired(), store.order.len()), (3, 0));
    }

    #[test]
    fn a_restore_of_an_unknown_flow_is_ignored() {
        let mut store = DropStore::new(10);
        assert!(store.record_restored(&restored_of(9, 1)).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn the_least_recently_updated_flow_is_evicted_first() {
        let mut store = DropStore::new(3);
        for src in 1..=3 {
            store.record_drop(&drop_of(src, 0, 0, 1), None);
        }
        // Flow 1 is updated again, so flow 2 is now the oldest.
        store.record_drop(&drop_of(1, 0, 1, 2), None);
        store.record_drop(&drop_of(4, 0, 2, 1), None);
        assert_eq!(store.len(), 3);
        assert_eq!(store.evicted(), 1);
        let srcs: Vec<String> =
            store.records(None, None).iter().map(|r| r.drop.src.ip.to_string()).collect();
        assert!(!srcs.contains(&"10.0.1.2".to_string()), "{srcs:?}");
        for src in 5..100 {
            store.record_drop(&drop_of(src, 0, src as i64, 1), None);
            assert!(store.len() <= 3);
        }
        assert_eq!(store.evicted(), 96);
        assert_eq!(store.order.len(), store.flows.len(), "the eviction order stays in step");
    }

    #[test]
    fn records_filter_by_namespace_and_pod_on_either_end() {
        let mut store = DropStore::new(10);
        let mut d = drop_of(1, 0, 0, 1);
        d.src.namespace = Some("app".into());
        d.src.pod = Some("web-1".into());
        d.dst.namespace = Some("db".into());
        d.dst.pod = Some("mysql-0".into());
        store.record_drop(&d, None);
        let mut other = drop_of(2, 0, 1, 1);
        other.src.namespace = Some("batch".into());
        store.record_drop(&other, None);
        assert_eq!(store.records(None, None).len(), 2);
        assert_eq!(store.records(Some("db"), None).len(), 1);
        assert_eq!(store.records(Some("app"), Some("web-1")).len(), 1);
        assert_eq!(store.records(None, Some("db/mysql-0")).len(), 1);
        assert_eq!(store.records(Some("db"), Some("web-1")).len(), 0);
        assert_eq!(store.records(Some("batch"), None)[0].drop.src.ip.to_string(), "10.0.1.2");
    }

    #[test]
    fn a_page_is_a_slice_of_the_records_in_order() {
        let mut store = DropStore::new(10);
        for src in 1..=5 {
            store.record_drop(&drop_of(src, 0, src as i64, 1), None);
        }
        let all: Vec<String> =
            store.records(None, None).iter().map(|r| r.drop.src.ip.to_string()).collect();
        let (page, total) = store.page(None, None, 1, 2);
        assert_eq!(total, 5);
        let ips: Vec<String> = page.iter().map(|r| r.drop.src.ip.to_string()).collect();
        assert_eq!(ips, all[1..3]);
        let (page, total) = store.page(None, None, 4, 10);
        assert_eq!((page.len(), total), (1, 5));
        assert!(store.page(None, None, 9, 10).0.is_empty());
    }
}
