//! The one error type of xtask: which step failed, with the command or file involved.

use std::process::ExitStatus;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{cmd}` failed ({status})")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing, naming the path.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something the harness needs is missing or malformed.
    #[error("{0}")]
    Setup(String),
    /// Tests ran and some failed, or the VM run did not finish (crash, panic, timeout).
    #[error("{0}")]
    TestsFailed(String),
}

impl Error {
    /// The process exit code: 1 for failed tests, 2 for a broken harness.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::TestsFailed(_) => 1,
            _ => 2,
        }
    }

    /// An I/O error with context.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// xtask's result type.
pub type Result<T> = std::result::Result<T, Error>;
