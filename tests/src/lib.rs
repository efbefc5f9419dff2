//! Privileged integration test helpers.
