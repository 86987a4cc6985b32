//! The crate's one error enum.
//!
//! Each module keeps its variants together in its own section below, so that a message names
//! what failed and where (the file, the slot, the chunk, the URL).

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the updater can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- bundle (format, signature, chunk hashes) ---
    /// The bundle was refused by the bundle format's checks (signature, manifest, chunk hash).
    #[error(transparent)]
    Bundle(#[from] keywarden_bundle::Error),

    // --- generic I/O with the path it concerned ---
    /// An I/O error on a file or device.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", "syncing"...).
        action: &'static str,
        /// The file or device.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    // --- boot ---

    // --- install ---
    /// The bundle is signed with the repository's test-only key and this device does not allow
    /// it (production devices never do).
    #[error("the bundle is signed with the test-only key {signer}, which this device refuses")]
    TestKeyRefused {
        /// The signer's public key, hex.
        signer: String,
    },
    /// The bundle is for another board.
    #[error("the bundle is for board {bundle:?}, this device is {device:?}")]
    WrongBoard {
        /// The bundle's `compatible`.
        bundle: String,
        /// This device's board string.
        device: String,
    },
    /// Anti-rollback: the bundle is not strictly newer than the installed version.
    #[error("the bundle's version {bundle} is not newer than the installed version {installed}")]
    NotNewer {
        /// The bundle's version.
        bundle: keywarden_bundle::Version,
        /// The installed version.
        installed: keywarden_bundle::Version,
    },
    /// A payload is for a class of slots this installer does not know.
    #[error(
        "payload {payload:?} is for slot class {slot_class:?}, which this device does not have"
    )]
    UnknownSlotClass {
        /// The payload's name.
        payload: String,
        /// Its slot class.
        slot_class: String,
    },
    /// The bundle has no payload (or more than one) for the slot class being installed.
    #[error("the bundle has {count} payloads for slot class {slot_class:?} (exactly 1 is needed)")]
    SlotClassCount {
        /// The slot class.
        slot_class: String,
        /// How many payloads the bundle has for it.
        count: usize,
    },
    /// A payload is larger than the slot it would be written to.
    #[error("payload {payload:?} is {size} bytes, slot {slot} ({device}) holds only {slot_size}", device = device.display())]
    PayloadTooLarge {
        /// The payload's name.
        payload: String,
        /// Its size.
        size: u64,
        /// The slot's name.
        slot: String,
        /// The slot's device.
        device: PathBuf,
        /// The slot's size.
        slot_size: u64,
    },
    /// The source's length is not the bundle's length (`112 + M + payloads`).
    #[error("bundle {source_name} is {actual} bytes long, its manifest describes {expected}")]
    BundleLength {
        /// The source (file or URL).
        source_name: String,
        /// The length the manifest gives.
        expected: u64,
        /// The source's length.
        actual: u64,
    },
    /// Not enough free space in the state directory for the journal and the slot manifest.
    #[error("{} has {available} bytes free, the install needs {needed}", path.display())]
    NoSpace {
        /// The state directory.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The request is inconsistent (a bad slot name, the target is the active slot...).
    #[error("invalid install request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// Reading the bundle from its source failed (after the retries).
    #[error("reading bundle {source_name} at offset {offset}: {error}")]
    Download {
        /// The source (file or URL).
        source_name: String,
        /// The bundle offset the read was at.
        offset: u64,
        /// The error.
        error: String,
    },
    /// A chunk read back from the target slot after it was written and synced is not what was
    /// written (a failing device): the slot must not be activated.
    #[error("slot {slot} ({device}): payload {payload:?} chunk {index} reads back wrong after sync", device = device.display())]
    ReadBackMismatch {
        /// The slot's name.
        slot: String,
        /// The slot's device.
        device: PathBuf,
        /// The payload's name.
        payload: String,
        /// The chunk index.
        index: u64,
    },
    /// A saved slot manifest or install journal in the state directory is unreadable.
    #[error("state file {}: {reason}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The install was cancelled (the chunks written so far are kept for a resume).
    #[error("install cancelled after {written} of {total} payload bytes")]
    Cancelled {
        /// Payload bytes on the slot when it stopped.
        written: u64,
        /// The payload's size.
        total: u64,
    },
    // --- remote ---

    // --- core / daemon ---
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
