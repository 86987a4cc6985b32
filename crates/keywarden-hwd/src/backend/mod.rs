//! How the service reaches the cabinet: `cdev` (kernel GPIO character device, evdev input devices,
//! a real UART) or `sim` (in-process, for unit tests and the host demo, with a control surface).
//!
//! A backend is opened from the board description and hands the daemon: an [`OutputLines`] to
//! drive, the inputs' current levels, channels of [`InputSample`]s and [`RawKey`]s, and the
//! fingerprint module's serial port path. Opening drives every lock output locked before any input
//! is opened. Backends decide nothing: they move levels and key events, the core interprets them.

pub mod cdev;
pub mod sim;

use std::path::PathBuf;
use std::time::Instant;

use keywarden_dbus::hardware::SelfTestResult;
use tokio::sync::mpsc;

use crate::core::{InputId, OutputId};
use crate::error::Result;
use crate::input::RawKey;

/// Capacity of the input channels: far above what a cabinet produces between two loop turns.
pub const CHANNEL_CAPACITY: usize = 1024;

/// A level read from an input line, logical (active-low applied), stamped when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSample {
    /// Which input.
    pub id: InputId,
    /// Logical level.
    pub active: bool,
    /// When it was read.
    pub at: Instant,
}

/// Output lines the daemon drives.
pub trait OutputLines: Send {
    /// Drive `id` to logical level `active`.
    fn set(&mut self, id: OutputId, active: bool) -> Result<()>;
    /// Non-actuating checks of every line: held, and reading back what was last driven.
    fn self_test(&mut self) -> Vec<SelfTestResult>;
}

/// Input lines read on demand (the burn-in's sensor checks); edges arrive as [`InputSample`]s.
pub trait InputLines: Send {
    /// Read `id` now: its logical level (active-low applied).
    fn read(&self, id: InputId) -> Result<bool>;
}

/// Which backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Kernel GPIO character device, evdev, a real UART.
    Cdev,
    /// In-process simulation with a D-Bus control surface.
    Sim,
}

impl BackendKind {
    /// The name reported in the `Backend` property.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cdev => "cdev",
            BackendKind::Sim => "sim",
        }
    }
}

/// An opened backend.
pub struct Hardware {
    /// Which backend this is.
    pub kind: BackendKind,
    /// The output lines, already driven: locks locked, everything else off.
    pub outputs: Box<dyn OutputLines>,
    /// Every input's level when opened.
    pub initial: Vec<(InputId, bool)>,
    /// The input lines, to read on demand.
    pub inputs: Box<dyn InputLines>,
    /// Input level changes.
    pub samples: mpsc::Receiver<InputSample>,
    /// Key events from readers and keypads.
    pub keys: mpsc::Receiver<RawKey>,
    /// Checks made while opening input devices (one per reader/keypad).
    pub input_checks: Vec<SelfTestResult>,
    /// Serial port of the fingerprint module, if the board has one.
    pub fingerprint_port: Option<PathBuf>,
    /// The sim backend's control surface.
    pub sim: Option<sim::SimControl>,
}

/// A passed self-test line.
pub(crate) fn passed(check: String, detail: String) -> SelfTestResult {
    SelfTestResult {
        check,
        passed: true,
        detail,
    }
}

/// A failed self-test line.
pub(crate) fn failed(check: String, detail: String) -> SelfTestResult {
    SelfTestResult {
        check,
        passed: false,
        detail,
    }
}
