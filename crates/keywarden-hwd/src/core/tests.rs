use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const HELD_OPEN: Duration = Duration::from_secs(30);
const DEBOUNCE: Duration = Duration::from_millis(10);

fn config(debounce: Duration) -> CabinetConfig {
    let mut d = BTreeMap::new();
    d.insert(InputId::DoorSensor, debounce);
    d.insert(InputId::Tamper, debounce);
    d.insert(InputId::FingerTouch, debounce);
    let mut slots = BTreeMap::new();
    for n in 1..=3 {
        d.insert(InputId::SlotPresence(n), debounce);
        // Slot 3 has neither lock nor LED (door-only access).
        slots.insert(n, (n != 3, n != 3));
    }
    // The door lock and slot 1's lock have feedback lines; slot 2's lock has none.
    d.insert(InputId::LockFeedback(OutputId::DoorLock), debounce);
    d.insert(InputId::LockFeedback(OutputId::SlotLock(1)), debounce);
    CabinetConfig {
        held_open: HELD_OPEN,
        debounce: d,
        slots,
        buzzer: true,
    }
}

/// A cabinet plus a simulated clock, draining outputs and events after every step.
struct Harness {
    cab: Cabinet,
    now: Instant,
    outputs: Vec<SetOutput>,
    events: Vec<Event>,
}

impl Harness {
    fn new() -> Self {
        Self::with(config(Duration::ZERO), &[])
    }

    fn with(cfg: CabinetConfig, initial: &[(InputId, bool)]) -> Self {
        let now = Instant::now();
        let mut h = Harness {
            cab: Cabinet::new(&cfg, initial, now),
            now,
            outputs: vec![],
            events: vec![],
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(o) = self.cab.poll_output() {
            self.outputs.push(o);
        }
        while let Some(e) = self.cab.poll_event() {
            self.events.push(e);
        }
    }

    /// Advance the clock by `d`, firing every timer on its deadline in order.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.cab.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.cab.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn input(&mut self, id: InputId, active: bool) {
        self.cab.handle_input(id, active, self.now);
        self.drain();
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn take_outputs(&mut self) -> Vec<SetOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// Like `advance`, with each lock's feedback wired to its output (except `broken` ones): every
    /// lock level driven is fed back as that lock's feedback input at once.
    fn advance_wired(&mut self, d: Duration, broken: &[OutputId]) {
        let end = self.now + d;
        while let Some(t) = self.cab.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.cab.handle_timeout(self.now);
            self.wire(broken);
        }
        self.now = end;
    }

    fn wire(&mut self, broken: &[OutputId]) {
        while let Some(o) = self.cab.poll_output() {
            self.outputs.push(o);
            if o.id.is_lock() && !broken.contains(&o.id) {
                self.cab
                    .handle_input(InputId::LockFeedback(o.id), o.active, self.now);
            }
        }
        self.drain();
    }

    fn burn_in_report(&mut self) -> Option<BurnInReport> {
        self.events.iter().find_map(|e| match e {
            Event::BurnInFinished(r) => Some(r.clone()),
            _ => None,
        })
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

#[test]
fn start_drives_every_lock_locked_before_anything_else() {
    let h = Harness::new();
    let ids: Vec<OutputId> = h.outputs.iter().map(|o| o.id).collect();
    assert_eq!(
        ids,
        vec![
            OutputId::DoorLock,
            OutputId::SlotLock(1),
            OutputId::SlotLock(2),
            OutputId::SlotLed(1),
            OutputId::SlotLed(2),
            OutputId::Buzzer
        ]
    );
    assert!(h.outputs.iter().all(|o| !o.active));
    assert!(h.events.is_empty(), "initial levels are state, not events");
    assert!(h.cab.door_locked());
}

#[test]
fn unlock_expires_by_itself() {
    let mut h = Harness::new();
    h.take_outputs();
    h.cab.unlock_door(secs(5), h.now).unwrap();
    h.drain();
    assert_eq!(
        h.take_outputs(),
        vec![SetOutput {
            id: OutputId::DoorLock,
            active: true
        }]
    );
    assert_eq!(
        h.take_events(),
        vec![Event::DoorLockChanged { locked: false }]
    );
    h.advance(ms(4_999));
    assert!(!h.cab.door_locked());
    assert!(h.take_outputs().is_empty());
    h.advance(ms(1));
    assert!(h.cab.door_locked());
    assert_eq!(
        h.take_outputs(),
        vec![SetOutput {
            id: OutputId::DoorLock,
            active: false
        }]
    );
    assert_eq!(
        h.take_events(),
        vec![Event::DoorLockChanged { locked: true }]
    );
    assert_eq!(h.cab.poll_timeout(), None);
}

#[test]
fn unlock_again_moves_the_deadline_without_a_second_edge() {
    let mut h = Harness::new();
    h.take_outputs();
    h.cab.unlock_door(secs(5), h.now).unwrap();
    h.advance(secs(3));
    h.cab.unlock_door(secs(5), h.now).unwrap();
    h.drain();
    assert_eq!(
        h.take_outputs().len(),
        1,
        "only the first unlock drives the line"
    );
    h.advance(secs(4));
    assert!(!h.cab.door_locked());
    h.advance(secs(1));
    assert!(h.cab.door_locked());
}

#[test]
fn pulses_are_clamped_to_the_maximum() {
    let mut h = Harness::new();
    h.cab.unlock_door(secs(3600), h.now).unwrap();
    assert_eq!(h.cab.timer(Timer::DoorUnlock), Some(h.now + MAX_PULSE));
    h.cab.release_slot(1, secs(3600), h.now).unwrap();
    assert_eq!(h.cab.timer(Timer::SlotRelease(1)), Some(h.now + MAX_PULSE));
}

#[test]
fn relock_on_close_after_an_opening() {
    let mut h = Harness::new();
    h.cab.unlock_door(secs(10), h.now).unwrap();
    h.drain();
    h.take_events();
    h.advance(secs(1));
    h.input(InputId::DoorSensor, true);
    assert_eq!(
        h.take_events(),
        vec![Event::DoorChanged { open: true }],
        "opened while unlocked is not forced"
    );
    assert!(!h.cab.door_locked(), "stays unlocked while open");
    h.advance(secs(2));
    h.input(InputId::DoorSensor, false);
    assert_eq!(
        h.take_events(),
        vec![
            Event::DoorChanged { open: false },
            Event::DoorLockChanged { locked: true }
        ]
    );
    assert!(h.cab.door_locked());
    assert_eq!(h.cab.timer(Timer::DoorUnlock), None);
}

#[test]
fn unlocking_an_open_door_relocks_when_it_closes() {
    let mut h = Harness::new();
    h.input(InputId::DoorSensor, true); // forced
    h.cab.unlock_door(secs(10), h.now).unwrap();
    h.drain();
    h.take_events();
    h.input(InputId::DoorSensor, false);
    let ev = h.take_events();
    assert!(
        ev.contains(&Event::DoorLockChanged { locked: true }),
        "{ev:?}"
    );
}

#[test]
fn forced_door_is_opened_while_locked_and_clears_on_close() {
    let mut h = Harness::new();
    h.input(InputId::DoorSensor, true);
    assert_eq!(
        h.take_events(),
        vec![
            Event::DoorChanged { open: true },
            Event::DoorAlarm {
                kind: DoorAlarmKind::Forced,
                active: true
            }
        ]
    );
    assert_eq!(h.cab.door_alarm(), Some(DoorAlarmKind::Forced));
    h.input(InputId::DoorSensor, false);
    assert_eq!(
        h.take_events(),
        vec![
            Event::DoorChanged { open: false },
            Event::DoorAlarm {
                kind: DoorAlarmKind::Forced,
                active: false
            }
        ]
    );
    assert_eq!(h.cab.door_alarm(), None);
}

#[test]
fn opening_after_the_unlock_expired_is_forced() {
    let mut h = Harness::new();
    h.cab.unlock_door(secs(2), h.now).unwrap();
    h.advance(secs(3));
    h.take_events();
    h.input(InputId::DoorSensor, true);
    assert!(h.take_events().contains(&Event::DoorAlarm {
        kind: DoorAlarmKind::Forced,
        active: true
    }));
}

#[test]
fn door_held_open_past_the_limit_raises_and_closing_clears() {
    let mut h = Harness::new();
    h.cab.unlock_door(secs(5), h.now).unwrap();
    h.input(InputId::DoorSensor, true);
    h.take_events();
    h.advance(HELD_OPEN - ms(1));
    assert_eq!(
        h.take_events(),
        vec![Event::DoorLockChanged { locked: true }],
        "pulse ended, door still open"
    );
    assert_eq!(h.cab.door_alarm(), None);
    h.advance(ms(1));
    assert_eq!(
        h.take_events(),
        vec![Event::DoorAlarm {
            kind: DoorAlarmKind::HeldOpen,
            active: true
        }]
    );
    h.advance(secs(100));
    assert!(h.take_events().is_empty(), "raised once");
    h.input(InputId::DoorSensor, false);
    assert_eq!(
        h.take_events(),
        vec![
            Event::DoorChanged { open: false },
            Event::DoorAlarm {
                kind: DoorAlarmKind::HeldOpen,
                active: false
            }
        ]
    );
}

#[test]
fn door_open_at_start_is_not_forced_but_can_be_held_open() {
    let mut h = Harness::with(config(Duration::ZERO), &[(InputId::DoorSensor, true)]);
    assert!(h.cab.door_open());
    assert_eq!(h.cab.door_alarm(), None);
    h.advance(HELD_OPEN);
    assert_eq!(h.cab.door_alarm(), Some(DoorAlarmKind::HeldOpen));
}

#[test]
fn debounce_ignores_bounces_shorter_than_the_window() {
    let mut h = Harness::with(config(DEBOUNCE), &[]);
    h.cab.unlock_door(secs(10), h.now).unwrap();
    h.drain();
    h.take_events();
    for _ in 0..5 {
        h.input(InputId::DoorSensor, true);
        h.advance(ms(3));
        h.input(InputId::DoorSensor, false);
        h.advance(ms(3));
    }
    assert!(h.take_events().is_empty(), "bounces never counted");
    assert!(!h.cab.door_open());
    h.input(InputId::DoorSensor, true);
    h.advance(DEBOUNCE - ms(1));
    assert!(!h.cab.door_open());
    h.advance(ms(1));
    assert!(h.cab.door_open());
    assert_eq!(h.take_events(), vec![Event::DoorChanged { open: true }]);
}

#[test]
fn slot_release_relocks_on_removal_and_reports_it_as_permitted() {
    let mut h = Harness::with(config(Duration::ZERO), &[(InputId::SlotPresence(1), true)]);
    h.take_outputs();
    h.cab.release_slot(1, secs(10), h.now).unwrap();
    h.drain();
    assert_eq!(
        h.take_outputs(),
        vec![SetOutput {
            id: OutputId::SlotLock(1),
            active: true
        }]
    );
    h.advance(secs(1));
    h.input(InputId::SlotPresence(1), false);
    assert_eq!(
        h.take_events(),
        vec![Event::SlotChanged {
            slot: 1,
            occupied: false,
            while_locked: false
        }]
    );
    assert_eq!(
        h.take_outputs(),
        vec![SetOutput {
            id: OutputId::SlotLock(1),
            active: false
        }]
    );
    assert_eq!(h.cab.timer(Timer::SlotRelease(1)), None);
}

#[test]
fn slot_release_expires_and_a_later_removal_is_while_locked() {
    let mut h = Harness::with(config(Duration::ZERO), &[(InputId::SlotPresence(2), true)]);
    h.cab.release_slot(2, secs(3), h.now).unwrap();
    h.advance(secs(3));
    assert!(!h.cab.slots().any(|s| s.released));
    h.input(InputId::SlotPresence(2), false);
    assert_eq!(
        h.take_events(),
        vec![Event::SlotChanged {
            slot: 2,
            occupied: false,
            while_locked: true
        }]
    );
}

#[test]
fn slots_without_their_own_lock_follow_the_door() {
    let mut h = Harness::with(config(Duration::ZERO), &[(InputId::SlotPresence(3), true)]);
    assert_eq!(
        h.cab.release_slot(3, secs(3), h.now),
        Err(CoreError::NoSlotLock(3))
    );
    assert_eq!(
        h.cab.release_slot(9, secs(3), h.now),
        Err(CoreError::NoSuchSlot(9))
    );
    assert_eq!(
        h.cab.set_indicator(3, IndicatorMode::On, h.now),
        Err(CoreError::NoSlotLed(3))
    );
    h.cab.unlock_door(secs(5), h.now).unwrap();
    h.input(InputId::DoorSensor, true);
    h.take_events();
    h.input(InputId::SlotPresence(3), false);
    assert_eq!(
        h.take_events(),
        vec![Event::SlotChanged {
            slot: 3,
            occupied: false,
            while_locked: false
        }]
    );
    h.input(InputId::DoorSensor, false);
    h.take_events();
    h.input(InputId::SlotPresence(3), true);
    assert!(h.take_events().contains(&Event::SlotChanged {
        slot: 3,
        occupied: true,
        while_locked: true
    }));
}

#[test]
fn tamper_and_finger_touch_are_reported() {
    let mut h = Harness::new();
    h.input(InputId::Tamper, true);
    h.input(InputId::FingerTouch, true);
    h.input(InputId::FingerTouch, false);
    h.input(InputId::Tamper, false);
    assert_eq!(
        h.take_events(),
        vec![
            Event::TamperChanged { active: true },
            Event::FingerTouched,
            Event::TamperChanged { active: false }
        ]
    );
    assert!(!h.cab.tamper());
}

#[test]
fn blink_toggles_at_two_hertz_and_stops_when_no_led_blinks() {
    let mut h = Harness::new();
    h.take_outputs();
    h.cab.set_indicator(1, IndicatorMode::Blink, h.now).unwrap();
    h.cab.set_indicator(2, IndicatorMode::On, h.now).unwrap();
    h.drain();
    assert_eq!(
        h.take_outputs(),
        vec![
            SetOutput {
                id: OutputId::SlotLed(1),
                active: true
            },
            SetOutput {
                id: OutputId::SlotLed(2),
                active: true
            }
        ]
    );
    h.advance(BLINK_HALF_PERIOD * 4);
    let led1: Vec<bool> = h
        .take_outputs()
        .iter()
        .filter(|o| o.id == OutputId::SlotLed(1))
        .map(|o| o.active)
        .collect();
    assert_eq!(led1, vec![false, true, false, true]);
    h.cab.set_indicator(1, IndicatorMode::Off, h.now).unwrap();
    h.drain();
    assert_eq!(h.cab.timer(Timer::Blink), None);
    assert_eq!(h.cab.output(OutputId::SlotLed(1)), Some(false));
    assert_eq!(h.cab.output(OutputId::SlotLed(2)), Some(true));
}

#[test]
fn beep_patterns_play_and_end_silent() {
    let mut h = Harness::new();
    h.take_outputs();
    h.cab.beep(BeepPattern::Error, h.now).unwrap();
    h.advance(secs(2));
    let levels: Vec<bool> = h.take_outputs().iter().map(|o| o.active).collect();
    assert_eq!(levels, vec![true, false, true, false, true, false]);
    assert_eq!(h.cab.poll_timeout(), None);
    let mut none = Harness::with(
        CabinetConfig {
            buzzer: false,
            ..config(Duration::ZERO)
        },
        &[],
    );
    assert_eq!(
        none.cab.beep(BeepPattern::Ack, none.now),
        Err(CoreError::NoBuzzer)
    );
    none.drain();
}

// ----- burn-in -----

#[test]
fn burn_in_cycles_every_lock_and_passes_when_the_feedback_follows() {
    let mut h = Harness::new();
    h.take_outputs();
    h.cab.start_burn_in(3, ms(200), h.now).unwrap();
    h.wire(&[]);
    assert!(h.cab.burn_in_running());
    // One lock at a time, with its ordinary pulse deadline (twice the settle time).
    assert_eq!(
        h.outputs,
        [SetOutput {
            id: OutputId::DoorLock,
            active: true
        }]
    );
    assert_eq!(h.cab.timer(Timer::DoorUnlock), Some(h.now + ms(400)));
    assert_eq!(h.cab.feedback(OutputId::DoorLock), Some(true));
    // 3 cycles x 3 locks x (active + inactive) x 200 ms.
    h.advance_wired(ms(3 * 3 * 2 * 200), &[]);
    let report = h.burn_in_report().expect("finished");
    assert!(report.passed(), "{report:?}");
    assert_eq!(
        report
            .locks
            .iter()
            .map(|l| (l.lock, l.has_feedback, l.cycles))
            .collect::<Vec<_>>(),
        [
            (OutputId::DoorLock, true, 3),
            (OutputId::SlotLock(1), true, 3),
            (OutputId::SlotLock(2), false, 3)
        ]
    );
    assert!(!h.cab.burn_in_running());
    assert!(h.cab.door_locked());
    assert!(h.cab.slots().all(|s| !s.released));
    let actives: Vec<OutputId> = h
        .take_outputs()
        .into_iter()
        .filter(|o| o.active)
        .map(|o| o.id)
        .collect();
    assert_eq!(
        actives.len(),
        9,
        "each lock driven active once per cycle: {actives:?}"
    );
    assert_eq!(h.cab.poll_timeout(), None, "nothing left armed");
}

#[test]
fn burn_in_names_the_lock_cycle_and_reading_when_the_feedback_does_not_follow() {
    let mut h = Harness::new();
    h.cab.start_burn_in(2, ms(100), h.now).unwrap();
    h.wire(&[OutputId::SlotLock(1)]);
    h.advance_wired(ms(2 * 3 * 2 * 100), &[OutputId::SlotLock(1)]);
    let report = h.burn_in_report().expect("finished");
    assert!(!report.passed());
    let slot1 = &report.locks[1];
    assert_eq!(slot1.lock, OutputId::SlotLock(1));
    assert_eq!(
        slot1.mismatches,
        [
            Mismatch {
                cycle: 1,
                driven: true,
                read: false
            },
            Mismatch {
                cycle: 2,
                driven: true,
                read: false
            }
        ],
        "released but the feedback stayed locked; relocked it matches again"
    );
    assert!(report.locks[0].mismatches.is_empty());
}

#[test]
fn a_stuck_open_feedback_fails_the_inactive_check() {
    let mut h = Harness::new();
    h.input(InputId::LockFeedback(OutputId::DoorLock), true);
    h.cab.start_burn_in(1, ms(50), h.now).unwrap();
    h.wire(&[OutputId::DoorLock]);
    h.advance_wired(ms(3 * 2 * 50), &[OutputId::DoorLock]);
    let report = h.burn_in_report().expect("finished");
    assert_eq!(
        report.locks[0].mismatches,
        [Mismatch {
            cycle: 1,
            driven: false,
            read: true
        }]
    );
}

#[test]
fn burn_in_is_refused_with_the_door_open_or_a_lock_active_and_refuses_unlocks_while_running() {
    let mut h = Harness::new();
    assert_eq!(
        h.cab.start_burn_in(0, ms(100), h.now),
        Err(CoreError::BurnInCycles(0))
    );
    assert_eq!(
        h.cab.start_burn_in(MAX_BURN_IN_CYCLES + 1, ms(100), h.now),
        Err(CoreError::BurnInCycles(MAX_BURN_IN_CYCLES + 1))
    );
    h.input(InputId::DoorSensor, true);
    assert_eq!(
        h.cab.start_burn_in(1, ms(100), h.now),
        Err(CoreError::DoorOpen)
    );
    h.input(InputId::DoorSensor, false);
    h.cab.unlock_door(secs(5), h.now).unwrap();
    assert_eq!(
        h.cab.start_burn_in(1, ms(100), h.now),
        Err(CoreError::LockActive("door-lock".into()))
    );
    h.cab.lock_door(h.now);
    h.cab.release_slot(2, secs(5), h.now).unwrap();
    assert_eq!(
        h.cab.start_burn_in(1, ms(100), h.now),
        Err(CoreError::LockActive("slot-2-lock".into()))
    );
    h.advance(secs(5));
    h.cab.start_burn_in(1, ms(100), h.now).unwrap();
    assert_eq!(
        h.cab.start_burn_in(1, ms(100), h.now),
        Err(CoreError::BurnInRunning)
    );
    assert_eq!(
        h.cab.unlock_door(secs(5), h.now),
        Err(CoreError::BurnInRunning)
    );
    assert_eq!(
        h.cab.release_slot(1, secs(5), h.now),
        Err(CoreError::BurnInRunning)
    );
    h.drain();
}

#[test]
fn the_door_opening_aborts_the_burn_in_every_lock_locked_and_not_as_forced() {
    let mut h = Harness::new();
    h.cab.start_burn_in(3, ms(100), h.now).unwrap();
    h.wire(&[]);
    assert!(!h.cab.door_locked());
    h.take_events();
    // The door springs open on its burn-in pulse.
    h.input(InputId::DoorSensor, true);
    let report = h.burn_in_report().expect("aborted");
    assert_eq!(
        report.aborted.as_deref(),
        Some("the door opened (cycle 1, door-lock)")
    );
    assert!(!report.passed());
    assert!(h.cab.door_locked());
    assert!(h.cab.slots().all(|s| !s.released));
    assert!(!h.events.iter().any(|e| matches!(
        e,
        Event::DoorAlarm {
            kind: DoorAlarmKind::Forced,
            ..
        }
    )));
    assert_eq!(h.cab.timer(Timer::BurnInStep), None);
    h.cab.unlock_door(secs(1), h.now).unwrap();

    // LockDoor aborts too.
    let mut h = Harness::new();
    h.cab.start_burn_in(1, ms(100), h.now).unwrap();
    h.advance_wired(ms(250), &[]);
    h.cab.lock_door(h.now);
    h.drain();
    let report = h.burn_in_report().expect("aborted");
    assert_eq!(
        report.aborted.as_deref(),
        Some("LockDoor was called (cycle 1, slot-1-lock)")
    );
    assert!(h.cab.slots().all(|s| !s.released));
}

#[test]
fn the_burn_in_pulse_ends_by_itself_even_if_the_step_timer_were_lost() {
    let mut h = Harness::new();
    h.cab
        .start_burn_in(1, MAX_BURN_IN_SETTLE * 10, h.now)
        .unwrap();
    h.drain();
    // Settle is clamped; the lock's own pulse deadline is armed, at most twice the settle time.
    let deadline = h.cab.timer(Timer::DoorUnlock).expect("pulse armed");
    assert_eq!(deadline, h.now + MAX_BURN_IN_SETTLE * 2);
    assert!(deadline <= h.now + MAX_PULSE);
    assert_eq!(
        h.cab.timer(Timer::BurnInStep),
        Some(h.now + MAX_BURN_IN_SETTLE)
    );
}

// ----- exhaustive properties over random interleavings -----

#[derive(Debug, Clone)]
enum Op {
    Unlock(u64),
    Lock,
    Release(u32, u64),
    Indicator(u32, u8),
    Beep(u8),
    Input(u8, bool),
    Advance(u64),
    BurnIn(u32, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..120_000).prop_map(Op::Unlock),
        Just(Op::Lock),
        (0u32..5, 0u64..120_000).prop_map(|(s, d)| Op::Release(s, d)),
        (0u32..5, 0u8..3).prop_map(|(s, m)| Op::Indicator(s, m)),
        (0u8..4).prop_map(Op::Beep),
        (0u8..8, any::<bool>()).prop_map(|(i, l)| Op::Input(i, l)),
        (0u64..90_000).prop_map(Op::Advance),
        (0u32..4, 0u64..20_000).prop_map(|(c, s)| Op::BurnIn(c, s)),
    ]
}

fn input_id(i: u8) -> InputId {
    match i {
        0 => InputId::DoorSensor,
        1 => InputId::Tamper,
        2 => InputId::FingerTouch,
        6 => InputId::LockFeedback(OutputId::DoorLock),
        7 => InputId::LockFeedback(OutputId::SlotLock(1)),
        n => InputId::SlotPresence(u32::from(n) - 2),
    }
}

fn apply(h: &mut Harness, op: &Op) {
    let now = h.now;
    match *op {
        Op::Unlock(d) => drop(h.cab.unlock_door(ms(d), now)),
        Op::Lock => h.cab.lock_door(now),
        Op::Release(s, d) => drop(h.cab.release_slot(s, ms(d), now)),
        Op::Indicator(s, m) => drop(h.cab.set_indicator(
            s,
            IndicatorMode::ALL[usize::from(m)],
            now,
        )),
        Op::Beep(p) => drop(h.cab.beep(BeepPattern::ALL[usize::from(p)], now)),
        Op::Input(i, l) => h.cab.handle_input(input_id(i), l, now),
        Op::Advance(d) => h.advance(ms(d)),
        Op::BurnIn(c, s) => drop(h.cab.start_burn_in(c, ms(s), now)),
    }
    h.drain();
}

/// Replay the commanded outputs to get each line's level as the hardware sees it.
fn line_levels(outputs: &[SetOutput]) -> BTreeMap<OutputId, bool> {
    outputs.iter().map(|o| (o.id, o.active)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Fail-secure: whatever happens, an active lock line always has a pulse deadline at most
    /// MAX_PULSE ahead (burn-in pulses included), and once MAX_PULSE passes without a new unlock
    /// (and any burn-in has ended) every lock line is locked.
    #[test]
    fn every_unlock_ends_by_itself(ops in proptest::collection::vec(op(), 0..60), debounce_ms in 0u64..30) {
        let mut h = Harness::with(config(ms(debounce_ms)), &[]);
        for op in &ops {
            apply(&mut h, op);
            let levels = line_levels(&h.outputs);
            for (id, active) in &levels {
                prop_assert_eq!(Some(*active), h.cab.output(*id), "driven level matches the core's view");
                if id.is_lock() && *active {
                    let timer = match id { OutputId::DoorLock => Timer::DoorUnlock, OutputId::SlotLock(n) => Timer::SlotRelease(*n), _ => unreachable!() };
                    let deadline = h.cab.timer(timer);
                    prop_assert!(deadline.is_some_and(|t| t <= h.now + MAX_PULSE), "{id:?} active with deadline {deadline:?}");
                }
            }
            prop_assert_eq!(h.cab.door_locked(), !levels[&OutputId::DoorLock]);
        }
        // A burn-in (at most 3 cycles x 3 locks x 2 x the 10 s settle limit here) drives its own
        // pulses until it ends; after that and MAX_PULSE, everything is locked.
        h.advance(secs(3 * 3 * 2 * 10) + MAX_PULSE);
        prop_assert!(!h.cab.burn_in_running());
        let levels = line_levels(&h.outputs);
        prop_assert!(levels.iter().filter(|(id, _)| id.is_lock()).all(|(_, active)| !active), "{levels:?}");
    }

    /// Alarms come in raise/clear pairs, a forced alarm only ever follows an opening while locked,
    /// and no event repeats a state (no two DoorChanged with the same value in a row).
    #[test]
    fn events_are_consistent(ops in proptest::collection::vec(op(), 0..80)) {
        let mut h = Harness::with(config(ms(5)), &[]);
        let mut door_locked = true;
        let mut door_open = false;
        let mut forced = false;
        let mut held = false;
        for op in &ops {
            apply(&mut h, op);
            for ev in h.take_events() {
                match ev {
                    Event::DoorLockChanged { locked } => { prop_assert_ne!(locked, door_locked); door_locked = locked; }
                    Event::DoorChanged { open } => { prop_assert_ne!(open, door_open); door_open = open; }
                    Event::DoorAlarm { kind: DoorAlarmKind::Forced, active } => {
                        prop_assert_ne!(active, forced);
                        if active { prop_assert!(door_open && door_locked, "forced only when opened while locked"); }
                        forced = active;
                    }
                    Event::DoorAlarm { kind: DoorAlarmKind::HeldOpen, active } => {
                        prop_assert_ne!(active, held);
                        prop_assert_eq!(active, door_open);
                        held = active;
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(h.cab.door_locked(), door_locked);
            prop_assert_eq!(h.cab.door_open(), door_open);
        }
    }
}
