//! `keywarden collector check DIR`: run on the offsite collector (from a timer), it tells which
//! cabinets have gone silent. rsyslog writes each cabinet's copy to `DIR/<cabinet>.log`; a
//! cabinet sends a heartbeat when it has nothing else to send, so a file that has not grown for
//! longer than the limit means the cabinet (or its network) is offline. "Last heard" is the
//! file's modification time, i.e. the collector's own clock; the last line's time (the
//! cabinet's clock) and seq are shown beside it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use keywarden_audit::collector::{classify_line, LineKind};
use serde::Serialize;
use serde_json::json;

use crate::error::{io, Error};
use crate::output::Output;

/// The collector side of the offsite audit copy.
#[derive(Debug, Subcommand)]
pub enum Collector {
    /// Report each cabinet's last contact; exit 1 naming those silent for longer than
    /// --max-silence (for a cron job or systemd timer).
    Check {
        /// The directory of the cabinets' copies (`<cabinet>.log`).
        dir: PathBuf,
        /// The longest silence allowed: a number with s, m, h or d (`15m`). The cabinets'
        /// `heartbeat-seconds` must be well below it.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_silence: Duration,
    },
}

/// What is known of one cabinet's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFile {
    /// The cabinet (the file name without `.log`).
    pub cabinet: String,
    /// When the collector last wrote to it, ms since the Unix epoch.
    pub last_heard_ms: i64,
    /// Its last complete line, if it is one of the copy's lines.
    pub last: Option<LineKind>,
}

/// The verdict on one cabinet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The cabinet.
    pub cabinet: String,
    /// When the collector last heard from it, ms since the Unix epoch.
    pub last_heard_ms: i64,
    /// For how long it has been silent, seconds.
    pub silent_seconds: i64,
    /// Silent for longer than the limit.
    pub offline: bool,
    /// The last line's kind (`entry`, `checkpoint`, `heartbeat`, `header`, or `unknown`).
    pub last_kind: &'static str,
    /// The last line's seq (entries, checkpoints, a heartbeat's head), if any.
    pub last_seq: Option<u64>,
    /// The last line's time on the cabinet's clock, ms.
    pub cabinet_time_ms: Option<i64>,
}

/// Judge every copy at `now_ms` against `max_silence`, sorted by cabinet.
pub fn assess(mut files: Vec<CopyFile>, now_ms: i64, max_silence: Duration) -> Vec<Verdict> {
    files.sort_by(|a, b| a.cabinet.cmp(&b.cabinet));
    let limit = i64::try_from(max_silence.as_millis()).unwrap_or(i64::MAX);
    files
        .into_iter()
        .map(|f| {
            let silent = now_ms.saturating_sub(f.last_heard_ms).max(0);
            Verdict {
                last_kind: match f.last {
                    Some(LineKind::Entry { .. }) => "entry",
                    Some(LineKind::Checkpoint { .. }) => "checkpoint",
                    Some(LineKind::Heartbeat(_)) => "heartbeat",
                    Some(LineKind::Header { .. }) => "header",
                    None => "unknown",
                },
                last_seq: f.last.and_then(|l| l.seq()),
                cabinet_time_ms: f.last.map(|l| l.at_ms()),
                offline: silent > limit,
                silent_seconds: silent / 1000,
                last_heard_ms: f.last_heard_ms,
                cabinet: f.cabinet,
            }
        })
        .collect()
}

/// `15m`, `90s`, `2h`, `1d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 15m, 2h or 1d");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("{text:?}: the limit must be above zero"));
    }
    Ok(Duration::from_secs(n.saturating_mul(scale)))
}

/// The last complete line (ending in `\n`) of `tail`, without it; a line still being written
/// is skipped.
pub fn last_line(tail: &[u8]) -> Option<&[u8]> {
    let end = tail.iter().rposition(|&b| b == b'\n')?;
    let body = &tail[..end];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Some(&body[start..])
}

/// Read one copy: its modification time and its last line (from the last 64 KiB).
fn read_copy(path: &Path, cabinet: String) -> Result<CopyFile, Error> {
    let what = format!("collector check {}", path.display());
    let mut file = File::open(path).map_err(io(format!("{what}: open")))?;
    let meta = file.metadata().map_err(io(format!("{what}: stat")))?;
    let modified = meta.modified().map_err(io(format!("{what}: stat")))?;
    let last_heard_ms = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let start = meta.len().saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))
        .map_err(io(format!("{what}: seek")))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(io(format!("{what}: read")))?;
    let last = last_line(&tail).and_then(classify_line);
    Ok(CopyFile {
        cabinet,
        last_heard_ms,
        last,
    })
}

/// Run a `collector` command.
pub fn run(out: Output, cmd: &Collector) -> Result<(), Error> {
    let Collector::Check { dir, max_silence } = cmd;
    let (dir, max_silence) = (dir.as_path(), *max_silence);
    let what = format!("collector check {}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(format!("{what}: read the directory")))? {
        let entry = entry.map_err(io(format!("{what}: read the directory")))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(cabinet) = name.strip_suffix(".log") {
            if path.is_file() {
                files.push(read_copy(&path, cabinet.to_owned())?);
            }
        }
    }
    if files.is_empty() {
        return Err(Error::Silent(format!(
            "{what}: no cabinet copies (*.log): no cabinet has ever reached this collector"
        )));
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let verdicts = assess(files, now_ms, max_silence);
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "max_silence_seconds": max_silence.as_secs(),
                "cabinets": verdicts,
            }))?
        );
    } else {
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .map(|v| {
                vec![
                    v.cabinet.clone(),
                    if v.offline { "OFFLINE" } else { "ok" }.to_owned(),
                    utc(v.last_heard_ms),
                    format!("{} s", v.silent_seconds),
                    format!(
                        "{}{}",
                        v.last_kind,
                        v.last_seq.map(|s| format!(" {s}")).unwrap_or_default()
                    ),
                    v.cabinet_time_ms.map(utc).unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::output::table(
                &[
                    "CABINET",
                    "STATUS",
                    "LAST HEARD (UTC)",
                    "SILENT",
                    "LAST RECORD",
                    "CABINET CLOCK"
                ],
                &rows
            )
        );
    }
    let offline: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.offline)
        .map(|v| v.cabinet.as_str())
        .collect();
    if offline.is_empty() {
        Ok(())
    } else {
        Err(Error::Silent(format!(
            "cabinet offline from its offsite collector (silent for more than {} s): {}",
            max_silence.as_secs(),
            offline.join(", ")
        )))
    }
}

fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywarden_audit::collector::Heartbeat;

    const NOW: i64 = 1_790_000_000_000;

    #[test]
    fn silence_beyond_the_limit_is_offline() {
        let files = vec![
            CopyFile {
                cabinet: "lobby".to_owned(),
                last_heard_ms: NOW - 16 * 60_000,
                last: Some(LineKind::Heartbeat(Heartbeat {
                    at_ms: NOW - 16 * 60_000 - 500,
                    head_seq: 41,
                })),
            },
            CopyFile {
                cabinet: "garage".to_owned(),
                last_heard_ms: NOW - 15 * 60_000,
                last: Some(LineKind::Checkpoint { seq: 7, at_ms: NOW }),
            },
            CopyFile {
                cabinet: "future".to_owned(),
                last_heard_ms: NOW + 5000,
                last: None,
            },
        ];
        let v = assess(files, NOW, Duration::from_secs(15 * 60));
        let summary: Vec<(&str, bool, i64, &str, Option<u64>)> = v
            .iter()
            .map(|v| {
                (
                    v.cabinet.as_str(),
                    v.offline,
                    v.silent_seconds,
                    v.last_kind,
                    v.last_seq,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("future", false, 0, "unknown", None),
                ("garage", false, 900, "checkpoint", Some(7)),
                ("lobby", true, 960, "heartbeat", Some(41)),
            ]
        );
    }

    #[test]
    fn durations_and_last_lines_are_parsed() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("15 minutes")
            .unwrap_err()
            .contains("is not a duration"));
        assert!(parse_duration("0s").unwrap_err().contains("above zero"));
        assert_eq!(last_line(b"a\nbb\n"), Some(&b"bb"[..]));
        assert_eq!(last_line(b"bb\n"), Some(&b"bb"[..]));
        assert_eq!(
            last_line(b"a\nbb"),
            Some(&b"a"[..]),
            "a line being written is skipped"
        );
        assert_eq!(last_line(b"bb"), None);
    }
}
