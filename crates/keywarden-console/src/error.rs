//! The console's one error enum. Bus trouble is not an error here: the console shows "service
//! unavailable" and reconnects; only the terminal and the runtime can fail it.

/// Why the console stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The terminal could not be set up, drawn on or read.
    #[error("terminal: {what}: {source}")]
    Terminal {
        /// What was being done.
        what: &'static str,
        /// The IO error.
        source: std::io::Error,
    },
    /// The async runtime or a signal handler could not be set up.
    #[error("runtime: {what}: {source}")]
    Runtime {
        /// What was being done.
        what: &'static str,
        /// The IO error.
        source: std::io::Error,
    },
    /// The log file could not be opened.
    #[error("log file {path}: {source}")]
    LogFile {
        /// The path given.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code: 1 terminal or runtime failure, 2 bad arguments.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::LogFile { .. } => 2,
            Error::Terminal { .. } | Error::Runtime { .. } => 1,
        }
    }
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;
