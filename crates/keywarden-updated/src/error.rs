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
    /// The bus refused an operation.
    #[error("D-Bus: {operation}: {source}")]
    Bus {
        /// What was being done.
        operation: &'static str,
        /// The bus error.
        source: Box<zbus::Error>,
    },
    /// A worker thread died (a bug): the operation's outcome is unknown, so it failed.
    #[error("an updater worker thread failed: {0}")]
    Worker(String),
    /// The repository offers nothing for this board.
    #[error("the update repository offers no bundle for board {0}")]
    NothingOffered(String),
    /// The device has no update repository configured.
    #[error("no update repository is configured: {0}")]
    NotConfigured(String),
}

impl Error {
    /// A stable, kebab-case code for the `Completed` signal, `LastError` and `--json` output:
    /// what went wrong, independent of the message's wording.
    pub fn code(&self) -> &'static str {
        use keywarden_bundle::Error as B;
        match self {
            Error::Bundle(b) => match b {
                B::NoTrustedKeys => "no-trusted-keys",
                B::BadMagic | B::UnsupportedFormat { .. } => "not-a-bundle",
                B::ManifestTooLarge { .. } | B::Malformed { .. } => "malformed-bundle",
                B::TruncatedHeader { .. } | B::Truncated { .. } => "truncated",
                B::UnknownSigner { .. } => "unknown-signer",
                B::BadSignature { .. } => "bad-signature",
                B::ChunkMismatch { .. } => "chunk-mismatch",
                B::TrailingData { .. } => "trailing-data",
                B::PayloadMismatch { .. } | B::SizeMismatch { .. } | B::PayloadChanged { .. } => {
                    "payload-mismatch"
                }
                B::Io { .. } => "io",
                _ => "bundle",
            },
            Error::Io { .. } => "io",
            Error::Config { .. } => "config",
            Error::Bus { .. } => "bus",
            Error::Worker(_) => "internal",
            Error::NotConfigured(_) => "not-configured",
            Error::NothingOffered(_) => "nothing-offered",
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
