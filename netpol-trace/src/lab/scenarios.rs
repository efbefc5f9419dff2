//! Built-in scenarios: plain manifest sets under `netpol-trace/scenarios/<name>/`, embedded in
//! the binary so that a lab can be built from them without any file at hand.

use std::path::Path;

use serde::Deserialize;

use super::error::{LabError, Result};

/// File name of a scenario's description (kind `Scenario`, ignored by manifest loaders).
pub const SCENARIO_FILE: &str = "scenario.yaml";

/// One embedded scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name (the directory name).
    pub name: &'static str,
    /// `(file name, contents)` of each manifest file, including [`SCENARIO_FILE`].
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! scenario {
    ($name:literal: $($file:literal),+ $(,)?) => {
        Scenario {
            name: $name,
            files: &[$(($file, include_str!(concat!("../../scenarios/", $name, "/", $file)))),+],
        }
    };
}

const SCENARIOS: &[Scenario] = &[
    scenario!("port-typo": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
    scenario!("cross-namespace": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
    scenario!("no-ingress-list": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
    scenario!("egress-default-deny": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
    scenario!("calico-default-deny": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
    scenario!("admin-tier-deny": "namespaces.yaml", "pods.yaml", "policy.yaml", "scenario.yaml"),
];

/// All built-in scenarios.
pub fn all() -> &'static [Scenario] {
    SCENARIOS
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// What `scenario.yaml` says: the failing flow, the expected verdict and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScenarioInfo {
    /// What goes wrong.
    pub description: String,
    /// The flow that fails.
    pub flow: ScenarioFlow,
    /// What the tool should find.
    pub expected: ScenarioExpectation,
}

/// The failing flow of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScenarioFlow {
    /// Source `NAMESPACE/POD`.
    pub from: String,
    /// Destination `NAMESPACE/POD`.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
}

/// The diagnosis a scenario expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioExpectation {
    /// `deny`.
    pub verdict: String,
    /// The direction and policy that drop the flow.
    pub denied_by: DeniedBy,
    /// The fix, in words.
    pub fix: String,
}

/// Which policy drops a scenario's flow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeniedBy {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `NAMESPACE/NAME`, or `NAME` for the cluster-scoped kinds.
    pub policy: String,
}

impl Scenario {
    /// Parses the scenario's [`SCENARIO_FILE`].
    pub fn info(&self) -> Result<ScenarioInfo> {
        let (_, text) =
            self.files.iter().find(|(file, _)| *file == SCENARIO_FILE).ok_or_else(|| {
                LabError::invalid(format!("scenario {}", self.name), SCENARIO_FILE, "missing")
            })?;
        serde_yaml_ng::from_str(text).map_err(|e| {
            LabError::invalid(format!("scenario {}", self.name), SCENARIO_FILE, e.to_string())
        })
    }

    /// Writes the scenario's files into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        for (file, text) in self.files {
            let path = dir.join(file);
            std::fs::write(&path, text)
                .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::compile::plan_from_inventory;
    use crate::lab::naming::LabNames;
    use crate::lab::objects::{LabPolicies, lab_inventory};
    use crate::lab::topology::{Workload, build_topology};
    use crate::manifest::load_paths;

    #[test]
    fn every_scenario_loads_and_describes_a_denied_flow_to_mariadb() {
        for scenario in all() {
            let dir = tempfile::tempdir().unwrap();
            scenario.write_to(dir.path()).unwrap();
            let input = load_paths(&[dir.path().to_owned()]).unwrap();
            assert_eq!(input.namespaces.len(), 2, "{}", scenario.name);
            let policies = LabPolicies::from_objects(&input);
            assert!(!policies.is_empty(), "{}", scenario.name);
            let topology = build_topology(&LabNames::new("s").unwrap(), &input.pods).unwrap();
            let inventory = lab_inventory(&topology, &input.namespaces, policies).unwrap();
            let plan = plan_from_inventory(&inventory, &topology).unwrap();
            let info = scenario.info().unwrap();
            assert_eq!(info.expected.verdict, "deny");
            let db =
                topology.pods.iter().find(|p| p.key() == info.flow.to).expect("destination pod");
            assert_eq!(db.workload, Workload::Mariadb, "{}", scenario.name);
            assert_eq!(db.resolve_port("mysql").map(|p| p.0), Some(info.flow.port));
            let web = topology.pods.iter().find(|p| p.key() == info.flow.from).expect("source pod");
            assert_eq!(web.labels.get("app").map(String::as_str), Some("web"));
            assert!(web.labels.contains_key("pod-template-hash"));
            // The manifests' policies isolate the destination (or the source, for egress).
            let isolated = plan.pods.iter().find(|p| p.ip == db.ip).unwrap();
            let source = plan.pods.iter().find(|p| p.ip == web.ip).unwrap();
            let denied_by_egress = info.expected.denied_by.direction == "egress";
            assert!(
                if denied_by_egress {
                    source.egress.is_some() || source.egress_tiers.is_some()
                } else {
                    isolated.ingress.is_some() || isolated.ingress_tiers.is_some()
                },
                "{}",
                scenario.name
            );
        }
        assert!(find("port-typo").is_some());
        assert!(find("nope").is_none());
    }
}
