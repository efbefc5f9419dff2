//! The `netpol-trace` binary: parses arguments, sets up logging, maps errors to exit codes.

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
            netpol_trace::output::report_error(log_format, &err, code);
            code
        }
    };
    std::process::exit(code);
}
