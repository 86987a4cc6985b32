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
    /// The CA bundle that HTTPS servers are checked against could not be used.
    #[error("HTTPS CA bundle {path}: {problem}")]
    HttpsCa {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An HTTPS server answered with an error status (or an unexpected one).
    #[error("HTTP {status} from {url}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The TLS handshake or the TLS stream failed (unknown CA, wrong name, expired certificate...).
    #[error("TLS failure with {url}: {problem}")]
    HttpTls {
        /// The URL requested.
        url: String,
        /// What rustls reported.
        problem: String,
    },
    /// A connect or read timeout passed.
    #[error("timeout ({phase}) fetching {url}")]
    HttpTimeout {
        /// The URL requested.
        url: String,
        /// Which timeout ("connect", "read", ...).
        phase: String,
    },
    /// The connection could not be made or broke (DNS, refused, reset, cut mid-stream).
    #[error("fetching {url}: {problem}")]
    HttpTransfer {
        /// The URL requested.
        url: String,
        /// What failed.
        problem: String,
    },
    /// The server answered a `Range` request with the whole file (200) or a wrong range: resuming
    /// from an offset is impossible with it.
    #[error("{url} ignored the range request from byte {offset}: {problem}")]
    HttpRangeIgnored {
        /// The URL requested.
        url: String,
        /// The offset asked for.
        offset: u64,
        /// What the server answered instead.
        problem: String,
    },
    /// The server announced a length other than the one the signed metadata gives.
    #[error("{url}: the server announces {announced} bytes where {expected} are expected")]
    HttpLength {
        /// The URL requested.
        url: String,
        /// What the signed metadata says is left to read.
        expected: u64,
        /// What the server announced.
        announced: String,
    },
    /// A TUF metadata file is older than one already seen (rollback attack).
    #[error("TUF rollback refused: {role} metadata {detail}")]
    TufRollback {
        /// The role (timestamp, snapshot, targets, root).
        role: String,
        /// The versions involved.
        detail: String,
    },
    /// A TUF metadata file has expired (freeze attack, or a repository whose timestamp is not
    /// re-signed).
    #[error("TUF {role} metadata has expired (freeze attack or stale repository)")]
    TufExpired {
        /// The role.
        role: String,
    },
    /// A TUF metadata file does not match the version or hash its parent lists for it
    /// (mix-and-match attack).
    #[error("TUF {role} metadata does not match what the signed metadata lists for it: {detail}")]
    TufMismatch {
        /// The role or file.
        role: String,
        /// What differs.
        detail: String,
    },
    /// A TUF metadata file is not signed by a threshold of its role's trusted keys (including a
    /// new root not signed by the old root's keys).
    #[error("TUF {role} metadata signature check failed: {detail}")]
    TufSignature {
        /// The role.
        role: String,
        /// What failed.
        detail: String,
    },
    /// A download exceeded its size limit (endless-data attack); it was stopped there.
    #[error("{url} is larger than its limit of {max} bytes ({by}): download stopped")]
    TufTooLarge {
        /// The URL.
        url: String,
        /// The limit.
        max: u64,
        /// Where the limit comes from (our limits, or the signed metadata).
        by: String,
    },
    /// The trusted root metadata (root.json of the device) is missing or unusable.
    #[error("TUF trusted root {path}: {problem}")]
    TufRoot {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Any other failure of the TUF client or of publishing (named by `context`).
    #[error("TUF {context}: {problem}")]
    Tuf {
        /// What was being done.
        context: String,
        /// What failed.
        problem: String,
    },
    /// A target's custom metadata is missing or malformed (not an update offer).
    #[error("TUF target {target}: {problem}")]
    BadOffer {
        /// The target name.
        target: String,
        /// What is wrong.
        problem: String,
    },
    /// The downloaded header and manifest are not the ones the TUF targets metadata names
    /// (a bundle swapped for another validly signed one).
    #[error(
        "bundle {target}: header and manifest {what} mismatch: expected {expected}, got {got}"
    )]
    OfferMismatch {
        /// The target name.
        target: String,
        /// Which check ("SHA-256", "version", "compatible").
        what: String,
        /// What the TUF metadata says.
        expected: String,
        /// What was downloaded.
        got: String,
    },
    /// The whole downloaded bundle is not the TUF target (length or SHA-256).
    #[error("bundle {target}: {what} mismatch with the TUF targets metadata: expected {expected}, got {got}")]
    TargetMismatch {
        /// The target name.
        target: String,
        /// "length" or "SHA-256".
        what: String,
        /// What the TUF metadata says.
        expected: String,
        /// What was downloaded.
        got: String,
    },
    /// Publishing a bundle or rotating a key failed.
    #[error("publishing to {repo}: {problem}")]
    Publish {
        /// The repository directory.
        repo: PathBuf,
        /// What failed.
        problem: String,
    },

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
                B::TrailingData => "trailing-data",
                B::PayloadMismatch { .. } | B::SizeMismatch { .. } | B::PayloadChanged { .. } => {
                    "payload-mismatch"
                }
                B::Io { .. } => "io",
                _ => "bundle",
            },
            Error::Io { .. } => "io",
            Error::BootCmdline { .. } | Error::BadSlot { .. } => "boot-slot-unknown",
            Error::BootEnvValue { .. }
            | Error::GrubEnvFormat { .. }
            | Error::BootEnvTooLarge { .. }
            | Error::BootEnvUnrepresentable { .. }
            | Error::UBootConfig { .. }
            | Error::UBootEnvInvalid { .. } => "bootloader",
            Error::TestKeyRefused { .. } => "test-key-refused",
            Error::WrongBoard { .. } => "wrong-board",
            Error::NotNewer { .. } => "not-newer",
            Error::UnknownSlotClass { .. } | Error::SlotClassCount { .. } => "unknown-slot-class",
            Error::PayloadTooLarge { .. } => "payload-too-large",
            Error::BundleLength { .. } => "bundle-length",
            Error::NoSpace { .. } => "no-space",
            Error::InvalidRequest { .. } => "invalid-request",
            Error::Download { .. } => "download",
            Error::ReadBackMismatch { .. } => "read-back-mismatch",
            Error::StateFile { .. } => "state-file",
            Error::Cancelled { .. } => "cancelled",
            Error::HttpsCa { .. } => "https-ca",
            Error::HttpStatus { .. } => "http-status",
            Error::HttpTls { .. } => "tls",
            Error::HttpTimeout { .. } => "timeout",
            Error::HttpTransfer { .. } => "download",
            Error::HttpRangeIgnored { .. } | Error::HttpLength { .. } => "http-range",
            Error::TufRollback { .. } => "metadata-rollback",
            Error::TufExpired { .. } => "metadata-expired",
            Error::TufMismatch { .. } => "metadata-mismatch",
            Error::TufSignature { .. } => "metadata-signature",
            Error::TufTooLarge { .. } => "metadata-too-large",
            Error::TufRoot { .. } => "metadata-root",
            Error::Tuf { .. } => "metadata",
            Error::BadOffer { .. } | Error::OfferMismatch { .. } => "offer-mismatch",
            Error::TargetMismatch { .. } => "target-mismatch",
            Error::Publish { .. } => "publish",
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
