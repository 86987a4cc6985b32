//! `keywarden update ...`: the OTA updater (org.keywarden.Update1).
//!
//! `install` starts the install, follows its progress on standard error and waits for the
//! `Completed` signal: exit 0 when the new slot is written, read back and activated, 1 with the
//! updater's error code and message when it failed.

use std::path::PathBuf;

use clap::Subcommand;
use futures_util::stream::StreamExt;
use keywarden_dbus::update::{Update1Proxy, UpdateSlot};
use serde::Serialize;
use zbus::Connection;

use crate::error::{call, io, Error};
use crate::output::Output;

/// The OTA updater.
#[derive(Debug, Subcommand)]
pub enum Update {
    /// Ask the update repository whether a newer bundle is offered for this board.
    Check,
    /// Install a bundle into the inactive slot and wait until it is written, read back and
    /// activated (it boots at the next restart). SOURCE: an https:// URL or a bundle file;
    /// none = the bundle the repository offers.
    Install {
        source: Option<String>,
        /// Start the install and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show the booted slot, both slots' state and versions, and the last install.
    Status,
    /// Show the update history, oldest first: installs started, finished or failed, trials
    /// that ended committed or rolled back, slots marked by hand (kept on the data partition).
    History {
        /// Only the newest N records (0: all that are kept).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Commit SLOT (booted, other, A or B; default booted): it boots without counting tries.
    MarkGood {
        #[arg(default_value = "booted")]
        slot: String,
    },
    /// Mark SLOT (booted, other, A or B; default booted) never to be booted again.
    MarkBad {
        #[arg(default_value = "booted")]
        slot: String,
    },
    /// Stop a running install between two chunks (a later install resumes it).
    Cancel,
}

/// `update status --json`.
#[derive(Debug, Serialize)]
struct Status {
    state: String,
    booted_slot: String,
    booted_version: String,
    slots: Vec<UpdateSlot>,
    bytes_done: u64,
    bytes_total: u64,
    bytes_downloaded: u64,
    bytes_reused: u64,
    last_error: Option<Failure>,
}

#[derive(Debug, Serialize)]
struct Failure {
    code: String,
    message: String,
}

/// Runs one `keywarden update` command.
pub async fn update(conn: &Connection, out: Output, cmd: Update) -> Result<(), Error> {
    // No property cache: `install` reads the end state right after `Completed`, and a cache
    // filled by signals could lag behind it.
    let proxy = Update1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(call("update"))?;
    match cmd {
        Update::Check => {
            let (available, version, size) = proxy.check().await.map_err(call("update check"))?;
            let text = if available {
                format!("update available: {version} ({})", megabytes(size))
            } else {
                "up to date: the repository offers nothing newer".to_owned()
            };
            out.line(
                &serde_json::json!({"available": available, "version": version, "size": size}),
                text,
            )
        }
        Update::Install { source, no_wait } => install(&proxy, out, source, no_wait).await,
        Update::Status => status(&proxy, out).await,
        Update::History { limit } => {
            let entries = proxy.history(limit).await.map_err(call("update history"))?;
            out.list(
                &entries,
                &["time", "event", "slot", "version", "code", "message"],
                |e| {
                    vec![
                        i64::try_from(e.time)
                            .map(crate::times::format_time_local)
                            .unwrap_or_default(),
                        e.event.clone(),
                        e.slot.clone(),
                        e.version.clone(),
                        e.code.clone(),
                        e.message.clone(),
                    ]
                },
            )
        }
        Update::MarkGood { slot } => {
            proxy
                .mark_good(&slot)
                .await
                .map_err(call(format!("update mark-good {slot}")))?;
            out.line(
                &serde_json::json!({"slot": slot, "marked": "good"}),
                format!("slot {slot} committed"),
            )
        }
        Update::MarkBad { slot } => {
            proxy
                .mark_bad(&slot)
                .await
                .map_err(call(format!("update mark-bad {slot}")))?;
            out.line(
                &serde_json::json!({"slot": slot, "marked": "bad"}),
                format!("slot {slot} marked bad: it will not be booted"),
            )
        }
        Update::Cancel => {
            proxy.cancel().await.map_err(call("update cancel"))?;
            out.line(&serde_json::json!({"cancelled": true}), "cancel requested")
        }
    }
}

async fn install(
    proxy: &Update1Proxy<'_>,
    out: Output,
    source: Option<String>,
    no_wait: bool,
) -> Result<(), Error> {
    let source = match source {
        None => String::new(),
        Some(s) if s.contains("://") => s,
        // A file: the updater runs elsewhere, so it needs the absolute path.
        Some(s) => std::path::absolute(PathBuf::from(&s))
            .map_err(io(format!("update install {s}")))?
            .display()
            .to_string(),
    };
    let what = if source.is_empty() {
        "update install".to_owned()
    } else {
        format!("update install {source}")
    };
    // Subscribe before starting, so a fast failure is not missed.
    let mut completed = proxy
        .receive_completed()
        .await
        .map_err(call(what.clone()))?;
    let mut progress = tokio::time::interval(std::time::Duration::from_millis(500));
    proxy.install(&source).await.map_err(call(what.clone()))?;
    if no_wait {
        return out.line(&serde_json::json!({"started": true}), "install started");
    }
    let mut last_percent = None;
    loop {
        tokio::select! {
            signal = completed.next() => {
                let Some(signal) = signal else { return Err(Error::Gone) };
                let args = signal.args().map_err(call(what.clone()))?;
                if !out.json && last_percent.is_some() {
                    eprintln!();
                }
                let result = serde_json::json!({
                    "ok": args.ok, "code": args.code, "message": args.message,
                    "downloaded": proxy.bytes_downloaded().await.unwrap_or_default(),
                    "reused": proxy.bytes_reused().await.unwrap_or_default(),
                });
                if args.ok {
                    return out.line(&result, &args.message);
                }
                if out.json {
                    out.line(&result, "")?;
                }
                return Err(Error::Update {
                    what,
                    code: args.code.clone(),
                    message: args.message.clone(),
                });
            }
            _ = progress.tick(), if !out.json => {
                let done = proxy.bytes_done().await.unwrap_or_default();
                let total = proxy.bytes_total().await.unwrap_or_default();
                let state = proxy.state().await.unwrap_or_default();
                if let Some(percent) = (done * 100).checked_div(total) {
                    if last_percent != Some(percent) {
                        last_percent = Some(percent);
                        eprint!("\r{state}: {percent:3}% of {}", megabytes(total));
                    }
                }
            }
        }
    }
}

async fn status(proxy: &Update1Proxy<'_>, out: Output) -> Result<(), Error> {
    let what = || call("update status");
    let (code, message) = proxy.last_error().await.map_err(what())?;
    let status = Status {
        state: proxy.state().await.map_err(what())?,
        booted_slot: proxy.booted_slot().await.map_err(what())?,
        booted_version: proxy.booted_version().await.map_err(what())?,
        slots: proxy.slots().await.map_err(what())?,
        bytes_done: proxy.bytes_done().await.map_err(what())?,
        bytes_total: proxy.bytes_total().await.map_err(what())?,
        bytes_downloaded: proxy.bytes_downloaded().await.map_err(what())?,
        bytes_reused: proxy.bytes_reused().await.map_err(what())?,
        last_error: (!code.is_empty()).then_some(Failure { code, message }),
    };
    let mut lines = vec![
        ("state", status.state.clone()),
        (
            "booted",
            format!(
                "slot {} ({})",
                status.booted_slot,
                or_unknown(&status.booted_version)
            ),
        ),
    ];
    let slot_lines: Vec<(String, String)> = status
        .slots
        .iter()
        .map(|s| {
            let state = match (s.bootable, s.committed) {
                (false, _) => "not bootable".to_owned(),
                (true, true) => "good (committed)".to_owned(),
                (true, false) => format!("on trial, {} tries left", s.tries_left),
            };
            (
                format!("slot {}", s.name),
                format!("{state}, version {}", or_unknown(&s.version)),
            )
        })
        .collect();
    for (k, v) in &slot_lines {
        lines.push((k.as_str(), v.clone()));
    }
    if status.bytes_total > 0 {
        lines.push((
            "last install",
            format!(
                "{} of {} ({} downloaded, {} reused from the active slot)",
                megabytes(status.bytes_done),
                megabytes(status.bytes_total),
                megabytes(status.bytes_downloaded),
                megabytes(status.bytes_reused)
            ),
        ));
    }
    if let Some(f) = &status.last_error {
        lines.push(("last error", format!("{}: {}", f.code, f.message)));
    }
    out.record(&status, &lines)
}

fn or_unknown(version: &str) -> &str {
    if version.is_empty() {
        "unknown"
    } else {
        version
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
