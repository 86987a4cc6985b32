//! The CLI's one error enum.

/// Everything a `keywarden` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus could not be reached.
    #[error("cannot connect to the bus: {0}")]
    Connect(zbus::Error),
    /// A service answered with an error (its D-Bus error name and message are shown).
    #[error("{what}: {source}")]
    Call {
        /// What was asked.
        what: String,
        /// The service's answer.
        source: zbus::Error,
    },
    /// The watched signal stream ended (the service went away).
    #[error("the hardware service went away")]
    Gone,
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Connect(_) | Error::Gone => 3,
            Error::Call {
                source: zbus::Error::MethodError(name, _, _),
                ..
            } if name.starts_with("org.freedesktop.DBus.Error.ServiceUnknown") => 3,
            Error::Call { .. } => 1,
        }
    }
}
