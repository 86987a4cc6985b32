//! The installer's files in the state directory (on the data partition, which survives updates):
//! the resume journal of an install in progress and the saved manifest of each slot.
//!
//! - `install-journal.json`: which bundle is being written into which slot, and how many of its
//!   chunks (a contiguous prefix) are known to be on the slot, counted only after an
//!   `fdatasync` of the slot. A resumed install reads those chunks back and re-checks them, so
//!   the journal is a hint that saves work, never a source of trust.
//! - `slot-<NAME>.manifest.json`: the exact manifest bytes (signed JSON) of the bundle last
//!   installed and read back into slot `NAME`, written once the slot was verified. It tells the
//!   daemon the slot's version and lets the next install find the active slot's chunks without
//!   reading the slot (each chunk taken from it is still re-checked).
//!
//! Every file is replaced atomically: temporary file, fsync, rename, fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use keywarden_bundle::{Manifest, Version};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "install-journal.json";

/// The path of slot `slot`'s saved manifest in `state_dir`.
pub fn slot_manifest_path(state_dir: &Path, slot: &str) -> PathBuf {
    state_dir.join(format!("slot-{slot}.manifest.json"))
}

/// The manifest of the bundle last installed (and read back) into slot `slot`, if one was saved.
/// `Ok(None)` when there is none (a slot flashed at the factory, or being rewritten).
pub fn read_slot_manifest(state_dir: &Path, slot: &str) -> Result<Option<Manifest>> {
    let path = slot_manifest_path(state_dir, slot);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    Manifest::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| Error::StateFile {
            path,
            reason: e.to_string(),
        })
}

/// The version installed in slot `slot` according to its saved manifest (`None` if there is
/// none): what the daemon compares a new bundle with when `slot` is the active one.
pub fn slot_version(state_dir: &Path, slot: &str) -> Result<Option<Version>> {
    Ok(read_slot_manifest(state_dir, slot)?.map(|m| m.version))
}

/// Saves `manifest_bytes` (the verified manifest) as slot `slot`'s manifest.
pub(crate) fn save_slot_manifest(
    state_dir: &Path,
    slot: &str,
    manifest_bytes: &[u8],
) -> Result<()> {
    write_atomic(&slot_manifest_path(state_dir, slot), manifest_bytes)
}

/// Removes slot `slot`'s saved manifest (before the slot is overwritten), durably.
pub(crate) fn forget_slot_manifest(state_dir: &Path, slot: &str) -> Result<()> {
    remove_durably(&slot_manifest_path(state_dir, slot))
}

/// The resume journal of an install in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Journal {
    /// The journal's format (1).
    pub format: u32,
    /// The bundle: SHA-256 of its manifest bytes, hex.
    pub bundle: String,
    /// The bundle's version (for people).
    pub version: String,
    /// The target slot's name.
    pub slot: String,
    /// The target slot's device.
    pub device: PathBuf,
    /// The payload being written.
    pub payload: String,
    /// Chunks `0..chunks_done` were written and synced.
    pub chunks_done: u64,
}

impl Journal {
    /// The journal in `state_dir`, if there is a readable one. An unreadable journal is only
    /// logged: it is a hint, and the install starts from scratch without it.
    pub fn load(state_dir: &Path) -> Option<Journal> {
        let path = state_dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the install journal; ignoring it");
                return None;
            }
        };
        match serde_json::from_slice::<Journal>(&bytes) {
            Ok(journal) if journal.format == 1 => Some(journal),
            Ok(journal) => {
                tracing::warn!(path = %path.display(), format = journal.format, "unknown install journal format; ignoring it");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "malformed install journal; ignoring it");
                None
            }
        }
    }

    /// Writes the journal atomically.
    pub fn store(&self, state_dir: &Path) -> Result<()> {
        let path = state_dir.join(JOURNAL_FILE);
        let bytes = serde_json::to_vec(self).map_err(|e| Error::StateFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Removes the journal in `state_dir`, durably.
    pub fn remove(state_dir: &Path) -> Result<()> {
        remove_durably(&state_dir.join(JOURNAL_FILE))
    }
}

/// Replaces `path` with `data`: a temporary file in the same directory, fsync, rename, fsync of
/// the directory. A crash leaves the old or the new file, never a mix.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    file.write_all(data)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming to", path, e))?;
    sync_dir(dir)
}

/// Removes `path` if it exists and fsyncs its directory.
fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}
