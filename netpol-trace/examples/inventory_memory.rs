//! Builds an inventory from a synthetic cluster and explains one flow, printing timings; run it
//! under `/usr/bin/time -v` to see peak memory:
//! `cargo run --release -p netpol-trace --example inventory_memory -- 10000 100000`

use std::time::Instant;

use netpol_trace::explain::{ExplainOptions, explain};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::policy::Protocol;

#[allow(dead_code)] // the mixed-kinds generator serves the benchmark only
#[path = "../benches/support/synthetic.rs"]
mod synthetic;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a count"));
    let policies = args.next().unwrap_or(10_000);
    let pods = args.next().unwrap_or(100_000);
    let objects = synthetic::cluster(policies, pods);
    let start = Instant::now();
    let inventory = Inventory::from_objects(objects, InventoryOptions::default()).expect("valid");
    let load = start.elapsed();
    let pod = |index: usize| synthetic::pod_id(&inventory, index);
    let flow = Flow::new(
        &inventory,
        EndpointSpec::Pod(pod(101)),
        EndpointSpec::Pod(pod(0)),
        3306,
        Protocol::Tcp,
    );
    let first = Instant::now();
    let explanation = explain(&inventory, &flow, &ExplainOptions::default());
    let first = first.elapsed();
    const REPEAT: u32 = 1000;
    let start = Instant::now();
    for _ in 0..REPEAT {
        std::hint::black_box(explain(&inventory, &flow, &ExplainOptions::default()));
    }
    println!(
        "{policies} policies, {pods} pods: inventory built in {load:?}; first explain {first:?}, then {:?} each ({:?}, {} ingress policies)",
        start.elapsed() / REPEAT,
        explanation.verdict,
        explanation.ingress.policies.len()
    );
}
