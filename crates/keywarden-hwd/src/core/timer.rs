//! The cabinet core's timers: one enum and one table, not a task per timer.

use std::collections::BTreeMap;
use std::time::Instant;

use super::InputId;

/// Everything the core may be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The door unlock pulse ends.
    DoorUnlock,
    /// The door has been open for the board's held-open limit.
    DoorHeldOpen,
    /// A slot's release pulse ends.
    SlotRelease(u32),
    /// An input has been stable long enough to count.
    Debounce(InputId),
    /// The buzzer pattern moves to its next step.
    Buzzer,
    /// Blinking LEDs toggle.
    Blink,
    /// The burn-in's settle time passed: check the feedback, then the next step.
    BurnInStep,
}

/// Deadlines by timer. At most one deadline per timer; setting it again moves it.
#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    deadlines: BTreeMap<Timer, Instant>,
}

impl TimerTable {
    /// Arm (or move) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines.insert(timer, at);
    }

    /// Disarm `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines.remove(&timer);
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(&timer).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Disarm and return every timer due at `now`, earliest first.
    pub fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*at, *t))
            .collect();
        due.sort();
        for (_, t) in &due {
            self.deadlines.remove(t);
        }
        due.into_iter().map(|(_, t)| t).collect()
    }
}
