//! `keywarden-policyd`: see the library documentation. Exit codes: 0 clean shutdown, 1 failure,
//! 2 configuration refused (policy file, offsite settings), 4 bus unreachable. A corrupt database is not an exit:
//! the service stays up out of service, so `Status` says why and every lock stays shut.

use std::path::PathBuf;

use clap::Parser;
use keywarden_policyd::daemon::{run, Options};
use keywarden_policyd::diag::{DiagPaths, JournalSource};

/// Keywarden policy and audit service.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 clean shutdown, 1 failure, 2 configuration refused, 4 bus unreachable."
)]
struct Args {
    /// SQLite database (data partition).
    #[arg(long, default_value = "/var/lib/keywarden/keywarden.db")]
    database: PathBuf,
    /// ed25519 device key signing audit checkpoints (PKCS#8 PEM); generated if missing.
    #[arg(long, default_value = "/var/lib/keywarden/identity/device-key.pem")]
    device_key: PathBuf,
    /// Key for hashing badge codes (32 bytes); generated if missing.
    #[arg(long, default_value = "/var/lib/keywarden/secrets/badge.key")]
    badge_key: PathBuf,
    /// Site policy file.
    #[arg(long, default_value = "/etc/keywarden/policy.toml")]
    config: PathBuf,
    /// Offsite audit copy settings written by `keywarden factory provision` (an `[offsite]`
    /// section), used when the policy file has none; missing: no offsite copy.
    #[arg(long, default_value = "/var/lib/keywarden/identity/offsite.toml")]
    offsite_config: PathBuf,
    /// D-Bus address to use instead of the system bus.
    #[arg(long)]
    bus_address: Option<String>,
    /// Group allowed admin methods; repeatable.
    #[arg(long = "admin-group", default_values_t = [String::from("keywarden-admin")])]
    admin_groups: Vec<String>,
    /// Group allowed console methods; repeatable.
    #[arg(long = "console-group", default_values_t = [String::from("keywarden-console")])]
    console_groups: Vec<String>,
    /// Log to journald instead of standard error.
    #[arg(long)]
    journald: bool,
    /// Diagnostic bundles: journal files in this directory instead of the system journal.
    #[arg(long, hide = true)]
    diag_journal_directory: Option<PathBuf>,
    /// Diagnostic bundles: os-release file.
    #[arg(long, hide = true)]
    diag_os_release: Option<PathBuf>,
    /// Diagnostic bundles: board file.
    #[arg(long, hide = true)]
    diag_board: Option<PathBuf>,
    /// Diagnostic bundles: the updater's configuration file.
    #[arg(long, hide = true)]
    diag_update_config: Option<PathBuf>,
    /// Diagnostic bundles: the last burn-in report.
    #[arg(long, hide = true)]
    diag_selftest_report: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    keywarden_policyd::logging::init(a.journald);
    let mut diag = DiagPaths::appliance(&a.database, &a.device_key, &a.config);
    if let Some(dir) = a.diag_journal_directory {
        diag.journal = JournalSource::Directory(dir);
    }
    if let Some(path) = a.diag_os_release {
        diag.os_release = path;
    }
    if let Some(path) = a.diag_selftest_report {
        diag.selftest_report = path;
    }
    for (name, path) in [("board", a.diag_board), ("update", a.diag_update_config)] {
        if let (Some(path), Some(entry)) = (path, diag.configs.iter_mut().find(|(n, _)| n == name))
        {
            entry.1 = path;
        }
    }
    let options = Options {
        database: a.database,
        device_key: a.device_key,
        badge_key: a.badge_key,
        config: a.config,
        offsite_config: a.offsite_config,
        bus_address: a.bus_address,
        admin_groups: a.admin_groups,
        console_groups: a.console_groups,
        diag: Some(diag),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywarden-policyd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keywarden-policyd: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
