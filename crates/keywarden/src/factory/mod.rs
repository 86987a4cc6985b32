//! `keywarden factory ...`: run on the device, as root, in the factory or by service staff. These
//! commands work on the data partition's files directly, not through the services.
//!
//! - `provision` (`provision.rs`): creates the device identity under `<data-dir>/identity/` and
//!   prints the provisioning record for the manufacturer's database.
//! - `reset` (`reset.rs`): wipes the policy database and the badge hashing key, keeps the
//!   identity.

pub mod provision;
pub mod reset;

use clap::Subcommand;

use crate::error::Error;
use crate::output::Output;

/// The data partition, where policyd keeps its database and provisioning the identity.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/keywarden";

/// Factory commands (no bus, except `reset`'s check that policyd is stopped).
#[derive(Debug, Subcommand)]
pub enum Factory {
    /// Create the device identity (keys, client certificate and CSR, update root of trust,
    /// collector settings) and print the provisioning record. Exit 2 if already provisioned.
    Provision(Box<provision::ProvisionArgs>),
    /// Wipe users, keys, loans, the audit trail and the badge hashing key; keep the identity.
    Reset(reset::ResetArgs),
}

/// Run one factory command.
pub async fn run(out: Output, bus_address: Option<&str>, cmd: Factory) -> Result<(), Error> {
    match cmd {
        Factory::Provision(args) => provision::run(out, &args),
        Factory::Reset(args) => reset::run(out, bus_address, &args).await,
    }
}
