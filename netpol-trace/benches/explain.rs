//! Inventory build time and explain latency on synthetic clusters (see `support/synthetic.rs`).
//! `cargo bench -p netpol-trace --bench explain -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use netpol_trace::explain::{ExplainOptions, explain};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::policy::Protocol;

#[path = "support/synthetic.rs"]
mod synthetic;

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

criterion_group!(benches, explain_latency, load, mixed);
criterion_main!(benches);
