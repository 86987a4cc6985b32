//! The update history: what the updater did and how each new slot's trial ended, kept on the
//! data partition (`<state_dir>/history.jsonl`) so support can read it months later, across
//! updates and rollbacks (`Update1.History`, `keywarden update history`, the diagnostic bundle).
//!
//! - [`HistoryFile`] is the storage: one JSON object per line, appended and `fdatasync`ed before
//!   the updater goes on; a line torn by a power cut is skipped when read (and said so in the
//!   log); the newest [`KEEP`] records are kept, the file rewritten (`install::write_atomic`:
//!   temporary file, rename, directory sync) once it holds twice that.
//! - [`outcomes`] is the pure part: given the records so far and what the bootloader says now,
//!   which records are due (a trial that ended in a commit or a rollback, an install that a
//!   power cut or a restart interrupted). The bootloader decides a trial's outcome on its own,
//!   before the updater runs, so the updater learns it by comparing.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use keywarden_dbus::update::{UpdateHistoryEntry, UpdateSlot};
use serde::{Deserialize, Serialize};

use crate::boot::Slot;
use crate::{Error, Result};

/// How many records are kept.
pub const KEEP: usize = 200;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// An install into `slot` started (the message names the source).
    InstallStarted,
    /// The slot was written, read back and activated: it boots next, on trial.
    Installed,
    /// The install failed (`code` says why); the slot stays unbootable.
    InstallFailed,
    /// The updater found an install it had started and never finished (a power cut or a
    /// restart); the next install of the same bundle resumes from what was verified.
    InstallInterrupted,
    /// The activated slot booted and was committed.
    Committed,
    /// The activated slot did not pass its trial (its tries ran out, or it could not be
    /// loaded): the bootloader fell back and the other slot runs.
    RolledBack,
    /// `MarkGood` (the message names who).
    MarkedGood,
    /// `MarkBad` (the message names who).
    MarkedBad,
}

impl Event {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::InstallStarted => "install-started",
            Event::Installed => "installed",
            Event::InstallFailed => "install-failed",
            Event::InstallInterrupted => "install-interrupted",
            Event::Committed => "committed",
            Event::RolledBack => "rolled-back",
            Event::MarkedGood => "marked-good",
            Event::MarkedBad => "marked-bad",
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// What happened.
    pub event: Event,
    /// The slot it concerns.
    pub slot: Slot,
    /// The version concerned, "" if unknown.
    #[serde(default)]
    pub version: String,
    /// A stable error code for failures, else "".
    #[serde(default)]
    pub code: String,
    /// For people.
    #[serde(default)]
    pub message: String,
}

impl Entry {
    /// A record of `event` on `slot` at `time` with `version` and `message` and no code.
    pub fn new(time: u64, event: Event, slot: Slot, version: &str, message: String) -> Entry {
        Entry {
            time,
            event,
            slot,
            version: version.to_owned(),
            code: String::new(),
            message,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> UpdateHistoryEntry {
        UpdateHistoryEntry {
            time: self.time,
            event: self.event.as_str().to_owned(),
            slot: self.slot.to_string(),
            version: self.version.clone(),
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }
}

/// The records that are due now, given the records so far (oldest first), the slots as the
/// bootloader reports them and the booted slot. `starting`: the updater has just started (an
/// install recorded as started and never ended was interrupted; while it runs, the same
/// record means the install is in progress).
///
/// A trial is over when the slot last activated is booted and committed (committed), or is no
/// longer bootable while the other slot runs committed (rolled back). A slot activated but not
/// yet booted, or booted and still on trial, has no outcome yet. A later install or a
/// `MarkBad` of that slot settles it without an outcome record.
pub fn outcomes(
    entries: &[Entry],
    slots: &[UpdateSlot],
    booted: Slot,
    starting: bool,
    now: u64,
) -> Vec<Entry> {
    let mut due = Vec::new();
    // MarkGood of some slot settles nothing: every other record is the latest word.
    let Some(entry) = entries.iter().rev().find(|e| e.event != Event::MarkedGood) else {
        return due;
    };
    let slot_state = |slot: Slot| slots.iter().find(|s| s.name == slot.as_str());
    match entry.event {
        Event::InstallStarted if starting => due.push(Entry::new(
            now,
            Event::InstallInterrupted,
            entry.slot,
            &entry.version,
            format!(
                "the install into slot {} did not finish (power cut or restart); the slot stays \
                 unbootable and the next install of the same bundle resumes",
                entry.slot
            ),
        )),
        Event::Installed => {
            let activated = entry.slot;
            let (Some(this), Some(other)) = (slot_state(activated), slot_state(activated.other()))
            else {
                return due;
            };
            if booted == activated && this.committed {
                due.push(Entry::new(
                    now,
                    Event::Committed,
                    activated,
                    &entry.version,
                    format!(
                        "slot {activated} ({}) booted and was committed",
                        version_or_unknown(&entry.version)
                    ),
                ));
            } else if booted != activated && !this.bootable && other.committed {
                due.push(Entry::new(
                    now,
                    Event::RolledBack,
                    activated,
                    &entry.version,
                    format!(
                        "slot {activated} ({}) did not pass its trial; slot {} ({}) runs",
                        version_or_unknown(&entry.version),
                        booted,
                        version_or_unknown(&other.version)
                    ),
                ));
            }
        }
        _ => {}
    }
    due
}

fn version_or_unknown(version: &str) -> &str {
    if version.is_empty() {
        "version unknown"
    } else {
        version
    }
}

/// The history file.
#[derive(Debug, Clone)]
pub struct HistoryFile {
    path: PathBuf,
}

impl HistoryFile {
    /// The history kept in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> HistoryFile {
        HistoryFile {
            path: state_dir.join("history.jsonl"),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record kept, oldest first. A missing file is an empty history; a line that does
    /// not parse (torn by a power cut, or damaged) is skipped and logged.
    pub fn read(&self) -> Result<Vec<Entry>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("opening", &self.path, e)),
        };
        let mut entries = Vec::new();
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(|e| Error::io("reading", &self.path, e))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Entry>(&line) {
                Ok(entry) => entries.push(entry),
                Err(e) => tracing::warn!(
                    path = %self.path.display(),
                    line = n + 1,
                    error = %e,
                    "skipping an unreadable update history record"
                ),
            }
        }
        Ok(entries)
    }

    /// Appends `new` (synced before it returns) to the history that holds `kept` records, and
    /// rewrites the file with the newest [`KEEP`] once it holds twice that. Returns the records
    /// kept afterwards.
    pub fn append(&self, mut kept: Vec<Entry>, new: &[Entry]) -> Result<Vec<Entry>> {
        if new.is_empty() {
            return Ok(kept);
        }
        let mut text = encode(new)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("opening", &self.path, e))?;
        // A torn line left by a power cut ends without a newline: start on a fresh line so the
        // new record is not glued to it.
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading the size of", &self.path, e))?
            .len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)
                .map_err(|e| Error::io("reading", &self.path, e))?;
            if last[0] != b'\n' {
                text.insert(0, b'\n');
            }
        }
        file.write_all(&text)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        kept.extend_from_slice(new);
        if kept.len() >= 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
            self.rewrite(&kept)?;
        }
        Ok(kept)
    }

    fn rewrite(&self, entries: &[Entry]) -> Result<()> {
        crate::install::write_atomic(&self.path, &encode(entries)?)
    }
}

/// One JSON line per record.
fn encode(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut text, entry)
            .map_err(|e| Error::Worker(format!("encoding an update history record: {e}")))?;
        text.push(b'\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, bootable: bool, committed: bool, tries: u32, version: &str) -> UpdateSlot {
        UpdateSlot {
            name: name.into(),
            bootable,
            committed,
            tries_left: tries,
            version: version.into(),
        }
    }

    fn installed(slot: Slot, version: &str) -> Entry {
        Entry::new(100, Event::Installed, slot, version, String::new())
    }

    #[test]
    fn an_activated_slot_booted_and_committed_is_recorded_committed_once() {
        let mut history = vec![installed(Slot::B, "0.2.0")];
        // Activated, not yet booted: nothing.
        let slots = [
            slot("A", true, true, 0, "0.1.0"),
            slot("B", true, false, 3, "0.2.0"),
        ];
        assert!(outcomes(&history, &slots, Slot::A, true, 200).is_empty());
        // Booted on trial: nothing yet.
        let slots = [
            slot("A", true, true, 0, "0.1.0"),
            slot("B", true, false, 2, "0.2.0"),
        ];
        assert!(outcomes(&history, &slots, Slot::B, true, 200).is_empty());
        // Committed.
        let slots = [
            slot("A", true, true, 0, "0.1.0"),
            slot("B", true, true, 0, "0.2.0"),
        ];
        let due = outcomes(&history, &slots, Slot::B, false, 300);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (
                due[0].event,
                due[0].slot,
                due[0].version.as_str(),
                due[0].time
            ),
            (Event::Committed, Slot::B, "0.2.0", 300)
        );
        history.extend(due);
        assert!(outcomes(&history, &slots, Slot::B, false, 400).is_empty());
    }

    #[test]
    fn an_activated_slot_that_fell_back_is_recorded_rolled_back() {
        let history = vec![installed(Slot::A, "0.1.3")];
        let slots = [
            slot("A", false, false, 0, "0.1.3"),
            slot("B", true, true, 0, "0.1.1"),
        ];
        let due = outcomes(&history, &slots, Slot::B, true, 500);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event, Event::RolledBack);
        assert_eq!(due[0].slot, Slot::A);
        assert!(
            due[0].message.contains("0.1.3") && due[0].message.contains("slot B (0.1.1) runs"),
            "{}",
            due[0].message
        );
        // Still bootable with tries left and not booted: the trial has not happened yet.
        let slots = [
            slot("A", true, false, 3, "0.1.3"),
            slot("B", true, true, 0, "0.1.1"),
        ];
        assert!(outcomes(&history, &slots, Slot::B, true, 500).is_empty());
    }

    #[test]
    fn a_started_install_is_interrupted_only_when_the_updater_starts() {
        let history = vec![Entry::new(
            1,
            Event::InstallStarted,
            Slot::B,
            "",
            "repository".into(),
        )];
        let slots = [
            slot("A", true, true, 0, "0.1.0"),
            slot("B", false, false, 0, ""),
        ];
        assert!(outcomes(&history, &slots, Slot::A, false, 2).is_empty());
        let due = outcomes(&history, &slots, Slot::A, true, 2);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event, Event::InstallInterrupted);
    }

    #[test]
    fn marking_the_activated_slot_bad_or_a_new_install_settles_its_trial_without_an_outcome() {
        let fell_back = [
            slot("A", false, false, 0, "0.1.3"),
            slot("B", true, true, 0, "0.1.1"),
        ];
        for later in [
            Event::MarkedBad,
            Event::InstallStarted,
            Event::InstallFailed,
        ] {
            let history = vec![
                installed(Slot::A, "0.1.3"),
                Entry::new(101, later, Slot::A, "", String::new()),
            ];
            assert!(
                outcomes(&history, &fell_back, Slot::B, false, 200).is_empty(),
                "{later:?}"
            );
        }
        // MarkGood by hand of the other slot does not settle it.
        let history = vec![
            installed(Slot::A, "0.1.3"),
            Entry::new(101, Event::MarkedGood, Slot::B, "", String::new()),
        ];
        assert_eq!(
            outcomes(&history, &fell_back, Slot::B, false, 200)[0].event,
            Event::RolledBack
        );
        assert!(outcomes(&[], &fell_back, Slot::B, true, 200).is_empty());
    }

    #[test]
    fn records_survive_a_torn_line_and_the_file_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let file = HistoryFile::in_dir(dir.path());
        assert!(file.read().unwrap().is_empty());
        let kept = file
            .append(Vec::new(), &[installed(Slot::B, "0.2.0")])
            .unwrap();
        // A power cut in the middle of the next append.
        let mut f = OpenOptions::new().append(true).open(file.path()).unwrap();
        f.write_all(br#"{"time":5,"event":"comm"#).unwrap();
        drop(f);
        assert_eq!(file.read().unwrap(), kept);
        let next = Entry::new(6, Event::Committed, Slot::B, "0.2.0", "ok".into());
        let kept = file
            .append(file.read().unwrap(), std::slice::from_ref(&next))
            .unwrap();
        assert_eq!(file.read().unwrap(), kept);
        assert_eq!(kept.last(), Some(&next));

        let mut kept = kept;
        for n in 0..(2 * KEEP) as u64 {
            kept = file
                .append(
                    kept,
                    &[Entry::new(
                        1000 + n,
                        Event::InstallFailed,
                        Slot::A,
                        "",
                        String::new(),
                    )],
                )
                .unwrap();
            assert!(kept.len() < 2 * KEEP);
        }
        let read = file.read().unwrap();
        assert_eq!(read, kept);
        assert_eq!(
            read.last().map(|e| e.time),
            Some(1000 + 2 * KEEP as u64 - 1)
        );
        assert!(!dir.path().join(".history.jsonl.tmp").exists());
    }

    #[test]
    fn the_wire_form_uses_the_event_strings() {
        let entry = Entry::new(7, Event::RolledBack, Slot::A, "0.1.3", "m".into());
        let wire = entry.to_wire();
        assert_eq!(
            (
                wire.time,
                wire.event.as_str(),
                wire.slot.as_str(),
                wire.version.as_str()
            ),
            (7, "rolled-back", "A", "0.1.3")
        );
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""event":"rolled-back""#), "{json}");
    }
}
