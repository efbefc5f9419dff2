//! The controller loop: wait for the Lease, then watch DropReports in all namespaces and
//! reconcile each approved one (one at a time: a handful of fixes an hour, never a stampede);
//! stop writing the moment leadership is lost. With auto-approval on, pending reports are
//! checked against the narrow regression rules first. The leader also deletes reports of flows
//! restored long ago ([`super::garbage`]): one cluster-wide list per period, not one per node.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Mutex;

use super::auto_approve::AutoApprover;
use super::fixer::{Fixer, needs_work};
use super::garbage::{Garbage, collect_garbage};
use super::lease::Elector;
use super::report::DropReport;

/// Name of the controller's Lease (in its own namespace).
pub const LEASE_NAME: &str = "netpol-trace-controller";

/// How often every report is looked at again, besides watch events.
pub const RESYNC: Duration = Duration::from_secs(60);

/// Reconciles every report that needs work, once (a resync pass).
pub async fn reconcile_all(
    fixer: &Fixer,
    auto: Option<&Mutex<AutoApprover>>,
) -> super::Result<usize> {
    let api: Api<DropReport> = Api::all(fixer.client.clone());
    let list = api.list(&Default::default()).await.map_err(|source| super::Error::Kube {
        verb: "list",
        what: "dropreports".into(),
        source,
    })?;
    let mut done = 0;
    for report in list.items {
        if handle(fixer, auto, report).await {
            done += 1;
        }
    }
    Ok(done)
}

/// Looks at one report: auto-approval of a pending one, then the fix of an approved one.
/// Returns whether a fix was worked on.
async fn handle(fixer: &Fixer, auto: Option<&Mutex<AutoApprover>>, report: DropReport) -> bool {
    let (Some(namespace), Some(name)) =
        (report.metadata.namespace.clone(), report.metadata.name.clone())
    else {
        return false;
    };
    let mut approved = false;
    if let Some(auto) = auto
        && report.spec.decision.is_none()
    {
        match auto.lock().await.consider(&report).await {
            Ok(true) => approved = true,
            Ok(false) => {}
            Err(e) => tracing::warn!(report = %report.key(), error = %e, "auto-approval"),
        }
    }
    if !approved && !needs_work(&report) {
        return false;
    }
    match fixer.reconcile(&namespace, &name).await {
        Ok(Some(phase)) => {
            tracing::info!(report = %report.key(), phase = phase.as_str(), "fix");
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(report = %report.key(), error = %e, "fix");
            false
        }
    }
}

/// Leads and works until leadership is lost: the watch (and every write) stops with it.
async fn lead(fixer: &Fixer, auto: Option<&Mutex<AutoApprover>>, garbage: Garbage) {
    let api: Api<DropReport> = Api::all(fixer.client.clone());
    let events = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
    let mut events = std::pin::pin!(events);
    let mut resync = tokio::time::interval(RESYNC);
    let mut gc = tokio::time::interval(garbage.every.max(Duration::from_millis(1)));
    gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = gc.tick() => match collect_garbage(&fixer.client, garbage.age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "DropReports of flows restored long ago deleted"),
                Err(e) => tracing::warn!(error = %e, "DropReport garbage collection"),
            },
            next = events.try_next() => match next {
                Ok(Some(report)) => { handle(fixer, auto, report).await; }
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "watching dropreports"),
            },
            _ = resync.tick() => {
                if let Err(e) = reconcile_all(fixer, auto).await {
                    tracing::warn!(error = %e, "resync");
                }
            }
        }
    }
}

/// Runs the controller until `shutdown` resolves: acquire the Lease, lead while it is held,
/// step down (stop all work) when it is lost, release it on shutdown. Garbage is collected
/// with the defaults ([`Garbage::default`]).
pub async fn run(
    fixer: Fixer,
    elector: Elector,
    auto: Option<AutoApprover>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    run_with(fixer, elector, auto, Garbage::default(), shutdown).await;
}

/// [`run`] with the garbage collection's age and period.
pub async fn run_with(
    fixer: Fixer,
    mut elector: Elector,
    auto: Option<AutoApprover>,
    garbage: Garbage,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let auto = auto.map(|a| Arc::new(Mutex::new(a)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = elector.acquire() => {}
            () = &mut shutdown => return,
        }
        tracing::info!(identity = elector.identity(), "leading");
        let stop = tokio::select! {
            () = lead(&fixer, auto.as_deref(), garbage) => false,
            () = elector.keep_renewing() => false,
            () = &mut shutdown => true,
        };
        if stop {
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "releasing the lease");
            }
            return;
        }
        tracing::warn!(identity = elector.identity(), "lost the lease; stopped writing");
    }
}
