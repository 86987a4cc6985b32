//! The sans-IO policy core: sessions at the cabinet, checkout and return, alarms.
//!
//! Inputs are `handle_*(.., now)` calls (hardware signals already resolved by the driver: a badge
//! arrives as its keyed hash, a key tag as the key's id), console commands, and answers to the
//! core's own requests (`handle_pin_checked`, `handle_commit_failed`). Outputs are drained with
//! [`Core::poll_effect`]; [`Core::poll_timeout`] gives the next session deadline, and
//! [`Core::handle_tick`] runs the wall-clock checks (overdue keys, validity ends, lockouts).
//!
//! Anything that opens a slot or the door leaves the core only inside an [`Effect::Commit`], after
//! the audit event it depends on: the driver performs `then` only once the commit succeeded.
//! The core never reads a clock or an RNG of its own; randomness (return slots) comes from a
//! seed given at construction.

pub mod decision;
pub mod effects;
pub mod session;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use rand::SeedableRng;
use zeroize::Zeroizing;

use crate::model::{AlarmKind, KeyId, Loan, PolicyState, SlotNumber, UnixTime, UserId};

use decision::{check_user, decide_checkout, key_available, CheckoutRequest, Decision, Denial};
use effects::{
    key_subject, slot_subject, user_subject, Actuation, Change, Commit, Effect, Event, EventKind,
};
pub use session::{Factor, PendingCritical, Session, SessionView};

/// Local civil time, computed by the driver from the wall clock and the time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    /// Day of week, 0 = Monday ... 6 = Sunday.
    pub weekday: u8,
    /// Minutes since local midnight.
    pub minute: u16,
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
}

/// "Now", as the driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, for session deadlines.
    pub mono: Instant,
    /// Wall clock, Unix seconds.
    pub wall: UnixTime,
    /// Local civil time, for schedules and holidays.
    pub local: LocalTime,
    /// Whether the wall clock is plausibly set (not before the firmware was built).
    pub clock_valid: bool,
}

/// How long a result stays on the display.
const MESSAGE_TIME: Duration = Duration::from_secs(5);
/// Extra time, beyond the release pulse, for a key to leave or enter a slot.
const SLOT_GRACE: Duration = Duration::from_secs(5);
/// Extra time for a door cabinet (open door, find the key, close).
const DOOR_GRACE: Duration = Duration::from_secs(60);

/// Something the console or an admin is told about (signals on the bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A request was refused.
    Denied {
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A checkout was granted.
    Granted {
        /// Key label.
        key: String,
        /// Slot (0 = door).
        slot: u32,
        /// Due back.
        due_at: UnixTime,
    },
    /// An alarm was raised or cleared.
    Alarm {
        /// Kind.
        kind: AlarmKind,
        /// Subject.
        subject: String,
        /// Raised (true) or cleared.
        active: bool,
    },
}

/// A console command refused in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// The command does not fit the session's state.
    #[error("nothing to do that for: the session is {0}")]
    WrongState(&'static str),
    /// No such key.
    #[error("no key labelled or tagged {0:?}")]
    UnknownKey(String),
    /// No such reason.
    #[error("no reason code {0:?}")]
    UnknownReason(String),
}

/// A key as offered to the session's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOffer {
    /// Key id.
    pub key: KeyId,
    /// `Ok` if the user may take it now, else why not.
    pub availability: Result<(), Denial>,
}

/// The policy core.
#[derive(Debug)]
pub struct Core {
    state: PolicyState,
    session: Session,
    /// Active alarms (kind, subject).
    alarms: BTreeSet<(AlarmKind, String)>,
    /// Slot presence as last reported by the hardware.
    sensors: BTreeMap<SlotNumber, bool>,
    effects: VecDeque<Effect>,
    notices: VecDeque<Notice>,
    rng: StdRng,
    attempt: u64,
    out_of_service: Option<String>,
    view_changed: bool,
}

impl Core {
    /// A core over `state`, with the alarms the database says are active and `seed` for its RNG.
    pub fn new(state: PolicyState, active_alarms: Vec<(AlarmKind, String)>, seed: u64) -> Core {
        Core {
            state,
            session: Session::Idle,
            alarms: active_alarms.into_iter().collect(),
            sensors: BTreeMap::new(),
            effects: VecDeque::new(),
            notices: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            attempt: 0,
            out_of_service: None,
            view_changed: true,
        }
    }

    /// A core that refuses everything and says why (database unusable at start).
    pub fn out_of_service(reason: String, seed: u64) -> Core {
        let mut core = Core::new(PolicyState::default(), Vec::new(), seed);
        core.out_of_service = Some(reason);
        core
    }

    // ---- getters ----

    /// The state the decisions read.
    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// `None` when ready, else why nothing opens.
    pub fn out_of_service_reason(&self) -> Option<&str> {
        self.out_of_service.as_deref()
    }

    /// Active alarms.
    pub fn active_alarms(&self) -> impl Iterator<Item = &(AlarmKind, String)> {
        self.alarms.iter()
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// What the console sees.
    pub fn session_view(&self) -> SessionView {
        let name = |id: &UserId| {
            self.state
                .users
                .get(id)
                .map(|u| u.display_name.clone())
                .unwrap_or_default()
        };
        let label = |id: &KeyId| {
            self.state
                .keys
                .get(id)
                .map(|k| (k.label.clone(), k.notes.clone()))
                .unwrap_or_default()
        };
        let mut view = SessionView {
            state: self.session.name(),
            ..SessionView::default()
        };
        match &self.session {
            Session::Idle => {
                view.prompt = match &self.out_of_service {
                    Some(why) => format!("Out of service: {why}"),
                    None => "Scan your badge or finger, or a key's tag to return it".into(),
                }
            }
            Session::Pin {
                user,
                digits,
                second,
                notice,
                ..
            } => {
                view.user = name(user);
                view.pin_length = digits.len() as u32;
                let ask = if second.is_some() {
                    "Second person: enter your PIN, then Enter"
                } else {
                    "Enter your PIN, then Enter"
                };
                view.prompt = match notice {
                    Some(n) => format!("{n}. {ask}"),
                    None => ask.into(),
                };
            }
            Session::CheckingPin { user, .. } => {
                view.user = name(user);
                view.prompt = "Checking...".into();
            }
            Session::ChooseKey {
                user,
                entry,
                notice,
                ..
            } => {
                view.user = name(user);
                view.entry = entry.clone();
                let ask = "Type the key's label, then Enter (or scan a key to return it)";
                view.prompt = match notice {
                    Some(n) => format!("{n}. {ask}"),
                    None => ask.into(),
                };
            }
            Session::ChooseReason {
                user, key, entry, ..
            } => {
                view.user = name(user);
                (view.key, view.notes) = label(key);
                view.entry = entry.clone();
                view.prompt = format!(
                    "Reason for {}: {}",
                    view.key,
                    self.reasons_menu().join("  ")
                );
            }
            Session::SecondPerson { pending, .. } => {
                view.user = name(&pending.user);
                (view.key, view.notes) = label(&pending.key);
                view.prompt = format!(
                    "{} is critical: a second person must scan their badge or finger",
                    view.key
                );
            }
            Session::TakeKey {
                user, key, slot, ..
            } => {
                view.user = name(user);
                (view.key, view.notes) = label(key);
                view.slot = slot.unwrap_or(0);
                view.prompt = match slot {
                    Some(s) => format!("Take key {} from slot {s}", view.key),
                    None => format!("Door open: take key {}", view.key),
                };
            }
            Session::Return {
                user,
                key,
                slot,
                wrong,
                ..
            } => {
                view.user = user.as_ref().map(name).unwrap_or_default();
                (view.key, view.notes) = label(key);
                view.slot = *slot;
                view.prompt = match wrong {
                    Some(w) => format!("Wrong slot {w}: move key {} to slot {slot}", view.key),
                    None => format!("Put key {} in slot {slot}", view.key),
                };
            }
            Session::Message { text, .. } => view.prompt = text.clone(),
        }
        view
    }

    /// Whether the session view changed since the last call (then the driver republishes it).
    pub fn take_view_changed(&mut self) -> bool {
        std::mem::take(&mut self.view_changed)
    }

    /// Active reason codes in menu order (the keypad picks by 1-based position).
    pub fn reasons_in_order(&self) -> Vec<&crate::model::Reason> {
        self.state.reasons.values().filter(|r| r.active).collect()
    }

    fn reasons_menu(&self) -> Vec<String> {
        self.reasons_in_order()
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}={}", i + 1, r.code))
            .collect()
    }

    /// Keys offered to the session's user (console `ListKeys`).
    pub fn key_offers(&self, now: &Now) -> Result<Vec<KeyOffer>, ConsoleError> {
        let user = match &self.session {
            Session::ChooseKey { user, .. } | Session::ChooseReason { user, .. } => *user,
            other => return Err(ConsoleError::WrongState(other.name())),
        };
        let Some(u) = self.state.users.get(&user) else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        Ok(self
            .state
            .keys
            .keys()
            .map(|&key| KeyOffer {
                key,
                availability: key_available(&self.state, u, key, now),
            })
            .collect())
    }

    // ---- outputs ----

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The next notice for the bus.
    #[must_use]
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// When `handle_timeout` must next be called. Moved by every `handle_*` and console call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.deadline()
    }

    // ---- state replacement ----

    /// Replace the decision state after an admin change (or after a failed commit, from the
    /// database). Open loans the session depends on are re-read from the new state.
    ///
    /// An admin placing a key in a slot (`PlaceKey`) resolves a "key in the wrong place" alarm
    /// about that slot: it is cleared here.
    pub fn replace_state(&mut self, state: PolicyState, now: &Now) {
        self.state = state;
        self.view_changed = true;
        let resolved: Vec<String> = self
            .alarms
            .iter()
            .filter(|(kind, subject)| {
                *kind == AlarmKind::WrongSlot
                    && subject
                        .strip_prefix("slot:")
                        .and_then(|n| n.parse::<SlotNumber>().ok())
                        .is_some_and(|n| self.state.slot_contents.contains_key(&n))
            })
            .map(|(_, subject)| subject.clone())
            .collect();
        for subject in resolved {
            self.set_alarm(AlarmKind::WrongSlot, subject, false, vec![], now);
        }
    }

    // ---- hardware inputs ----

    /// A badge scan, as the keyed hash of its code.
    pub fn handle_badge(&mut self, badge_hash: &str, now: &Now) {
        let user = self.state.badges.get(badge_hash).copied();
        self.handle_identify(user, Factor::Badge, now);
    }

    /// A fingerprint match on the module.
    pub fn handle_fingerprint(&mut self, template: u32, now: &Now) {
        let user = self.state.user_by_fingerprint(template).map(|u| u.id);
        self.handle_identify(user, Factor::Fingerprint, now);
    }

    /// A scan the reader rejected (garbled, too long, incomplete) or a finger not matched.
    pub fn handle_scan_rejected(&mut self, reader: &str, reason: &str, now: &Now) {
        self.record(
            EventKind::ScanRejected,
            "",
            &format!("reader:{reader}"),
            vec![("reason", reason.to_owned())],
        );
        self.feedback(Actuation::Beep("error"));
        if matches!(self.session, Session::Idle | Session::Message { .. }) {
            self.show(format!("Scan not read ({reason}); try again"), now);
        }
    }

    /// A key's tag was scanned: return it.
    pub fn handle_tag(&mut self, key: KeyId, now: &Now) {
        if let Some(why) = self.out_of_service.clone() {
            return self.deny_show("", &Denial::OutOfService(why), "door", now);
        }
        let user = match &self.session {
            Session::Idle | Session::Message { .. } => None,
            Session::ChooseKey { user, .. } => Some(*user),
            _ => {
                self.feedback(Actuation::Beep("error"));
                return;
            }
        };
        self.start_return(user, key, now);
    }

    /// A keypad key (`0`-`9`, `*`, `#`, `enter`, `clear`, `cancel`).
    pub fn handle_keypad(&mut self, key: &str, now: &Now) {
        if key == "cancel" {
            return self.cancel(now);
        }
        let timeout = self.session_timeout();
        match &mut self.session {
            Session::Pin {
                digits,
                deadline,
                notice,
                ..
            } => {
                *deadline = now.mono + timeout;
                *notice = None;
                match key {
                    "clear" | "*" => digits.clear(),
                    "enter" | "#" => return self.submit_pin(now),
                    d if d.len() == 1
                        && d.as_bytes()[0].is_ascii_digit()
                        && digits.len() < self.state.settings.pin_max_length as usize =>
                    {
                        digits.push_str(d);
                    }
                    _ => {}
                }
                self.view_changed = true;
            }
            Session::ChooseKey {
                entry,
                deadline,
                notice,
                ..
            } => {
                *deadline = now.mono + timeout;
                *notice = None;
                match key {
                    "clear" | "*" => entry.clear(),
                    "enter" | "#" => {
                        let text = std::mem::take(entry);
                        self.view_changed = true;
                        if let Err(e) = self.choose_key(&text, now) {
                            self.set_notice(e.to_string());
                            self.feedback(Actuation::Beep("error"));
                        }
                        return;
                    }
                    d if d.len() == 1 && entry.len() < 64 => entry.push_str(d),
                    _ => {}
                }
                self.view_changed = true;
            }
            Session::ChooseReason {
                entry, deadline, ..
            } => {
                *deadline = now.mono + timeout;
                match key {
                    "clear" | "*" => entry.clear(),
                    "enter" | "#" => {
                        let picked = entry
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .and_then(|i| self.reasons_in_order().get(i).map(|r| r.code.clone()));
                        if let Session::ChooseReason { entry, .. } = &mut self.session {
                            entry.clear();
                        }
                        self.view_changed = true;
                        match picked {
                            Some(code) => {
                                let _ = self.choose_reason(&code, now);
                            }
                            None => self.feedback(Actuation::Beep("error")),
                        }
                        return;
                    }
                    d if d.len() == 1 && entry.len() < 3 => entry.push_str(d),
                    _ => {}
                }
                self.view_changed = true;
            }
            _ => {}
        }
    }

    /// The PIN check the core asked for came back.
    pub fn handle_pin_checked(&mut self, attempt: u64, ok: bool, now: &Now) {
        let Session::CheckingPin {
            user,
            factor,
            attempt: expected,
            second,
            ..
        } = &self.session
        else {
            return;
        };
        if *expected != attempt {
            return;
        }
        let (user_id, factor, second) = (*user, *factor, second.clone());
        let Some(user) = self.state.users.get(&user_id).cloned() else {
            return self.go_idle();
        };
        if !ok {
            return self.wrong_pin(&user, factor, second, now);
        }
        let mut changes = Vec::new();
        if user.failed_pins > 0 {
            changes.push(Change::PinReset { user: user_id });
            if let Some(u) = self.state.users.get_mut(&user_id) {
                u.failed_pins = 0;
            }
        }
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Authenticated,
                actor: user.name.clone(),
                subject: user_subject(&user.name),
                detail: vec![
                    ("factor", factor.as_str().to_owned()),
                    ("second_person", second.is_some().to_string()),
                ],
            }],
            vec![],
        );
        match second {
            None => {
                self.session = Session::ChooseKey {
                    user: user_id,
                    entry: String::new(),
                    notice: None,
                    deadline: now.mono + self.session_timeout(),
                };
                self.view_changed = true;
                self.feedback(Actuation::Beep("ack"));
            }
            Some(pending) => self.decide(pending, Some(user_id), now),
        }
    }

    /// The slot's presence sensor changed.
    pub fn handle_slot(&mut self, slot: SlotNumber, occupied: bool, now: &Now) {
        self.sensors.insert(slot, occupied);
        if occupied {
            self.key_inserted(slot, now);
        } else {
            self.key_removed(slot, now);
        }
    }

    /// Initial slot presence read from the hardware at start (no events).
    pub fn set_slot_sensor(&mut self, slot: SlotNumber, occupied: bool) {
        self.sensors.insert(slot, occupied);
    }

    /// The door sensor changed. A door cabinet's grant is taken when the door closes again.
    pub fn handle_door(&mut self, open: bool, now: &Now) {
        if open || self.state.settings.slot_locks {
            return;
        }
        if let Session::TakeKey {
            user,
            key,
            slot: None,
            ..
        } = self.session
        {
            self.taken(user, key, None, now);
        }
    }

    /// hwd raised or cleared a door alarm (`forced`, `held-open`).
    pub fn handle_door_alarm(&mut self, kind: &str, active: bool, now: &Now) {
        let kind = match kind {
            "forced" => AlarmKind::DoorForced,
            "held-open" => AlarmKind::DoorHeldOpen,
            _ => return,
        };
        self.set_alarm(kind, "door".into(), active, vec![], now);
    }

    /// The tamper switch changed.
    pub fn handle_tamper(&mut self, active: bool, now: &Now) {
        self.set_alarm(AlarmKind::Tamper, "cabinet".into(), active, vec![], now);
    }

    /// A session deadline passed.
    pub fn handle_timeout(&mut self, now: &Now) {
        let Some(deadline) = self.session.deadline() else {
            return;
        };
        if now.mono < deadline {
            return;
        }
        match self.session.clone() {
            Session::TakeKey {
                user, key, slot, ..
            } => {
                let (actor, label) = self.names(Some(user), key);
                if let Some(loan) = self.state.loans.remove(&key) {
                    let mut then = Vec::new();
                    if let Some(s) = slot {
                        then.push(Actuation::Indicator(s, "off"));
                    }
                    self.commit(
                        vec![Change::CloseLoan {
                            key,
                            at: now.wall,
                            returned_by: None,
                        }],
                        vec![Event {
                            kind: EventKind::GrantLapsed,
                            actor,
                            subject: key_subject(&label),
                            detail: vec![("granted_at", loan.granted_at.to_string())],
                        }],
                        then,
                    );
                }
                self.show("Key not taken; the grant lapsed".into(), now);
            }
            Session::Return { slot, .. } => {
                self.feedback(Actuation::Indicator(slot, "off"));
                self.go_idle();
            }
            _ => self.go_idle(),
        }
    }

    /// Wall-clock checks: overdue keys, holders whose validity ended, lockouts that ended.
    /// The driver calls this periodically (every few seconds) and after the clock is set.
    pub fn handle_tick(&mut self, now: &Now) {
        if !now.clock_valid || self.out_of_service.is_some() {
            return;
        }
        let loans: Vec<Loan> = self.state.loans.values().cloned().collect();
        for loan in loans {
            if loan.taken_at.is_none() {
                continue;
            }
            let label = self.label(loan.key);
            let subject = key_subject(&label);
            if now.wall >= loan.due_at {
                let holder = self.user_name(loan.user);
                self.set_alarm(
                    AlarmKind::Overdue,
                    subject.clone(),
                    true,
                    vec![("holder", holder), ("due_at", loan.due_at.to_string())],
                    now,
                );
            }
            let expired = self
                .state
                .users
                .get(&loan.user)
                .and_then(|u| u.valid_until)
                .is_some_and(|until| now.wall >= until);
            if expired {
                let holder = self.user_name(loan.user);
                self.set_alarm(
                    AlarmKind::HolderExpired,
                    subject,
                    true,
                    vec![("holder", holder)],
                    now,
                );
            }
        }
        let ended: Vec<(UserId, String)> = self
            .state
            .users
            .values()
            .filter(|u| u.locked_until.is_some_and(|t| now.wall >= t))
            .map(|u| (u.id, u.name.clone()))
            .collect();
        for (id, name) in ended {
            if let Some(u) = self.state.users.get_mut(&id) {
                u.locked_until = None;
                u.failed_pins = 0;
            }
            let subject = user_subject(&name);
            let mut events = vec![Event {
                kind: EventKind::LockoutEnded,
                actor: String::new(),
                subject: subject.clone(),
                detail: vec![],
            }];
            let mut changes = vec![Change::PinReset { user: id }];
            if self
                .alarms
                .remove(&(AlarmKind::PinLockout, subject.clone()))
            {
                changes.push(Change::ClearAlarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    at: now.wall,
                });
                events.push(alarm_event(AlarmKind::PinLockout, &subject, false, vec![]));
                self.notices.push_back(Notice::Alarm {
                    kind: AlarmKind::PinLockout,
                    subject,
                    active: false,
                });
            }
            self.commit(changes, events, vec![]);
        }
    }

    /// The driver could not commit; nothing of it was performed. The driver then reloads the
    /// state from the database with [`Core::replace_state`].
    pub fn handle_commit_failed(&mut self, now: &Now) {
        self.notices.push_back(Notice::Denied {
            code: Denial::Storage.code(),
            message: Denial::Storage.to_string(),
        });
        self.feedback(Actuation::Beep("error"));
        self.show(Denial::Storage.to_string(), now);
    }

    // ---- console commands ----

    /// Pick a key by label or tag code (in `choose-key`).
    pub fn choose_key(&mut self, text: &str, now: &Now) -> Result<(), ConsoleError> {
        let Session::ChooseKey { user, .. } = self.session else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        let Some(key) = self.state.key_by_label_or_tag(text.trim()).map(|k| k.id) else {
            return Err(ConsoleError::UnknownKey(text.to_owned()));
        };
        let Some(u) = self.state.users.get(&user) else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        if let Err(denial) = key_available(&self.state, u, key, now) {
            let label = self.label(key);
            let actor = u.name.clone();
            self.deny(&actor, &denial, &key_subject(&label));
            self.set_notice(format!("{label}: {denial}"));
            return Ok(());
        }
        self.session = Session::ChooseReason {
            user,
            key,
            entry: String::new(),
            deadline: now.mono + self.session_timeout(),
        };
        self.view_changed = true;
        Ok(())
    }

    /// Pick a reason code (in `choose-reason`): the checkout is decided.
    pub fn choose_reason(&mut self, code: &str, now: &Now) -> Result<(), ConsoleError> {
        let Session::ChooseReason { user, key, .. } = self.session else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        if !self.state.reasons.get(code).is_some_and(|r| r.active) {
            return Err(ConsoleError::UnknownReason(code.to_owned()));
        }
        self.decide(
            PendingCritical {
                user,
                key,
                reason: code.to_owned(),
            },
            None,
            now,
        );
        Ok(())
    }

    /// End the session (console Cancel or the keypad's cancel key). A grant already released
    /// stays until it lapses or the key is taken; a return in progress is abandoned.
    pub fn cancel(&mut self, now: &Now) {
        match &self.session {
            Session::TakeKey { .. } => {}
            Session::Return { slot, .. } => {
                let slot = *slot;
                self.feedback(Actuation::Indicator(slot, "off"));
                self.go_idle();
            }
            Session::Idle => {}
            _ => self.show("Cancelled".into(), now),
        }
    }

    // ---- internals ----

    fn session_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.state.settings.session_timeout_seconds))
    }

    fn release_time(&self) -> Duration {
        Duration::from_secs(u64::from(self.state.settings.release_seconds))
    }

    fn label(&self, key: KeyId) -> String {
        self.state
            .keys
            .get(&key)
            .map(|k| k.label.clone())
            .unwrap_or_else(|| format!("#{key}"))
    }

    fn user_name(&self, user: UserId) -> String {
        self.state
            .users
            .get(&user)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| format!("#{user}"))
    }

    fn names(&self, user: Option<UserId>, key: KeyId) -> (String, String) {
        (
            user.map(|u| self.user_name(u)).unwrap_or_default(),
            self.label(key),
        )
    }

    fn go_idle(&mut self) {
        self.session = Session::Idle;
        self.view_changed = true;
    }

    fn show(&mut self, text: String, now: &Now) {
        self.session = Session::Message {
            text,
            deadline: now.mono + MESSAGE_TIME,
        };
        self.view_changed = true;
    }

    fn set_notice(&mut self, text: String) {
        if let Session::ChooseKey { notice, .. } | Session::Pin { notice, .. } = &mut self.session {
            *notice = Some(text);
            self.view_changed = true;
        }
    }

    fn feedback(&mut self, a: Actuation) {
        debug_assert!(!a.opens(), "opening actuations go through a commit");
        self.effects.push_back(Effect::Feedback(a));
    }

    fn commit(&mut self, changes: Vec<Change>, events: Vec<Event>, then: Vec<Actuation>) {
        self.effects.push_back(Effect::Commit(Commit {
            changes,
            events,
            then,
        }));
    }

    fn record(
        &mut self,
        kind: EventKind,
        actor: &str,
        subject: &str,
        detail: Vec<(&'static str, String)>,
    ) {
        self.commit(
            vec![],
            vec![Event {
                kind,
                actor: actor.to_owned(),
                subject: subject.to_owned(),
                detail,
            }],
            vec![],
        );
    }

    fn deny(&mut self, actor: &str, denial: &Denial, subject: &str) {
        self.record(
            EventKind::Denied,
            actor,
            subject,
            vec![
                ("reason", denial.code().to_owned()),
                ("message", denial.to_string()),
            ],
        );
        self.notices.push_back(Notice::Denied {
            code: denial.code(),
            message: denial.to_string(),
        });
        self.feedback(Actuation::Beep("error"));
    }

    fn deny_show(&mut self, actor: &str, denial: &Denial, subject: &str, now: &Now) {
        self.deny(actor, denial, subject);
        self.show(denial.to_string(), now);
    }

    fn handle_identify(&mut self, user: Option<UserId>, factor: Factor, now: &Now) {
        if let Some(why) = self.out_of_service.clone() {
            return self.deny_show("", &Denial::OutOfService(why), "cabinet", now);
        }
        let second = match &self.session {
            Session::Idle | Session::Message { .. } => None,
            Session::SecondPerson { pending, .. } => Some(pending.clone()),
            _ => {
                // Someone is mid-session: a new scan does not hijack it.
                self.feedback(Actuation::Beep("error"));
                return;
            }
        };
        let Some(user_id) = user else {
            let denial = match factor {
                Factor::Badge => Denial::UnknownBadge,
                Factor::Fingerprint => Denial::UnknownFingerprint,
            };
            return self.deny_show("", &denial, "cabinet", now);
        };
        let Some(user) = self.state.users.get(&user_id).cloned() else {
            return self.deny_show("", &Denial::UnknownBadge, "cabinet", now);
        };
        let subject = user_subject(&user.name);
        let allowed = match user.factors {
            crate::model::Factors::BadgePin => factor == Factor::Badge,
            crate::model::Factors::FingerprintPin => factor == Factor::Fingerprint,
            crate::model::Factors::AnyPin => true,
        };
        let refusal = check_user(&user, now)
            .err()
            .or_else(|| (!allowed).then_some(Denial::WrongFactor))
            .or_else(|| (!user.has_pin).then_some(Denial::NoPin));
        if let Some(denial) = refusal {
            if let Some(pending) = second {
                // The first person keeps waiting for a valid second person.
                self.deny(&user.name, &denial, &subject);
                self.session = Session::SecondPerson {
                    pending,
                    deadline: now.mono + self.window(),
                };
                self.view_changed = true;
                return;
            }
            return self.deny_show(&user.name, &denial, &subject, now);
        }
        if let Some(p) = &second {
            if p.user == user_id {
                self.deny(&user.name, &Denial::SecondPersonSame, &subject);
                return;
            }
        }
        let deadline = now.mono + self.pin_time(second.is_some());
        self.session = Session::Pin {
            user: user_id,
            factor,
            digits: Zeroizing::new(String::new()),
            second,
            notice: None,
            deadline,
        };
        self.view_changed = true;
        self.feedback(Actuation::Beep("ack"));
    }

    /// How long a PIN entry may take: the session timeout, or the second person's window.
    fn pin_time(&self, second_person: bool) -> Duration {
        if second_person {
            self.window()
        } else {
            self.session_timeout()
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.state.settings.dual_auth_window_seconds))
    }

    fn submit_pin(&mut self, now: &Now) {
        let Session::Pin {
            user,
            factor,
            digits,
            second,
            deadline,
            ..
        } = &mut self.session
        else {
            return;
        };
        if digits.is_empty() {
            return;
        }
        self.attempt += 1;
        let pin = Zeroizing::new(std::mem::take(&mut **digits));
        let (user, factor, second, deadline) = (*user, *factor, second.take(), *deadline);
        self.effects.push_back(Effect::CheckPin {
            user,
            pin,
            attempt: self.attempt,
        });
        self.session = Session::CheckingPin {
            user,
            factor,
            attempt: self.attempt,
            second,
            deadline: deadline.max(now.mono + Duration::from_secs(10)),
        };
        self.view_changed = true;
    }

    fn wrong_pin(
        &mut self,
        user: &crate::model::User,
        factor: Factor,
        second: Option<PendingCritical>,
        now: &Now,
    ) {
        let count = user.failed_pins + 1;
        let limit = self.state.settings.pin_attempts.max(1);
        let subject = user_subject(&user.name);
        let locked_until =
            (count >= limit).then(|| now.wall + i64::from(self.state.settings.lockout_seconds));
        if let Some(u) = self.state.users.get_mut(&user.id) {
            u.failed_pins = count;
            u.locked_until = locked_until.or(u.locked_until);
        }
        let mut changes = vec![Change::PinFailed {
            user: user.id,
            count,
            locked_until,
        }];
        let mut events = vec![Event {
            kind: EventKind::PinWrong,
            actor: user.name.clone(),
            subject: subject.clone(),
            detail: vec![
                ("count", count.to_string()),
                ("factor", factor.as_str().into()),
            ],
        }];
        if let Some(until) = locked_until {
            if self.alarms.insert((AlarmKind::PinLockout, subject.clone())) {
                changes.push(Change::RaiseAlarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    at: now.wall,
                });
                events.push(alarm_event(
                    AlarmKind::PinLockout,
                    &subject,
                    true,
                    vec![("until", until.to_string())],
                ));
                self.notices.push_back(Notice::Alarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    active: true,
                });
            }
            self.commit(changes, events, vec![]);
            let denial = Denial::LockedOut(until);
            self.notices.push_back(Notice::Denied {
                code: denial.code(),
                message: denial.to_string(),
            });
            self.feedback(Actuation::Beep("alarm"));
            return self.show(denial.to_string(), now);
        }
        self.commit(changes, events, vec![]);
        let denial = Denial::WrongPin(limit - count);
        self.notices.push_back(Notice::Denied {
            code: denial.code(),
            message: denial.to_string(),
        });
        self.feedback(Actuation::Beep("error"));
        let deadline = now.mono + self.pin_time(second.is_some());
        self.session = Session::Pin {
            user: user.id,
            factor,
            digits: Zeroizing::new(String::new()),
            second,
            notice: Some(denial.to_string()),
            deadline,
        };
        self.view_changed = true;
    }

    fn decide(&mut self, pending: PendingCritical, witness: Option<UserId>, now: &Now) {
        let request = CheckoutRequest {
            user: pending.user,
            key: pending.key,
            reason: pending.reason.clone(),
            witness,
        };
        let (actor, label) = self.names(Some(pending.user), pending.key);
        let subject = key_subject(&label);
        match decide_checkout(&self.state, &request, now) {
            Decision::Deny(denials) => {
                let first = denials.first().cloned().unwrap_or(Denial::NotPermitted);
                let all: Vec<&str> = denials.iter().map(Denial::code).collect();
                self.record(
                    EventKind::Denied,
                    &actor,
                    &subject,
                    vec![
                        ("reason", first.code().to_owned()),
                        ("message", first.to_string()),
                        ("all_reasons", all.join(",")),
                        ("request_reason", pending.reason.clone()),
                    ],
                );
                self.notices.push_back(Notice::Denied {
                    code: first.code(),
                    message: first.to_string(),
                });
                self.feedback(Actuation::Beep("error"));
                self.show(format!("{label}: {first}"), now);
            }
            Decision::NeedsSecondPerson => {
                self.session = Session::SecondPerson {
                    pending,
                    deadline: now.mono + self.window(),
                };
                self.view_changed = true;
                self.feedback(Actuation::Beep("attention"));
            }
            Decision::Grant { due_at } => self.grant(pending, witness, due_at, now),
        }
    }

    fn grant(&mut self, p: PendingCritical, witness: Option<UserId>, due_at: UnixTime, now: &Now) {
        let slot = self.state.slot_of(p.key);
        let release = self.state.settings.release_seconds;
        let by_slot = self.state.settings.slot_locks && slot.is_some();
        let then = match (by_slot, slot) {
            (true, Some(s)) => vec![
                Actuation::ReleaseSlot(s, release),
                Actuation::Indicator(s, "blink"),
            ],
            _ => vec![Actuation::UnlockDoor(release)],
        };
        let (actor, label) = self.names(Some(p.user), p.key);
        let mut detail = vec![
            ("reason", p.reason.clone()),
            ("due_at", due_at.to_string()),
            ("slot", slot.map(|s| s.to_string()).unwrap_or_default()),
        ];
        if let Some(w) = witness {
            detail.push(("second_person", self.user_name(w)));
        }
        self.state.loans.insert(
            p.key,
            Loan {
                id: 0,
                key: p.key,
                user: p.user,
                witness,
                reason: p.reason.clone(),
                granted_at: now.wall,
                taken_at: None,
                due_at,
                slot,
            },
        );
        self.commit(
            vec![Change::OpenLoan {
                key: p.key,
                user: p.user,
                witness,
                reason: p.reason,
                granted_at: now.wall,
                due_at,
                slot,
            }],
            vec![Event {
                kind: EventKind::Granted,
                actor,
                subject: key_subject(&label),
                detail,
            }],
            then,
        );
        self.notices.push_back(Notice::Granted {
            key: label,
            slot: if by_slot { slot.unwrap_or(0) } else { 0 },
            due_at,
        });
        let grace = if by_slot { SLOT_GRACE } else { DOOR_GRACE };
        self.session = Session::TakeKey {
            user: p.user,
            key: p.key,
            slot: if by_slot { slot } else { None },
            deadline: now.mono + self.release_time() + grace,
        };
        self.view_changed = true;
    }

    fn taken(&mut self, user: UserId, key: KeyId, slot: Option<SlotNumber>, now: &Now) {
        let (actor, label) = self.names(Some(user), key);
        let due = self.state.loans.get(&key).map(|l| l.due_at);
        if let Some(l) = self.state.loans.get_mut(&key) {
            l.taken_at = Some(now.wall);
        }
        let from = slot.or_else(|| self.state.slot_of(key));
        let mut changes = vec![Change::TakeLoan { key, at: now.wall }];
        let mut then = Vec::new();
        if let Some(s) = from {
            self.state.slot_contents.remove(&s);
            changes.push(Change::SlotContents { slot: s, key: None });
            then.push(Actuation::Indicator(s, "off"));
        }
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Removed,
                actor,
                subject: key_subject(&label),
                detail: vec![("slot", from.map(|s| s.to_string()).unwrap_or_default())],
            }],
            then,
        );
        let due = due
            .and_then(|d| jiff::Timestamp::from_second(d).ok())
            .map(|t| t.strftime(" (due %Y-%m-%d %H:%M UTC)").to_string())
            .unwrap_or_default();
        self.show(format!("Key {label} taken{due}"), now);
    }

    fn key_removed(&mut self, slot: SlotNumber, now: &Now) {
        match self.session.clone() {
            Session::TakeKey {
                user,
                key,
                slot: Some(s),
                ..
            } if s == slot => return self.taken(user, key, Some(slot), now),
            Session::TakeKey {
                user,
                key,
                slot: None,
                ..
            } if self.state.slot_of(key) == Some(slot) => {
                return self.taken(user, key, Some(slot), now)
            }
            Session::Return {
                wrong: Some(w),
                key,
                ..
            } if w == slot => {
                // Moving the key out of the wrong slot, as asked.
                self.state.slot_contents.remove(&slot);
                if let Session::Return { wrong, .. } = &mut self.session {
                    *wrong = None;
                }
                self.view_changed = true;
                let label = self.label(key);
                self.commit(
                    vec![Change::SlotContents { slot, key: None }],
                    vec![],
                    vec![],
                );
                self.set_alarm(
                    AlarmKind::WrongSlot,
                    key_subject(&label),
                    false,
                    vec![],
                    now,
                );
                return;
            }
            _ => {}
        }
        // Nobody was granted this slot.
        let Some(key) = self.state.slot_contents.remove(&slot) else {
            // The records already had it empty: the sensor caught up with them.
            return;
        };
        let subject = key_subject(&self.label(key));
        self.commit(
            vec![Change::SlotContents { slot, key: None }],
            vec![],
            vec![],
        );
        self.set_alarm(
            AlarmKind::UnauthorisedRemoval,
            subject,
            true,
            vec![("slot", slot.to_string())],
            now,
        );
        self.feedback(Actuation::Beep("alarm"));
    }

    fn key_inserted(&mut self, slot: SlotNumber, now: &Now) {
        if let Session::Return {
            user,
            key,
            slot: target,
            returned,
            ..
        } = self.session.clone()
        {
            if !returned {
                self.returned(user, key, slot, now);
                if slot == target {
                    self.feedback(Actuation::Indicator(slot, "off"));
                    self.show(format!("Key {} returned, thank you", self.label(key)), now);
                } else {
                    let label = self.label(key);
                    self.set_alarm(
                        AlarmKind::WrongSlot,
                        key_subject(&label),
                        true,
                        vec![
                            ("expected", target.to_string()),
                            ("actual", slot.to_string()),
                        ],
                        now,
                    );
                    self.feedback(Actuation::Beep("attention"));
                    if let Session::Return {
                        wrong, returned, ..
                    } = &mut self.session
                    {
                        *wrong = Some(slot);
                        *returned = true;
                    }
                    self.view_changed = true;
                }
                return;
            }
            if slot == target {
                // The key moved from the wrong slot to the right one.
                self.state.slot_contents.insert(slot, key);
                self.commit(
                    vec![Change::SlotContents {
                        slot,
                        key: Some(key),
                    }],
                    vec![],
                    vec![Actuation::Indicator(slot, "off")],
                );
                self.show(format!("Key {} returned, thank you", self.label(key)), now);
                return;
            }
        }
        if self.state.slot_contents.contains_key(&slot) {
            // The records already place a key here: the sensor caught up with them.
            return;
        }
        // No return in progress: a key whose home is this slot may simply be put back
        // (fixed-slot cabinets); anything else is an unidentified key in a slot.
        let candidate = (!self.state.settings.random_return_slot)
            .then(|| {
                self.state
                    .keys
                    .values()
                    .find(|k| k.home_slot == Some(slot) && self.state.slot_of(k.id).is_none())
            })
            .flatten()
            .map(|k| k.id);
        match candidate {
            Some(key) if !self.state.slot_contents.contains_key(&slot) => {
                self.returned(None, key, slot, now)
            }
            _ => {
                self.set_alarm(
                    AlarmKind::WrongSlot,
                    slot_subject(slot),
                    true,
                    vec![("detail", "unidentified key inserted".into())],
                    now,
                );
                self.feedback(Actuation::Beep("attention"));
            }
        }
    }

    /// The key is in `slot` again: close its loan (if any), record who brought it back, clear
    /// the alarms about it.
    fn returned(&mut self, by: Option<UserId>, key: KeyId, slot: SlotNumber, now: &Now) {
        let label = self.label(key);
        let subject = key_subject(&label);
        let loan = self.state.loans.remove(&key);
        self.state.slot_contents.insert(slot, key);
        let mut changes = vec![Change::SlotContents {
            slot,
            key: Some(key),
        }];
        let mut detail = vec![("slot", slot.to_string())];
        if let Some(l) = &loan {
            changes.insert(
                0,
                Change::CloseLoan {
                    key,
                    at: now.wall,
                    returned_by: by,
                },
            );
            detail.push(("taken_by", self.user_name(l.user)));
            detail.push(("due_at", l.due_at.to_string()));
            detail.push(("late", (now.wall > l.due_at).to_string()));
            detail.push((
                "different_user",
                by.is_some_and(|b| b != l.user).to_string(),
            ));
        } else {
            detail.push(("taken_by", String::new()));
        }
        let actor = by.map(|u| self.user_name(u)).unwrap_or_default();
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Returned,
                actor,
                subject: subject.clone(),
                detail,
            }],
            vec![],
        );
        for kind in [
            AlarmKind::Overdue,
            AlarmKind::HolderExpired,
            AlarmKind::UnauthorisedRemoval,
        ] {
            self.set_alarm(kind, subject.clone(), false, vec![], now);
        }
    }

    fn start_return(&mut self, user: Option<UserId>, key: KeyId, now: &Now) {
        let (actor, label) = self.names(user, key);
        let subject = key_subject(&label);
        if self.state.slot_of(key).is_some() && !self.state.loans.contains_key(&key) {
            return self.deny_show(&actor, &Denial::AlreadyInCabinet, &subject, now);
        }
        let home = self
            .state
            .keys
            .get(&key)
            .and_then(|k| k.home_slot)
            .filter(|s| self.slot_free(*s));
        let target = if self.state.settings.random_return_slot || home.is_none() {
            let free: Vec<SlotNumber> = self
                .state
                .slots
                .iter()
                .copied()
                .filter(|s| self.slot_free(*s))
                .collect();
            free.into_iter().choose(&mut self.rng)
        } else {
            home
        };
        let Some(slot) = target else {
            return self.deny_show(&actor, &Denial::NoFreeSlot, &subject, now);
        };
        let release = self.state.settings.release_seconds;
        let then = if self.state.settings.slot_locks {
            vec![
                Actuation::ReleaseSlot(slot, release),
                Actuation::Indicator(slot, "blink"),
            ]
        } else {
            vec![
                Actuation::UnlockDoor(release),
                Actuation::Indicator(slot, "blink"),
            ]
        };
        self.commit(
            vec![],
            vec![Event {
                kind: EventKind::ReturnStarted,
                actor,
                subject,
                detail: vec![("slot", slot.to_string())],
            }],
            then,
        );
        let grace = if self.state.settings.slot_locks {
            SLOT_GRACE
        } else {
            DOOR_GRACE
        };
        self.session = Session::Return {
            user,
            key,
            slot,
            wrong: None,
            returned: false,
            deadline: now.mono + self.release_time() + grace,
        };
        self.view_changed = true;
    }

    fn slot_free(&self, slot: SlotNumber) -> bool {
        !self.state.slot_contents.contains_key(&slot)
            && !self.sensors.get(&slot).copied().unwrap_or(false)
    }

    fn set_alarm(
        &mut self,
        kind: AlarmKind,
        subject: String,
        active: bool,
        detail: Vec<(&'static str, String)>,
        now: &Now,
    ) {
        let entry = (kind, subject.clone());
        let changed = if active {
            self.alarms.insert(entry)
        } else {
            self.alarms.remove(&entry)
        };
        if !changed {
            return;
        }
        let change = if active {
            Change::RaiseAlarm {
                kind,
                subject: subject.clone(),
                at: now.wall,
            }
        } else {
            Change::ClearAlarm {
                kind,
                subject: subject.clone(),
                at: now.wall,
            }
        };
        self.commit(
            vec![change],
            vec![alarm_event(kind, &subject, active, detail)],
            vec![],
        );
        self.notices.push_back(Notice::Alarm {
            kind,
            subject,
            active,
        });
        self.view_changed = true;
    }
}

fn alarm_event(
    kind: AlarmKind,
    subject: &str,
    active: bool,
    mut detail: Vec<(&'static str, String)>,
) -> Event {
    detail.insert(0, ("alarm", kind.as_str().to_owned()));
    Event {
        kind: if active {
            EventKind::AlarmRaised
        } else {
            EventKind::AlarmCleared
        },
        actor: String::new(),
        subject: subject.to_owned(),
        detail,
    }
}
