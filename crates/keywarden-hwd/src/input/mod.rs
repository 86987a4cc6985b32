//! Input devices: keyboard-wedge badge/barcode scanners and keypads.
//!
//! The decoders ([`WedgeDecoder`], [`KeypadDecoder`]) are sans-IO: the driver loop feeds them key
//! events with the time they were read and polls [`WedgeDecoder::poll_timeout`] for the next
//! deadline. [`evdev_device`] is the only IO here: it opens a device, grabs it exclusively and
//! forwards its key events as [`RawKey`]s over a channel.

pub mod evdev_device;
pub mod keymap;
pub mod keypad;
pub mod wedge;

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

pub use evdev::KeyCode;
pub use evdev_device::{open_device, spawn_reader};
pub use keypad::KeypadDecoder;
pub use wedge::{RejectKind, ScanOutcome, ScanRejection, Terminator, WedgeConfig, WedgeDecoder};

/// How the board description names an input device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceSelector {
    /// A device node, preferably a stable one such as `/dev/input/by-id/usb-...-event-kbd`.
    Path(PathBuf),
    /// The device's name as the kernel reports it (`EVIOCGNAME`), matched exactly against every
    /// `/dev/input/event*` node. Works without udev (uinput devices in the VM).
    Name(String),
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "path {}", path.display()),
            Self::Name(name) => write!(f, "name {name:?}"),
        }
    }
}

/// What an input device reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInput {
    /// A key event.
    Key {
        /// The Linux key code.
        code: KeyCode,
        /// 0 release, 1 press, 2 autorepeat.
        value: i32,
    },
    /// The kernel's buffer for this reader overflowed (`SYN_DROPPED`): key events were lost here,
    /// so whatever scan is in progress cannot be trusted.
    Dropped,
}

/// One event read from an input device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawKey {
    /// The board's role for the device (the reader or keypad name used in signals).
    pub role: String,
    /// What happened.
    pub input: KeyInput,
    /// When the event was read (not the kernel timestamp, which is on another clock).
    pub at: Instant,
}

/// A failed input device operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// No device matched the selector.
    #[error("input device {selector}: not found{}", unreadable_hint(.unreadable))]
    NotFound {
        /// What was looked for.
        selector: DeviceSelector,
        /// Event nodes that could not be opened for lack of permission while searching by name.
        unreadable: Vec<PathBuf>,
    },
    /// Several devices carry the selector's name.
    #[error("input device {selector}: several devices have that name: {}", list(.paths))]
    Ambiguous {
        /// What was looked for.
        selector: DeviceSelector,
        /// The matching nodes.
        paths: Vec<PathBuf>,
    },
    /// The device node exists but may not be opened by this user.
    #[error("input device {selector}: permission denied opening {}", .path.display())]
    PermissionDenied {
        /// What was looked for.
        selector: DeviceSelector,
        /// The node that could not be opened.
        path: PathBuf,
    },
    /// Opening the device node failed for another reason.
    #[error("input device {selector}: cannot open {}", .path.display())]
    Open {
        /// What was looked for.
        selector: DeviceSelector,
        /// The node that could not be opened.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Listing the device directory failed.
    #[error("input device {selector}: cannot list {}", .dir.display())]
    ListDevices {
        /// What was looked for.
        selector: DeviceSelector,
        /// The directory searched.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `EVIOCGRAB` failed; `EBUSY` means another process holds the device.
    #[error("input device {role} ({device}): cannot grab it exclusively")]
    Grab {
        /// The board's role for the device.
        role: String,
        /// The device's name.
        device: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Turning the device into an async event stream failed.
    #[error("input device {role} ({device}): cannot start reading events")]
    Stream {
        /// The board's role for the device.
        role: String,
        /// The device's name.
        device: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A reader was spawned outside a tokio runtime (caller bug).
    #[error("input device {role}: reader spawned outside a tokio runtime")]
    NoRuntime {
        /// The board's role for the device.
        role: String,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    paths.join(", ")
}

fn unreadable_hint(unreadable: &[PathBuf]) -> String {
    if unreadable.is_empty() {
        String::new()
    } else {
        format!(" (permission denied reading {})", list(unreadable))
    }
}
