//! `keywarden-hwd`: see the library documentation. Exit codes: 0 clean shutdown, 1 failure,
//! 2 configuration refused (board file, unknown user), 3 hardware missing or busy, 4 bus unreachable.

use std::path::PathBuf;

use clap::Parser;
use keywarden_hwd::backend::BackendKind;
use keywarden_hwd::daemon::{run, Options};

/// Keywarden hardware service.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 clean shutdown, 1 failure, 2 configuration refused, 3 hardware missing or busy, 4 bus unreachable."
)]
struct Args {
    /// Board description file.
    #[arg(long, default_value = "/etc/keywarden/board.toml")]
    board: PathBuf,
    /// Hardware backend.
    #[arg(long, value_enum, default_value = "cdev")]
    backend: BackendKind,
    /// A user (besides root) allowed to call the service; repeatable.
    #[arg(long = "allow-user", default_values_t = [String::from("keywarden")])]
    allow_users: Vec<String>,
    /// D-Bus address to use instead of the system bus.
    #[arg(long)]
    bus_address: Option<String>,
    /// Log to journald instead of standard error.
    #[arg(long)]
    journald: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    keywarden_hwd::logging::init(args.journald);
    let options = Options {
        board: args.board,
        backend: args.backend,
        allow_users: args.allow_users,
        bus_address: args.bus_address,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keywarden-hwd: {e}");
            std::process::ExitCode::from(e.exit_code() as u8)
        }
    }
}
