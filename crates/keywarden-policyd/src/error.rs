//! The crate's one error enum: a variant per failed operation, with its context.
//!
//! The variants come in groups, and callers (the D-Bus adapter, the driver loop) decide by group:
//! - **caller misuse** ([`Error::is_caller_misuse`]): the request names something that does not
//!   exist, duplicates something, or breaks a rule (`NotFound`, `AlreadyExists`, `Invalid`,
//!   `WeakPin`, `Conflict`). Nothing was written; the caller can fix the request.
//! - **storage faults**: the database file, the disk, a key file or the OS failed (`Open`,
//!   `Corrupt`, `NotOurDatabase`, `SchemaTooNew`, `Migration`, `JournalMode`, `Sqlite`,
//!   `StorageFull`, `DatabaseBusy`, `BadRecord`, `Io`, `BadgeKeySize`, `BadgeKeyMode`, `Key`, `Random`,
//!   `PinHash`, `Export`, `Report`, `Diag`). A failed write left nothing behind (every write is one transaction).
//! - **audit verification** (`AuditVerify`): the stored chain does not verify.
//! - **configuration, bus and driver** (`Config`, `Bus`, `Notify`, `OutOfService`).
//! - **offsite copy** (`OffsiteCredentials`, `OffsiteDelivery`): logged by the shipper, which
//!   retries; never a reason to refuse a request.
//!
//! Messages never contain a PIN, a badge code or a badge hash. The mapping to D-Bus error names
//! lives with the bus adapter, not here.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail in the policy service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- caller misuse: nothing was written -------------------------------------------------
    /// A named thing does not exist.
    #[error("no {what} {name:?}")]
    NotFound {
        /// Kind of thing: `user`, `group`, `key`, `schedule`, `reason`, `alarm`, ...
        what: &'static str,
        /// The name (or id) given.
        name: String,
    },
    /// The thing to create exists already. For credentials (`what` = `badge`) the name is empty:
    /// the message never says whose it is.
    #[error("{}", already_exists_message(what, name))]
    AlreadyExists {
        /// Kind of thing.
        what: &'static str,
        /// Its name (empty for a badge).
        name: String,
    },
    /// A value breaks a rule (bad name, bad window, bad date, empty change).
    #[error("{what}: {problem}")]
    Invalid {
        /// What is wrong, with the value where it is not secret: `login name "Bob"`.
        what: String,
        /// The rule it breaks.
        problem: String,
    },
    /// A PIN an admin tried to set is too weak. The PIN itself is never in the error.
    #[error("PIN refused: {reason}")]
    WeakPin {
        /// The rule it breaks.
        reason: String,
    },
    /// The request is valid on its own but clashes with the current state (a key that is out, a
    /// schedule still in use, overlapping reservations).
    #[error("{what}: {problem}")]
    Conflict {
        /// What the request was about.
        what: String,
        /// What it clashes with.
        problem: String,
    },

    // ---- the database file ------------------------------------------------------------------
    /// The database file could not be opened at all.
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database, or `PRAGMA quick_check` (or a later read) found
    /// damage. The service refuses to run on it; restore a backup.
    #[error("database {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// A valid SQLite file, but not a Keywarden database (another application id, or tables
    /// without a Keywarden schema version). Never migrated or written.
    #[error("{} is not a Keywarden database: {detail}", path.display())]
    NotOurDatabase {
        /// The database file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The database was written by a newer Keywarden (schema version above what this build
    /// knows). Never downgrade-migrated: install the newer firmware again, or restore a backup.
    #[error("database {} has schema version {found}, this build supports up to {supported}", path.display())]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A schema migration failed (rolled back; the database stays at the previous version).
    #[error("database {}: migration to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The version it was migrating to.
        version: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// SQLite would not switch the database to WAL mode (unsupported file system?).
    #[error("database {}: journal mode is {got:?}, WAL is required", path.display())]
    JournalMode {
        /// The database file.
        path: PathBuf,
        /// The mode SQLite reported.
        got: String,
    },
    /// The data partition is full (or the database reached its size limit). The failed
    /// transaction was rolled back; everything committed before is intact.
    #[error("database {}: storage full during {operation}", path.display())]
    StorageFull {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
    },
    /// Another connection held the database lock past the busy timeout.
    #[error("database {}: busy during {operation}", path.display())]
    DatabaseBusy {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
    },
    /// Any other SQLite failure.
    #[error("database: {operation} failed: {source}")]
    Sqlite {
        /// What was being done.
        operation: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row holds a value this build cannot read (edited by hand?).
    #[error("database: {table} row {row}: {problem}")]
    BadRecord {
        /// The table.
        table: &'static str,
        /// The row's key.
        row: String,
        /// What is wrong with it.
        problem: String,
    },

    // ---- key files and the OS ---------------------------------------------------------------
    /// A file (badge key) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The badge key file does not hold exactly 32 bytes.
    #[error("badge key {}: {len} bytes, expected 32", path.display())]
    BadgeKeySize {
        /// The key file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The badge key file is accessible to its group or to others (it must be 0600: with it, a
    /// copy of the database lets anyone test guessed badge codes).
    #[error("badge key {} has mode {mode:04o}; it must not be accessible to group or others (use 0600)", path.display())]
    BadgeKeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The device (audit signing) key could not be loaded or created.
    #[error("device key: {0}")]
    Key(#[from] keywarden_audit::KeyError),
    /// The OS gave no randomness (for a salt or a key).
    #[error("no randomness from the OS: {detail}")]
    Random {
        /// The OS error.
        detail: String,
    },
    /// Argon2 failed to hash a PIN (bad parameters: a bug).
    #[error("PIN hashing failed: {detail}")]
    PinHash {
        /// Argon2's error.
        detail: String,
    },
    /// Writing an audit export failed.
    #[error("writing the audit export: {0}")]
    Export(#[source] std::io::Error),
    /// Writing a report failed (the reader went away, the disk is full).
    #[error("writing the report: {0}")]
    Report(#[source] std::io::Error),
    /// Building or writing a diagnostic bundle failed.
    #[error("diagnostic bundle: {0}")]
    Diag(#[from] keywarden_diag::Error),

    // ---- audit verification -----------------------------------------------------------------
    /// The stored audit chain does not verify.
    #[error("audit chain: {0}")]
    AuditVerify(#[from] keywarden_audit::VerifyError),

    // ---- configuration, bus and driver ------------------------------------------------------
    /// The site policy file is unreadable or invalid.
    #[error("policy file {}: {message}", path.display())]
    Config {
        /// The policy file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Provisioning's offsite settings (`<identity>/offsite.toml`) are unreadable or invalid.
    #[error("offsite settings {}: {message}", path.display())]
    OffsiteConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A D-Bus operation failed.
    #[error("bus: {operation}: {source}")]
    Bus {
        /// What was being done.
        operation: &'static str,
        /// zbus's error.
        source: Box<zbus::Error>,
    },
    /// The notifier cannot work on this database (schema too old for it, bad state row).
    #[error("notifier: {operation}: {detail}")]
    Notify {
        /// What was being done.
        operation: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The offsite copy's TLS files (CA, client certificate, client key) are missing or unusable.
    #[error("offsite: {}: {problem}", path.display())]
    OffsiteCredentials {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A delivery to the offsite collector failed (nothing of it counts as acknowledged).
    #[error("offsite collector {address}: {problem}")]
    OffsiteDelivery {
        /// The collector's `host:port`.
        address: String,
        /// What failed, at which step.
        problem: String,
    },
    /// The service is out of service (no usable database): nothing is stored, nothing opens.
    #[error("out of service")]
    OutOfService,
}

impl Error {
    /// Whether the caller asked for something wrong (and can fix the request), as opposed to a
    /// fault of the storage, the OS or the audit chain.
    pub fn is_caller_misuse(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. }
                | Error::AlreadyExists { .. }
                | Error::Invalid { .. }
                | Error::WeakPin { .. }
                | Error::Conflict { .. }
        )
    }

    /// Classify an SQLite error: a full disk, a busy lock and a damaged file get their own
    /// variants; anything else is [`Error::Sqlite`] with `operation`.
    pub(crate) fn sqlite(path: &Path, operation: &'static str, source: rusqlite::Error) -> Error {
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Error::StorageFull {
                path: path.to_owned(),
                operation,
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::DatabaseBusy {
                path: path.to_owned(),
                operation,
            },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt {
                path: path.to_owned(),
                detail: format!("{operation}: {source}"),
            },
            _ => Error::Sqlite { operation, source },
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub(crate) fn not_found(what: &'static str, name: impl Into<String>) -> Error {
        Error::NotFound {
            what,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub(crate) fn exists(what: &'static str, name: impl Into<String>) -> Error {
        Error::AlreadyExists {
            what,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }

    /// Shorthand for [`Error::Conflict`].
    pub(crate) fn conflict(what: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Conflict {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

/// `AlreadyExists`'s message: credentials never name their owner.
fn already_exists_message(what: &str, name: &str) -> String {
    match what {
        "badge" => "badge already belongs to a user".to_owned(),
        "fingerprint" => format!("fingerprint template {name} already belongs to a user"),
        _ => format!("{what} {name:?} already exists"),
    }
}
