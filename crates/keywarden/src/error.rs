//! The CLI's one error enum, and the exit codes it maps to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failed: an update install that failed (the updater's code and message), the service failed (storage, hardware, broken audit chain, not ready, ...), a local file or terminal error, a failed offline audit verification or self-test (`factory selftest`: a check failed, the door was open, ...), a cabinet silent on the collector, an update bundle that does not verify; `repo ...`: the publishing function failed (signing, writing, a version already published with other content); `factory`: a key or certificate that could not be made, a failed `systemctl` |
//! | 2 | refused: a usage error (clap), an invalid argument, or the service refused (access denied, not found, already exists, weak PIN, conflict, wrong session state); `bundle create` with an invalid version, board or payload name; `bundle keygen` over an existing file; `factory provision` on a provisioned device (without `--replace-identity`) or with a bad input, `factory reset` without `--yes` or while policyd runs (nothing changed); `repo ...` with a missing or malformed key file, an expiry in the past, a threshold above the keys given, no repository (or `repo init` on an existing one), or `repo add` with a bundle that does not verify with the given bundle keys (nothing written) |
//! | 3 | unreachable: no bus, the service is not running, or it went away |

use std::fmt;

/// The exit codes, as documented in the module doc.
pub mod exit {
    /// The service or the machine failed.
    pub const FAILED: u8 = 1;
    /// Usage error, invalid argument, or the service refused.
    pub const REFUSED: u8 = 2;
    /// The bus or the service cannot be reached.
    pub const UNREACHABLE: u8 = 3;
}

/// Everything a `keywarden` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus could not be reached.
    #[error("cannot connect to the bus: {0}")]
    Connect(zbus::Error),
    /// A service answered with an error; for Keywarden's own errors only the message is shown,
    /// which names the thing (`user "bob" already exists`).
    #[error("{what}: {}", Described(source))]
    Call {
        /// What was asked (`user add bob`).
        what: String,
        /// The service's answer (boxed: `zbus::Error` is large).
        source: Box<zbus::Error>,
    },
    /// The watched signal stream ended (the service went away).
    #[error("the hardware service went away")]
    Gone,
    /// Refused before asking the service (the two PINs differ, nothing on standard input, ...).
    #[error("{what}: {message}")]
    Invalid {
        /// The command.
        what: String,
        /// Why.
        message: String,
    },
    /// A local file or terminal operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The command and what it was doing (`audit export x.jsonl: create`).
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An audit export did not verify.
    #[error("{what}: {source}")]
    Verify {
        /// The command and file.
        what: String,
        /// What is wrong with the export.
        source: keywarden_audit::VerifyError,
    },
    /// An update bundle command failed: a bundle that does not verify, a bad key file, an
    /// invalid request to `bundle create`.
    #[error("{what}: {source}")]
    Bundle {
        /// The command and file.
        what: String,
        /// What went wrong.
        source: keywarden_bundle::Error,
    },
    /// `repo ...`: the update repository could not be created, published to or re-signed
    /// (`keywarden_updated::remote::publish`).
    #[error("{what}: {source}")]
    Repo {
        /// The command and repository.
        what: String,
        /// What went wrong (boxed: the updater's error is large).
        source: Box<keywarden_updated::Error>,
    },
    /// `diag verify`: the bundle does not verify; `diag bundle`: it could not be written.
    #[error("{what}: {source}")]
    Diag {
        /// The command and file.
        what: String,
        /// What is wrong.
        source: keywarden_diag::Error,
    },
    /// `collector check`: cabinets silent for longer than the limit (or none found).
    #[error("{0}")]
    Silent(String),
    /// `update install`: the updater reported the install failed (its stable code and message).
    #[error("{what}: {message} ({code})")]
    Update {
        /// The command.
        what: String,
        /// The updater's error code (`bad-signature`, `chunk-mismatch`, `not-newer`...).
        code: String,
        /// Why, for people.
        message: String,
    },
    /// `factory provision`: the device is already provisioned; nothing was changed.
    #[error("{}: already provisioned as serial {serial:?} at {provisioned_at}; nothing was changed (--replace-identity makes a new identity)", record.display())]
    AlreadyProvisioned {
        /// The existing record (`device.json`).
        record: std::path::PathBuf,
        /// Its serial.
        serial: String,
        /// Its provisioning time.
        provisioned_at: String,
    },
    /// A key, certificate or CSR could not be made.
    #[error("{what}: {message}")]
    Generate {
        /// The command and what it was making.
        what: String,
        /// Why.
        message: String,
    },
    /// Refused because a service that must be stopped is running (`factory reset`).
    #[error("{what}: {message}")]
    Running {
        /// The command.
        what: String,
        /// Which service, and what to do.
        message: String,
    },
    /// `systemctl` failed or a unit is missing (`factory reset`).
    #[error("{what}: {message}")]
    Systemd {
        /// The command and the systemctl call.
        what: String,
        /// systemctl's message.
        message: String,
    },
    /// JSON output could not be produced.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `factory selftest`: checks failed; the exit code says how (1 failed, 2 refused,
    /// 3 unreachable: see `factory/selftest.rs`).
    #[error("{message}")]
    Checks {
        /// Which, and where the report is.
        message: String,
        /// The exit code.
        code: u8,
    },
}

/// A `zbus::Error` for people: our services' messages alone, anything else with its D-Bus name.
struct Described<'a>(&'a zbus::Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            zbus::Error::MethodError(name, Some(message), _)
                if name.starts_with("org.keywarden.") =>
            {
                f.write_str(message)
            }
            other => write!(f, "{other}"),
        }
    }
}

/// `map_err` helper: a failed call, described by what was asked.
pub fn call(what: impl Into<String>) -> impl FnOnce(zbus::Error) -> Error {
    let what = what.into();
    move |source| Error::Call {
        what,
        source: Box::new(source),
    }
}

/// `map_err` helper: a failed local IO operation.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The exit code for a failed call, from the D-Bus error name. The names are
/// `org.keywarden.<Interface>.Error.<Variant>` (`keywarden_dbus::policy::PolicyError`,
/// `keywarden_dbus::hardware::HardwareError`) and the bus's own `org.freedesktop.DBus.Error.*`.
pub(crate) fn call_exit_code(error: &zbus::Error) -> u8 {
    match error {
        zbus::Error::MethodError(name, _, _) => {
            let (prefix, variant) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
            if prefix == "org.freedesktop.DBus.Error" {
                match variant {
                    "ServiceUnknown" | "NameHasNoOwner" | "NoReply" | "NoServer"
                    | "Disconnected" | "TimedOut" | "Timeout" | "Spawn.ChildExited" => {
                        exit::UNREACHABLE
                    }
                    "AccessDenied" | "InvalidArgs" => exit::REFUSED,
                    _ => exit::FAILED,
                }
            } else if prefix.starts_with("org.keywarden.") && prefix.ends_with(".Error") {
                match variant {
                    "AccessDenied" | "InvalidArgument" | "NotFound" | "AlreadyExists"
                    | "WeakPin" | "Conflict" | "WrongState" | "NoSuchSlot" | "Busy"
                    | "NotConfigured" => exit::REFUSED,
                    _ => exit::FAILED,
                }
            } else {
                exit::FAILED
            }
        }
        zbus::Error::InputOutput(_) => exit::UNREACHABLE,
        _ => exit::FAILED,
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Connect(_) | Error::Gone => exit::UNREACHABLE,
            Error::Call { source, .. } => call_exit_code(source),
            Error::Invalid { .. } | Error::AlreadyProvisioned { .. } | Error::Running { .. } => {
                exit::REFUSED
            }
            Error::Checks { code, .. } => *code,
            Error::Bundle { source, .. } => match source {
                keywarden_bundle::Error::InvalidSpec { .. }
                | keywarden_bundle::Error::InvalidVersion { .. }
                | keywarden_bundle::Error::KeyExists { .. } => exit::REFUSED,
                _ => exit::FAILED,
            },
            Error::Io { .. }
            | Error::Generate { .. }
            | Error::Systemd { .. }
            | Error::Verify { .. }
            | Error::Diag { .. }
            | Error::Repo { .. }
            | Error::Silent(_)
            | Error::Json(_)
            | Error::Update { .. } => exit::FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywarden_dbus::policy::PolicyError;
    use zbus::DBusError;

    fn method_error(name: &str, message: &str) -> zbus::Error {
        let name = zbus::names::OwnedErrorName::try_from(name.to_owned()).unwrap();
        let reply = zbus::Message::method_call("/", "Test")
            .unwrap()
            .build(&())
            .unwrap();
        zbus::Error::MethodError(name, Some(message.to_owned()), reply)
    }

    fn from_policy(e: PolicyError) -> zbus::Error {
        let message = e.description().unwrap_or_default().to_owned();
        method_error(e.name().as_str(), &message)
    }

    #[test]
    fn service_messages_are_shown_alone_after_the_command() {
        let e = call("user add bob")(from_policy(PolicyError::AlreadyExists(
            r#"user "bob" already exists"#.into(),
        )));
        assert_eq!(e.to_string(), r#"user add bob: user "bob" already exists"#);
        assert_eq!(e.exit_code(), 2);

        let e = call("user list")(method_error(
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "The name org.keywarden.Policy1 was not provided by any .service files",
        ));
        assert_eq!(
            e.to_string(),
            "user list: org.freedesktop.DBus.Error.ServiceUnknown: The name org.keywarden.Policy1 was not provided by any .service files"
        );
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn every_policy_error_has_an_exit_code() {
        let s = String::new;
        for (e, code) in [
            (PolicyError::AccessDenied(s()), 2),
            (PolicyError::InvalidArgument(s()), 2),
            (PolicyError::NotFound(s()), 2),
            (PolicyError::AlreadyExists(s()), 2),
            (PolicyError::WeakPin(s()), 2),
            (PolicyError::Conflict(s()), 2),
            (PolicyError::WrongState(s()), 2),
            (PolicyError::NotReady(s()), 1),
            (PolicyError::Storage(s()), 1),
            (PolicyError::AuditBroken(s()), 1),
            (PolicyError::Hardware(s()), 1),
        ] {
            let name = e.name().to_string();
            assert_eq!(call_exit_code(&from_policy(e)), code, "{name}");
        }
    }

    #[test]
    fn bus_errors_map_to_refused_or_unreachable() {
        for (name, code) in [
            ("org.freedesktop.DBus.Error.AccessDenied", 2),
            ("org.freedesktop.DBus.Error.NameHasNoOwner", 3),
            ("org.freedesktop.DBus.Error.NoReply", 3),
            ("org.freedesktop.DBus.Error.UnknownMethod", 1),
            ("org.keywarden.Hardware1.Error.NoSuchSlot", 2),
            ("org.keywarden.Hardware1.Error.DeviceFault", 1),
            ("com.example.Error.Conflict", 1),
        ] {
            assert_eq!(call_exit_code(&method_error(name, "x")), code, "{name}");
        }
    }
}
