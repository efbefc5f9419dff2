//! Fix planning at 10k policies / 100k pods (see `support/synthetic.rs`), in one run:
//! the whole plan (synthesis and proof), and the proof's blast radius walked over every pair of
//! the change's scope against the pruned walk that evaluates only the pairs the changed
//! policies' rules can flip; medians and their ratio.
//! `cargo bench -p netpol-trace --bench fix`

// The bench harness is our own `main`.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::hint::black_box;

use netpol_trace::explain::{ExplainOptions, is_allowed};
use netpol_trace::fix::{
    ChangeScope, FixOptions, PatchAction, plan_fix, verdict_changes, verdict_changes_exhaustive,
};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::policy::{Direction, Protocol};

#[path = "support/synthetic.rs"]
#[allow(dead_code)]
mod synthetic;
#[path = "support/timing.rs"]
mod timing;
use timing::median;

fn main() {
    let (policies, pods) = (10_000, 100_000);
    let inventory =
        Inventory::from_objects(synthetic::cluster(policies, pods), InventoryOptions::default())
            .expect("valid");
    let pod = |index: usize| synthetic::pod_id(&inventory, index);
    let options = FixOptions::default();
    // The first source (from pod 101 on) denied to pod 0 on 3306.
    let flow = (101..pods)
        .map(|src| {
            Flow::new(
                &inventory,
                EndpointSpec::Pod(pod(src)),
                EndpointSpec::Pod(pod(0)),
                3306,
                Protocol::Tcp,
            )
        })
        .find(|flow| !is_allowed(&inventory, flow, &options.explain))
        .expect("a denied flow");
    let plan = plan_fix(&inventory, &flow, &options).expect("a fix exists");
    let after = plan.apply_to(&inventory).expect("the plan applies");

    // The proof's scope: the pods the changed policies select, in the directions they affect.
    let mut scope = ChangeScope {
        ports: BTreeSet::from([(flow.protocol, flow.port)]),
        ..ChangeScope::default()
    };
    for patch in plan.patches.iter().filter(|p| p.action != PatchAction::Delete) {
        let id = after.policy_id(&patch.namespace, &patch.name).expect("patched policy");
        let entry = after.policy(id);
        for direction in [Direction::Ingress, Direction::Egress] {
            if entry.compiled.affects(direction) {
                let subjects = match direction {
                    Direction::Ingress => &mut scope.ingress_subjects,
                    Direction::Egress => &mut scope.egress_subjects,
                };
                subjects.extend(entry.selected.iter().copied());
            }
        }
    }
    let explain = ExplainOptions::default();
    let pruned = verdict_changes(&inventory, &after, &scope, &explain);
    let exhaustive = verdict_changes_exhaustive(&inventory, &after, &scope, &explain);
    assert_eq!(pruned, exhaustive, "both walks find the same changes");

    let planned = median(5, 1, || {
        black_box(plan_fix(black_box(&inventory), &flow, &options).expect("a fix exists"));
    });
    let walk_pruned = median(5, 1, || {
        black_box(verdict_changes(&inventory, &after, &scope, &explain));
    });
    let walk_all = median(5, 1, || {
        black_box(verdict_changes_exhaustive(&inventory, &after, &scope, &explain));
    });
    println!(
        "fix planning, {policies} policies / {pods} pods, {} subjects, {} newly allowed (medians of 5):",
        scope.ingress_subjects.len() + scope.egress_subjects.len(),
        pruned.newly_allowed.len()
    );
    println!("  plan_fix (synthesis + proof)       {planned:>12.2?}");
    println!("  blast radius, every pair of scope  {walk_all:>12.2?}");
    println!("  blast radius, pruned               {walk_pruned:>12.2?}");
    println!(
        "  ratio every pair / pruned          {:>12.1}",
        walk_all.as_secs_f64() / walk_pruned.as_secs_f64()
    );
}
