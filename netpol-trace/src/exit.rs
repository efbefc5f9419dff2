//! Exit codes scripts can rely on (see README "Exit codes").

/// Success: allowed (explain), patch found or nothing to do (fix), restored (lab demo).
pub const OK: i32 = 0;
/// The answer is "no": denied (explain), no safe patch (fix), not restored (lab demo).
pub const NO: i32 = 1;
/// Bad input or an environment that cannot run the command (privileges, BTF, netns...).
pub const BAD_INPUT: i32 = 2;

/// An error that carries the exit code the binary should end with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    /// Process exit code.
    pub code: i32,
    /// Human-readable, one line, naming the object and field at fault.
    pub message: String,
}

impl ExitError {
    /// Bad input (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self { code: BAD_INPUT, message: message.into() }
    }
}
