//! Fix planning off the async loop. The loop attributes each drop with the engine alone (a few
//! microseconds) and offers the flow to a bounded, de-duplicating [`FixQueue`]; one worker
//! thread plans the minimal patch and its blast radius for queued flows, within a CPU budget,
//! and stores the suggestion in the flow's record and in the basis of its DropReport. A storm of
//! new flows therefore costs the loop nothing but queue offers; past the queue's capacity new
//! flows are counted and left without a suggestion until they are offered again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::attribute::attribute;
use super::cluster::ClusterView;
use super::feed;
use super::record::FlowState;
use super::state::AgentState;
use crate::trace::flows::ConnKey;

/// Flows waiting for a plan at most.
pub const QUEUE_CAPACITY: usize = 4096;
/// Share of one core the planning worker may use.
pub const CPU_SHARE: f64 = 0.2;
/// Longest pause the worker makes to stay within its share.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What [`FixQueue::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// Already waiting: nothing added.
    AlreadyQueued,
    /// The queue is full: not queued.
    Full,
}

#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<ConnKey>,
    queued: HashSet<ConnKey>,
    closed: bool,
}

/// A bounded FIFO of flows that holds each flow once.
#[derive(Debug)]
pub struct FixQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl FixQueue {
    /// An empty queue of at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        Self { queue: Mutex::default(), ready: Condvar::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it waits already or the queue is full.
    pub fn offer(&self, key: ConnKey) -> Offer {
        let mut q = self.lock();
        if q.queued.contains(&key) {
            return Offer::AlreadyQueued;
        }
        if q.order.len() >= self.capacity {
            return Offer::Full;
        }
        q.queued.insert(key);
        q.order.push_back(key);
        self.ready.notify_one();
        Offer::Queued
    }

    /// The oldest flow; waits for one; `None` once closed.
    pub fn take(&self) -> Option<ConnKey> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(key) = q.order.pop_front() {
                q.queued.remove(&key);
                return Some(key);
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Flows waiting.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no flow waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes the worker and makes [`Self::take`] return `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// The cluster view the worker plans against, replaced by the loop after each rebuild.
pub type SharedView = Arc<Mutex<Arc<ClusterView>>>;

/// Starts the worker thread; it ends when `queue` is closed.
pub fn spawn(
    queue: Arc<FixQueue>,
    view: SharedView,
    state: Arc<AgentState>,
    feed: Option<feed::Feed>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("fix-planner".into()).spawn(move || {
        while let Some(key) = queue.take() {
            let started = Instant::now();
            plan_one(key, &view, &state, feed.as_ref());
            let took = started.elapsed();
            let pause = took.mul_f64((1.0 - CPU_SHARE) / CPU_SHARE).min(MAX_PAUSE);
            if !pause.is_zero() && !queue.is_empty() {
                std::thread::sleep(pause);
            }
        }
    })
}

/// Plans the fix of flow `key` if it is still dropping, stores it in its record and in the
/// basis of its DropReport, and offers the report update that carries the proposed fix.
fn plan_one(key: ConnKey, view: &SharedView, state: &AgentState, feed: Option<&feed::Feed>) {
    let view = Arc::clone(&view.lock().unwrap_or_else(|e| e.into_inner()));
    let Some(mut record) =
        state.store().get(&key).filter(|r| r.state == FlowState::Dropping).cloned()
    else {
        return;
    };
    let (a, plan) = attribute(&view.inventory, &mut record);
    let report = Arc::new(feed::basis(&view, &view.inventory, &record, &a, plan.as_ref()));
    let mut store = state.store();
    if let Some(stored) = store.get_mut(&key) {
        stored.fix = record.fix;
        stored.report = Some(report.clone());
        if let Some(feed) = feed {
            feed.offer(stored, &report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> ConnKey {
        ConnKey { src: "10.0.0.1".parse().unwrap(), dst: "10.0.0.2".parse().unwrap(), dport: n }
    }

    #[test]
    fn the_queue_holds_each_flow_once_and_stays_bounded() {
        let q = FixQueue::new(2);
        assert_eq!(q.offer(key(1)), Offer::Queued);
        assert_eq!(q.offer(key(1)), Offer::AlreadyQueued);
        assert_eq!(q.offer(key(2)), Offer::Queued);
        assert_eq!(q.offer(key(3)), Offer::Full);
        assert_eq!(q.len(), 2);
        assert_eq!(q.take(), Some(key(1)), "oldest first");
        assert_eq!(q.offer(key(1)), Offer::Queued, "taken flows can be offered again");
        assert_eq!(q.take(), Some(key(2)));
        assert_eq!(q.take(), Some(key(1)));
        assert!(q.is_empty());
    }

    #[test]
    fn closing_wakes_a_waiting_worker() {
        let q = Arc::new(FixQueue::new(4));
        let waiting = {
            let q = q.clone();
            std::thread::spawn(move || q.take())
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(waiting.join().unwrap(), None);
    }

    #[test]
    fn the_worker_stores_the_plan_in_the_record() {
        let view = ClusterView::of(crate::testing::inventory_of(crate::testing::MYSQL_MANIFESTS));
        let state = Arc::new(AgentState::new(16));
        let record = super::super::attribute::tests::record("10.0.1.5", "10.0.2.7", 3306);
        let key = ConnKey { src: record.drop.src.ip, dst: record.drop.dst.ip, dport: 3306 };
        state.store().record_drop(&record.drop, None);
        assert!(state.store().get(&key).unwrap().fix.is_none());
        let queue = Arc::new(FixQueue::new(4));
        let worker =
            spawn(queue.clone(), Arc::new(Mutex::new(Arc::new(view))), state.clone(), None)
                .unwrap();
        assert_eq!(queue.offer(key), Offer::Queued);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.store().get(&key).unwrap().fix.is_none() {
            assert!(Instant::now() < deadline, "no plan within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        queue.close();
        worker.join().unwrap();
        let stored = state.store().get(&key).unwrap().clone();
        let fix = stored.fix.clone().unwrap();
        assert!(fix.kubectl[0].contains("mysql-ingress"), "{:?}", fix.kubectl);
        assert!(stored.report.is_some(), "the DropReport basis carries the plan");
    }
}
