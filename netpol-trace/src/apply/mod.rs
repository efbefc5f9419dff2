//! Writing: the one home for changing manifests and applying fix plans.
//!
//! * [`files`]: manifest files changed in place (rewrite, append, remove a document, or a new
//!   file), each after a backup beside the file (`<file>.netpol-trace-<UTC time>.bak`) that
//!   [`files::restore_file`] puts back.
//! * [`plan_files`]: a [`crate::fix::FixPlan`] written into the files its policies were read
//!   from.
//! * [`cluster`]: a plan written to the cluster through the guarded writes of
//!   [`crate::k8s::apply`] (dry run first, backup folder, rollback of a half-applied plan).

pub mod cluster;
pub mod files;
pub mod plan_files;
