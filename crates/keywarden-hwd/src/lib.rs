//! `keywarden-hwd`: the privileged hardware service of a Keywarden key cabinet.
//!
//! It alone touches GPIO (locks, sensors, LEDs, buzzer), the input devices (badge/barcode scanners,
//! keypads) and the fingerprint module. It decides nothing: it reports inputs and sensor changes as
//! D-Bus signals and actuates on request, with every unlock a deadline-bounded pulse it owns.
//!
//! Layout: [`board`] reads the board file; [`core`] is the sans-IO lock/door state machine;
//! [`input`] decodes keyboard-wedge scanners and keypads; [`fingerprint`] speaks the module's UART
//! protocol; [`backend`] reaches the hardware (`cdev`) or simulates it (`sim`); [`service`] is the
//! D-Bus surface; [`daemon`] is the driver loop that ties them together.

pub mod backend;
pub mod board;
pub mod core;
pub mod daemon;
pub mod error;
pub mod fingerprint;
pub mod input;
pub mod logging;
pub mod service;

pub use error::{Error, Result};
