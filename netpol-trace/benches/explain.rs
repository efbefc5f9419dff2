//! Inventory build time and explain latency on synthetic clusters (see `support/synthetic.rs`).
//! `cargo bench -p netpol-trace --bench explain -- --warm-up-time 1 --measurement-time 3`
//! `cargo bench -p netpol-trace --bench explain -- side_by_side` prints NetworkPolicy-only and
//! mixed kinds at 10k policies / 100k pods in one run: medians and their ratio.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use netpol_trace::explain::{ExplainOptions, explain};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::policy::Protocol;

#[path = "support/synthetic.rs"]
mod synthetic;
#[path = "support/timing.rs"]
mod timing;
use timing::median;

/// (policies, pods)
const SIZES: [(usize, usize); 4] =
    [(100, 1_000), (1_000, 10_000), (10_000, 10_000), (10_000, 100_000)];

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (policies, pods) in SIZES {
        let objects = synthetic::cluster(policies, pods);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{policies}p-{pods}pods")),
            &objects,
            |b, objects| {
                b.iter_batched(
                    || objects.clone(),
                    |objects| {
                        Inventory::from_objects(objects, InventoryOptions::default())
                            .expect("valid")
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

fn explain_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("explain");
    for (policies, pods) in SIZES {
        let inventory = Inventory::from_objects(
            synthetic::cluster(policies, pods),
            InventoryOptions::default(),
        )
        .expect("valid");
        // A source in namespace 1 and a destination in namespace 0: both isolated by several policies.
        let pod = |index: usize| synthetic::pod_id(&inventory, index);
        let flow = Flow::new(
            &inventory,
            EndpointSpec::Pod(pod(101)),
            EndpointSpec::Pod(pod(0)),
            3306,
            Protocol::Tcp,
        );
        let options = ExplainOptions::default();
        group.bench_function(BenchmarkId::from_parameter(format!("{policies}p-{pods}pods")), |b| {
            b.iter(|| explain(black_box(&inventory), black_box(&flow), &options))
        });
    }
    group.finish();
}

/// 10k policies of every kind over 100k pods: the tiered path.
fn mixed(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixed");
    group.sample_size(10);
    let (policies, pods) = (10_000, 100_000);
    let objects = synthetic::mixed_cluster(policies, pods);
    let name = format!("{policies}p-{pods}pods");
    group.bench_with_input(BenchmarkId::new("load", &name), &objects, |b, objects| {
        b.iter_batched(
            || objects.clone(),
            |objects| Inventory::from_objects(objects, InventoryOptions::default()).expect("valid"),
            BatchSize::PerIteration,
        )
    });
    let inventory = Inventory::from_objects(objects, InventoryOptions::default()).expect("valid");
    let pod = |index: usize| {
        let ns = synthetic::namespace_name(index % synthetic::NAMESPACES);
        inventory.pod_id(&ns, &synthetic::pod_name(index)).expect("pod exists")
    };
    let flow = Flow::new(
        &inventory,
        EndpointSpec::Pod(pod(101)),
        EndpointSpec::Pod(pod(0)),
        3306,
        Protocol::Tcp,
    );
    let options = ExplainOptions::default();
    group.bench_function(BenchmarkId::new("explain", &name), |b| {
        b.iter(|| explain(black_box(&inventory), black_box(&flow), &options))
    });
    group.bench_function(BenchmarkId::new("is_allowed", &name), |b| {
        b.iter(|| {
            netpol_trace::explain::is_allowed(black_box(&inventory), black_box(&flow), &options)
        })
    });
    group.finish();
}

/// NetworkPolicy-only against mixed kinds (6k NetworkPolicies, 3k Calico NetworkPolicies, 600
/// GlobalNetworkPolicies, 400 ClusterNetworkPolicies) at 10k policies / 100k pods, same flow,
/// in one run; prints the medians and the ratio mixed / NetworkPolicy-only. Runs only when no
/// filter is given or the filter names it (its own timing loop, not criterion's).
fn side_by_side(_: &mut Criterion) {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "side_by_side".contains(f.as_str())) {
        return;
    }
    let (policies, pods) = (10_000, 100_000);
    let clusters = [
        ("NetworkPolicy only", synthetic::cluster(policies, pods)),
        ("mixed kinds", synthetic::mixed_cluster(policies, pods)),
    ];
    let mut rows = Vec::new();
    for (label, objects) in clusters {
        let load = median(5, 1, || {
            let copy = objects.clone();
            black_box(Inventory::from_objects(copy, InventoryOptions::default()).expect("valid"));
        });
        let inventory =
            Inventory::from_objects(objects, InventoryOptions::default()).expect("valid");
        let pod = |index: usize| synthetic::pod_id(&inventory, index);
        let flow = Flow::new(
            &inventory,
            EndpointSpec::Pod(pod(101)),
            EndpointSpec::Pod(pod(0)),
            3306,
            Protocol::Tcp,
        );
        let options = ExplainOptions::default();
        let explained = median(31, 20, || {
            black_box(explain(black_box(&inventory), black_box(&flow), &options));
        });
        let allowed = median(31, 200, || {
            black_box(netpol_trace::explain::is_allowed(
                black_box(&inventory),
                black_box(&flow),
                &options,
            ));
        });
        rows.push((label, load, explained, allowed));
    }
    println!("side by side, {policies} policies / {pods} pods (medians):");
    println!("{:<20} {:>12} {:>14} {:>14}", "", "load", "explain", "is_allowed");
    for (label, load, explained, allowed) in &rows {
        println!("{label:<20} {load:>12.2?} {explained:>14.2?} {allowed:>14.2?}");
    }
    let ratio = |f: fn(&(&str, Duration, Duration, Duration)) -> Duration| {
        f(&rows[1]).as_secs_f64() / f(&rows[0]).as_secs_f64()
    };
    println!(
        "{:<20} {:>12.2} {:>14.2} {:>14.2}",
        "ratio mixed/NP",
        ratio(|r| r.1),
        ratio(|r| r.2),
        ratio(|r| r.3)
    );
}

criterion_group!(benches, explain_latency, load, mixed, side_by_side);
criterion_main!(benches);
