//! `keywarden factory reset --yes`: back to an empty cabinet, same device.
//!
//! Wiped: the policy database (`keywarden.db` and its `-wal`, `-shm`, `-journal`: users,
//! credentials, groups, keys, slots, loans, permissions, schedules, reservations, alarms, the
//! audit trail, the notifier's outbox and the offsite shipper's position) and the badge
//! hashing key (`secrets/badge.key`). Kept: `identity/` (device key, client certificate, update
//! root, collector settings, the record) and everything else on the data partition (the
//! updater's state in `update/`). policyd makes a new database and badge key when it starts;
//! its new audit checkpoints are signed with the same device key.
//!
//! policyd must not run while its files go. On a systemd system the command stops
//! `keywarden-policyd.service` (and `keywarden-console.service` if it is installed), wipes and
//! starts them again; elsewhere (or with `--bus-address`, for tests) it refuses while
//! `org.keywarden.Policy1` has an owner on the bus.
//!
//! Order: the `-wal` and `-shm` go before the database, so an interrupted reset never leaves a
//! write-ahead log next to a database it does not belong to; a rerun completes it. Files are
//! unlinked, not overwritten (on flash an overwrite does not reach the old blocks anyway).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use keywarden_audit::DeviceKey;
use keywarden_dbus::names::POLICY_BUS_NAME;
use serde::Serialize;

use super::provision::{DEVICE_KEY, IDENTITY_DIR, RECORD};
use super::DEFAULT_DATA_DIR;
use crate::error::Error;
use crate::output::Output;

/// policyd's unit.
const POLICYD_UNIT: &str = "keywarden-policyd.service";
/// The console's unit (a client of policyd; stopped with it if installed).
const CONSOLE_UNIT: &str = "keywarden-console.service";
/// What `sd_booted()` checks.
const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// What goes, relative to the data directory, in this order.
const WIPED: [&str; 5] = [
    "keywarden.db-wal",
    "keywarden.db-shm",
    "keywarden.db-journal",
    "keywarden.db",
    "secrets/badge.key",
];

/// `factory reset`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 reset, 1 failed (files, systemctl), 2 refused (no --yes, policyd is \
                  running), 3 the bus cannot be reached to check that policyd is stopped."
)]
pub struct ResetArgs {
    /// Really wipe every user, key, loan and the audit trail (the identity is kept).
    #[arg(long)]
    pub yes: bool,
    /// The data partition.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// `factory reset --json`.
#[derive(Debug, Serialize)]
struct Report {
    /// Files removed (paths).
    wiped: Vec<String>,
    /// What is left on the data partition (paths).
    kept: Vec<String>,
    /// The serial from the provisioning record, if provisioned.
    serial: Option<String>,
    /// The device public key (hex), if there is a device key.
    device_public_key: Option<String>,
    /// Units stopped and started again.
    restarted: Vec<String>,
}

fn refused(message: impl Into<String>) -> Error {
    Error::Invalid {
        what: "factory reset".into(),
        message: message.into(),
    }
}

/// Run `factory reset`.
pub async fn run(out: Output, bus_address: Option<&str>, args: &ResetArgs) -> Result<(), Error> {
    if !args.yes {
        return Err(refused(
            "this wipes every user, credential, key, loan and the audit trail (the device identity is kept); nothing was changed: add --yes to do it",
        ));
    }
    let data = &args.data_dir;
    if !data.is_dir() {
        return Err(refused(format!("no data directory {}", data.display())));
    }
    let identity = data.join(IDENTITY_DIR);
    let serial = read_serial(&identity.join(RECORD));
    let device_public_key = DeviceKey::load(&identity.join(DEVICE_KEY))
        .ok()
        .map(|k| k.public_hex());

    let systemd = bus_address.is_none() && Path::new(SYSTEMD_RUN_DIR).is_dir();
    let (wiped, restarted) = if systemd {
        let units = installed_units()?;
        systemctl("stop", &units)?;
        let wiped = wipe(data);
        // Start again whatever happened: the cabinet must not stay without policyd.
        let started = systemctl("start", &units);
        let wiped = wiped?;
        started?;
        (wiped, units)
    } else {
        ensure_policyd_stopped(bus_address).await?;
        (wipe(data)?, Vec::new())
    };
    let kept = kept(data, &identity)?;
    let report = Report {
        wiped: wiped.iter().map(|p| p.display().to_string()).collect(),
        kept: kept.iter().map(|p| p.display().to_string()).collect(),
        serial,
        device_public_key,
        restarted,
    };
    if out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("factory reset of {}", data.display());
    if report.wiped.is_empty() {
        println!("wiped: nothing (no database, no badge key)");
    } else {
        println!("wiped (users, credentials, keys, loans, audit trail; badge hashing key):");
        for p in &report.wiped {
            println!("  {p}");
        }
    }
    println!("kept:");
    for p in &report.kept {
        println!("  {p}");
    }
    println!(
        "device serial      {}",
        report.serial.as_deref().unwrap_or("(not provisioned)")
    );
    println!(
        "device public key  {}",
        report.device_public_key.as_deref().unwrap_or("(none)")
    );
    if report.restarted.is_empty() {
        println!("Start keywarden-policyd: it makes an empty database and a new badge key.");
    } else {
        println!(
            "restarted {}: it made an empty database and a new badge key.",
            report.restarted.join(", ")
        );
    }
    Ok(())
}

fn read_serial(record: &Path) -> Option<String> {
    let bytes = fs::read(record).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("serial")?.as_str().map(str::to_owned)
}

/// Refuse while policyd holds its name on the bus (the system bus, or `--bus-address`).
async fn ensure_policyd_stopped(bus_address: Option<&str>) -> Result<(), Error> {
    let conn = match bus_address {
        Some(addr) => {
            zbus::connection::Builder::address(addr)
                .map_err(Error::Connect)?
                .build()
                .await
        }
        None => zbus::Connection::system().await,
    }
    .map_err(Error::Connect)?;
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(crate::error::call("factory reset: D-Bus proxy"))?;
    let name = zbus::names::BusName::try_from(POLICY_BUS_NAME)
        .map_err(|e| crate::error::call("factory reset: bus name")(e.into()))?;
    let running = dbus
        .name_has_owner(name)
        .await
        .map_err(|e| crate::error::call("factory reset: NameHasOwner")(e.into()))?;
    if running {
        return Err(Error::Running {
            what: "factory reset".into(),
            message: format!(
                "keywarden-policyd is running ({POLICY_BUS_NAME} has an owner on the bus); stop it first, nothing was changed"
            ),
        });
    }
    Ok(())
}

/// policyd's unit, and the console's if it is installed.
fn installed_units() -> Result<Vec<String>, Error> {
    let mut units = Vec::new();
    for unit in [CONSOLE_UNIT, POLICYD_UNIT] {
        let output = Command::new("systemctl")
            .args(["show", "--property=LoadState", "--value", unit])
            .output()
            .map_err(crate::error::io("factory reset: running systemctl"))?;
        if String::from_utf8_lossy(&output.stdout).trim() == "loaded" {
            units.push(unit.to_owned());
        }
    }
    if !units.iter().any(|u| u == POLICYD_UNIT) {
        return Err(Error::Systemd {
            what: "factory reset".into(),
            message: format!("{POLICYD_UNIT} is not installed; nothing was changed"),
        });
    }
    Ok(units)
}

fn systemctl(verb: &str, units: &[String]) -> Result<(), Error> {
    let output = Command::new("systemctl")
        .arg(verb)
        .args(units)
        .output()
        .map_err(crate::error::io("factory reset: running systemctl"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Systemd {
        what: format!("factory reset: systemctl {verb} {}", units.join(" ")),
        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Remove [`WIPED`] in order; the paths that were there.
fn wipe(data: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut wiped = Vec::new();
    for name in WIPED {
        let path = data.join(name);
        match fs::remove_file(&path) {
            Ok(()) => wiped.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    what: format!("factory reset: removing {}", path.display()),
                    source: e,
                })
            }
        }
    }
    for dir in [data.to_owned(), data.join("secrets")] {
        match File::open(&dir).and_then(|d| d.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    what: format!("factory reset: syncing {}", dir.display()),
                    source: e,
                })
            }
        }
    }
    Ok(wiped)
}

/// The identity's files and the data directory's other entries (sorted).
fn kept(data: &Path, identity: &Path) -> Result<Vec<PathBuf>, Error> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>, Error> {
        match fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths = entries
                    .map(|e| e.map(|e| e.path()))
                    .collect::<io::Result<Vec<_>>>()
                    .map_err(crate::error::io(format!(
                        "factory reset: listing {}",
                        dir.display()
                    )))?;
                paths.sort();
                Ok(paths)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::Io {
                what: format!("factory reset: listing {}", dir.display()),
                source: e,
            }),
        }
    };
    let mut kept = list(identity)?;
    kept.extend(
        list(data)?
            .into_iter()
            .filter(|p| p != identity && p != &data.join("secrets")),
    );
    Ok(kept)
}
