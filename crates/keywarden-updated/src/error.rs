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

    // --- remote ---

    // --- core / daemon ---
    /// A configuration file is malformed.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
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
