//! Plays the CNI: checks a plan against the lab's pods, renders it and swaps the node
//! namespace's nftables table in one `nft -f` transaction. The plan itself comes from the
//! lab's NetworkPolicies ([`super::compile`]) or, for experiments, from a hand-written file.

use std::collections::HashMap;
use std::process::Command;

use super::error::{LabError, Result};
use super::paths::{NFT_BIN, RunDir, tool};
use super::plan::EnforcementPlan;
use super::render::render_ruleset;
use super::system::run_command;
use super::topology::Topology;
use crate::netns::{command_in_netns, command_in_private_netns};

/// Checks that the plan is well formed and that every pod it names is a pod of the lab, with
/// that interface and IP.
pub fn check_plan_against(plan: &EnforcementPlan, topology: &Topology) -> Result<()> {
    plan.validate()?;
    let by_iface: HashMap<&str, _> =
        topology.pods.iter().map(|p| (p.host_iface.as_str(), p)).collect();
    for (i, pod_plan) in plan.pods.iter().enumerate() {
        let Some(pod) = by_iface.get(pod_plan.host_iface.as_str()) else {
            return Err(LabError::invalid(
                "EnforcementPlan",
                format!("pods[{i}].host_iface"),
                format!("{:?} is not the interface of any pod of the lab", pod_plan.host_iface),
            ));
        };
        if pod.ip != pod_plan.ip {
            return Err(LabError::invalid(
                "EnforcementPlan",
                format!("pods[{i}].ip"),
                format!("{} is not the IP of {} ({})", pod_plan.ip, pod.key(), pod.ip),
            ));
        }
    }
    Ok(())
}

/// Renders `plan`, saves the ruleset in the run directory and loads it atomically into the
/// node namespace. Returns the ruleset text.
pub fn apply_plan(run_dir: &RunDir, topology: &Topology, plan: &EnforcementPlan) -> Result<String> {
    check_plan_against(plan, topology)?;
    let ruleset = render_ruleset(&topology.nft_table, plan);
    let path = run_dir.ruleset_file();
    std::fs::write(&path, &ruleset)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    let mut command = Command::new(tool(NFT_BIN));
    command.arg("-f").arg(&path);
    let _netns = command_in_netns(&mut command, &topology.node_netns)?;
    run_command(&mut command, None)?;
    Ok(ruleset)
}

/// Lists the lab's table as the kernel holds it (`nft list table inet ...` in the node namespace).
pub fn list_ruleset(topology: &Topology) -> Result<String> {
    let mut command = Command::new(tool(NFT_BIN));
    command.args(["list", "table", "inet", &topology.nft_table]);
    let _netns = command_in_netns(&mut command, &topology.node_netns)?;
    run_command(&mut command, None)
}

/// Asks the kernel whether `ruleset` would load (`nft -c`), inside a private network namespace
/// created for the check and gone with it. Needs root.
pub fn check_ruleset(ruleset: &str) -> Result<()> {
    let mut command = Command::new(tool(NFT_BIN));
    command.args(["-c", "-f", "-"]);
    command_in_private_netns(&mut command);
    run_command(&mut command, Some(ruleset)).map(drop)
}
