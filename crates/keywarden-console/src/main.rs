//! `keywarden-console`: the front-panel console (see the library documentation).
//! Exit codes: 0 quit (Ctrl-C on its keyboard, SIGTERM, SIGINT, SIGHUP), 1 terminal or runtime
//! failure, 2 bad arguments.

use std::time::Duration;

use clap::Parser;

/// Keywarden front-panel console: shows the cabinet's session on the local display.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 quit, 1 terminal or runtime failure, 2 bad arguments."
)]
struct Args {
    /// D-Bus address to use instead of the system bus.
    #[arg(long)]
    bus_address: Option<String>,
    /// Back to the idle screen after this many seconds without a change or a key (1-3600).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    display_timeout_seconds: u64,
    /// Log to journald.
    #[arg(long)]
    journald: bool,
    /// Log to this file (else standard error, unless it is the console's terminal).
    #[arg(long)]
    log_file: Option<String>,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let options = keywarden_console::app::Options {
        bus_address: a.bus_address,
        display_timeout: Duration::from_secs(a.display_timeout_seconds),
    };
    let result = keywarden_console::logging::init(a.journald, a.log_file.as_deref())
        .and_then(|()| keywarden_console::app::run(options));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keywarden-console: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
