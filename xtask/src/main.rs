//! Chores: set-up, tests (privileged too), lints.
fn main() {}
