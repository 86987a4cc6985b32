//! The board description file (`/etc/keywarden/board.toml`): which GPIO line (found by name, as
//! device trees name them) and which input device does what, with polarity and debounce.
//!
//! Parsing is two steps: serde reads the TOML into raw structs (`deny_unknown_fields`, so a typo is
//! an error naming the field), then [`Board::from_toml`] checks consistency (a line used twice,
//! slot numbers, ranges) and names the offending field in every error. Whether a line name exists
//! on the hardware is checked by the backend when it opens the lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::{InputId, OutputId};
use crate::error::{BoardError, Error};
use crate::input::{DeviceSelector, Terminator, WedgeConfig};

/// Longest debounce accepted, in milliseconds.
const MAX_DEBOUNCE_MS: u64 = 1_000;
/// Longest scan a reader may be configured for.
const MAX_SCAN_LENGTH: usize = 256;

/// One GPIO line as the board file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSpec {
    /// Where in the board file this line is defined, e.g. `slot[2].lock.line`: used in errors.
    pub field: String,
    /// The line's name (GPIO line name from the device tree / gpio-sim).
    pub name: String,
    /// The line is active when its physical level is low.
    pub active_low: bool,
    /// Inputs only: the level must be stable this long before it counts.
    pub debounce: Duration,
}

/// A slot: presence sensor, and optionally its own lock and LED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// Slot number as printed on the cabinet (1-based, unique).
    pub number: u32,
    /// Presence sensor: active = key present.
    pub presence: LineSpec,
    /// Slot lock: active = released.
    pub lock: Option<LineSpec>,
    /// The slot lock's feedback (position) switch: active = released. Only with a lock.
    pub lock_feedback: Option<LineSpec>,
    /// Slot LED: active = lit.
    pub led: Option<LineSpec>,
}

/// A keyboard-wedge badge or barcode reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSpec {
    /// Name used in signals (e.g. "badge").
    pub name: String,
    /// How to find the input device.
    pub device: DeviceSelector,
    /// Scan framing.
    pub wedge: WedgeConfig,
}

/// A keypad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypadSpec {
    /// Name used in signals (e.g. "keypad").
    pub name: String,
    /// How to find the input device.
    pub device: DeviceSelector,
}

/// The fingerprint module on a UART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintSpec {
    /// Serial port path.
    pub port: PathBuf,
    /// Baud rate.
    pub baud: u32,
    /// Module address (default 0xFFFFFFFF).
    pub address: u32,
    /// Module password (default 0).
    pub password: u32,
    /// The touch line: active = finger on the sensor.
    pub touch: LineSpec,
}

/// A validated board description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// Board model name.
    pub model: String,
    /// Door open longer than this raises the held-open alarm.
    pub held_open: Duration,
    /// Door lock output: active = unlocked.
    pub door_lock: LineSpec,
    /// The door lock's feedback (position) switch, an input: active = unlocked.
    pub door_lock_feedback: Option<LineSpec>,
    /// Door sensor input: active = open.
    pub door_sensor: LineSpec,
    /// Tamper switch input: active = tampered.
    pub tamper: Option<LineSpec>,
    /// Buzzer output.
    pub buzzer: Option<LineSpec>,
    /// Slots, ordered by number.
    pub slots: Vec<SlotSpec>,
    /// Badge/barcode readers.
    pub readers: Vec<ReaderSpec>,
    /// Keypads.
    pub keypads: Vec<KeypadSpec>,
    /// Fingerprint module.
    pub fingerprint: Option<FingerprintSpec>,
}

impl Board {
    /// Read and validate a board file.
    pub fn load(path: &Path) -> Result<Board, Error> {
        let board_error = |source| Error::Board {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|source| {
            board_error(BoardError::Read {
                path: path.to_owned(),
                source,
            })
        })?;
        Board::from_toml(&text).map_err(board_error)
    }

    /// Parse and validate board TOML.
    pub fn from_toml(text: &str) -> Result<Board, BoardError> {
        let raw: RawBoard = toml::from_str(text)
            .map_err(|e| BoardError::Syntax(e.message().to_owned(), location(text, e.span())))?;
        raw.validate()
    }

    /// Every input line with its role.
    pub fn inputs(&self) -> Vec<(InputId, &LineSpec)> {
        let mut v = vec![(InputId::DoorSensor, &self.door_sensor)];
        v.extend(self.tamper.iter().map(|l| (InputId::Tamper, l)));
        v.extend(
            self.slots
                .iter()
                .map(|s| (InputId::SlotPresence(s.number), &s.presence)),
        );
        v.extend(
            self.fingerprint
                .iter()
                .map(|f| (InputId::FingerTouch, &f.touch)),
        );
        v.extend(self.feedback());
        v
    }

    /// Every lock feedback input, with its role (`InputId::LockFeedback(lock)`).
    pub fn feedback(&self) -> Vec<(InputId, &LineSpec)> {
        let mut v: Vec<(InputId, &LineSpec)> = self
            .door_lock_feedback
            .iter()
            .map(|l| (InputId::LockFeedback(OutputId::DoorLock), l))
            .collect();
        v.extend(self.slots.iter().filter_map(|s| {
            s.lock_feedback
                .as_ref()
                .map(|l| (InputId::LockFeedback(OutputId::SlotLock(s.number)), l))
        }));
        v
    }

    /// Every output line with its role. Locks come first: they are driven before anything else.
    pub fn outputs(&self) -> Vec<(OutputId, &LineSpec)> {
        let mut v = vec![(OutputId::DoorLock, &self.door_lock)];
        v.extend(
            self.slots
                .iter()
                .filter_map(|s| s.lock.as_ref().map(|l| (OutputId::SlotLock(s.number), l))),
        );
        v.extend(
            self.slots
                .iter()
                .filter_map(|s| s.led.as_ref().map(|l| (OutputId::SlotLed(s.number), l))),
        );
        v.extend(self.buzzer.iter().map(|l| (OutputId::Buzzer, l)));
        v
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}")
        }
        None => "unknown position".to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    line: String,
    #[serde(default)]
    active_low: bool,
    debounce_ms: Option<u64>,
}

/// A lock output, with its optional feedback input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    line: String,
    #[serde(default)]
    active_low: bool,
    debounce_ms: Option<u64>,
    feedback: Option<RawLine>,
}

impl RawLock {
    fn output(&self) -> RawLine {
        RawLine {
            line: self.line.clone(),
            active_low: self.active_low,
            debounce_ms: self.debounce_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    #[serde(default = "default_held_open")]
    held_open_seconds: u64,
    lock: RawLock,
    sensor: RawLine,
}

fn default_held_open() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTamper {
    sensor: RawLine,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    number: u32,
    presence: RawLine,
    lock: Option<RawLock>,
    led: Option<RawLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReader {
    name: String,
    device: Option<PathBuf>,
    device_name: Option<String>,
    #[serde(default = "default_terminator")]
    terminator: String,
    #[serde(default = "default_inter_key_ms")]
    inter_key_timeout_ms: u64,
    #[serde(default = "default_max_length")]
    max_length: usize,
}

fn default_terminator() -> String {
    "enter".to_owned()
}
fn default_inter_key_ms() -> u64 {
    100
}
fn default_max_length() -> usize {
    64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeypad {
    name: String,
    device: Option<PathBuf>,
    device_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFingerprint {
    port: PathBuf,
    #[serde(default = "default_baud")]
    baud: u32,
    #[serde(default = "default_address")]
    address: u32,
    #[serde(default)]
    password: u32,
    touch: RawLine,
}

fn default_baud() -> u32 {
    57_600
}
fn default_address() -> u32 {
    0xFFFF_FFFF
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuzzer {
    line: String,
    #[serde(default)]
    active_low: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    model: String,
    door: RawDoor,
    tamper: Option<RawTamper>,
    buzzer: Option<RawBuzzer>,
    #[serde(default)]
    slot: Vec<RawSlot>,
    #[serde(default)]
    reader: Vec<RawReader>,
    #[serde(default)]
    keypad: Vec<RawKeypad>,
    fingerprint: Option<RawFingerprint>,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> BoardError {
    BoardError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks that no GPIO line is used twice and no name (reader/keypad) repeats.
#[derive(Default)]
struct Uniq {
    lines: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
}

impl Uniq {
    fn line(&mut self, raw: &RawLine, field: String, output: bool) -> Result<LineSpec, BoardError> {
        let line_field = format!("{field}.line");
        if raw.line.trim().is_empty() {
            return Err(invalid(line_field, "line name is empty"));
        }
        if let Some(first) = self.lines.get(&raw.line) {
            return Err(invalid(
                line_field,
                format!("line {:?} is already used by {first}", raw.line),
            ));
        }
        let debounce_ms = match (output, raw.debounce_ms) {
            (true, Some(_)) => {
                return Err(invalid(
                    format!("{field}.debounce_ms"),
                    "outputs are not debounced",
                ))
            }
            (_, Some(ms)) if ms > MAX_DEBOUNCE_MS => {
                return Err(invalid(
                    format!("{field}.debounce_ms"),
                    format!("{ms} ms is over the {MAX_DEBOUNCE_MS} ms limit"),
                ))
            }
            (_, ms) => ms.unwrap_or(if output { 0 } else { 20 }),
        };
        self.lines.insert(raw.line.clone(), line_field.clone());
        Ok(LineSpec {
            field: line_field,
            name: raw.line.clone(),
            active_low: raw.active_low,
            debounce: Duration::from_millis(debounce_ms),
        })
    }

    fn name(&mut self, name: &str, field: String) -> Result<String, BoardError> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(invalid(
                field,
                format!("{name:?} must be 1-32 chars of A-Z, a-z, 0-9, '-', '_'"),
            ));
        }
        if let Some(first) = self.names.get(name) {
            return Err(invalid(
                field,
                format!("name {name:?} is already used by {first}"),
            ));
        }
        self.names.insert(name.to_owned(), field);
        Ok(name.to_owned())
    }
}

fn selector(
    field: &str,
    path: Option<PathBuf>,
    name: Option<String>,
) -> Result<DeviceSelector, BoardError> {
    match (path, name) {
        (Some(p), None) => Ok(DeviceSelector::Path(p)),
        (None, Some(n)) if !n.is_empty() => Ok(DeviceSelector::Name(n)),
        (None, Some(_)) => Err(invalid(
            format!("{field}.device_name"),
            "device name is empty",
        )),
        (None, None) => Err(invalid(field, "needs `device` (a path) or `device_name`")),
        (Some(_), Some(_)) => Err(invalid(field, "give `device` or `device_name`, not both")),
    }
}

impl RawBoard {
    fn validate(self) -> Result<Board, BoardError> {
        let mut u = Uniq::default();
        if self.model.trim().is_empty() {
            return Err(invalid("model", "model name is empty"));
        }
        if !(1..=3600).contains(&self.door.held_open_seconds) {
            return Err(invalid("door.held_open_seconds", "must be 1..=3600"));
        }
        let door_lock = u.line(&self.door.lock.output(), "door.lock".into(), true)?;
        let door_lock_feedback = self
            .door
            .lock
            .feedback
            .as_ref()
            .map(|f| u.line(f, "door.lock.feedback".into(), false))
            .transpose()?;
        let door_sensor = u.line(&self.door.sensor, "door.sensor".into(), false)?;
        let tamper = self
            .tamper
            .map(|t| u.line(&t.sensor, "tamper.sensor".into(), false))
            .transpose()?;
        let buzzer = self
            .buzzer
            .map(|b| {
                let raw = RawLine {
                    line: b.line,
                    active_low: b.active_low,
                    debounce_ms: None,
                };
                u.line(&raw, "buzzer".into(), true)
            })
            .transpose()?;
        let mut slots = Vec::with_capacity(self.slot.len());
        let mut numbers = BTreeMap::new();
        for (i, s) in self.slot.iter().enumerate() {
            let field = format!("slot[{i}]");
            if s.number == 0 {
                return Err(invalid(
                    format!("{field}.number"),
                    "slot numbers start at 1",
                ));
            }
            if let Some(first) = numbers.insert(s.number, i) {
                return Err(invalid(
                    format!("{field}.number"),
                    format!("slot number {} is already used by slot[{first}]", s.number),
                ));
            }
            slots.push(SlotSpec {
                number: s.number,
                presence: u.line(&s.presence, format!("{field}.presence"), false)?,
                lock: s
                    .lock
                    .as_ref()
                    .map(|l| u.line(&l.output(), format!("{field}.lock"), true))
                    .transpose()?,
                lock_feedback: s
                    .lock
                    .as_ref()
                    .and_then(|l| l.feedback.as_ref())
                    .map(|f| u.line(f, format!("{field}.lock.feedback"), false))
                    .transpose()?,
                led: s
                    .led
                    .as_ref()
                    .map(|l| u.line(l, format!("{field}.led"), true))
                    .transpose()?,
            });
        }
        slots.sort_by_key(|s| s.number);
        let mut readers = Vec::new();
        for (i, r) in self.reader.into_iter().enumerate() {
            let field = format!("reader[{i}]");
            let name = u.name(&r.name, format!("{field}.name"))?;
            let terminator = match r.terminator.as_str() {
                "enter" => Terminator::Enter,
                "tab" => Terminator::Tab,
                "none" => Terminator::None,
                other => {
                    return Err(invalid(
                        format!("{field}.terminator"),
                        format!("{other:?} is not one of \"enter\", \"tab\", \"none\""),
                    ))
                }
            };
            if !(5..=2_000).contains(&r.inter_key_timeout_ms) {
                return Err(invalid(
                    format!("{field}.inter_key_timeout_ms"),
                    "must be 5..=2000",
                ));
            }
            if !(1..=MAX_SCAN_LENGTH).contains(&r.max_length) {
                return Err(invalid(
                    format!("{field}.max_length"),
                    format!("must be 1..={MAX_SCAN_LENGTH}"),
                ));
            }
            readers.push(ReaderSpec {
                name,
                device: selector(&field, r.device, r.device_name)?,
                wedge: WedgeConfig {
                    terminator,
                    inter_key_timeout: Duration::from_millis(r.inter_key_timeout_ms),
                    max_length: r.max_length,
                },
            });
        }
        let mut keypads = Vec::new();
        for (i, k) in self.keypad.into_iter().enumerate() {
            let field = format!("keypad[{i}]");
            keypads.push(KeypadSpec {
                name: u.name(&k.name, format!("{field}.name"))?,
                device: selector(&field, k.device, k.device_name)?,
            });
        }
        let fingerprint = self
            .fingerprint
            .map(|f| {
                Ok::<_, BoardError>(FingerprintSpec {
                    touch: u.line(&f.touch, "fingerprint.touch".into(), false)?,
                    port: f.port,
                    baud: f.baud,
                    address: f.address,
                    password: f.password,
                })
            })
            .transpose()?;
        Ok(Board {
            model: self.model,
            held_open: Duration::from_secs(self.door.held_open_seconds),
            door_lock,
            door_lock_feedback,
            door_sensor,
            tamper,
            buzzer,
            slots,
            readers,
            keypads,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests;
