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
    /// The kernel command line names no root slot, or a garbled one.
    #[error("kernel command line: {reason}")]
    BootCmdline {
        /// What is wrong (missing `keywarden.slot=`, or its value).
        reason: String,
    },
    /// A slot name that is neither `A` nor `B`.
    #[error("not a root slot: {value:?} (expected A or B)")]
    BadSlot {
        /// The text that was given.
        value: String,
    },
    /// A boot-counting variable in the bootloader environment holds a value the boot script does
    /// not define (see `image/grub/grub.cfg`).
    #[error("boot environment {location}: {name}={value:?} is invalid (expected {expected})")]
    BootEnvValue {
        /// The environment file or device.
        location: String,
        /// The variable (`ORDER`, `A_OK`, ...).
        name: String,
        /// Its value as found (lossy UTF-8).
        value: String,
        /// What the boot script accepts.
        expected: &'static str,
    },
    /// The GRUB environment block is malformed (size, header, a broken line).
    #[error("GRUB environment block {path}: {reason}")]
    GrubEnvFormat {
        /// The grubenv file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The environment would not fit its fixed size (GRUB: 1024 bytes; U-Boot: the configured
    /// size); nothing was written.
    #[error(
        "boot environment {location}: {needed} bytes needed but the block holds only {capacity}"
    )]
    BootEnvTooLarge {
        /// The environment file or device.
        location: String,
        /// Bytes the new contents need.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// A variable name or value the environment format cannot hold.
    #[error("boot environment {location}: cannot store {name:?}: {reason}")]
    BootEnvUnrepresentable {
        /// The environment file or device.
        location: String,
        /// The variable.
        name: String,
        /// Why (a NUL byte, a `=` in the name...).
        reason: &'static str,
    },
    /// `/etc/fw_env.config` (U-Boot environment location) is malformed or unsupported.
    #[error("U-Boot environment config {path} line {line}: {reason}")]
    UBootConfig {
        /// The config file.
        path: PathBuf,
        /// 1-based line number (0 = the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No copy of the U-Boot environment is valid (bad CRC or unparsable), so there is nothing
    /// safe to read or to base a write on.
    #[error("U-Boot environment on {device}: no valid copy ({reasons})")]
    UBootEnvInvalid {
        /// The device (and offsets) read.
        device: String,
        /// Why each copy was rejected.
        reasons: String,
    },
    // --- install ---

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
