//! `keywarden-updated`: the OTA updater daemon, and the boot health check it is wired to.
//! Exit codes: 0 success, 1 failure, 2 configuration refused, 3 unhealthy (health-check).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keywarden_updated::daemon::config::{Config, DEFAULT_CONFIG};
use keywarden_updated::daemon::{serve, RealPlatform};
use keywarden_updated::{health, logging};

/// Keywarden OTA updater (org.keywarden.Update1).
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 success, 1 failure, 2 configuration refused, 3 unhealthy."
)]
struct Args {
    /// The board's update configuration.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// D-Bus address to use instead of the system bus.
    #[arg(long)]
    bus_address: Option<String>,
    /// Group allowed to call the updater besides root; repeatable.
    #[arg(long = "admin-group", default_values_t = [String::from("keywarden-admin")])]
    admin_groups: Vec<String>,
    /// Log to journald instead of standard error.
    #[arg(long)]
    journald: bool,
    /// The kernel command line to read the booted slot from (tests and development).
    #[arg(long, default_value = "/proc/cmdline", hide = true)]
    cmdline: PathBuf,
    /// The booted system's os-release to read its version from (tests and development).
    #[arg(long, default_value = "/etc/os-release", hide = true)]
    os_release: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// Serve org.keywarden.Update1 (the default).
    Run,
    /// Wait until keywarden-hwd and keywarden-policyd answer on the bus and policyd is in
    /// service; exit 3 if they do not within the timeout.
    HealthCheck {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let command = args.command.take().unwrap_or(Sub::Run);
    logging::init(args.journald);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywarden-updated: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let conn = match connect(args.bus_address.as_deref()).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!("cannot connect to the bus: {e}");
                eprintln!("keywarden-updated: cannot connect to the bus: {e}");
                return ExitCode::FAILURE;
            }
        };
        match command {
            Sub::Run => {
                let config = match Config::load(&args.config) {
                    Ok(config) => config,
                    Err(e) => {
                        tracing::error!("{e}");
                        eprintln!("keywarden-updated: {e}");
                        return ExitCode::from(2);
                    }
                };
                let (admin_gids, missing) = keywarden_dbus::caller::group_ids(&args.admin_groups);
                for group in missing {
                    tracing::warn!(%group, "no such group; its members get no access");
                }
                let platform = match RealPlatform::with_paths(
                    config,
                    args.cmdline.clone(),
                    args.os_release.clone(),
                ) {
                    Ok(platform) => Arc::new(platform),
                    Err(e) => {
                        tracing::error!("{e}");
                        eprintln!("keywarden-updated: {e}");
                        return ExitCode::from(2);
                    }
                };
                match serve(conn, platform, admin_gids).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e}");
                        eprintln!("keywarden-updated: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Sub::HealthCheck { timeout } => {
                let findings = health::wait_healthy(
                    &conn,
                    Duration::from_secs(timeout),
                    Duration::from_secs(1),
                )
                .await;
                let healthy = findings.iter().all(|f| f.healthy);
                for f in &findings {
                    let verdict = if f.healthy { "ok" } else { "FAILED" };
                    println!("{}: {verdict} ({})", f.service, f.detail);
                    if f.healthy {
                        tracing::info!(service = f.service, detail = %f.detail, "healthy");
                    } else {
                        tracing::error!(service = f.service, detail = %f.detail, "unhealthy");
                    }
                }
                if healthy {
                    return ExitCode::SUCCESS;
                }
                // Unhealthy. Rebooting spends a try of a slot on trial (and so ends in a
                // rollback); on a committed slot there is nothing to fall back to by
                // rebooting, so say so and let the boot complete.
                match on_trial(&args) {
                    Ok(false) => {
                        tracing::error!(
                            "the committed system is unhealthy; not rebooting (no fallback to try)"
                        );
                        println!("unhealthy, but the booted slot is committed: not rebooting");
                        ExitCode::SUCCESS
                    }
                    Ok(true) => ExitCode::from(3),
                    Err(e) => {
                        tracing::error!("cannot tell whether the booted slot is on trial: {e}");
                        ExitCode::from(3)
                    }
                }
            }
        }
    })
}

/// Whether the booted slot is still on trial (not committed) per the bootloader environment.
fn on_trial(args: &Args) -> keywarden_updated::Result<bool> {
    let config = Config::load(&args.config)?;
    let platform = RealPlatform::with_paths(config, args.cmdline.clone(), args.os_release.clone())?;
    let report = keywarden_updated::daemon::Platform::boot_report(&platform)?;
    Ok(!report.facts.booted_committed)
}

async fn connect(address: Option<&str>) -> zbus::Result<zbus::Connection> {
    match address {
        Some(address) => zbus::connection::Builder::address(address)?.build().await,
        None => zbus::Connection::system().await,
    }
}
