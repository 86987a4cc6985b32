//! `keywarden factory ...`: run on the device, as root, in the factory or by service staff. These
//! commands work on the data partition's files directly, not through the services, except the
//! self-test, which drives hwd.
//!
//! - `provision` (`provision.rs`): creates the device identity under `<data-dir>/identity/` and
//!   prints the provisioning record for the manufacturer's database.
//! - `reset` (`reset.rs`): wipes the policy database and the badge hashing key, keeps the
//!   identity.
//! - `selftest` (`selftest.rs`): the burn-in self-test; saves its report for the diagnostic
//!   bundle.

pub mod provision;
pub mod reset;
pub mod selftest;

use clap::Subcommand;

use crate::error::Error;
use crate::output::Output;

/// The data partition, where policyd keeps its database and provisioning the identity.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/keywarden";

/// Factory commands (no bus, except `reset`'s check that policyd is stopped and `selftest`).
#[derive(Debug, Subcommand)]
pub enum Factory {
    /// Create the device identity (keys, client certificate and CSR, update root of trust,
    /// collector settings) and print the provisioning record. Exit 2 if already provisioned.
    Provision(Box<provision::ProvisionArgs>),
    /// Wipe users, keys, loans, the audit trail and the badge hashing key; keep the identity.
    Reset(reset::ResetArgs),
    /// Burn-in self-test: cycle every lock (checking its feedback line), check every sensor,
    /// the readers, keypad and fingerprint module, the watchdog, the RTC and clock, and free
    /// space on the data partition; save the report. Exit 0 all passed, 1 a check failed,
    /// 2 refused (not root, bad arguments), 3 the hardware service is unreachable.
    Selftest(selftest::Args),
}

/// Run one factory command.
pub async fn run(out: Output, bus_address: Option<&str>, cmd: Factory) -> Result<(), Error> {
    match cmd {
        Factory::Provision(args) => provision::run(out, &args),
        Factory::Reset(args) => reset::run(out, bus_address, &args).await,
        Factory::Selftest(args) => selftest::run(bus_address, out, args).await,
    }
}
