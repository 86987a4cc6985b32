//! `keywarden`: the command line. Exit codes: 0 success, 1 the service refused or failed,
//! 2 usage error (clap), 3 the bus or service is unreachable.

mod error;
mod hw;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = hw::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywarden: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hw::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keywarden: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
