//! Why no safe patch exists for a flow.

use crate::policy::Direction;

use super::blast::AllowedPair;

/// Why `fix` found no patch that allows the flow and nothing more. Every variant maps to exit
/// status 1 ("no safe patch") and names the object at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixError {
    /// The flow's other end is carved out of an `ipBlock` by an `except` of a rule that would
    /// otherwise allow it: an explicit exclusion, which a minimal patch must not override.
    #[error(
        "{endpoint} is excluded on purpose by except {except} in {direction} rule {rule} of {policy}; \
         no patch overrides an except (edit it by hand if it is wrong)"
    )]
    DeliberateExcept {
        /// The excluded address (and pod, when it is one).
        endpoint: String,
        /// The `except` CIDR.
        except: String,
        /// `namespace/name` of the policy.
        policy: String,
        /// The direction of the rule.
        direction: Direction,
        /// Index of the rule.
        rule: usize,
    },
    /// A pod whose labels, once controller-generated ones are dropped, select nothing specific.
    #[error("pod {pod} has no stable labels to scope a rule to its workload (labels: {labels})")]
    NoStableLabels {
        /// `namespace/name`.
        pod: String,
        /// Its labels, `k=v,...` (or `none`).
        labels: String,
    },
    /// A pod label that is not a valid selector value (the manifest is not what the API server
    /// would hold).
    #[error("pod {pod}: {message}")]
    InvalidLabels {
        /// `namespace/name`.
        pod: String,
        /// What is wrong.
        message: String,
    },
    /// Creating a policy for the workload would newly isolate some of its pods, which would take
    /// away access they have today.
    #[error(
        "a new {direction} policy selecting {selector} in {namespace} would isolate {pods}, \
         which no policy isolates for {direction} today, and cut their other traffic"
    )]
    WouldIsolate {
        /// The direction.
        direction: Direction,
        /// Namespace of the workload.
        namespace: String,
        /// The workload's selector, `k=v,...`.
        selector: String,
        /// The pods that would lose access.
        pods: String,
    },
    /// The patched policies allow more than the source workload reaching the destination
    /// workload on the flow's port and protocol.
    #[error("the smallest patch would also allow {}", describe_pairs(.pairs))]
    Widens {
        /// Some of the pairs it would newly allow beyond the flow's workloads.
        pairs: Vec<AllowedPair>,
    },
    /// The patched policies would deny something allowed today.
    #[error("the patch would take away access: {}", describe_pairs(.pairs))]
    RemovesAccess {
        /// Some of the pairs that would lose access.
        pairs: Vec<AllowedPair>,
    },
    /// The patched policies still deny the flow.
    #[error("the patched policies still deny {flow}")]
    StillDenied {
        /// The flow, `src -> dst PROTO/PORT`.
        flow: String,
    },
    /// A policy object as read has a shape a JSON patch cannot extend (e.g. `spec` is not a
    /// mapping).
    #[error("networkpolicy {policy}: {message}")]
    Unpatchable {
        /// `namespace/name`.
        policy: String,
        /// What is wrong.
        message: String,
    },
    /// A patched or created object failed to parse or validate: a defect, reported rather than
    /// applied.
    #[error("networkpolicy {policy} after patching: {message}")]
    InvalidResult {
        /// `namespace/name`.
        policy: String,
        /// The parse or validation error.
        message: String,
    },
}

const PAIRS_SHOWN: usize = 5;

fn describe_pairs(pairs: &[AllowedPair]) -> String {
    let mut text: Vec<String> = pairs.iter().take(PAIRS_SHOWN).map(ToString::to_string).collect();
    if pairs.len() > PAIRS_SHOWN {
        text.push(format!("and {} more", pairs.len() - PAIRS_SHOWN));
    }
    text.join(", ")
}
