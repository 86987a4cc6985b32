//! The `sim` backend: the cabinet simulated in-process, for unit tests and the host demo.
//!
//! It behaves like `cdev` from the daemon's side: outputs are "driven" into a table (locks first,
//! inactive), inputs arrive as [`InputSample`]s, readers and keypads as key events that go through
//! the same decoders as a real device (a badge scan is typed key by key, Shift included), and the
//! fingerprint module is the protocol emulator on a real pty, opened by the same serial code.
//! [`SimControl`] is the control surface (exported on D-Bus as `org.keywarden.HardwareSim1`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use keywarden_dbus::hardware::{KeypadKeyName, SelfTestResult};
use tokio::sync::mpsc;

use super::{passed, BackendKind, Hardware, InputSample, OutputLines, CHANNEL_CAPACITY};
use crate::board::Board;
use crate::core::{InputId, OutputId};
use crate::error::{Error, Result};
use crate::fingerprint::emulator::{spawn_on_pty, EmulatorCore};
use crate::input::{keymap, keypad, KeyCode, KeyInput, RawKey, Terminator};

/// Template capacity of the simulated fingerprint module.
const SIM_FINGERPRINT_CAPACITY: u16 = 200;

/// What the simulated hardware shows: the level of every output line.
type Levels = Arc<Mutex<BTreeMap<OutputId, bool>>>;

fn lock(levels: &Levels) -> MutexGuard<'_, BTreeMap<OutputId, bool>> {
    levels
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct SimOutputs {
    levels: Levels,
}

impl OutputLines for SimOutputs {
    fn set(&mut self, id: OutputId, active: bool) -> Result<()> {
        lock(&self.levels).insert(id, active);
        Ok(())
    }

    fn self_test(&mut self) -> Vec<SelfTestResult> {
        lock(&self.levels)
            .iter()
            .map(|(id, on)| {
                passed(
                    format!("gpio:{}", id.role()),
                    format!("simulated, level {}", u8::from(*on)),
                )
            })
            .collect()
    }
}

/// A request to the simulation that the caller got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No reader or keypad of that name.
    #[error("no {kind} named {name:?} on this board")]
    NoDevice {
        /// "reader" or "keypad".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A character a keyboard-wedge scanner cannot type.
    #[error("cannot type {0:?} on a US keyboard")]
    Untypeable(char),
    /// A key name a keypad does not have.
    #[error("{0}")]
    NoSuchKey(String),
    /// No slot of that number.
    #[error("no slot {0} on this board")]
    NoSuchSlot(u32),
    /// The board has no such sensor or line.
    #[error("this board has no {0}")]
    NoSuchLine(String),
    /// The daemon is gone.
    #[error("the hardware service is shutting down")]
    Closed,
}

/// The sim backend's control surface: press, scan, open, touch; read outputs.
#[derive(Clone)]
pub struct SimControl {
    board: Arc<Board>,
    levels: Levels,
    samples: mpsc::Sender<InputSample>,
    keys: mpsc::Sender<RawKey>,
    finger: Option<Arc<Mutex<EmulatorCore>>>,
}

impl SimControl {
    async fn input(&self, id: InputId, active: bool) -> Result<(), SimError> {
        let sample = InputSample {
            id,
            active,
            at: Instant::now(),
        };
        self.samples
            .send(sample)
            .await
            .map_err(|_| SimError::Closed)
    }

    async fn key(&self, role: &str, code: KeyCode, value: i32) -> Result<(), SimError> {
        let key = RawKey {
            role: role.to_owned(),
            input: KeyInput::Key { code, value },
            at: Instant::now(),
        };
        self.keys.send(key).await.map_err(|_| SimError::Closed)
    }

    async fn tap(&self, role: &str, code: KeyCode, shift: bool) -> Result<(), SimError> {
        if shift {
            self.key(role, KeyCode::KEY_LEFTSHIFT, 1).await?;
        }
        self.key(role, code, 1).await?;
        self.key(role, code, 0).await?;
        if shift {
            self.key(role, KeyCode::KEY_LEFTSHIFT, 0).await?;
        }
        Ok(())
    }

    /// Type `text` on reader `reader`, then its terminator, as a keyboard-wedge scanner would.
    pub async fn scan_badge(&self, reader: &str, text: &str) -> Result<(), SimError> {
        let spec = self
            .board
            .readers
            .iter()
            .find(|r| r.name == reader)
            .ok_or_else(|| SimError::NoDevice {
                kind: "reader",
                name: reader.to_owned(),
            })?;
        let keys: Vec<(KeyCode, bool)> = text
            .chars()
            .map(|c| keymap::keys_for(c).ok_or(SimError::Untypeable(c)))
            .collect::<Result<_, _>>()?;
        for (code, shift) in keys {
            self.tap(reader, code, shift).await?;
        }
        match spec.wedge.terminator {
            Terminator::Enter => self.tap(reader, KeyCode::KEY_ENTER, false).await,
            Terminator::Tab => self.tap(reader, KeyCode::KEY_TAB, false).await,
            Terminator::None => Ok(()),
        }
    }

    /// Press and release keys on keypad `keypad`.
    pub async fn press_keys(&self, keypad: &str, keys: &[String]) -> Result<(), SimError> {
        if !self.board.keypads.iter().any(|k| k.name == keypad) {
            return Err(SimError::NoDevice {
                kind: "keypad",
                name: keypad.to_owned(),
            });
        }
        let codes: Vec<KeyCode> = keys
            .iter()
            .map(|k| {
                k.parse::<KeypadKeyName>()
                    .map(keypad::keys_for)
                    .map_err(|e| SimError::NoSuchKey(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        for code in codes {
            self.tap(keypad, code, false).await?;
        }
        Ok(())
    }

    /// Open (true) or close the door.
    pub async fn set_door(&self, open: bool) -> Result<(), SimError> {
        self.input(InputId::DoorSensor, open).await
    }

    /// Put a key in (true) or take it out of a slot.
    pub async fn set_slot(&self, slot: u32, occupied: bool) -> Result<(), SimError> {
        if !self.board.slots.iter().any(|s| s.number == slot) {
            return Err(SimError::NoSuchSlot(slot));
        }
        self.input(InputId::SlotPresence(slot), occupied).await
    }

    /// Set the tamper switch.
    pub async fn set_tamper(&self, active: bool) -> Result<(), SimError> {
        if self.board.tamper.is_none() {
            return Err(SimError::NoSuchLine("tamper switch".into()));
        }
        self.input(InputId::Tamper, active).await
    }

    /// Put a finger (`Some(identity)`) on the fingerprint sensor, or lift it (`None`).
    pub async fn touch_fingerprint(&self, finger: Option<i32>) -> Result<(), SimError> {
        let core = self
            .finger
            .as_ref()
            .ok_or_else(|| SimError::NoSuchLine("fingerprint module".into()))?;
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_finger(finger);
        self.input(InputId::FingerTouch, finger.is_some()).await
    }

    /// The level of an output line by role (`door-lock`, `slot-2-lock`, `slot-2-led`, `buzzer`).
    pub fn output(&self, role: &str) -> Result<bool, SimError> {
        lock(&self.levels)
            .iter()
            .find(|(id, _)| id.role() == role)
            .map(|(_, on)| *on)
            .ok_or_else(|| SimError::NoSuchLine(format!("output {role:?}")))
    }
}

/// Open the simulated cabinet: every key slot occupied, door closed, no tamper.
pub fn open(board: &Board) -> Result<Hardware> {
    let levels: Levels = Arc::default();
    let mut outputs = SimOutputs {
        levels: levels.clone(),
    };
    for (id, _) in board.outputs() {
        outputs.set(id, false)?;
    }
    let initial = board
        .slots
        .iter()
        .map(|s| (InputId::SlotPresence(s.number), true))
        .collect();
    let (sample_tx, samples) = mpsc::channel(CHANNEL_CAPACITY);
    let (key_tx, keys) = mpsc::channel(CHANNEL_CAPACITY);
    let (finger, fingerprint_port) = match &board.fingerprint {
        Some(spec) => {
            let core = Arc::new(Mutex::new(EmulatorCore::new(
                SIM_FINGERPRINT_CAPACITY,
                spec.password,
            )));
            let (path, _thread) = spawn_on_pty(core.clone()).map_err(|source| Error::Os {
                what: "start the simulated fingerprint module on a pty".into(),
                source,
            })?;
            (Some(core), Some(path))
        }
        None => (None, None),
    };
    let input_checks = board
        .readers
        .iter()
        .map(|r| &r.name)
        .chain(board.keypads.iter().map(|k| &k.name))
        .map(|name| passed(format!("input:{name}"), "simulated".into()))
        .collect();
    let control = SimControl {
        board: Arc::new(board.clone()),
        levels,
        samples: sample_tx,
        keys: key_tx,
        finger,
    };
    Ok(Hardware {
        kind: BackendKind::Sim,
        outputs: Box::new(outputs),
        initial,
        samples,
        keys,
        input_checks,
        fingerprint_port,
        sim: Some(control),
    })
}
