//! `keywarden audit ...`: export the audit trail, verify it (on the device through the service,
//! or anywhere from an export file with no bus at all), show the device's key.

use std::fs::{File, OpenOptions, Permissions};
use std::io::BufReader;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use keywarden_audit::{parse_public_key, verify_collector_copy, verify_export};
use serde_json::json;
use zbus::zvariant::Fd;

use super::Ctx;
use crate::error::{call, io, Error};
use crate::output::{hex, Output};

/// Mode of an export file: readable by its owner's group (auditors), by no one else.
const EXPORT_MODE: u32 = 0o640;

/// The audit trail.
#[derive(Debug, Subcommand)]
pub enum Audit {
    /// Export the audit trail to a new FILE (JSON Lines, mode 0640; refuses to overwrite).
    Export {
        /// The file to create.
        file: PathBuf,
        /// Start at this sequence number (0 = the whole trail).
        #[arg(long, value_name = "N", default_value_t = 0)]
        from_seq: u64,
    },
    /// Verify an export FILE offline (no service needed), or, without FILE, ask the service to
    /// verify the trail in its database.
    Verify {
        /// An export file (from `audit export`).
        #[arg(group = "source")]
        file: Option<PathBuf>,
        /// A collector's copy instead (the file rsyslog writes for this cabinet on the offsite
        /// collector): resent duplicates and heartbeats are allowed, edits are not.
        #[arg(long, value_name = "FILE", group = "source")]
        collector: Option<PathBuf>,
        /// The device's public key (64 hex digits, from `audit key`); without it the export's own
        /// key is used and printed for you to compare.
        #[arg(long, value_name = "HEX", requires = "source")]
        key: Option<String>,
    },
    /// Show the device's public key, which signs the audit checkpoints.
    Key,
}

/// `audit verify FILE`: the one audit command that needs no bus.
pub fn verify_file(out: Output, file: &Path, key: Option<&str>) -> Result<(), Error> {
    let what = format!("audit verify {}", file.display());
    let trusted = key
        .map(parse_public_key)
        .transpose()
        .map_err(|e| Error::Invalid {
            what: what.clone(),
            message: e.to_string(),
        })?;
    let input = File::open(file).map_err(io(format!("{what}: open")))?;
    let report =
        verify_export(BufReader::new(input), trusted.as_ref()).map_err(|source| Error::Verify {
            what: what.clone(),
            source,
        })?;
    let head = hex(&report.head);
    let key_note = if trusted.is_some() {
        report.key_hex.clone()
    } else {
        format!(
            "{} (the export's own: compare it with `keywarden audit key` on the device)",
            report.key_hex
        )
    };
    let seq_note = if report.first_seq == 1 {
        format!("{}..={}", report.first_seq, report.last_seq)
    } else {
        format!(
            "{}..={} (not from the start of the trail)",
            report.first_seq, report.last_seq
        )
    };
    out.record(
        &json!({
            "file": file,
            "entries": report.entries,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "checkpoints": report.checkpoints,
            "head": head,
            "key": report.key_hex,
            "key_trusted": trusted.is_some(),
        }),
        &[
            ("file", file.display().to_string()),
            ("verified", "yes".to_owned()),
            ("entries", report.entries.to_string()),
            ("seq", seq_note),
            ("checkpoints", report.checkpoints.to_string()),
            ("head", head.clone()),
            ("key", key_note),
        ],
    )
}

/// `audit verify --collector FILE`: a collector's copy, offline.
pub fn verify_collector(out: Output, file: &Path, key: Option<&str>) -> Result<(), Error> {
    let what = format!("audit verify --collector {}", file.display());
    let trusted = key
        .map(parse_public_key)
        .transpose()
        .map_err(|e| Error::Invalid {
            what: what.clone(),
            message: e.to_string(),
        })?;
    let input = File::open(file).map_err(io(format!("{what}: open")))?;
    let r = verify_collector_copy(BufReader::new(input), trusted.as_ref()).map_err(|source| {
        Error::Verify {
            what: what.clone(),
            source,
        }
    })?;
    let v = &r.verified;
    let head = hex(&v.head);
    let key_note = if trusted.is_some() {
        v.key_hex.clone()
    } else {
        format!(
            "{} (the copy's own: compare it with `keywarden audit key` on the device)",
            v.key_hex
        )
    };
    let tail = match r.unsigned_tail {
        Some((from, to)) => format!(
            "{from}..={to} present but not yet signed, so not verified (the next batch signs them)"
        ),
        None => "none".to_owned(),
    };
    out.record(
        &json!({
            "file": file,
            "entries": v.entries,
            "first_seq": v.first_seq,
            "last_seq": v.last_seq,
            "checkpoints": v.checkpoints,
            "head": head,
            "key": v.key_hex,
            "key_trusted": trusted.is_some(),
            "unsigned_tail": r.unsigned_tail.map(|(from, to)| json!({"from": from, "to": to})),
            "duplicates": r.duplicates,
            "connections": r.headers,
            "heartbeats": r.heartbeats,
            "last_heartbeat_ms": r.last_heartbeat.map(|h| h.at_ms),
        }),
        &[
            ("file", file.display().to_string()),
            ("verified", "yes".to_owned()),
            ("entries", v.entries.to_string()),
            ("seq", format!("{}..={}", v.first_seq, v.last_seq)),
            ("checkpoints", v.checkpoints.to_string()),
            ("head", head.clone()),
            ("key", key_note),
            ("unsigned tail", tail),
            (
                "duplicates",
                format!("{} (resends after outages)", r.duplicates),
            ),
            ("connections", r.headers.to_string()),
            ("heartbeats", r.heartbeats.to_string()),
        ],
    )
}

/// Run one `audit` command that talks to the service.
pub async fn audit(ctx: &Ctx<'_>, cmd: Audit) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Audit::Export { file, from_seq } => export(ctx, &file, from_seq).await,
        Audit::Verify {
            file: Some(file),
            key,
            ..
        } => verify_file(ctx.out, &file, key.as_deref()),
        Audit::Verify {
            collector: Some(file),
            key,
            ..
        } => verify_collector(ctx.out, &file, key.as_deref()),
        Audit::Verify { file: None, .. } => {
            let report = p.verify_audit().await.map_err(call("audit verify"))?;
            let key = p
                .device_public_key()
                .await
                .map_err(call("audit verify: read the device key"))?;
            ctx.out.record(
                &json!({
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "head": report.head,
                    "key": key,
                }),
                &[
                    ("verified", "yes".to_owned()),
                    ("entries", report.entries.to_string()),
                    ("checkpoints", report.checkpoints.to_string()),
                    ("head", report.head.clone()),
                    ("key", key.clone()),
                ],
            )
        }
        Audit::Key => {
            let key = p.device_public_key().await.map_err(call("audit key"))?;
            ctx.out.line(&json!({ "key": key }), &key)
        }
    }
}

async fn export(ctx: &Ctx<'_>, file: &Path, from_seq: u64) -> Result<(), Error> {
    let what = format!("audit export {}", file.display());
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(EXPORT_MODE)
        .open(file)
        .map_err(io(format!("{what}: create")))?;
    let written = async {
        // The umask may have taken bits away: set exactly 0640.
        out.set_permissions(Permissions::from_mode(EXPORT_MODE))
            .map_err(io(format!("{what}: set mode 0640")))?;
        let entries = ctx
            .policy
            .export_audit(Fd::from(&out), from_seq)
            .await
            .map_err(call(what.clone()))?;
        out.sync_all().map_err(io(format!("{what}: sync")))?;
        Ok::<u64, Error>(entries)
    }
    .await;
    let entries = match written {
        Ok(n) => n,
        Err(e) => {
            drop(out);
            // Leave no partial export behind; the error says what failed.
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
    };
    ctx.out.line(
        &json!({ "file": file, "entries": entries }),
        format!("exported {entries} entries to {}", file.display()),
    )
}
