//! `netpol-trace reject NAME -n NS`: decide that a DropReport's fix is not wanted; the
//! controller leaves it alone.

use crate::operator::report::Decision;

pub use super::approve::Args;

/// Runs `reject`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    super::approve::decide(args, Decision::Rejected)
}
