//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: a holder renews
//! `spec.renewTime` every retry period; others take the lease only once it has not changed for
//! a whole lease duration *by their own clock* (so clock skew between nodes does not matter);
//! every write is a PUT guarded by the resourceVersion read, so two candidates never both win.
//! A leader that cannot renew within the renew deadline steps down. (The maintained crates
//! either need kube 4 or take the lease with server-side apply, which not every API server in
//! tests implements; this is the small careful version.)

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use super::{Error, Result};

/// Timings of the election.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    /// How long a lease stays valid after its last renewal.
    pub duration: Duration,
    /// How long a leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for the lease.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The lease record last seen and when (by our clock) it was first seen like that.
    observed: Option<(String, Instant)>,
    last_renewed: Option<Instant>,
}

impl Elector {
    /// A candidate `identity` for lease `namespace/name`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timings,
            observed: None,
            last_renewed: None,
        }
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn what(&self) -> String {
        format!("lease {}/{}", self.namespace, self.name)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew; `Ok(true)` while we hold the lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let existing = self.api.get_opt(&self.name).await.map_err(|source| Error::Kube {
            verb: "get",
            what: self.what(),
            source,
        })?;
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(self.won()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(source) => Err(Error::Kube { verb: "create", what: self.what(), source }),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let record = format!(
            "{:?}|{:?}|{:?}",
            spec.holder_identity,
            spec.renew_time.as_ref().map(|t| t.0),
            spec.lease_transitions
        );
        let now = Instant::now();
        match &self.observed {
            Some((seen, _)) if *seen == record => {}
            _ => self.observed = Some((record, now)),
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let duration = spec
            .lease_duration_seconds
            .map_or(self.timings.duration, |s| Duration::from_secs(s.max(0) as u64));
        if !ours && holder.is_some() && now.duration_since(observed_at) < duration {
            self.last_renewed = None;
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        let mut updated = lease.clone();
        updated.spec = Some(self.spec(transitions, acquired));
        // metadata.resourceVersion from the read guards the PUT.
        match self.api.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(self.won()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.last_renewed = None;
                Ok(false)
            }
            Err(source) => Err(Error::Kube { verb: "update", what: self.what(), source }),
        }
    }

    fn won(&mut self) -> bool {
        self.last_renewed = Some(Instant::now());
        self.observed = None;
        true
    }

    /// Whether we still lead: renewed within the renew deadline.
    pub fn is_leading(&self) -> bool {
        self.last_renewed.is_some_and(|at| at.elapsed() < self.timings.renew_deadline)
    }

    /// Waits until we hold the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Renews every retry period; returns when leadership is lost (no renewal within the
    /// renew deadline, or someone else holds the lease).
    pub async fn keep_renewing(&mut self) {
        loop {
            tokio::time::sleep(self.timings.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "renewing the lease"),
            }
            if !self.is_leading() {
                return;
            }
        }
    }

    /// Gives the lease up (on shutdown) so that a standby takes over at once.
    pub async fn release(&mut self) -> Result<()> {
        self.last_renewed = None;
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(|source| Error::Kube {
            verb: "get",
            what: self.what(),
            source,
        })?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(source) => Err(Error::Kube { verb: "update", what: self.what(), source }),
        }
    }
}
