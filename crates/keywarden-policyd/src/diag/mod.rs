//! The diagnostic bundle support staff pull from a cabinet (`Policy1.DiagnosticBundle`,
//! `keywarden diag bundle`).
//!
//! Collected from an allowlist of named sources, never a directory sweep, each one redacted
//! here, at the source, before it reaches the bundle (format and redaction rules:
//! `keywarden-diag`):
//!
//! | file | source |
//! |---|---|
//! | `summary.json` | the verdicts at a glance: service status, database, audit chain, self-test, alarms |
//! | `versions.json` | os-release (allowlisted fields), kernel, every Keywarden program's `--version`, schema |
//! | `device.json` | the provisioning record's public facts (no certificates, no keys) |
//! | `update.json` | `org.keywarden.Update1`: booted slot, slots, boot tries, versions, last error, the newest 100 history records |
//! | `hardware.json` | `org.keywarden.Hardware1`'s properties and a fresh, non-actuating `SelfTest` |
//! | `selftest.json` | the last burn-in report (`keywarden factory selftest`), if any |
//! | `database.json` | `PRAGMA integrity_check`, the audit chain's verification, counts, alarm summary |
//! | `resources.json` | disk use of the data partition and the root, memory, uptime, load |
//! | `config-*.toml` | the board, policy, update and provisioned settings files, redacted by allowlist |
//! | `journal.txt`, `kernel.txt` | the Keywarden units' journal and the kernel log, scrubbed, newest kept |
//! | `collection.json` | what each source gave: ok, absent, or the error |
//!
//! Never collected: the environment, credentials tables (PIN hashes, badge hashes, fingerprint
//! templates), audit entries themselves (the export is the tool for that), free-text notes,
//! key files, the outbox (it holds e-mail bodies and webhook payloads).

mod database;
mod journal;
mod peers;
mod system;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keywarden_audit::DeviceKey;
use keywarden_diag::{redact_toml, BundleBuilder, Caps, Keep, Pseudonyms, Scrubber, Summary};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use zbus::Connection;

use crate::error::{Error, Result};

pub use journal::JournalSource;

/// Where the collector looks. Defaults are the appliance's paths.
#[derive(Debug, Clone)]
pub struct DiagPaths {
    /// The policy database.
    pub database: PathBuf,
    /// The device key (signs the bundle).
    pub device_key: PathBuf,
    /// The identity directory (`device.json`, `offsite.toml`, `update/repository.toml`).
    pub identity: PathBuf,
    /// The data partition (disk use).
    pub data_dir: PathBuf,
    /// The last burn-in report.
    pub selftest_report: PathBuf,
    /// os-release.
    pub os_release: PathBuf,
    /// Configuration files by their name in the bundle (`config-<name>.toml`).
    pub configs: Vec<(String, PathBuf)>,
    /// Where the Keywarden programs are (their `--version`).
    pub programs: PathBuf,
    /// The journal.
    pub journal: JournalSource,
}

impl DiagPaths {
    /// The appliance's layout around `database`, `device_key` and the policy file `config`.
    pub fn appliance(database: &Path, device_key: &Path, config: &Path) -> DiagPaths {
        let identity = device_key.parent().map_or_else(
            || PathBuf::from("/var/lib/keywarden/identity"),
            Path::to_owned,
        );
        let data_dir = database
            .parent()
            .map_or_else(|| PathBuf::from("/var/lib/keywarden"), Path::to_owned);
        let programs = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from("/usr/bin"));
        DiagPaths {
            database: database.to_owned(),
            device_key: device_key.to_owned(),
            configs: vec![
                ("board".into(), PathBuf::from("/etc/keywarden/board.toml")),
                ("policy".into(), config.to_owned()),
                ("update".into(), PathBuf::from("/etc/keywarden/update.toml")),
                ("offsite".into(), identity.join("offsite.toml")),
                (
                    "update-repository".into(),
                    identity.join("update/repository.toml"),
                ),
            ],
            selftest_report: data_dir.join("factory/selftest.json"),
            identity,
            data_dir,
            os_release: PathBuf::from("/etc/os-release"),
            programs,
            journal: JournalSource::System,
        }
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// Journal from this time (Unix seconds).
    pub since: i64,
    /// Run hwd's non-actuating self-test.
    pub self_test: bool,
    /// Now (Unix seconds; the bundle's `created`).
    pub now: i64,
}

/// What the driver loop knows, handed in by the service.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Policy1's `Status`.
    pub status: String,
    /// The audit chain's verification: (entries, checkpoints, head) or why it failed.
    pub audit: std::result::Result<(u64, u64, String), String>,
}

/// Builds bundles, one at a time.
#[derive(Debug, Clone)]
pub struct DiagSource {
    paths: Arc<DiagPaths>,
    permit: Arc<Semaphore>,
}

/// One source's outcome, for `collection.json`.
struct Outcome {
    log: Vec<Value>,
}

impl Outcome {
    fn record(&mut self, file: &str, result: std::result::Result<&str, String>) {
        self.log.push(match result {
            Ok(state) => json!({ "file": file, "state": state }),
            Err(error) => json!({ "file": file, "state": "error", "error": error }),
        });
    }
}

impl DiagSource {
    /// A source reading `paths`.
    pub fn new(paths: DiagPaths) -> DiagSource {
        DiagSource {
            paths: Arc::new(paths),
            permit: Arc::new(Semaphore::new(1)),
        }
    }

    /// Collects, redacts, signs and writes one bundle to `out`. `None` when another bundle is
    /// being built (the caller says so).
    pub async fn write(
        &self,
        conn: &Connection,
        facts: Facts,
        request: Request,
        out: std::fs::File,
    ) -> Result<Option<Summary>> {
        let Ok(_permit) = self.permit.try_acquire() else {
            return Ok(None);
        };
        let paths = Arc::clone(&self.paths);
        let key_path = paths.device_key.clone();
        let key = tokio::task::spawn_blocking(move || DeviceKey::load(&key_path))
            .await
            .map_err(|e| Error::Io {
                path: paths.device_key.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let pseudonyms = Pseudonyms::new(&key.derive_secret(b"diag-pseudonyms"));

        // The database first: its people are what the scrubber must know.
        let db_paths = Arc::clone(&paths);
        let db = tokio::task::spawn_blocking(move || database::collect(&db_paths.database))
            .await
            .map_err(|e| Error::Io {
                path: paths.database.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let scrub = Scrubber::new(pseudonyms, db.people.iter());
        let mut outcome = Outcome { log: Vec::new() };
        let mut bundle = BundleBuilder::new(Caps::default());

        let hardware = peers::hardware(conn, request.self_test)
            .await
            .map(|v| scrub.json(v));
        let update = peers::update(conn).await.map(|v| scrub.json(v));
        let versions = system::versions(&paths, &scrub, db.schema_version).await;
        let device = system::device_record(&paths.identity, &scrub);
        let selftest = system::json_file(&paths.selftest_report, &scrub);
        let resources = system::resources(&paths.data_dir);
        let database = db.report(&scrub, &facts.audit);

        let summary = json!({
            "created": request.now,
            "status": facts.status,
            "serial": device.as_ref().ok().and_then(|d| d.get("serial")).cloned(),
            "firmware": versions.get("os").and_then(|o| o.get("IMAGE_VERSION")).cloned(),
            "booted_slot": update.as_ref().ok().and_then(|u| u.get("booted_slot")).cloned(),
            "database_integrity": database.get("integrity_check").cloned(),
            "audit_chain": database.get("audit_chain").and_then(|a| a.get("verdict")).cloned(),
            "active_alarms": database.get("alarms").and_then(|a| a.get("active_count")).cloned(),
            "hardware_self_test": hardware.as_ref().ok().and_then(|h| h.get("self_test_passed")).cloned(),
            "burn_in": selftest.as_ref().ok().and_then(|s| s.as_ref()).and_then(|s| s.get("passed")).cloned(),
        });
        bundle.add_json("summary.json", &summary)?;
        bundle.add_json("versions.json", &versions)?;
        outcome.record("versions.json", Ok("ok"));
        add_result(&mut bundle, &mut outcome, "device.json", device.map(Some))?;
        add_result(&mut bundle, &mut outcome, "update.json", update.map(Some))?;
        add_result(
            &mut bundle,
            &mut outcome,
            "hardware.json",
            hardware.map(Some),
        )?;
        add_result(&mut bundle, &mut outcome, "selftest.json", selftest)?;
        bundle.add_json("database.json", &database)?;
        outcome.record("database.json", Ok("ok"));
        bundle.add_json("resources.json", &resources)?;
        outcome.record("resources.json", Ok("ok"));
        for (name, path) in &paths.configs {
            let file = format!("config-{name}.toml");
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = format!(
                        "# {} (redacted: strings kept only for keys known to hold no secrets)\n{}",
                        path.display(),
                        redact_toml(&text, &scrub)
                    );
                    bundle.add(&file, text.into_bytes(), Keep::Head)?;
                    outcome.record(&file, Ok("ok"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    outcome.record(&file, Ok("absent"));
                }
                Err(e) => outcome.record(&file, Err(format!("{}: {e}", path.display()))),
            }
        }
        for (file, kernel) in [("journal.txt", false), ("kernel.txt", true)] {
            match journal::collect(&paths.journal, kernel, request.since, &scrub).await {
                Ok(text) => {
                    bundle.add(file, text.into_bytes(), Keep::Tail)?;
                    outcome.record(file, Ok("ok"));
                }
                Err(e) => outcome.record(file, Err(e)),
            }
        }
        bundle.add_json("collection.json", &outcome.log)?;

        let serial = summary
            .get("serial")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let created = u64::try_from(request.now).unwrap_or(0);
        let summary = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(out);
            let summary = bundle.finish(&key, serial, created, &mut out)?;
            use std::io::Write as _;
            out.flush().map_err(keywarden_diag::Error::Write)?;
            Ok::<_, keywarden_diag::Error>(summary)
        })
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::from("diagnostic bundle"),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(Some(summary))
    }
}

fn add_result(
    bundle: &mut BundleBuilder,
    outcome: &mut Outcome,
    file: &str,
    result: std::result::Result<Option<Value>, String>,
) -> Result<()> {
    match result {
        Ok(Some(value)) => {
            bundle.add_json(file, &value)?;
            outcome.record(file, Ok("ok"));
        }
        Ok(None) => outcome.record(file, Ok("absent")),
        Err(e) => outcome.record(file, Err(e)),
    }
    Ok(())
}
