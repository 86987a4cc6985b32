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

mod alarms;
mod checkout;
pub mod decision;
pub mod effects;
mod identify;
mod returns;
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

use alarms::alarm_event;
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

    /// The slot's presence sensor changed.
    pub fn handle_slot(&mut self, slot: SlotNumber, occupied: bool, now: &Now) {
        self.sensors.insert(slot, occupied);
        if occupied {
            self.key_inserted(slot, now);
        } else {
            self.key_removed(slot, now);
        }
    }

    /// After a (re)start, once the slot sensors are set: grants recorded but never taken (the
    /// service stopped while their slot was released) are settled from the sensors.
    pub fn resume(&mut self, now: &Now) {
        let stale: Vec<KeyId> = self
            .state
            .loans
            .values()
            .filter(|l| l.taken_at.is_none())
            .map(|l| l.key)
            .collect();
        for key in stale {
            self.settle_untaken(key, "after-restart", now);
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
}
