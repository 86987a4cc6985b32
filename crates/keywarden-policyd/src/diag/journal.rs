//! The journal's part of a bundle: the Keywarden units' messages and the kernel log, read with
//! `journalctl --output=json`, reduced to time, unit, priority and message, and scrubbed.
//!
//! policyd reads the journal as a member of `systemd-journal` (its unit's
//! `SupplementaryGroups`). Only `MESSAGE` is kept of each entry: no command lines, no
//! environment, no other fields.

use std::path::PathBuf;
use std::time::Duration;

use keywarden_diag::Scrubber;
use serde_json::Value;

/// Where the journal is read from.
#[derive(Debug, Clone)]
pub enum JournalSource {
    /// The system journal (the appliance).
    System,
    /// Journal files in a directory (`journalctl --directory`; tests, or a copied journal).
    Directory(PathBuf),
}

/// At most this many entries per file, newest kept.
const MAX_ENTRIES: u32 = 20_000;
/// `journalctl` gets this long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The units whose messages are collected.
const UNITS: &str = "keywarden-*";

/// One text line per entry: `2026-12-03T22:00:00.123456Z <unit> <priority> message`.
pub(super) async fn collect(
    source: &JournalSource,
    kernel: bool,
    since: i64,
    scrub: &Scrubber,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.kill_on_drop(true)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C.UTF-8")
        .args(["--output=json", "--no-pager", "--quiet", "--utc"])
        .arg(format!("--since=@{since}"))
        .arg(format!("--lines={MAX_ENTRIES}"))
        .stdin(std::process::Stdio::null());
    if let JournalSource::Directory(dir) = source {
        cmd.arg("--directory").arg(dir);
    }
    if kernel {
        // Not `--dmesg`: it implies `--boot`, which needs /proc/sys/kernel/random/boot_id, and
        // policyd's unit hides /proc/sys (ProcSubset=pid). The time window does the job.
        cmd.arg("_TRANSPORT=kernel");
    } else {
        cmd.arg(format!("--unit={UNITS}"));
    }
    let output = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("journalctl did not finish within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run journalctl: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "journalctl failed ({}): {}",
            output.status,
            scrub.text(stderr.trim())
        ));
    }
    let mut text = String::new();
    for line in output.stdout.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(entry) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        text.push_str(&format_entry(&entry, kernel, scrub));
        text.push('\n');
    }
    Ok(text)
}

fn field<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry.get(name).and_then(Value::as_str)
}

/// `MESSAGE` may be a string or, when it is not valid UTF-8, an array of bytes.
fn message(entry: &Value) -> String {
    match entry.get("MESSAGE") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(bytes)) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::new(),
    }
}

fn format_entry(entry: &Value, kernel: bool, scrub: &Scrubber) -> String {
    let micros: i64 = field(entry, "__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let when = jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "?".into());
    let who = if kernel {
        "kernel"
    } else {
        field(entry, "_SYSTEMD_UNIT")
            .or_else(|| field(entry, "UNIT"))
            .or_else(|| field(entry, "SYSLOG_IDENTIFIER"))
            .unwrap_or("?")
    };
    let priority = field(entry, "PRIORITY").unwrap_or("-");
    // One line per entry: a multi-line message keeps its lines, indented.
    let text = scrub.text(&message(entry)).replace('\n', "\n    ");
    format!("{when} {} <{priority}> {text}", scrub.text(who))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywarden_diag::Pseudonyms;

    #[test]
    fn entries_become_scrubbed_lines() {
        let scrub = Scrubber::new(Pseudonyms::new(&[1; 32]), ["Maria Lopez"]);
        let entry = serde_json::json!({
            "__REALTIME_TIMESTAMP": "1764800000123456",
            "_SYSTEMD_UNIT": "keywarden-policyd.service",
            "PRIORITY": "6",
            "MESSAGE": "granted to Maria Lopez, pin=9876\nsecond line",
            "_CMDLINE": "keywarden-policyd --secret-thing",
        });
        let line = format_entry(&entry, false, &scrub);
        assert!(
            line.starts_with(
                "2025-12-03T22:13:20.123456Z keywarden-policyd.service <6> granted to person-"
            ),
            "{line}"
        );
        assert!(
            !line.contains("Maria") && !line.contains("9876") && !line.contains("secret-thing"),
            "{line}"
        );
        assert!(line.contains("\n    second line"), "{line}");
        let bytes = serde_json::json!({ "MESSAGE": [104, 105, 255] });
        assert_eq!(message(&bytes), "hi\u{fffd}");
    }
}
