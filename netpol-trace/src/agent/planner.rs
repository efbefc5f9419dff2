//! Fix planning off the async loop. The loop attributes each drop with the engine alone (a few
//! microseconds) and offers the flow to a bounded [`FixQueue`] under its identity (source
//! workload → destination workload, port, protocol: what its DropReport names). One worker
//! thread plans the minimal patch and its blast radius once per identity, within a CPU budget,
//! and gives the (shared) suggestion to every flow of that identity; later flows of a planned
//! identity take it from the queue's table of plans at once, until the cluster view changes.
//! A storm of SYNs to many pods of few workloads therefore costs a few plans; past the queue's
//! capacity new identities are counted and left without a suggestion until offered again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::attribute::attribute;
use super::cluster::ClusterView;
use super::feed;
use super::record::{FlowRecord, FlowState, SuggestedFix};
use super::state::AgentState;
use crate::trace::flows::ConnKey;

/// Identities waiting for a plan at most.
pub const QUEUE_CAPACITY: usize = 256;
/// Flows waiting behind one identity at most (each is given the identity's plan).
pub const WAITERS_PER_IDENTITY: usize = 4096;
/// Plans kept for the current cluster view at most.
pub const PLANNED_CAPACITY: usize = 4096;
/// Share of one core the planning worker may use.
pub const CPU_SHARE: f64 = 0.2;

/// A flow's identity: its DropReport's spec, as [`feed::ReportBasis::identity`] writes it.
pub type Identity = String;

/// The plan of one identity, shared by its flows.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The suggestion served on `/drops`; `None` when there is no safe fix.
    pub fix: Option<SuggestedFix>,
    /// The patches of the DropReport.
    pub patches: Option<Arc<Vec<Value>>>,
}

impl Planned {
    /// Gives `record` this plan (its fix and its report's patches).
    pub fn apply(&self, record: &mut FlowRecord) {
        record.fix = self.fix.clone();
        if let Some(basis) = &record.report {
            record.report = Some(Arc::new(basis.with_patches(self.patches.clone())));
        }
    }
}

/// What [`FixQueue::offer`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// Its identity waits or is being planned already: the flow gets that plan.
    AlreadyQueued,
    /// Its identity was planned against the current view: here is the plan.
    Planned(Arc<Planned>),
    /// The queue (or the flows behind its identity) is full: not queued.
    Full,
}

/// Flows of one identity, taken by the worker to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The identity.
    pub identity: Identity,
    /// The view generation when it was taken.
    pub generation: u64,
    /// Its flows, oldest first.
    pub keys: Vec<ConnKey>,
}

#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<Identity>,
    waiting: HashMap<Identity, Vec<ConnKey>>,
    /// The identity being planned and the flows offered meanwhile.
    planning: Option<(Identity, Vec<ConnKey>)>,
    planned: HashMap<Identity, Arc<Planned>>,
    generation: u64,
    closed: bool,
}

/// A bounded FIFO of flow identities, each held once with the flows waiting for its plan, and
/// the table of plans made against the current cluster view.
#[derive(Debug)]
pub struct FixQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl FixQueue {
    /// An empty queue of at most `capacity` identities.
    pub fn new(capacity: usize) -> Self {
        Self { queue: Mutex::default(), ready: Condvar::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers flow `key` of `identity`, attributed against view `generation` (a newer
    /// generation forgets the plans made before it).
    pub fn offer(&self, identity: Identity, key: ConnKey, generation: u64) -> Offer {
        let mut q = self.lock();
        if generation > q.generation {
            q.generation = generation;
            q.planned.clear();
        }
        if let Some(plan) = q.planned.get(&identity) {
            return Offer::Planned(plan.clone());
        }
        let waiters = match &mut q.planning {
            Some((planning, keys)) if *planning == identity => Some(keys),
            _ => q.waiting.get_mut(&identity),
        };
        if let Some(keys) = waiters {
            if keys.len() >= WAITERS_PER_IDENTITY {
                return Offer::Full;
            }
            if keys.last() != Some(&key) {
                keys.push(key);
            }
            return Offer::AlreadyQueued;
        }
        if q.order.len() >= self.capacity {
            return Offer::Full;
        }
        q.waiting.insert(identity.clone(), vec![key]);
        q.order.push_back(identity);
        self.ready.notify_one();
        Offer::Queued
    }

    /// The oldest identity and its flows; waits for one; `None` once closed. Flows of it
    /// offered until [`Self::finish`] are handed over there.
    pub fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(identity) = q.order.pop_front() {
                let keys = q.waiting.remove(&identity).unwrap_or_default();
                q.planning = Some((identity.clone(), Vec::new()));
                return Some(Job { identity, generation: q.generation, keys });
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records the plan of `job` (kept while the view has not changed and the table has room)
    /// and returns the flows of its identity offered while it was planned.
    pub fn finish(&self, job: &Job, plan: Option<Arc<Planned>>) -> Vec<ConnKey> {
        let mut q = self.lock();
        let late = match q.planning.take() {
            Some((identity, keys)) if identity == job.identity => keys,
            other => {
                q.planning = other;
                Vec::new()
            }
        };
        if let Some(plan) = plan
            && q.generation == job.generation
            && q.planned.len() < PLANNED_CAPACITY
        {
            q.planned.insert(job.identity.clone(), plan);
        }
        late
    }

    /// Identities waiting.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no identity waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits `pause`, or less when the queue is closed meanwhile.
    pub fn rest(&self, pause: Duration) {
        let q = self.lock();
        if !q.closed {
            drop(self.ready.wait_timeout_while(q, pause, |q| !q.closed));
        }
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
        while let Some(job) = queue.take() {
            let started = Instant::now();
            let plan = plan_one(&job, &view, &state);
            let took = started.elapsed();
            let late = queue.finish(&job, plan.clone());
            if let Some(plan) = plan {
                give(&plan, job.keys.iter().chain(&late), &state, feed.as_ref());
            }
            // The pause keeps the share however long a plan took (a long plan is followed by
            // a long pause); closing the queue cuts it short.
            let pause = took.mul_f64((1.0 - CPU_SHARE) / CPU_SHARE);
            if !pause.is_zero() && !queue.is_empty() {
                queue.rest(pause);
            }
        }
    })
}

/// Plans the fix of the first flow of `job` that is still dropping.
fn plan_one(job: &Job, view: &SharedView, state: &AgentState) -> Option<Arc<Planned>> {
    let view = Arc::clone(&view.lock().unwrap_or_else(|e| e.into_inner()));
    let mut record = job.keys.iter().find_map(|key| {
        state.store().get(key).filter(|r| r.state == FlowState::Dropping).cloned()
    })?;
    let (a, plan) = attribute(&view.inventory, &mut record);
    let basis = feed::basis(&view, &view.inventory, &record, &a, plan.as_ref());
    Some(Arc::new(Planned { fix: record.fix, patches: basis.patches().cloned() }))
}

/// Gives `plan` to the flows `keys` still dropping and offers the report updates that carry
/// the proposed fix.
fn give<'a>(
    plan: &Planned,
    keys: impl Iterator<Item = &'a ConnKey>,
    state: &AgentState,
    feed: Option<&feed::Feed>,
) {
    let mut store = state.store();
    for key in keys {
        if let Some(stored) = store.get_mut(key).filter(|r| r.state == FlowState::Dropping) {
            plan.apply(stored);
            if let (Some(feed), Some(basis)) = (feed, &stored.report) {
                feed.offer(stored, basis);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> ConnKey {
        ConnKey { src: "10.0.0.1".parse().unwrap(), dst: "10.0.0.2".parse().unwrap(), dport: n }
    }

    fn id(s: &str) -> Identity {
        s.to_string()
    }

    fn plan(summary: &str) -> Arc<Planned> {
        Arc::new(Planned {
            fix: Some(SuggestedFix::from(super::super::record::FixDetails {
                summary: summary.into(),
                kubectl: vec![],
                patches: Value::Null,
            })),
            patches: None,
        })
    }

    #[test]
    fn the_queue_holds_each_identity_once_and_stays_bounded() {
        let q = FixQueue::new(2);
        assert_eq!(q.offer(id("web->mysql"), key(1), 0), Offer::Queued);
        assert_eq!(q.offer(id("web->mysql"), key(2), 0), Offer::AlreadyQueued);
        assert_eq!(q.offer(id("web->mysql"), key(2), 0), Offer::AlreadyQueued);
        assert_eq!(q.offer(id("api->redis"), key(3), 0), Offer::Queued);
        assert_eq!(q.offer(id("cron->pg"), key(4), 0), Offer::Full);
        assert_eq!(q.len(), 2);
        let job = q.take().unwrap();
        assert_eq!(job.identity, "web->mysql", "oldest first");
        assert_eq!(job.keys, vec![key(1), key(2)], "every flow of the identity, once");
        assert_eq!(q.take().unwrap().keys, vec![key(3)]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_flows_behind_one_identity_are_bounded() {
        let q = FixQueue::new(4);
        for n in 0..WAITERS_PER_IDENTITY {
            assert_ne!(q.offer(id("a"), key(n as u16), 0), Offer::Full);
        }
        assert_eq!(q.offer(id("a"), key(u16::MAX), 0), Offer::Full);
        assert_eq!(q.take().unwrap().keys.len(), WAITERS_PER_IDENTITY);
    }

    #[test]
    fn a_planned_identity_is_answered_from_the_table_until_the_view_changes() {
        let q = FixQueue::new(4);
        assert_eq!(q.offer(id("a"), key(1), 3), Offer::Queued);
        let job = q.take().unwrap();
        assert_eq!(q.offer(id("a"), key(2), 3), Offer::AlreadyQueued, "being planned");
        let late = q.finish(&job, Some(plan("p")));
        assert_eq!(late, vec![key(2)], "flows offered while planning are handed over");
        assert_eq!(q.offer(id("a"), key(5), 3), Offer::Planned(plan("p")));
        assert!(q.is_empty(), "nothing planned twice");
        assert_eq!(q.offer(id("a"), key(5), 4), Offer::Queued, "a new view plans again");
    }

    #[test]
    fn a_plan_of_an_older_view_is_not_kept() {
        let q = FixQueue::new(4);
        q.offer(id("a"), key(1), 1);
        let job = q.take().unwrap();
        assert_eq!(q.offer(id("b"), key(2), 2), Offer::Queued);
        q.finish(&job, Some(plan("old")));
        assert_eq!(q.offer(id("a"), key(1), 2), Offer::Queued);
    }

    #[test]
    fn closing_cuts_a_rest_short() {
        let q = Arc::new(FixQueue::new(4));
        let resting = {
            let q = q.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                q.rest(Duration::from_secs(60));
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert!(resting.join().unwrap() < Duration::from_secs(30));
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
    fn the_worker_plans_an_identity_once_for_all_its_flows() {
        let view = ClusterView::of(crate::testing::inventory_of(crate::testing::MYSQL_MANIFESTS));
        let state = Arc::new(AgentState::new(16));
        let first = super::super::attribute::tests::record("10.0.1.5", "10.0.2.7", 3306);
        let second = super::super::attribute::tests::record("10.0.1.6", "10.0.2.7", 3306);
        let keys: Vec<ConnKey> = [&first, &second]
            .iter()
            .map(|r| ConnKey { src: r.drop.src.ip, dst: r.drop.dst.ip, dport: 3306 })
            .collect();
        state.store().record_drop(&first.drop, None);
        state.store().record_drop(&second.drop, None);
        let queue = Arc::new(FixQueue::new(4));
        assert_eq!(queue.offer(id("web->mysql"), keys[0], 0), Offer::Queued);
        assert_eq!(queue.offer(id("web->mysql"), keys[1], 0), Offer::AlreadyQueued);
        let worker =
            spawn(queue.clone(), Arc::new(Mutex::new(Arc::new(view))), state.clone(), None)
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while keys.iter().any(|k| state.store().get(k).unwrap().fix.is_none()) {
            assert!(Instant::now() < deadline, "no plan within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let Offer::Planned(planned) = queue.offer(id("web->mysql"), keys[0], 0) else {
            panic!("the identity's plan is kept");
        };
        queue.close();
        worker.join().unwrap();
        let fix = state.store().get(&keys[0]).unwrap().fix.clone().unwrap();
        assert!(fix.kubectl[0].contains("mysql-ingress"), "{:?}", fix.kubectl);
        assert_eq!(state.store().get(&keys[1]).unwrap().fix.as_ref(), Some(&fix));
        assert_eq!(planned.fix.as_ref(), Some(&fix));
    }
}
