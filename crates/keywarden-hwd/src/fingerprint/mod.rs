//! Fingerprint module driver: the ZhianTec/Synochip "FPM" UART protocol.
//!
//! # Protocol choice
//!
//! The widely sold optical and capacitive modules (R305, R307, R503, AS608, ZFM-20 and clones) all
//! speak the same packet protocol (the one the Adafruit Fingerprint library implements), at 57600
//! baud 8N1 by default. Templates live in the module's own flash library, addressed by page number
//! `0..capacity`; the host never sees fingerprint data, only page ids and match scores. That page id
//! is the "fingerprint credential" the policy service stores.
//!
//! # Frame layout
//!
//! ```text
//! +------+------+---------+-----+--------+-------------------+----------+
//! | 0xEF | 0x01 | address | pid | length | payload           | checksum |
//! |  1   |  1   | 4, BE   |  1  | 2, BE  | length - 2 bytes  | 2, BE    |
//! +------+------+---------+-----+--------+-------------------+----------+
//! ```
//!
//! - `address`: module address, `0xFFFFFFFF` by default.
//! - `pid`: 0x01 command, 0x02 data, 0x07 acknowledgement, 0x08 end of data.
//! - `length`: payload length + 2 (the checksum). Payloads over 256 bytes are rejected.
//! - `checksum`: 16-bit wrapping sum of `pid`, both `length` bytes and every payload byte.
//! - Command payload: instruction code, then big-endian parameters. Ack payload: a confirmation
//!   code ([`Confirmation`]), then instruction-specific data.
//!
//! Instructions used: VfyPwd 0x13, GenImg 0x01, Img2Tz 0x02, Search 0x04, RegModel 0x05,
//! Store 0x06, DeleteChar 0x0C, Empty 0x0D, ReadSysPara 0x0F, TemplateNum 0x1D.
//!
//! # Layers
//!
//! - [`protocol`]: pure codec (sans-IO), both directions.
//! - [`serial`]: a raw 8N1 UART (or pty) opened with nix, with poll-based read timeouts.
//! - [`driver`]: the blocking [`FingerprintModule`] over any [`Port`]; runs on a dedicated thread.
//! - [`emulator`]: an emulated module for the `sim` backend and the VM tests.

pub mod driver;
pub mod emulator;
pub mod protocol;
pub mod serial;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use driver::{EnrollStage, FingerprintModule, Port, SearchOutcome};
pub use emulator::{serve, spawn_on_pty, EmulatorCore};
pub use protocol::{Command, Confirmation, ProtocolError, SystemParameters};
pub use serial::SerialPort;

/// Everything that can go wrong talking to the fingerprint module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The serial port could not be opened.
    #[error("cannot open fingerprint port {port}: {source}")]
    Open {
        /// Device path.
        port: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The serial port could not be configured (e.g. it is not a tty).
    #[error("cannot configure fingerprint port {port}: {source}")]
    Configure {
        /// Device path.
        port: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// Configuration asked for a baud rate the modules or termios do not support.
    #[error(
        "unsupported baud rate {baud} for fingerprint port {port} \
         (use 9600, 19200, 38400, 57600 or 115200)"
    )]
    UnsupportedBaudRate {
        /// Device path.
        port: PathBuf,
        /// Requested rate.
        baud: u32,
    },
    /// Reading or writing the port failed.
    #[error("i/o error on fingerprint port {port} during {command}: {source}")]
    Io {
        /// Device path.
        port: PathBuf,
        /// Instruction being exchanged.
        command: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// The module did not answer within the response timeout.
    #[error("fingerprint module did not answer {command} in time")]
    Timeout {
        /// Instruction that went unanswered.
        command: &'static str,
    },
    /// The module answered with bytes that are not a valid reply.
    #[error("invalid reply from fingerprint module to {command}: {source}")]
    Protocol {
        /// Instruction being answered.
        command: &'static str,
        /// What was wrong with the reply.
        source: ProtocolError,
    },
    /// The module reported a failure.
    #[error("fingerprint module refused {command}: {code}")]
    Module {
        /// Instruction that failed.
        command: &'static str,
        /// Confirmation code returned.
        code: Confirmation,
    },
    /// The module rejected the configured password.
    #[error("fingerprint module rejected the configured password")]
    WrongPassword,
    /// Caller error: a template id outside the module's library.
    #[error("template id {id} is out of range (module capacity {capacity})")]
    TemplateOutOfRange {
        /// Requested id.
        id: u16,
        /// Library size reported by the module.
        capacity: u16,
    },
    /// Enrollment gave up waiting for the user.
    #[error("enrollment timed out waiting for {stage}")]
    EnrollTimeout {
        /// What enrollment was waiting for.
        stage: EnrollStage,
    },
}
