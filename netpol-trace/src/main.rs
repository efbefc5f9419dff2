//! The `netpol-trace` binary: parses arguments, sets up logging, maps errors to exit codes.

use netpol_trace::{cli, exit};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log_level));
    // Logs go to stderr; stdout is for results (tables, JSON, NDJSON).
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err.downcast_ref::<exit::ExitError>().map_or(exit::BAD_INPUT, |e| e.code);
            eprintln!("error: {err:#}");
            code
        }
    };
    std::process::exit(code);
}
