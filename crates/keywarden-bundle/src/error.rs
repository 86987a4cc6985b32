//! The crate's one error enum.

use std::path::PathBuf;

/// Everything creating, reading, verifying a bundle or handling its keys can fail with.
///
/// Variants about a bundle name the first place where it is wrong (the payload and the chunk);
/// `ota/FORMAT.md` lists the order in which an installer checks them. The enum is `Clone` and
/// `PartialEq` (I/O errors are kept as their message) so that a [`BundleReader`] can return
/// the same error again and tests can compare errors whole.
///
/// [`BundleReader`]: crate::BundleReader
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keyring is empty: nothing can be trusted, so nothing is installed (a missing key
    /// configuration never means "accept unsigned bundles").
    #[error("no trusted bundle keys are configured: refusing the bundle (bundles are never accepted unsigned)")]
    NoTrustedKeys,
    /// The file does not start with the bundle magic `KWBUNDLE`: not a Keywarden bundle.
    #[error("not a Keywarden update bundle (bad magic)")]
    BadMagic,
    /// The header's format version is not one this reader knows.
    #[error("unsupported bundle format version {version} (this reader knows version {known})")]
    UnsupportedFormat {
        /// The header's format version.
        version: u32,
        /// The one this reader reads.
        known: u32,
    },
    /// The header announces a manifest longer than the limit (or an empty one).
    #[error("manifest length {len} bytes is outside 1..={max}")]
    ManifestTooLarge {
        /// The announced length.
        len: u64,
        /// The limit ([`MAX_MANIFEST_LEN`](crate::MAX_MANIFEST_LEN)).
        max: u64,
    },
    /// The bundle ends inside its header or manifest.
    #[error("the bundle ends inside its header or manifest ({len} bytes read)")]
    TruncatedHeader {
        /// How many bytes there were.
        len: u64,
    },
    /// The bundle was signed by a key that is not in the keyring.
    #[error("the bundle is signed by key {signer}, which is not a trusted key")]
    UnknownSigner {
        /// The signer's public key as the header names it, hex.
        signer: String,
    },
    /// The signature does not verify under the (trusted) key the header names: the manifest or
    /// the signature was altered.
    #[error("bad signature: the manifest is not what key {signer} signed")]
    BadSignature {
        /// The signer's public key, hex.
        signer: String,
    },
    /// The manifest is signed but not valid: not JSON, an unknown or missing field, or values
    /// that break the format's rules (see `ota/FORMAT.md`).
    #[error("malformed manifest: {reason}")]
    Malformed {
        /// The parse error or the rule broken.
        reason: String,
    },
    /// A chunk's bytes do not have the hash the manifest gives for it.
    #[error("payload {payload:?} chunk {index}: hash mismatch (the payload was altered)")]
    ChunkMismatch {
        /// The payload's name.
        payload: String,
        /// The chunk's index within the payload (0-based).
        index: u64,
    },
    /// The bundle ends before the end of a payload.
    #[error("payload {payload:?} is truncated: the bundle ends in or before chunk {index}")]
    Truncated {
        /// The payload's name.
        payload: String,
        /// The chunk that could not be read in full (0-based).
        index: u64,
    },
    /// Bytes follow the last payload.
    #[error("trailing data after the last payload")]
    TrailingData,
    /// A payload's whole-payload sha256 is not the hash of its chunks' bytes (all chunks
    /// matched: the manifest was made inconsistent before it was signed).
    #[error("payload {payload:?}: the whole-payload sha256 does not match its bytes")]
    PayloadMismatch {
        /// The payload's name.
        payload: String,
    },
    /// A payload is not the size it should be: its file changed while the bundle was being
    /// created, or a chunk handed to [`check_chunk`](crate::VerifiedManifest::check_chunk) has
    /// the wrong length.
    #[error("payload {payload:?}: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        /// The payload's name.
        payload: String,
        /// The size expected.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A payload's file changed between hashing it and copying it into the bundle.
    #[error("payload {payload:?} changed while the bundle was being created (chunk {index})")]
    PayloadChanged {
        /// The payload's name.
        payload: String,
        /// The first chunk that differs.
        index: u64,
    },
    /// The request to [`create`](crate::create) is invalid (bad version string, board, payload
    /// name, duplicate payload, no payload).
    #[error("invalid bundle: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// Caller misuse: a payload or chunk the manifest does not have was asked for
    /// ([`check_chunk`](crate::VerifiedManifest::check_chunk),
    /// [`resume`](crate::BundleReader::resume)).
    #[error("the bundle has no chunk {index} in payload {payload}")]
    NoSuchChunk {
        /// The payload index asked for.
        payload: usize,
        /// The chunk index asked for.
        index: u64,
    },
    /// A version string is not `MAJOR.MINOR.PATCH[-PRERELEASE]`.
    #[error("invalid version {version:?}: {reason}")]
    InvalidVersion {
        /// The string.
        version: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file cannot be parsed.
    #[error("key file {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `keygen` refuses to replace an existing file.
    #[error("{} already exists: not replacing a key file", path.display())]
    KeyExists {
        /// The file.
        path: PathBuf,
    },
    /// A key could not be encoded as PEM.
    #[error("cannot encode a key: {reason}")]
    KeyEncode {
        /// The encoder's error.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for a key: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
    /// Reading or writing a file or stream failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done, with the path (`read payload rootfs /x/rootfs.img`).
        what: String,
        /// The OS error's message.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` helper: an I/O error, described by what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        reason: e.to_string(),
    }
}
