//! The cabinet's lock/door state machine: sans-IO, time passed in.
//!
//! Inputs: [`Cabinet::handle_input`] (raw sensor levels, debounced here), [`Cabinet::handle_timeout`],
//! and the commands `unlock_door`, `lock_door`, `release_slot`, `set_indicator`, `beep`,
//! `start_burn_in` (the factory burn-in, see [`BurnInReport`]). Outputs:
//! [`Cabinet::poll_output`] (line levels to drive), [`Cabinet::poll_event`] (what to report), and
//! [`Cabinet::poll_timeout`] (when to call `handle_timeout` next). Every call that takes `now` may
//! move the next timeout. The driver drains outputs before events after every call.
//!
//! Invariants (tested exhaustively in `tests.rs`):
//! - Fail-secure: the first outputs of a new cabinet drive every lock locked; an active lock
//!   output always has an armed pulse timer no further than [`MAX_PULSE`] ahead, so every unlock ends
//!   by itself.
//! - Door opened while the door lock is locked raises the `forced` alarm; open longer than the
//!   board's limit raises `held-open`; closing clears both.
//! - Relock on close: a door that was opened during an unlock relocks as soon as it closes. A slot
//!   relocks as soon as its presence sensor changes.
//! - Burn-in: the factory burn-in drives each lock through the same unlock/release pulses (so the
//!   pulse deadline rule holds for it too), one lock at a time, and compares each lock's feedback
//!   input with the level driven once the settle time has passed. It starts only with the door
//!   closed and no lock active; while it runs, unlocks and releases are refused
//!   ([`CoreError::BurnInRunning`]); the door opening or `lock_door` aborts it, every lock locked.

mod timer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use keywarden_dbus::hardware::{BeepPattern, DoorAlarmKind, IndicatorMode};

pub use timer::{Timer, TimerTable};

use crate::board::Board;
use crate::error::CoreError;

/// Longest lock pulse the core accepts; longer requests are clamped.
pub const MAX_PULSE: Duration = Duration::from_secs(60);
/// Half period of a blinking LED (2 Hz).
pub const BLINK_HALF_PERIOD: Duration = Duration::from_millis(250);
/// Most burn-in cycles accepted.
pub const MAX_BURN_IN_CYCLES: u32 = keywarden_dbus::hardware::MAX_BURN_IN_CYCLES;
/// Longest burn-in settle time accepted: a lock's burn-in pulse is twice this, far below
/// [`MAX_PULSE`].
pub const MAX_BURN_IN_SETTLE: Duration = Duration::from_secs(10);

/// An input line's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InputId {
    /// Door sensor: active = open.
    DoorSensor,
    /// Tamper switch: active = tampered.
    Tamper,
    /// A slot's presence sensor: active = key present.
    SlotPresence(u32),
    /// Fingerprint module touch line: active = finger on the sensor.
    FingerTouch,
    /// A lock's feedback (position) switch: active = the lock reports itself open.
    LockFeedback(OutputId),
}

/// An output line's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputId {
    /// Door lock: active = unlocked.
    DoorLock,
    /// A slot's lock: active = released.
    SlotLock(u32),
    /// A slot's LED: active = lit.
    SlotLed(u32),
    /// Buzzer: active = sounding.
    Buzzer,
}

impl OutputId {
    /// Whether this output holds something locked when inactive.
    pub fn is_lock(self) -> bool {
        matches!(self, OutputId::DoorLock | OutputId::SlotLock(_))
    }

    /// The role name used by the sim control surface and logs: `door-lock`, `slot-3-lock`, ...
    pub fn role(self) -> String {
        match self {
            OutputId::DoorLock => "door-lock".into(),
            OutputId::SlotLock(n) => format!("slot-{n}-lock"),
            OutputId::SlotLed(n) => format!("slot-{n}-led"),
            OutputId::Buzzer => "buzzer".into(),
        }
    }
}

impl InputId {
    /// The role name used in logs: `door-sensor`, `slot-3-presence`, ...
    pub fn role(self) -> String {
        match self {
            InputId::DoorSensor => "door-sensor".into(),
            InputId::Tamper => "tamper".into(),
            InputId::SlotPresence(n) => format!("slot-{n}-presence"),
            InputId::FingerTouch => "fingerprint-touch".into(),
            InputId::LockFeedback(lock) => format!("{}-feedback", lock.role()),
        }
    }
}

/// Drive an output line to a logical level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SetOutput {
    /// Which line.
    pub id: OutputId,
    /// Logical level (the backend applies active-low).
    pub active: bool,
}

/// Something the service reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Event {
    /// Door sensor changed.
    DoorChanged {
        /// Now open.
        open: bool,
    },
    /// Door lock output changed.
    DoorLockChanged {
        /// Now locked.
        locked: bool,
    },
    /// A door alarm was raised or cleared.
    DoorAlarm {
        /// Which alarm.
        kind: DoorAlarmKind,
        /// Raised (true) or cleared.
        active: bool,
    },
    /// A slot's presence sensor changed.
    SlotChanged {
        /// Slot number.
        slot: u32,
        /// Now occupied.
        occupied: bool,
        /// The slot (or, without slot locks, the door) was not released when it changed.
        while_locked: bool,
    },
    /// The tamper switch changed.
    TamperChanged {
        /// Now tampered.
        active: bool,
    },
    /// A finger touched the fingerprint sensor: the driver starts a search.
    FingerTouched,
    /// The burn-in ended (completed or aborted); every lock is locked again.
    BurnInFinished(BurnInReport),
}

/// What one lock did during a burn-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockBurnIn {
    /// The lock.
    pub lock: OutputId,
    /// The board gives it a feedback line (else the output was cycled but not verified).
    pub has_feedback: bool,
    /// Cycles completed (driven active, then inactive).
    pub cycles: u32,
    /// Every mismatch: the feedback did not follow the output once the settle time passed.
    pub mismatches: Vec<Mismatch>,
}

/// The feedback did not follow a lock's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Which cycle (1-based).
    pub cycle: u32,
    /// The level driven (true = active: unlocked/released).
    pub driven: bool,
    /// What the feedback read (debounced, logical), settle time after driving.
    pub read: bool,
}

/// The result of a burn-in: per lock, in board order (door lock first, then slots by number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurnInReport {
    /// Cycles asked for.
    pub cycles: u32,
    /// Settle time after each drive.
    pub settle: Duration,
    /// Per lock.
    pub locks: Vec<LockBurnIn>,
    /// Why it stopped early, if it did.
    pub aborted: Option<String>,
}

impl BurnInReport {
    /// Every lock completed every cycle and every feedback followed.
    pub fn passed(&self) -> bool {
        self.aborted.is_none()
            && self
                .locks
                .iter()
                .all(|l| l.cycles == self.cycles && l.mismatches.is_empty())
    }
}

/// A burn-in in progress: which lock, which cycle, which phase.
#[derive(Debug, Clone)]
struct BurnIn {
    report: BurnInReport,
    /// Index into `report.locks`.
    lock: usize,
    /// 1-based.
    cycle: u32,
    /// The lock is driven active (else: inactive, waiting to check it relocked).
    active: bool,
}

/// Static facts the core needs from the board.
#[derive(Debug, Clone)]
pub struct CabinetConfig {
    /// Door open longer than this raises `held-open`.
    pub held_open: Duration,
    /// Debounce per input.
    pub debounce: BTreeMap<InputId, Duration>,
    /// Slot numbers, with whether each has a lock and an LED.
    pub slots: BTreeMap<u32, (bool, bool)>,
    /// The board has a buzzer.
    pub buzzer: bool,
}

impl CabinetConfig {
    /// The core's view of a board.
    pub fn from_board(board: &Board) -> Self {
        CabinetConfig {
            held_open: board.held_open,
            debounce: board
                .inputs()
                .into_iter()
                .map(|(id, l)| (id, l.debounce))
                .collect(),
            slots: board
                .slots
                .iter()
                .map(|s| (s.number, (s.lock.is_some(), s.led.is_some())))
                .collect(),
            buzzer: board.buzzer.is_some(),
        }
    }
}

/// One slot's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// Slot number.
    pub number: u32,
    /// A key is present (debounced).
    pub occupied: bool,
    /// The slot lock is released.
    pub released: bool,
    /// LED mode.
    pub indicator: IndicatorMode,
    has_lock: bool,
    has_led: bool,
}

#[derive(Debug, Clone, Copy)]
struct Debounced {
    stable: bool,
    raw: bool,
    debounce: Duration,
}

/// The cabinet state machine. See the module documentation.
#[derive(Debug)]
pub struct Cabinet {
    held_open_limit: Duration,
    door_unlocked: bool,
    door_open: bool,
    opened_during_unlock: bool,
    forced: bool,
    held_open: bool,
    tamper: bool,
    slots: BTreeMap<u32, SlotState>,
    /// Debounced feedback level per lock that has a feedback line.
    feedback: BTreeMap<OutputId, bool>,
    burn_in: Option<BurnIn>,
    inputs: BTreeMap<InputId, Debounced>,
    buzzer: Option<VecDeque<(bool, Duration)>>,
    blink_on: bool,
    levels: BTreeMap<OutputId, bool>,
    timers: TimerTable,
    outputs: VecDeque<SetOutput>,
    events: VecDeque<Event>,
}

impl Cabinet {
    /// A cabinet with every lock locked, every LED and the buzzer off, and the inputs at their
    /// current levels (`initial`; inputs not listed start inactive). The first outputs polled drive
    /// every lock locked, before anything else. No events are reported for the initial levels:
    /// the state is readable through the getters.
    pub fn new(config: &CabinetConfig, initial: &[(InputId, bool)], now: Instant) -> Cabinet {
        let level = |id: InputId| {
            initial
                .iter()
                .find(|(i, _)| *i == id)
                .is_some_and(|(_, l)| *l)
        };
        let inputs = config
            .debounce
            .iter()
            .map(|(id, d)| {
                let l = level(*id);
                (
                    *id,
                    Debounced {
                        stable: l,
                        raw: l,
                        debounce: *d,
                    },
                )
            })
            .collect();
        let slots = config
            .slots
            .iter()
            .map(|(n, (has_lock, has_led))| {
                let state = SlotState {
                    number: *n,
                    occupied: level(InputId::SlotPresence(*n)),
                    released: false,
                    indicator: IndicatorMode::Off,
                    has_lock: *has_lock,
                    has_led: *has_led,
                };
                (*n, state)
            })
            .collect();
        let mut cabinet = Cabinet {
            held_open_limit: config.held_open,
            door_unlocked: false,
            door_open: level(InputId::DoorSensor),
            opened_during_unlock: false,
            forced: false,
            held_open: false,
            tamper: level(InputId::Tamper),
            slots,
            feedback: config
                .debounce
                .keys()
                .filter_map(|id| match id {
                    InputId::LockFeedback(lock) => Some((*lock, level(*id))),
                    _ => None,
                })
                .collect(),
            burn_in: None,
            inputs,
            buzzer: config.buzzer.then(VecDeque::new),
            blink_on: false,
            levels: BTreeMap::new(),
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        };
        // Locks first, then indicators and buzzer: all driven whatever the line's state was.
        let mut all: Vec<OutputId> = vec![OutputId::DoorLock];
        all.extend(
            cabinet
                .slots
                .values()
                .filter(|s| s.has_lock)
                .map(|s| OutputId::SlotLock(s.number)),
        );
        all.extend(
            cabinet
                .slots
                .values()
                .filter(|s| s.has_led)
                .map(|s| OutputId::SlotLed(s.number)),
        );
        all.extend(cabinet.buzzer.is_some().then_some(OutputId::Buzzer));
        for id in all {
            cabinet.levels.insert(id, false);
            cabinet.outputs.push_back(SetOutput { id, active: false });
        }
        if cabinet.door_open {
            // Open at start: we cannot know whether it was forced, but it can be held open.
            cabinet
                .timers
                .set(Timer::DoorHeldOpen, now + cabinet.held_open_limit);
        }
        cabinet
    }

    // ----- getters -----

    /// The door lock is locked (its output inactive).
    pub fn door_locked(&self) -> bool {
        !self.door_unlocked
    }

    /// The door sensor reads open (debounced).
    pub fn door_open(&self) -> bool {
        self.door_open
    }

    /// The most serious active door alarm.
    pub fn door_alarm(&self) -> Option<DoorAlarmKind> {
        if self.forced {
            Some(DoorAlarmKind::Forced)
        } else if self.held_open {
            Some(DoorAlarmKind::HeldOpen)
        } else {
            None
        }
    }

    /// The tamper switch is active (debounced).
    pub fn tamper(&self) -> bool {
        self.tamper
    }

    /// Every slot, by number.
    pub fn slots(&self) -> impl Iterator<Item = &SlotState> {
        self.slots.values()
    }

    /// The level last commanded on an output, if the board has it.
    pub fn output(&self, id: OutputId) -> Option<bool> {
        self.levels.get(&id).copied()
    }

    /// A lock's feedback input (debounced), if the board has one: true = reports open.
    pub fn feedback(&self, lock: OutputId) -> Option<bool> {
        self.feedback.get(&lock).copied()
    }

    /// A burn-in is running.
    pub fn burn_in_running(&self) -> bool {
        self.burn_in.is_some()
    }

    /// When a timer fires, if armed (for tests and diagnostics).
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    // ----- outputs -----

    /// The next line level to drive.
    pub fn poll_output(&mut self) -> Option<SetOutput> {
        self.outputs.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Cabinet::handle_timeout`] must be called next. Moved by every call taking `now`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- inputs -----

    /// A raw level read from an input line (logical: active-low already applied). Unknown inputs
    /// are ignored.
    pub fn handle_input(&mut self, id: InputId, active: bool, now: Instant) {
        let Some(d) = self.inputs.get_mut(&id) else {
            return;
        };
        if d.raw == active {
            return;
        }
        d.raw = active;
        if d.raw == d.stable {
            self.timers.stop(Timer::Debounce(id));
        } else if d.debounce.is_zero() {
            d.stable = active;
            self.commit_input(id, active, now);
        } else {
            self.timers.set(Timer::Debounce(id), now + d.debounce);
        }
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expired(now) {
            match timer {
                Timer::DoorUnlock => self.relock_door(),
                Timer::DoorHeldOpen => {
                    if self.door_open && !self.held_open {
                        self.held_open = true;
                        self.events.push_back(Event::DoorAlarm {
                            kind: DoorAlarmKind::HeldOpen,
                            active: true,
                        });
                    }
                }
                Timer::SlotRelease(n) => self.relock_slot(n),
                Timer::Debounce(id) => {
                    if let Some(d) = self.inputs.get_mut(&id) {
                        if d.raw != d.stable {
                            d.stable = d.raw;
                            let level = d.raw;
                            self.commit_input(id, level, now);
                        }
                    }
                }
                Timer::Buzzer => self.next_buzzer_step(now),
                Timer::Blink => {
                    self.blink_on = !self.blink_on;
                    self.timers.set(Timer::Blink, now + BLINK_HALF_PERIOD);
                    self.apply_blink(now);
                }
                Timer::BurnInStep => self.burn_in_step(now),
            }
        }
    }

    // ----- commands -----

    /// Unlock the door for `duration` (clamped to [`MAX_PULSE`]); while unlocked, moves the deadline.
    /// Refused while a burn-in runs.
    pub fn unlock_door(&mut self, duration: Duration, now: Instant) -> Result<(), CoreError> {
        if self.burn_in.is_some() {
            return Err(CoreError::BurnInRunning);
        }
        self.pulse_door(duration, now);
        Ok(())
    }

    fn pulse_door(&mut self, duration: Duration, now: Instant) {
        if !self.door_unlocked {
            self.door_unlocked = true;
            self.opened_during_unlock = self.door_open;
            self.set_output(OutputId::DoorLock, true);
            self.events
                .push_back(Event::DoorLockChanged { locked: false });
        }
        self.timers
            .set(Timer::DoorUnlock, now + duration.min(MAX_PULSE));
    }

    /// Lock the door now. Aborts a running burn-in (every lock locked).
    pub fn lock_door(&mut self, _now: Instant) {
        self.abort_burn_in("LockDoor was called");
        self.relock_door();
    }

    /// Release a slot's lock for `duration` (clamped to [`MAX_PULSE`]). Refused while a burn-in
    /// runs.
    pub fn release_slot(
        &mut self,
        slot: u32,
        duration: Duration,
        now: Instant,
    ) -> Result<(), CoreError> {
        if self.burn_in.is_some() {
            return Err(CoreError::BurnInRunning);
        }
        self.pulse_slot(slot, duration, now)
    }

    fn pulse_slot(&mut self, slot: u32, duration: Duration, now: Instant) -> Result<(), CoreError> {
        let state = self
            .slots
            .get_mut(&slot)
            .ok_or(CoreError::NoSuchSlot(slot))?;
        if !state.has_lock {
            return Err(CoreError::NoSlotLock(slot));
        }
        state.released = true;
        self.set_output(OutputId::SlotLock(slot), true);
        self.timers
            .set(Timer::SlotRelease(slot), now + duration.min(MAX_PULSE));
        Ok(())
    }

    /// Set a slot's LED.
    pub fn set_indicator(
        &mut self,
        slot: u32,
        mode: IndicatorMode,
        now: Instant,
    ) -> Result<(), CoreError> {
        let state = self
            .slots
            .get_mut(&slot)
            .ok_or(CoreError::NoSuchSlot(slot))?;
        if !state.has_led {
            return Err(CoreError::NoSlotLed(slot));
        }
        state.indicator = mode;
        self.apply_blink(now);
        Ok(())
    }

    /// Play a buzzer pattern, replacing the one playing.
    pub fn beep(&mut self, pattern: BeepPattern, now: Instant) -> Result<(), CoreError> {
        let Some(steps) = self.buzzer.as_mut() else {
            return Err(CoreError::NoBuzzer);
        };
        let ms = Duration::from_millis;
        let (count, on, off) = match pattern {
            BeepPattern::Ack => (1, ms(100), ms(0)),
            BeepPattern::Error => (3, ms(100), ms(100)),
            BeepPattern::Attention => (2, ms(300), ms(200)),
            BeepPattern::Alarm => (10, ms(500), ms(500)),
        };
        steps.clear();
        for _ in 0..count {
            steps.push_back((true, on));
            if !off.is_zero() {
                steps.push_back((false, off));
            }
        }
        self.next_buzzer_step(now);
        Ok(())
    }

    /// Start the factory burn-in: `cycles` times (1..=[`MAX_BURN_IN_CYCLES`]), each lock in turn
    /// (door lock, then slot locks by number) is driven active with a pulse of twice `settle`
    /// (`settle` clamped to [`MAX_BURN_IN_SETTLE`]); `settle` later its feedback is checked and it
    /// is driven inactive; `settle` later the feedback is checked again. Ends with
    /// [`Event::BurnInFinished`]. Refused with the door open, while a lock is active or another
    /// burn-in runs.
    pub fn start_burn_in(
        &mut self,
        cycles: u32,
        settle: Duration,
        now: Instant,
    ) -> Result<(), CoreError> {
        if self.burn_in.is_some() {
            return Err(CoreError::BurnInRunning);
        }
        if !(1..=MAX_BURN_IN_CYCLES).contains(&cycles) {
            return Err(CoreError::BurnInCycles(cycles));
        }
        if self.door_open {
            return Err(CoreError::DoorOpen);
        }
        if self.door_unlocked {
            return Err(CoreError::LockActive(OutputId::DoorLock.role()));
        }
        if let Some(s) = self.slots.values().find(|s| s.released) {
            return Err(CoreError::LockActive(OutputId::SlotLock(s.number).role()));
        }
        let settle = settle.min(MAX_BURN_IN_SETTLE);
        let locks = std::iter::once(OutputId::DoorLock)
            .chain(
                self.slots
                    .values()
                    .filter(|s| s.has_lock)
                    .map(|s| OutputId::SlotLock(s.number)),
            )
            .map(|lock| LockBurnIn {
                lock,
                has_feedback: self.feedback.contains_key(&lock),
                cycles: 0,
                mismatches: Vec::new(),
            })
            .collect();
        self.burn_in = Some(BurnIn {
            report: BurnInReport {
                cycles,
                settle,
                locks,
                aborted: None,
            },
            lock: 0,
            cycle: 1,
            active: false,
        });
        self.burn_in_drive(now);
        Ok(())
    }

    // ----- internals -----

    /// Drive the current burn-in lock active and arm the step timer.
    fn burn_in_drive(&mut self, now: Instant) {
        let Some(b) = self.burn_in.as_mut() else {
            return;
        };
        b.active = true;
        let settle = b.report.settle;
        let lock = b.report.locks[b.lock].lock;
        let pulse = (settle * 2).min(MAX_PULSE);
        match lock {
            OutputId::DoorLock => self.pulse_door(pulse, now),
            OutputId::SlotLock(n) => drop(self.pulse_slot(n, pulse, now)),
            OutputId::SlotLed(_) | OutputId::Buzzer => {}
        }
        self.timers.set(Timer::BurnInStep, now + settle);
    }

    /// The settle time passed: check the feedback, then relock, move on, or finish.
    fn burn_in_step(&mut self, now: Instant) {
        let Some(b) = self.burn_in.as_mut() else {
            return;
        };
        let entry = &mut b.report.locks[b.lock];
        let lock = entry.lock;
        if let Some(read) = self.feedback.get(&lock).copied() {
            if read != b.active {
                entry.mismatches.push(Mismatch {
                    cycle: b.cycle,
                    driven: b.active,
                    read,
                });
            }
        }
        if b.active {
            b.active = false;
            let settle = b.report.settle;
            match lock {
                OutputId::DoorLock => self.relock_door(),
                OutputId::SlotLock(n) => self.relock_slot(n),
                OutputId::SlotLed(_) | OutputId::Buzzer => {}
            }
            self.timers.set(Timer::BurnInStep, now + settle);
            return;
        }
        entry.cycles += 1;
        b.lock += 1;
        if b.lock == b.report.locks.len() {
            b.lock = 0;
            b.cycle += 1;
        }
        if b.cycle > b.report.cycles {
            if let Some(done) = self.burn_in.take() {
                self.events.push_back(Event::BurnInFinished(done.report));
            }
            return;
        }
        self.burn_in_drive(now);
    }

    /// Stop a running burn-in, every lock locked, and report why.
    fn abort_burn_in(&mut self, why: &str) {
        let Some(mut b) = self.burn_in.take() else {
            return;
        };
        self.timers.stop(Timer::BurnInStep);
        self.relock_door();
        let slots: Vec<u32> = self.slots.keys().copied().collect();
        for n in slots {
            self.relock_slot(n);
        }
        b.report.aborted = Some(format!(
            "{why} (cycle {}, {})",
            b.cycle,
            b.report.locks[b.lock].lock.role()
        ));
        self.events.push_back(Event::BurnInFinished(b.report));
    }

    fn set_output(&mut self, id: OutputId, active: bool) {
        if self.levels.insert(id, active) != Some(active) {
            self.outputs.push_back(SetOutput { id, active });
        }
    }

    fn relock_door(&mut self) {
        self.timers.stop(Timer::DoorUnlock);
        self.opened_during_unlock = false;
        if self.door_unlocked {
            self.door_unlocked = false;
            self.set_output(OutputId::DoorLock, false);
            self.events
                .push_back(Event::DoorLockChanged { locked: true });
        }
    }

    fn relock_slot(&mut self, slot: u32) {
        self.timers.stop(Timer::SlotRelease(slot));
        if let Some(state) = self.slots.get_mut(&slot) {
            if state.released {
                state.released = false;
                self.set_output(OutputId::SlotLock(slot), false);
            }
        }
    }

    fn commit_input(&mut self, id: InputId, active: bool, now: Instant) {
        match id {
            InputId::DoorSensor => self.door_changed(active, now),
            InputId::Tamper => {
                self.tamper = active;
                self.events.push_back(Event::TamperChanged { active });
            }
            InputId::SlotPresence(n) => {
                let door_closed = !self.door_open;
                let Some(state) = self.slots.get_mut(&n) else {
                    return;
                };
                state.occupied = active;
                let while_locked = if state.has_lock {
                    !state.released
                } else {
                    door_closed
                };
                self.events.push_back(Event::SlotChanged {
                    slot: n,
                    occupied: active,
                    while_locked,
                });
                self.relock_slot(n);
            }
            InputId::FingerTouch => {
                if active {
                    self.events.push_back(Event::FingerTouched);
                }
            }
            InputId::LockFeedback(lock) => {
                // Read by the burn-in; a fact, reported nowhere else.
                self.feedback.insert(lock, active);
            }
        }
    }

    fn door_changed(&mut self, open: bool, now: Instant) {
        self.door_open = open;
        self.events.push_back(Event::DoorChanged { open });
        if open {
            if self.door_unlocked {
                self.opened_during_unlock = true;
            } else if !self.forced {
                self.forced = true;
                self.events.push_back(Event::DoorAlarm {
                    kind: DoorAlarmKind::Forced,
                    active: true,
                });
            }
            // After the alarm check: a door that sprang open on its burn-in pulse was not forced.
            self.abort_burn_in("the door opened");
            self.timers
                .set(Timer::DoorHeldOpen, now + self.held_open_limit);
            return;
        }
        self.timers.stop(Timer::DoorHeldOpen);
        for (flag, kind) in [
            (&mut self.forced, DoorAlarmKind::Forced),
            (&mut self.held_open, DoorAlarmKind::HeldOpen),
        ] {
            if std::mem::take(flag) {
                self.events.push_back(Event::DoorAlarm {
                    kind,
                    active: false,
                });
            }
        }
        if self.door_unlocked && self.opened_during_unlock {
            self.relock_door();
        }
    }

    fn next_buzzer_step(&mut self, now: Instant) {
        let step = self.buzzer.as_mut().and_then(VecDeque::pop_front);
        match step {
            Some((on, duration)) => {
                self.set_output(OutputId::Buzzer, on);
                self.timers.set(Timer::Buzzer, now + duration);
            }
            None => {
                self.timers.stop(Timer::Buzzer);
                if self.buzzer.is_some() {
                    self.set_output(OutputId::Buzzer, false);
                }
            }
        }
    }

    /// Drive every LED from its mode and the blink phase; keep the blink timer armed only while
    /// some LED blinks.
    fn apply_blink(&mut self, now: Instant) {
        let leds: Vec<(u32, IndicatorMode)> = self
            .slots
            .values()
            .filter(|s| s.has_led)
            .map(|s| (s.number, s.indicator))
            .collect();
        let any_blink = leds.iter().any(|(_, m)| *m == IndicatorMode::Blink);
        if !any_blink {
            self.blink_on = false;
            self.timers.stop(Timer::Blink);
        } else if self.timers.get(Timer::Blink).is_none() {
            self.blink_on = true;
            self.timers.set(Timer::Blink, now + BLINK_HALF_PERIOD);
        }
        for (n, mode) in leds {
            let lit = match mode {
                IndicatorMode::Off => false,
                IndicatorMode::On => true,
                IndicatorMode::Blink => self.blink_on,
            };
            self.set_output(OutputId::SlotLed(n), lit);
        }
    }
}
