//! The `netpol-trace` binary: parses arguments, sets up logging, maps errors to exit codes.

use netpol_trace::output::LogFormat;
use netpol_trace::{cli, exit};

fn main() {
    let cli = cli::parse();
    // Logs go to stderr; stdout is for results (tables, JSON, NDJSON).
    netpol_trace::output::init_logging(&cli.log_level, cli.log_format);
    let log_format = cli.log_format;
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err.downcast_ref::<exit::ExitError>().map_or(exit::BAD_INPUT, |e| e.code);
            match log_format {
                // A log collector reads every stderr line as JSON, the last one too.
                LogFormat::Json => tracing::error!(exit_code = code, "{err:#}"),
                LogFormat::Text => eprintln!("error: {err:#}"),
            }
            code
        }
    };
    std::process::exit(code);
}
