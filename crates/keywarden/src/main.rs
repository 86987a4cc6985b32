//! `keywarden`: the command line. Exit codes (see `error.rs`): 0 success, 1 failed,
//! 2 usage error or refused by the service, 3 the bus or service is unreachable.

mod bundle;
mod cli;
mod collector;
mod diag;
mod error;
mod factory;
mod hw;
mod output;
mod policy;
mod repo;
mod secret;
mod times;
mod update;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywarden: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(error::exit::FAILED);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keywarden: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
