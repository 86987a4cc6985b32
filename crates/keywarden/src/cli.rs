//! The command line: global options, the nouns, and the dispatch to their modules.

use clap::{Parser, Subcommand};
use zbus::Connection;

use crate::bundle::{self, Bundle};
use crate::collector::{self, Collector};
use crate::diag::{self, Diag};
use crate::error::Error;
use crate::factory::{self, Factory};
use crate::hw::{self, Hw, Sim};
use crate::output::Output;
use crate::policy::alarms::{self, Alarm};
use crate::policy::audit::{self, Audit};
use crate::policy::keys::{self, Key, Reserve, Slot};
use crate::policy::reports::{self, Report};
use crate::policy::rules::{self, Holiday, Perm, Reason, Schedule};
use crate::policy::session::{self, Session};
use crate::policy::users::{self, Group, User};
use crate::policy::Ctx;
use crate::repo::{self, Repo};
use crate::update::{self, Update};

/// Keywarden key cabinet command line.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Times: 2026-12-01T08:00:00Z or with an offset (RFC 3339), or local: 2026-12-01, \"2026-12-01 08:00\".\n\
                  Exit codes: 0 success, 1 failed, 2 usage error or refused (invalid argument, access denied, \
                  not found, already exists, weak PIN, conflict, wrong state), 3 bus or service unreachable."
)]
pub struct Cli {
    /// D-Bus address to use instead of the system bus.
    #[arg(long, global = true)]
    pub bus_address: Option<String>,
    /// Print results as JSON (the wire data: times in Unix seconds, 0 = unset).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Top,
}

/// The nouns.
#[derive(Debug, Subcommand)]
pub enum Top {
    /// The hardware service (org.keywarden.Hardware1).
    #[command(subcommand)]
    Hw(Hw),
    /// The sim backend's control surface (host demo and tests only).
    #[command(subcommand)]
    Sim(Sim),
    /// Users and their credentials.
    #[command(subcommand)]
    User(User),
    /// Groups of users.
    #[command(subcommand)]
    Group(Group),
    /// Keys.
    #[command(subcommand)]
    Key(Key),
    /// Slots, as the records see them.
    #[command(subcommand)]
    Slot(Slot),
    /// Permissions: who may take which keys, when.
    #[command(subcommand)]
    Perm(Perm),
    /// Weekly schedules.
    #[command(subcommand)]
    Schedule(Schedule),
    /// Holidays.
    #[command(subcommand)]
    Holiday(Holiday),
    /// Reason codes.
    #[command(subcommand)]
    Reason(Reason),
    /// Reservations.
    #[command(subcommand)]
    Reserve(Reserve),
    /// Alarms.
    #[command(subcommand)]
    Alarm(Alarm),
    /// The audit trail.
    #[command(subcommand)]
    Audit(Audit),
    /// Reports: keys out, one key's history, one person's, by reason, overdue, alarms, denials.
    #[command(subcommand)]
    Report(Report),
    /// The console session.
    #[command(subcommand)]
    Session(Session),
    /// On the offsite collector: watch the cabinets' copies (no bus).
    #[command(subcommand)]
    Collector(Collector),
    /// OTA update bundles: create, inspect, verify, keygen (no bus).
    #[command(subcommand)]
    Bundle(Bundle),
    /// The TUF update repository: init, add, refresh-timestamp, rotate-root, rotate-keys (no
    /// bus).
    #[command(subcommand)]
    Repo(Repo),
    /// The OTA updater: check, install, status, mark-good, mark-bad, cancel.
    #[command(subcommand)]
    Update(Update),
    /// Diagnostic bundles for support: build one on the cabinet, verify one anywhere.
    #[command(subcommand)]
    Diag(Diag),
    /// The factory floor, as root on the cabinet: provision, reset, selftest.
    #[command(subcommand)]
    Factory(Factory),
}

async fn connect(bus_address: Option<&str>) -> Result<Connection, Error> {
    match bus_address {
        Some(addr) => {
            zbus::connection::Builder::address(addr)
                .map_err(Error::Connect)?
                .build()
                .await
        }
        None => Connection::system().await,
    }
    .map_err(Error::Connect)
}

/// Run one command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let out = Output { json: cli.json };
    // Offline verification needs no bus: it must work on any machine with the export.
    match &cli.command {
        Top::Audit(Audit::Verify {
            file: Some(file),
            key,
            ..
        }) => return audit::verify_file(out, file, key.as_deref()),
        Top::Audit(Audit::Verify {
            collector: Some(file),
            key,
            ..
        }) => return audit::verify_collector(out, file, key.as_deref()),
        Top::Collector(cmd) => return collector::run(out, cmd),
        Top::Bundle(cmd) => return bundle::run(out, cmd),
        Top::Repo(cmd) => return repo::run(out, cmd).await,
        Top::Diag(Diag::Verify { file, key, extract }) => {
            return diag::verify(out, file, key, extract.as_deref())
        }
        _ => {}
    }
    if let Top::Factory(cmd) = cli.command {
        return factory::run(out, cli.bus_address.as_deref(), cmd).await;
    }
    let conn = connect(cli.bus_address.as_deref()).await?;
    let ctx = || Ctx::new(&conn, out);
    match cli.command {
        Top::Hw(cmd) => hw::hw(&conn, cmd).await,
        Top::Sim(cmd) => hw::sim(&conn, cmd).await,
        Top::User(cmd) => users::user(&ctx().await?, cmd).await,
        Top::Group(cmd) => users::group(&ctx().await?, cmd).await,
        Top::Key(cmd) => keys::key(&ctx().await?, cmd).await,
        Top::Slot(cmd) => keys::slot(&ctx().await?, cmd).await,
        Top::Perm(cmd) => rules::perm(&ctx().await?, cmd).await,
        Top::Schedule(cmd) => rules::schedule(&ctx().await?, cmd).await,
        Top::Holiday(cmd) => rules::holiday(&ctx().await?, cmd).await,
        Top::Reason(cmd) => rules::reason(&ctx().await?, cmd).await,
        Top::Reserve(cmd) => keys::reserve(&ctx().await?, cmd).await,
        Top::Alarm(cmd) => alarms::alarm(&ctx().await?, cmd).await,
        Top::Audit(cmd) => audit::audit(&ctx().await?, cmd).await,
        Top::Report(cmd) => reports::report(&ctx().await?, cmd).await,
        Top::Session(cmd) => session::session(&ctx().await?, cmd).await,
        Top::Collector(cmd) => collector::run(out, &cmd),
        Top::Bundle(cmd) => bundle::run(out, &cmd),
        Top::Update(cmd) => update::update(&conn, out, cmd).await,
        Top::Diag(Diag::Bundle {
            output,
            since,
            no_self_test,
        }) => diag::bundle(&ctx().await?, &output, since, no_self_test).await,
        Top::Diag(Diag::Verify { .. }) => Err(Error::Invalid {
            what: "diag verify".into(),
            message: "handled before connecting".into(),
        }),
        Top::Repo(_) => Err(Error::Invalid {
            what: "repo".into(),
            message: "handled before connecting".into(),
        }),
        Top::Factory(_) => Err(Error::Invalid {
            what: "factory".into(),
            message: "handled before connecting".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
