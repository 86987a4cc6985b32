//! The crate's one error enum, a variant per failed operation with its context, plus the board
//! file's detail enum. Caller misuse ([`CoreError`], mapped to `InvalidArgument`/`NoSuchSlot`/...) is
//! kept apart from device faults. The mapping to D-Bus error names is the `From` impls for
//! [`HardwareError`] in this one file (plus `SimError`'s, beside the sim interface in `service.rs`).

use std::path::PathBuf;

use keywarden_dbus::hardware::HardwareError;

use crate::fingerprint::FingerprintError;
use crate::input::InputError;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a board file. Every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The board file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field, a missing field or a wrong type (serde names the field).
    #[error("{0} (at {1})")]
    Syntax(String, String),
    /// A field's value is inconsistent with the rest of the board.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, e.g. `slot[2].lock.line`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// A request the core refuses: the caller asked for something the board cannot do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The board has no slot with that number.
    #[error("no slot {0} on this board")]
    NoSuchSlot(u32),
    /// The slot exists but has no lock of its own (door-only cabinet).
    #[error("slot {0} has no lock of its own; unlock the door instead")]
    NoSlotLock(u32),
    /// The slot exists but has no LED.
    #[error("slot {0} has no indicator LED")]
    NoSlotLed(u32),
    /// The board has no buzzer.
    #[error("this board has no buzzer")]
    NoBuzzer,
    /// A burn-in runs: unlocks, releases and another burn-in wait until it ends.
    #[error("a burn-in is running")]
    BurnInRunning,
    /// The burn-in needs the door closed.
    #[error("the door is open: close it before the burn-in")]
    DoorOpen,
    /// The burn-in needs every lock locked (no unlock or release in progress).
    #[error("{0} is active (an unlock or release is in progress): wait until it relocks")]
    LockActive(String),
    /// Burn-in cycles out of range.
    #[error("cycles must be 1..={max}, got {0}", max = crate::core::MAX_BURN_IN_CYCLES)]
    BurnInCycles(u32),
}

/// Everything that can fail in the hardware service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The board file is unreadable or invalid.
    #[error("board file {}: {source}", path.display())]
    Board {
        /// The board file.
        path: PathBuf,
        /// What is wrong.
        source: BoardError,
    },
    /// A GPIO line named in the board file does not exist on any chip.
    #[error("{field}: no GPIO line named {name:?} on any /dev/gpiochip*")]
    LineNotFound {
        /// Board file field.
        field: String,
        /// The line name.
        name: String,
    },
    /// The same line name exists on two chips, so "by name" is ambiguous.
    #[error("{field}: GPIO line name {name:?} exists on both {first} and {second}")]
    LineAmbiguous {
        /// Board file field.
        field: String,
        /// The line name.
        name: String,
        /// One chip.
        first: String,
        /// The other chip.
        second: String,
    },
    /// A GPIO chip or line operation failed.
    #[error("GPIO {what} ({target}): {source}")]
    Gpio {
        /// What we were doing: "request", "set", "read", "list chips".
        what: &'static str,
        /// The line or chip.
        target: String,
        /// The underlying error.
        source: gpio_cdev::Error,
    },
    /// An input device could not be opened or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The fingerprint module failed.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// A request the board cannot satisfy.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Connecting to the bus, exporting the objects or owning the name failed.
    #[error("D-Bus {what}: {source}")]
    Bus {
        /// What we were doing.
        what: &'static str,
        /// zbus's error (boxed: it is large and this path is cold).
        source: Box<zbus::Error>,
    },
    /// A user named with --allow-user does not exist.
    #[error("allowed caller {0:?} is not a user on this system")]
    UnknownUser(String),
    /// Any other operating system call.
    #[error("{what}: {source}")]
    Os {
        /// What we were doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The daemon's internal task ended: a bug, never the caller's fault.
    #[error("internal: {0}")]
    Unreachable(&'static str),
}

impl From<CoreError> for HardwareError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NoSuchSlot(_) => HardwareError::NoSuchSlot(e.to_string()),
            CoreError::NoSlotLock(_) | CoreError::NoSlotLed(_) | CoreError::NoBuzzer => {
                HardwareError::NotSupported(e.to_string())
            }
            CoreError::BurnInRunning | CoreError::LockActive(_) => {
                HardwareError::Busy(e.to_string())
            }
            CoreError::DoorOpen => HardwareError::DoorOpen(e.to_string()),
            CoreError::BurnInCycles(_) => HardwareError::InvalidArgument(e.to_string()),
        }
    }
}

impl From<&FingerprintError> for HardwareError {
    fn from(e: &FingerprintError) -> Self {
        match e {
            FingerprintError::Timeout { .. } | FingerprintError::EnrollTimeout { .. } => {
                HardwareError::Timeout(e.to_string())
            }
            FingerprintError::TemplateOutOfRange { .. } => {
                HardwareError::InvalidArgument(e.to_string())
            }
            _ => HardwareError::DeviceFault(e.to_string()),
        }
    }
}

/// Process exit codes of `keywarden-hwd`, documented in its `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Clean shutdown (SIGTERM).
    Ok = 0,
    /// Configuration refused: bad board file, unknown user.
    Config = 2,
    /// Hardware could not be opened: a line or device missing or busy.
    Hardware = 3,
    /// The bus could not be reached or the name not owned.
    Bus = 4,
    /// Anything else.
    Failure = 1,
}

impl Error {
    /// The exit code for a fatal error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Board { .. } | Error::UnknownUser(_) => ExitCode::Config,
            Error::LineNotFound { .. }
            | Error::LineAmbiguous { .. }
            | Error::Gpio { .. }
            | Error::Input(_)
            | Error::Fingerprint(_) => ExitCode::Hardware,
            Error::Bus { .. } => ExitCode::Bus,
            Error::Core(_) | Error::Os { .. } | Error::Unreachable(_) => ExitCode::Failure,
        }
    }
}
