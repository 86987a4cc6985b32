//! `org.keywarden.Hardware1` and `org.keywarden.HardwareSim1`: proxies, wire types, errors and the
//! closed sets of strings the interface uses. The XML in `interfaces/` documents every member.

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

use crate::string_enum::string_enum;
pub use crate::string_enum::UnknownValue;

/// Longest unlock or release pulse a caller may ask for, in seconds.
pub const MAX_PULSE_SECONDS: u32 = 60;
/// Most cycles `BurnIn` accepts.
pub const MAX_BURN_IN_CYCLES: u32 = 100;
/// `BurnIn`'s settle time range, in milliseconds.
pub const BURN_IN_SETTLE_MS: std::ops::RangeInclusive<u32> = 10..=10_000;

/// One slot as reported by the `Slots` property: `(ubbs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct SlotStatus {
    /// Slot number from the board file (1-based).
    pub number: u32,
    /// Presence sensor: a key is in the slot.
    pub occupied: bool,
    /// The slot's lock is currently released.
    pub released: bool,
    /// LED mode: one of [`IndicatorMode::as_str`].
    pub indicator: String,
}

/// One line of a `SelfTest` result: `(sbs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SelfTestResult {
    /// What was checked, e.g. `gpio:door-lock` or `input:badge`.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found, for a person to read.
    pub detail: String,
}

/// Errors of `org.keywarden.Hardware1`, mapped to D-Bus error names in this one place:
/// `org.keywarden.Hardware1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.keywarden.Hardware1.Error")]
pub enum HardwareError {
    /// A bus-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's uid is not allowed to use this service.
    AccessDenied(String),
    /// An argument is out of range or not one of the allowed values.
    InvalidArgument(String),
    /// The board has no slot with that number.
    NoSuchSlot(String),
    /// The board has no such device (e.g. no fingerprint module), or the backend cannot do it.
    NotSupported(String),
    /// The device is busy with another operation.
    Busy(String),
    /// The device failed or answered with an error.
    DeviceFault(String),
    /// The operation did not complete in time (e.g. no finger presented).
    Timeout(String),
    /// The operation needs the door closed (the burn-in).
    DoorOpen(String),
}

string_enum! {
    /// A slot LED mode.
    IndicatorMode { Off = "off", On = "on", Blink = "blink" }
}

string_enum! {
    /// A named buzzer pattern.
    BeepPattern { Ack = "ack", Error = "error", Attention = "attention", Alarm = "alarm" }
}

string_enum! {
    /// Door alarm kinds.
    DoorAlarmKind {
        /// Opened while locked.
        Forced = "forced",
        /// Open longer than the board allows.
        HeldOpen = "held-open",
    }
}

string_enum! {
    /// Keys a keypad reports.
    KeypadKeyName {
        Digit0 = "0", Digit1 = "1", Digit2 = "2", Digit3 = "3", Digit4 = "4",
        Digit5 = "5", Digit6 = "6", Digit7 = "7", Digit8 = "8", Digit9 = "9",
        Star = "*", Hash = "#", Enter = "enter", Clear = "clear", Cancel = "cancel",
    }
}

/// Client proxy for `org.keywarden.Hardware1`.
#[zbus::proxy(
    interface = "org.keywarden.Hardware1",
    default_service = "org.keywarden.Hardware1",
    default_path = "/org/keywarden/Hardware1"
)]
pub trait Hardware1 {
    /// See the interface XML.
    fn unlock_door(&self, seconds: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn lock_door(&self) -> zbus::Result<()>;
    /// See the interface XML.
    fn release_slot(&self, slot: u32, seconds: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn set_slot_indicator(&self, slot: u32, mode: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn beep(&self, pattern: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn enroll_fingerprint(&self, template_id: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn delete_fingerprint(&self, template_id: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn self_test(&self) -> zbus::Result<Vec<SelfTestResult>>;
    /// See the interface XML. Takes up to `cycles` x locks x 2 x `settle_ms`: callers set a
    /// method timeout to match (zbus's default is 25 s).
    fn burn_in(&self, cycles: u32, settle_ms: u32) -> zbus::Result<Vec<SelfTestResult>>;

    /// See the interface XML.
    #[zbus(signal)]
    fn badge_scanned(&self, reader: String, code: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn scan_rejected(&self, reader: String, reason: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn keypad_key(&self, keypad: String, key: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn fingerprint_matched(&self, template_id: u32, score: u32) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn fingerprint_not_matched(&self, reason: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn door_changed(&self, open: bool) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn door_lock_changed(&self, locked: bool) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn door_alarm(&self, kind: String, active: bool) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn slot_changed(&self, slot: u32, occupied: bool, while_locked: bool) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn tamper_changed(&self, active: bool) -> zbus::Result<()>;

    /// See the interface XML.
    #[zbus(property)]
    fn backend(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn board(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn door_lock_state(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn door_state(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn door_alarm_state(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn tamper_active(&self) -> zbus::Result<bool>;
    /// See the interface XML.
    #[zbus(property)]
    fn slots(&self) -> zbus::Result<Vec<SlotStatus>>;
    /// See the interface XML.
    #[zbus(property)]
    fn fingerprint_module(&self) -> zbus::Result<String>;
}

/// Client proxy for the `sim` backend's control surface, `org.keywarden.HardwareSim1`.
#[zbus::proxy(
    interface = "org.keywarden.HardwareSim1",
    default_service = "org.keywarden.Hardware1",
    default_path = "/org/keywarden/HardwareSim1"
)]
pub trait HardwareSim1 {
    /// See the interface XML.
    fn scan_badge(&self, reader: &str, text: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn press_keys(&self, keypad: &str, keys: &[&str]) -> zbus::Result<()>;
    /// See the interface XML.
    fn set_door(&self, open: bool) -> zbus::Result<()>;
    /// See the interface XML.
    fn set_slot(&self, slot: u32, occupied: bool) -> zbus::Result<()>;
    /// See the interface XML.
    fn set_tamper(&self, active: bool) -> zbus::Result<()>;
    /// See the interface XML.
    fn touch_fingerprint(&self, template_id: i32) -> zbus::Result<()>;
    /// See the interface XML.
    fn lift_fingerprint(&self) -> zbus::Result<()>;
    /// See the interface XML.
    fn output(&self, line: &str) -> zbus::Result<bool>;
    /// See the interface XML.
    fn set_feedback_broken(&self, lock: &str, broken: bool) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn string_enums_round_trip_and_refuse_unknown_values() {
        for mode in IndicatorMode::ALL {
            assert_eq!(IndicatorMode::from_str(mode.as_str()), Ok(*mode));
        }
        for key in KeypadKeyName::ALL {
            assert_eq!(KeypadKeyName::from_str(key.as_str()), Ok(*key));
        }
        let err = BeepPattern::from_str("siren").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"BeepPattern "siren" is not one of ["ack", "error", "attention", "alarm"]"#
        );
    }

    #[test]
    fn wire_types_have_the_documented_signatures() {
        assert_eq!(SlotStatus::SIGNATURE.to_string(), "(ubbs)");
        assert_eq!(SelfTestResult::SIGNATURE.to_string(), "(sbs)");
    }
}
