//! The `sim` backend: the cabinet simulated in-process, for unit tests and the host demo.
//!
//! It behaves like `cdev` from the daemon's side: outputs are "driven" into a table (locks first,
//! inactive), inputs arrive as [`InputSample`]s, readers and keypads as key events that go through
//! the same decoders as a real device (a badge scan is typed key by key, Shift included), and the
//! fingerprint module is the protocol emulator on a real pty, opened by the same serial code.
//! [`SimControl`] is the control surface (exported on D-Bus as `org.keywarden.HardwareSim1`).
//! A lock's feedback line, where the board has one, follows its output as if wired to the lock
//! (the new level is fed in as an input sample when the output is driven), unless
//! [`SimControl::set_feedback_broken`] broke that wiring: then it stays where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use keywarden_dbus::hardware::{KeypadKeyName, SelfTestResult};
use tokio::sync::mpsc;

use super::{
    passed, BackendKind, Hardware, InputLines, InputSample, OutputLines, CHANNEL_CAPACITY,
};
use crate::board::Board;
use crate::core::{InputId, OutputId};
use crate::error::{Error, Result};
use crate::fingerprint::emulator::{spawn_on_pty, EmulatorCore};
use crate::input::{keymap, keypad, KeyCode, KeyInput, RawKey, Terminator};

/// Template capacity of the simulated fingerprint module.
const SIM_FINGERPRINT_CAPACITY: u16 = 200;

/// What the simulated hardware shows: every line's level, and the broken feedback wiring.
#[derive(Debug, Default)]
struct Lines {
    outputs: BTreeMap<OutputId, bool>,
    inputs: BTreeMap<InputId, bool>,
    broken: BTreeSet<OutputId>,
}

type Levels = Arc<Mutex<Lines>>;

fn lock(levels: &Levels) -> MutexGuard<'_, Lines> {
    levels
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct SimOutputs {
    levels: Levels,
    /// Locks with a feedback line.
    feedback: BTreeSet<OutputId>,
    samples: mpsc::Sender<InputSample>,
}

impl OutputLines for SimOutputs {
    fn set(&mut self, id: OutputId, active: bool) -> Result<()> {
        let mut lines = lock(&self.levels);
        lines.outputs.insert(id, active);
        if self.feedback.contains(&id) && !lines.broken.contains(&id) {
            let fb = InputId::LockFeedback(id);
            if lines.inputs.insert(fb, active) != Some(active) {
                let sample = InputSample {
                    id: fb,
                    active,
                    at: Instant::now(),
                };
                // The channel is far larger than a turn's worth of changes; a full one would
                // show as a feedback mismatch in the burn-in, which is what it would be.
                if self.samples.try_send(sample).is_err() {
                    tracing::warn!(line = %fb.role(), "simulated feedback sample dropped");
                }
            }
        }
        Ok(())
    }

    fn self_test(&mut self) -> Vec<SelfTestResult> {
        lock(&self.levels)
            .outputs
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

struct SimInputs {
    levels: Levels,
}

impl InputLines for SimInputs {
    fn read(&self, id: InputId) -> Result<bool> {
        Ok(lock(&self.levels).inputs.get(&id).copied().unwrap_or(false))
    }
}

impl SimControl {
    async fn input(&self, id: InputId, active: bool) -> Result<(), SimError> {
        lock(&self.levels).inputs.insert(id, active);
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
            .outputs
            .iter()
            .find(|(id, _)| id.role() == role)
            .map(|(_, on)| *on)
            .ok_or_else(|| SimError::NoSuchLine(format!("output {role:?}")))
    }

    /// Break (`true`) or mend the simulated wiring of a lock's feedback line, by the lock's role
    /// (`door-lock`, `slot-2-lock`). Broken, the feedback stays at its current level.
    pub fn set_feedback_broken(&self, role: &str, broken: bool) -> Result<(), SimError> {
        let lock_id = self
            .board
            .feedback()
            .into_iter()
            .find_map(|(id, _)| match id {
                InputId::LockFeedback(l) if l.role() == role => Some(l),
                _ => None,
            })
            .ok_or_else(|| SimError::NoSuchLine(format!("feedback line for {role:?}")))?;
        let mut lines = lock(&self.levels);
        if broken {
            lines.broken.insert(lock_id);
        } else {
            lines.broken.remove(&lock_id);
        }
        Ok(())
    }
}

/// Open the simulated cabinet: every key slot occupied, door closed, no tamper, every lock's
/// feedback (where the board has one) locked.
pub fn open(board: &Board) -> Result<Hardware> {
    let levels: Levels = Arc::default();
    let (sample_tx, samples) = mpsc::channel(CHANNEL_CAPACITY);
    let mut outputs = SimOutputs {
        levels: levels.clone(),
        feedback: board
            .feedback()
            .into_iter()
            .filter_map(|(id, _)| match id {
                InputId::LockFeedback(l) => Some(l),
                _ => None,
            })
            .collect(),
        samples: sample_tx.clone(),
    };
    let initial: Vec<(InputId, bool)> = board
        .inputs()
        .into_iter()
        .map(|(id, _)| (id, matches!(id, InputId::SlotPresence(_))))
        .collect();
    lock(&levels).inputs = initial.iter().copied().collect();
    for (id, _) in board.outputs() {
        outputs.set(id, false)?;
    }
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
        levels: levels.clone(),
        samples: sample_tx,
        keys: key_tx,
        finger,
    };
    Ok(Hardware {
        kind: BackendKind::Sim,
        outputs: Box::new(outputs),
        initial,
        inputs: Box::new(SimInputs { levels }),
        samples,
        keys,
        input_checks,
        fingerprint_port,
        sim: Some(control),
    })
}
