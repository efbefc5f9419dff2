//! `netpol-trace completion SHELL`.

use clap::CommandFactory;

/// Arguments of `completion`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  netpol-trace completion bash > /etc/bash_completion.d/netpol-trace"
)]
pub struct Args {
    /// The shell to generate for.
    pub shell: clap_complete::Shell,
}

/// Writes the completion script to stdout.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "netpol-trace", &mut std::io::stdout());
    Ok(crate::exit::OK)
}
