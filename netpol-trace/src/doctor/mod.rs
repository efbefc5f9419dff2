//! `doctor`: can this node run the agent, and if not, exactly why. Like retis' `can_run`,
//! each check says what it found and, when something is missing, what is lost: the kernel,
//! its BTF and drop reasons, the tc attach mode, capabilities, bpffs, netfilter tools, the
//! CNI seen on the interfaces, and the API server with this identity's RBAC.
//!
//! Node checks read files under a root directory (normally `/`) so that tests can replay a
//! node with missing features without root.

pub mod cluster;
pub mod node;

use serde::Serialize;

use crate::exit;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present; nothing lost.
    Ok,
    /// The agent runs, but something is lost (the check's `lost` says what).
    Degraded,
    /// The agent cannot run.
    Fail,
}

impl Status {
    /// The word printed in the table.
    pub fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Fail => "FAIL",
        }
    }
}

/// One check: what was looked at, what was found, what is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`kernel`, `btf`, `drop_reasons`, `tc`, `capabilities`, `bpffs`,
    /// `netfilter`, `cni`, `api`, `rbac`).
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// For `degraded` and `fail`: what the agent loses or why it cannot run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Ok, detail: detail.into(), lost: None }
    }

    /// A check whose absence costs a feature.
    pub fn degraded(
        name: &'static str,
        detail: impl Into<String>,
        lost: impl Into<String>,
    ) -> Self {
        Self { name, status: Status::Degraded, detail: detail.into(), lost: Some(lost.into()) }
    }

    /// A check without which the agent cannot run.
    pub fn fail(name: &'static str, detail: impl Into<String>, lost: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into(), lost: Some(lost.into()) }
    }
}

/// The verdict of all checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything the agent uses is there (exit 0).
    CanRun,
    /// The agent runs without some features (exit 1).
    Degraded,
    /// The agent cannot run (exit 2).
    CannotRun,
}

impl Verdict {
    /// The worst status among `checks`.
    pub fn of(checks: &[Check]) -> Self {
        match checks.iter().map(|c| c.status).max() {
            Some(Status::Fail) => Self::CannotRun,
            Some(Status::Degraded) => Self::Degraded,
            _ => Self::CanRun,
        }
    }

    /// The process exit code: 0 can run, 1 degraded, 2 cannot run.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::CanRun => exit::OK,
            Self::Degraded => exit::NO,
            Self::CannotRun => exit::BAD_INPUT,
        }
    }

    /// One line for people.
    pub fn sentence(self) -> &'static str {
        match self {
            Self::CanRun => "the agent can run on this node",
            Self::Degraded => "the agent can run on this node, degraded (see what is lost above)",
            Self::CannotRun => "the agent cannot run on this node (see FAIL above)",
        }
    }
}

/// The whole report (`doctor -o json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `can_run`, `degraded` or `cannot_run`.
    pub verdict: Verdict,
    /// This binary's version.
    pub version: &'static str,
    /// Whether this binary carries its kernel programs.
    pub kernel_programs_embedded: bool,
    /// Every check, node first, then cluster.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report of `checks`, after the check of whether the kernel programs are `embedded`
    /// ([`crate::datapath::object::is_embedded`]).
    pub fn new(mut checks: Vec<Check>, embedded: bool) -> Self {
        checks.insert(
            0,
            if embedded {
                Check::ok("kernel_programs", "embedded in this binary")
            } else {
                Check::fail(
                    "kernel_programs",
                    "not embedded (built with NETPOL_TRACE_SKIP_EBPF=1)",
                    "nothing can be attached: rebuild with the eBPF toolchain",
                )
            },
        );
        Self {
            verdict: Verdict::of(&checks),
            version: env!("CARGO_PKG_VERSION"),
            kernel_programs_embedded: embedded,
            checks,
        }
    }

    /// The table: one line per check, then what is lost, then the verdict.
    pub fn table(&self) -> String {
        self.render(false)
    }

    /// [`Report::table`] with terminal styles, for [`crate::output::print_styled`].
    pub fn styled_table(&self) -> String {
        self.render(true)
    }

    fn render(&self, styled: bool) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| vec![c.status.word().to_owned(), c.name.to_owned(), c.detail.clone()])
            .collect();
        let header = ["STATUS", "CHECK", "FOUND"];
        let mut out = if styled {
            crate::output::styled_table(&header, &rows)
        } else {
            crate::output::table(&header, &rows)
        };
        for check in self.checks.iter().filter(|c| c.lost.is_some()) {
            let lost = check.lost.as_deref().unwrap_or_default();
            out.push_str(&format!("{} {}: {lost}\n", check.status.word(), check.name));
        }
        out.push_str(self.verdict.sentence());
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests;
