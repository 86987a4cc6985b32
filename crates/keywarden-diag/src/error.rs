//! The crate's one error type.

/// What went wrong while building or verifying a diagnostic bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file name outside `[a-z0-9._-]+` or a reserved one.
    #[error("invalid file name in the bundle: {name:?} ({why})")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The same name was added twice.
    #[error("file {name:?} is already in the bundle")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Writing the archive failed.
    #[error("cannot write the bundle: {0}")]
    Write(#[source] std::io::Error),
    /// Serialising a JSON file failed.
    #[error("cannot encode {name}: {source}")]
    Json {
        /// The file.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The input is not a zstd-compressed tar archive, or it is cut or corrupt.
    #[error("not a readable diagnostic bundle (zstd tar): {0}")]
    Archive(#[source] std::io::Error),
    /// An archive entry that is not a regular file with a flat name.
    #[error("unexpected entry in the bundle: {0}")]
    UnexpectedEntry(String),
    /// The archive does not start with `manifest.json` and `manifest.sig`.
    #[error("the bundle has no {0} where it belongs")]
    Missing(&'static str),
    /// `manifest.json` does not parse or has an unknown format.
    #[error("manifest.json is malformed: {0}")]
    BadManifest(String),
    /// `manifest.sig` is not 128 hex digits or does not verify.
    #[error("the manifest's signature does not verify with the device key {key}")]
    BadSignature {
        /// The key it was checked with (hex).
        key: String,
    },
    /// The manifest names another device key than the one expected.
    #[error("the bundle was signed by device key {found}, not the expected {expected}")]
    WrongSigner {
        /// The expected key (hex).
        expected: String,
        /// The key in the manifest (hex).
        found: String,
    },
    /// A listed file's contents differ from the manifest.
    #[error("{name}: {what} differs from the manifest (tampered or corrupt)")]
    FileMismatch {
        /// The file.
        name: String,
        /// "size" or "SHA-256".
        what: &'static str,
    },
    /// A file is in the manifest but not in the archive.
    #[error("{name} is listed in the manifest but missing from the bundle")]
    MissingFile {
        /// The file.
        name: String,
    },
    /// A file is in the archive but not in the manifest, or twice, or out of order.
    #[error("{name} is in the bundle but not where the manifest lists it (added, repeated or reordered)")]
    UnlistedFile {
        /// The file.
        name: String,
    },
    /// The unpacked contents exceed [`crate::MAX_UNPACKED`].
    #[error("the bundle unpacks to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
