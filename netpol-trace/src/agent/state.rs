//! What the agent's loop and its HTTP server share: the drop store, the metrics, and the
//! health and readiness conditions.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

use super::{metrics::Metrics, store::DropStore};

/// Shared agent state.
#[derive(Debug)]
pub struct AgentState {
    store: Mutex<DropStore>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    running: AtomicBool,
    attached: AtomicBool,
    synced: AtomicBool,
}

impl AgentState {
    /// A state with an empty store of `capacity` flows; not running, not ready.
    pub fn new(capacity: usize) -> Self {
        Self {
            store: Mutex::new(DropStore::new(capacity)),
            metrics: Arc::new(Metrics::default()),
            running: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            synced: AtomicBool::new(false),
        }
    }

    /// The drop store.
    pub fn store(&self) -> MutexGuard<'_, DropStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the agent's loop runs (`/healthz`).
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Sets whether the loop runs.
    pub fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::SeqCst);
    }

    /// Sets whether the programs are loaded and attached.
    pub fn set_attached(&self, on: bool) {
        self.attached.store(on, Ordering::SeqCst);
    }

    /// Sets whether the cluster caches hold their first full lists.
    pub fn set_synced(&self, on: bool) {
        self.synced.store(on, Ordering::SeqCst);
    }

    /// Ready (`/readyz`): running, programs attached and caches synced.
    pub fn ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// What readiness still waits for.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut out = vec![];
        if !self.running() {
            out.push("the agent loop is not running");
        }
        if !self.attached.load(Ordering::SeqCst) {
            out.push("the programs are not attached yet");
        }
        if !self.synced.load(Ordering::SeqCst) {
            out.push("the cluster caches have not synced yet");
        }
        out
    }
}
