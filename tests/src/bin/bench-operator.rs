//! Benchmark of the operator loop (not a test; prints numbers). Needs root; runs only between
//! network namespaces it creates and on loopback. Run with `scripts/bench-operator.sh [N]`.
//!
//! Each run builds the end-to-end scenario of `tests/tests/operator_e2e.rs` afresh (fake API
//! server enforcing deploy/'s RBAC, a node namespace, the CNI rendering the live policies
//! with nftables, `netpol-trace agent` and `netpol-trace controller` as processes) and
//! measures, polling the API server every 20 ms:
//! * first dropped SYN → the report in the API server with filled status (node entry,
//!   attribution, proposed fix);
//! * `netpol-trace approve` started → fix phase `Applied`;
//! * the CNI's ruleset change that stops the drop → report `state: Restored` (a client
//!   connecting again at once, as a real one retries).
//!
//! With `--show`, the first run also prints what a platform team types and sees along the
//! way (`netpol-trace drops`, `approve`, `restore`), run against the same API server with each
//! person's kubeconfig. (Not `kubectl get dr`: kubectl sends credentials only to an HTTPS
//! server, and the fake API server speaks plain HTTP on loopback.)

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netpol_trace_integration::{
    operator::{ADMIN_TOKEN, PERSON_TOKEN, Scenario, filled, phase},
    require_root,
};

const PATIENCE: Duration = Duration::from_secs(60);

/// One run's three latencies.
struct Run {
    report: Duration,
    applied: Duration,
    restored: Duration,
}

/// Runs `netpol-trace ARGS` as the holder of `token` and prints the command and its output.
fn show(s: &Scenario, token: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = s.cluster.cli(token, args)?;
    println!("$ netpol-trace {}", args.join(" "));
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!();
    Ok(())
}

fn one_run(bin: PathBuf, verbose: bool) -> anyhow::Result<Run> {
    let mut s = Scenario::new(bin, 1, false, 3307)?;
    s.start_agents()?;
    s.controller = Some(s.cluster.spawn_controller("ctl-0", &[])?);

    // The first SYN leaves at once and is dropped; the report is polled meanwhile.
    let start = Instant::now();
    // Timed inside the scope: leaving it joins the connecting thread (1.5 s).
    let (report, report_latency) = std::thread::scope(|scope| {
        scope.spawn(|| s.connect(0, 0, Duration::from_millis(1500)));
        s.report_when("a report with filled status", PATIENCE, filled).map(|r| (r, start.elapsed()))
    })?;
    let name = report["metadata"]["name"].as_str().context("report name")?.to_string();
    if verbose {
        show(&s, ADMIN_TOKEN, &["drops", "-A"])?;
    }

    let start = Instant::now();
    let out = s.cluster.cli(PERSON_TOKEN, &["approve", &name, "-n", "db"])?;
    if !out.status.success() {
        bail!("approve: {}", String::from_utf8_lossy(&out.stderr));
    }
    s.report_when("Applied", PATIENCE, |r| phase(r) == Some("Applied"))?;
    let applied_latency = start.elapsed();
    if verbose {
        println!("$ netpol-trace approve {name} -n db");
        println!("{}", String::from_utf8_lossy(&out.stdout));
    }

    s.wait_blocked(0, false)?;
    let changed = s.cni.changed_at().context("no ruleset change")?;
    let restored_latency = std::thread::scope(|scope| {
        scope.spawn(|| (0..5).any(|_| s.connect(0, 0, Duration::from_millis(1000))));
        s.report_when("Restored", PATIENCE, |r| r["status"]["state"] == "Restored")
            .map(|_| changed.elapsed())
    })?;
    if verbose {
        show(&s, PERSON_TOKEN, &["drops", "-n", "db"])?;
        show(&s, PERSON_TOKEN, &["restore", &format!("dropreport/{name}"), "-n", "db"])?;
        show(&s, PERSON_TOKEN, &["drops", "-n", "db", "-o", "yaml"])?;
    }
    Ok(Run { report: report_latency, applied: applied_latency, restored: restored_latency })
}

fn summary(label: &str, budget: u64, mut values: Vec<Duration>) {
    values.sort();
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2
    };
    println!(
        "{label:<44} median {:>6.2} s   min {:>6.2} s   max {:>6.2} s   (budget {budget} s)",
        median.as_secs_f64(),
        values[0].as_secs_f64(),
        values[values.len() - 1].as_secs_f64()
    );
}

fn main() -> anyhow::Result<()> {
    require_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--show");
    let runs: usize = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(|n| n.parse())
        .transpose()
        .context("usage: bench-operator [N] [--show]")?
        .unwrap_or(5);
    if runs == 0 {
        bail!("at least one run");
    }
    let bin =
        std::env::current_exe()?.parent().context("binary folder")?.join("netpol-trace-under-test");
    if !bin.exists() {
        bail!(
            "{} is missing: build with `cargo build --release -p netpol-trace-integration --bins`",
            bin.display()
        );
    }
    let mut all = vec![];
    for i in 1..=runs {
        let run = one_run(bin.clone(), verbose && i == 1).with_context(|| format!("run {i}"))?;
        println!(
            "run {i}: report {:.2} s, applied {:.2} s, restored {:.2} s",
            run.report.as_secs_f64(),
            run.applied.as_secs_f64(),
            run.restored.as_secs_f64()
        );
        all.push(run);
    }
    println!("\n{runs} runs");
    summary("first dropped SYN -> report with status", 15, all.iter().map(|r| r.report).collect());
    summary("approve -> Applied", 10, all.iter().map(|r| r.applied).collect());
    summary("enforcement change -> Restored", 10, all.iter().map(|r| r.restored).collect());
    Ok(())
}
