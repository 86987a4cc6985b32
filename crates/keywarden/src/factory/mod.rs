//! `keywarden factory ...`: the commands of the factory floor, run as root on the cabinet.
//! `selftest` (the burn-in self-test) is in `selftest.rs`; each command has its own module.

pub mod selftest;

use clap::Subcommand;

use crate::error::Error;
use crate::output::Output;

/// Factory commands (run as root on the cabinet).
#[derive(Debug, Subcommand)]
pub enum Factory {
    /// Burn-in self-test: cycle every lock (checking its feedback line), check every sensor,
    /// the readers, keypad and fingerprint module, the watchdog, the RTC and clock, and free
    /// space on the data partition; save the report. Exit 0 all passed, 1 a check failed,
    /// 2 refused (not root, bad arguments), 3 the hardware service is unreachable.
    Selftest(selftest::Args),
}

/// Run one `factory` command. Each makes its own bus connection (the burn-in needs a method
/// timeout longer than zbus's default; the host checks need none).
pub async fn run(bus_address: Option<&str>, out: Output, cmd: Factory) -> Result<(), Error> {
    match cmd {
        Factory::Selftest(args) => selftest::run(bus_address, out, args).await,
    }
}
