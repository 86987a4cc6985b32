//! The console's sans-IO core: what policyd published (its session properties, signals and
//! status) plus the console's own state (list cursor, display timeout) in, a [`Screen`] and
//! [`Command`]s out.
//!
//! - Inputs are `handle_*(.., now)` calls: [`Console::handle_published`] after every read of
//!   policyd's properties, the signals (`handle_denied`, `handle_granted`, `handle_alarm`), the
//!   answers to the console's own calls (`handle_keys`, `handle_reasons`, `handle_call_failed`),
//!   [`Console::handle_unavailable`] when policyd or the bus is gone, the person's keys
//!   ([`Console::handle_key`]) and [`Console::handle_timeout`].
//! - [`Console::screen`] is the pure view `(published state, now) → Screen`; [`keymap`] is the pure
//!   `(Screen, key) → Option<Action>`.
//! - [`Console::poll_command`] drains the calls for the IO loop; [`Console::poll_timeout`] says when
//!   the screen changes by itself.
//!
//! The session logic is policyd's: the console never decides anything, it shows policyd's state
//! and offers the lists policyd allows. It never sees PIN digits (only their count) or badge codes.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// policyd's published session and status: its `org.keywarden.Policy1` properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// `SessionState`: "idle", "pin", "choose-key", "choose-reason", "second-person",
    /// "second-pin", "take-key", "return-key" or "message".
    pub state: String,
    /// `SessionUser`: display name of the user at the cabinet.
    pub user: String,
    /// `SessionPrompt`: one line, what to do next or why not.
    pub prompt: String,
    /// `SessionKey`: chosen key's label.
    pub key: String,
    /// `SessionNotes`: chosen key's notes and restrictions.
    pub notes: String,
    /// `SessionSlot`: slot to use, 0 = none or the door.
    pub slot: u32,
    /// `SessionEntry`: digits typed on the keypad to pick a key or reason (never PIN digits).
    pub entry: String,
    /// `PinLength`: PIN digits typed so far.
    pub pin_length: u32,
    /// `ActiveAlarms`: alarms not cleared yet.
    pub active_alarms: u32,
    /// `Status`: "ready" or why nothing opens.
    pub status: String,
}

/// One key offered to the user (`ListKeys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Label.
    pub label: String,
    /// Kind ("unit", "master", ...).
    pub kind: String,
    /// Notes and restrictions.
    pub notes: String,
    /// "available", "out", "reserved", "not-permitted", ...
    pub status: String,
    /// The user may take it now.
    pub available: bool,
    /// The slot it is in; 0 = not in the cabinet.
    pub slot: u32,
}

/// One reason code (`ListReasons`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonRow {
    /// Code.
    pub code: String,
    /// Description.
    pub description: String,
    /// Longest checkout in minutes; 0 = the site default.
    pub max_minutes: u32,
}

/// A key on the display's own keyboard (not the cabinet's keypad, whose keys go to policyd
/// through the hardware service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Previous item.
    Up,
    /// Next item.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// First item.
    Home,
    /// Last item.
    End,
    /// Pick.
    Enter,
    /// Cancel the session.
    Esc,
    /// Ctrl-C: leave the program (systemd starts it again on the appliance).
    Quit,
    /// Anything else (digits typed here are ignored: PINs go on the keypad).
    Other,
}

/// A call for the IO loop to make on policyd (or the program to end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Re-read every property (`GetAll`).
    Refresh,
    /// `ListKeys`, answered with [`Console::handle_keys`].
    ListKeys,
    /// `ListReasons`, answered with [`Console::handle_reasons`].
    ListReasons,
    /// `ChooseKey(label)`.
    ChooseKey(String),
    /// `ChooseReason(code)`.
    ChooseReason(String),
    /// `Cancel`.
    Cancel,
    /// Leave the program.
    Quit,
}

/// What a key does on a screen ([`keymap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move the list's cursor to this row (local).
    Select(usize),
    /// Wake a display that went back to idle by itself (local).
    Wake,
    /// Ask policyd (or quit).
    Send(Command),
}

/// The body of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// policyd (or the bus) is not reachable.
    Unavailable {
        /// What went wrong, for the technician.
        detail: String,
    },
    /// policyd refuses to open anything.
    OutOfService {
        /// Why (policyd's `Status`).
        why: String,
    },
    /// Nobody at the cabinet.
    Idle {
        /// policyd's prompt ("Scan your badge or finger...").
        prompt: String,
    },
    /// Typing the PIN on the keypad.
    Pin {
        /// Who.
        user: String,
        /// Digits typed so far (shown as asterisks).
        digits: u32,
        /// The second person's PIN for a critical key.
        second: bool,
        /// policyd's prompt (with a wrong-PIN notice).
        prompt: String,
    },
    /// The PIN is being checked.
    Checking {
        /// Who.
        user: String,
    },
    /// Picking a key.
    PickKey {
        /// Who.
        user: String,
        /// The keys offered, as policyd listed them.
        keys: Vec<KeyRow>,
        /// Highlighted row.
        cursor: usize,
        /// Digits typed on the keypad.
        entry: String,
        /// policyd's prompt (with a denial notice).
        prompt: String,
    },
    /// Picking a reason.
    PickReason {
        /// Who.
        user: String,
        /// Chosen key.
        key: String,
        /// Its notes and restrictions.
        notes: String,
        /// The reasons.
        reasons: Vec<ReasonRow>,
        /// Highlighted row.
        cursor: usize,
        /// Digits typed on the keypad.
        entry: String,
    },
    /// A critical key waits for a second person.
    SecondPerson {
        /// First person.
        user: String,
        /// Key.
        key: String,
        /// policyd's prompt.
        prompt: String,
    },
    /// Granted: take the key.
    TakeKey {
        /// Who.
        user: String,
        /// Key.
        key: String,
        /// Its notes and restrictions.
        notes: String,
        /// Slot released; 0 = the door was unlocked.
        slot: u32,
        /// Due back (Unix seconds), from the `Granted` signal.
        due: Option<i64>,
    },
    /// Returning a key: put it in `slot`.
    Return {
        /// Key.
        key: String,
        /// Slot to use.
        slot: u32,
        /// policyd's prompt ("Put key ... in slot N" or "Wrong slot ...").
        prompt: String,
    },
    /// A request was refused.
    Denied {
        /// policyd's message.
        message: String,
    },
    /// Refused: the user is locked out after wrong PINs.
    Lockout {
        /// policyd's message ("locked out until ...").
        message: String,
    },
    /// A result or notice from policyd.
    Message {
        /// The text.
        text: String,
    },
}

/// Everything the display shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// The main part.
    pub body: Body,
    /// The alarm banner, if any alarm is active.
    pub alarms: Option<String>,
    /// A failed call's message, shown until the display timeout.
    pub error: Option<String>,
    /// The display went idle by itself (display timeout) while policyd's session was not idle.
    pub asleep: bool,
}

/// The console's state.
#[derive(Debug)]
pub struct Console {
    published: Option<Published>,
    unavailable: String,
    changed_at: Instant,
    display_timeout: Duration,
    keys: Vec<KeyRow>,
    reasons: Vec<ReasonRow>,
    cursor: usize,
    denial: Option<(String, String, Instant)>,
    grant: Option<(String, u32, i64)>,
    alarms: BTreeSet<(String, String)>,
    error: Option<(String, Instant)>,
    asleep: bool,
    commands: VecDeque<Command>,
}

impl Console {
    /// A console that has not reached policyd yet. The display goes back to idle after
    /// `display_timeout` without a change from policyd or a key on the display.
    pub fn new(display_timeout: Duration, now: Instant) -> Console {
        Console {
            published: None,
            unavailable: "connecting to keywarden-policyd".into(),
            changed_at: now,
            display_timeout,
            keys: Vec::new(),
            reasons: Vec::new(),
            cursor: 0,
            denial: None,
            grant: None,
            alarms: BTreeSet::new(),
            error: None,
            asleep: false,
            commands: VecDeque::new(),
        }
    }

    // ---- inputs ----

    /// policyd's properties, as just read. Asks for the key or reason list when a list screen
    /// begins.
    pub fn handle_published(&mut self, p: Published, now: Instant) {
        let old_state = self.published.as_ref().map(|o| o.state.clone());
        if self.published.as_ref() == Some(&p) {
            return;
        }
        if old_state.as_deref() != Some(p.state.as_str()) {
            self.cursor = 0;
            self.error = None;
            match p.state.as_str() {
                "choose-key" => {
                    self.keys.clear();
                    self.commands.push_back(Command::ListKeys);
                }
                "choose-reason" => {
                    self.reasons.clear();
                    self.commands.push_back(Command::ListReasons);
                }
                _ => {}
            }
        } else if p.state == "choose-key"
            && self
                .published
                .as_ref()
                .is_some_and(|o| o.prompt != p.prompt)
        {
            // A refusal notice: the key statuses may have changed too.
            self.commands.push_back(Command::ListKeys);
        }
        if p.state != "take-key" {
            self.grant = None;
        }
        if p.active_alarms == 0 {
            self.alarms.clear();
        }
        self.published = Some(p);
        self.changed_at = now;
        self.asleep = false;
    }

    /// policyd (or the bus) cannot be reached: `detail` says why.
    pub fn handle_unavailable(&mut self, detail: String, now: Instant) {
        if self.published.is_some() || self.unavailable != detail {
            self.changed_at = now;
        }
        self.published = None;
        self.unavailable = detail;
        self.keys.clear();
        self.reasons.clear();
        self.asleep = false;
    }

    /// The answer to [`Command::ListKeys`]. The cursor starts on the first key the user may take.
    pub fn handle_keys(&mut self, keys: Vec<KeyRow>) {
        let fresh = self.keys.is_empty();
        self.keys = keys;
        if fresh {
            self.cursor = self.keys.iter().position(|k| k.available).unwrap_or(0);
        }
        self.cursor = self.cursor.min(self.keys.len().saturating_sub(1));
    }

    /// The answer to [`Command::ListReasons`].
    pub fn handle_reasons(&mut self, reasons: Vec<ReasonRow>) {
        self.reasons = reasons;
        self.cursor = self.cursor.min(self.reasons.len().saturating_sub(1));
    }

    /// policyd's `Denied` signal.
    pub fn handle_denied(&mut self, code: String, message: String, now: Instant) {
        self.denial = Some((code, message, now));
        self.changed_at = now;
        self.asleep = false;
    }

    /// policyd's `Granted` signal.
    pub fn handle_granted(&mut self, key: String, slot: u32, due: i64, now: Instant) {
        self.grant = Some((key, slot, due));
        self.changed_at = now;
    }

    /// policyd's `AlarmChanged` signal.
    pub fn handle_alarm(&mut self, kind: String, subject: String, active: bool, now: Instant) {
        if active {
            self.alarms.insert((kind, subject));
        } else {
            self.alarms.remove(&(kind, subject));
        }
        self.changed_at = now;
    }

    /// A call the console made was refused or failed: shown until the display timeout.
    pub fn handle_call_failed(&mut self, message: String, now: Instant) {
        self.error = Some((message, now));
        self.changed_at = now;
    }

    /// A key on the display's keyboard.
    pub fn handle_key(&mut self, key: Key, now: Instant) {
        let screen = self.screen(now);
        self.changed_at = now;
        match keymap(&screen, key) {
            Some(Action::Select(row)) => self.cursor = row,
            Some(Action::Wake) => {
                self.asleep = false;
                self.commands.push_back(Command::Refresh);
            }
            Some(Action::Send(cmd)) => {
                self.error = None;
                self.commands.push_back(cmd);
            }
            None => {}
        }
    }

    /// Time passed: a stale error goes, and a display left on a session screen with nothing
    /// happening for the display timeout goes back to idle (and re-reads policyd's state).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, at)) = &self.error {
            if now >= *at + self.display_timeout {
                self.error = None;
            }
        }
        if self.may_sleep() && now >= self.changed_at + self.display_timeout {
            self.asleep = true;
            self.commands.push_back(Command::Refresh);
        }
    }

    // ---- outputs ----

    /// The next call for the IO loop.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Console::handle_timeout`] must next be called; moved by every `handle_*`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let error = self
            .error
            .as_ref()
            .map(|(_, at)| *at + self.display_timeout);
        let sleep = self
            .may_sleep()
            .then_some(self.changed_at + self.display_timeout);
        error.into_iter().chain(sleep).min()
    }

    /// Whether the display is on a session screen it would leave by itself.
    fn may_sleep(&self) -> bool {
        !self.asleep && self.published.as_ref().is_some_and(|p| p.state != "idle")
    }

    /// What the display shows now.
    pub fn screen(&self, now: Instant) -> Screen {
        let error = self
            .error
            .as_ref()
            .filter(|(_, at)| now < *at + self.display_timeout)
            .map(|(m, _)| m.clone());
        let Some(p) = &self.published else {
            return Screen {
                body: Body::Unavailable {
                    detail: self.unavailable.clone(),
                },
                alarms: None,
                error: None,
                asleep: false,
            };
        };
        let alarms = self.alarm_banner(p);
        let body = if self.asleep {
            Body::Idle {
                prompt: IDLE_PROMPT.into(),
            }
        } else {
            self.body(p, now)
        };
        Screen {
            body,
            alarms,
            error,
            asleep: self.asleep,
        }
    }

    fn body(&self, p: &Published, now: Instant) -> Body {
        match p.state.as_str() {
            "idle" if p.status != "ready" => Body::OutOfService {
                why: p.status.clone(),
            },
            "idle" => Body::Idle {
                prompt: if p.prompt.is_empty() {
                    IDLE_PROMPT.into()
                } else {
                    p.prompt.clone()
                },
            },
            "pin" | "second-pin" if p.prompt.starts_with("Checking") => Body::Checking {
                user: p.user.clone(),
            },
            "pin" | "second-pin" => Body::Pin {
                user: p.user.clone(),
                digits: p.pin_length,
                second: p.state == "second-pin",
                prompt: p.prompt.clone(),
            },
            "choose-key" => Body::PickKey {
                user: p.user.clone(),
                keys: self.keys.clone(),
                cursor: self.cursor,
                entry: p.entry.clone(),
                prompt: p.prompt.clone(),
            },
            "choose-reason" => Body::PickReason {
                user: p.user.clone(),
                key: p.key.clone(),
                notes: p.notes.clone(),
                reasons: self.reasons.clone(),
                cursor: self.cursor,
                entry: p.entry.clone(),
            },
            "second-person" => Body::SecondPerson {
                user: p.user.clone(),
                key: p.key.clone(),
                prompt: p.prompt.clone(),
            },
            "take-key" => Body::TakeKey {
                user: p.user.clone(),
                key: p.key.clone(),
                notes: p.notes.clone(),
                slot: p.slot,
                due: self
                    .grant
                    .as_ref()
                    .filter(|(key, slot, _)| *key == p.key && *slot == p.slot)
                    .map(|(_, _, due)| *due),
            },
            "return-key" => Body::Return {
                key: p.key.clone(),
                slot: p.slot,
                prompt: p.prompt.clone(),
            },
            _ => {
                // "message" (and any state a newer policyd may add): a refusal if policyd just
                // signalled one with this text.
                let denial = self.denial.as_ref().filter(|(_, message, at)| {
                    now < *at + self.display_timeout
                        && !message.is_empty()
                        && p.prompt.contains(message.as_str())
                });
                match denial {
                    Some((code, _, _)) if code == "locked-out" => Body::Lockout {
                        message: p.prompt.clone(),
                    },
                    Some(_) => Body::Denied {
                        message: p.prompt.clone(),
                    },
                    None => Body::Message {
                        text: p.prompt.clone(),
                    },
                }
            }
        }
    }

    fn alarm_banner(&self, p: &Published) -> Option<String> {
        if p.active_alarms == 0 {
            return None;
        }
        let n = p.active_alarms;
        let head = if n == 1 {
            "ALARM: 1 active".to_owned()
        } else {
            format!("ALARM: {n} active")
        };
        if self.alarms.is_empty() {
            return Some(head);
        }
        let known: Vec<String> = self
            .alarms
            .iter()
            .map(|(kind, subject)| format!("{} ({})", alarm_name(kind), subject.replace(':', " ")))
            .collect();
        Some(format!("{head}: {}", known.join(", ")))
    }
}

/// What the idle display says when policyd has no prompt.
pub const IDLE_PROMPT: &str = "Scan your badge or touch the fingerprint sensor";

/// How an alarm kind reads on the display.
pub fn alarm_name(kind: &str) -> &str {
    match kind {
        "door-held-open" => "door held open",
        "door-forced" => "door forced",
        "tamper" => "tamper",
        "unauthorised-removal" => "key taken without a grant",
        "wrong-slot" => "key in the wrong slot",
        "overdue" => "key overdue",
        "pin-lockout" => "PIN lockout",
        "holder-expired" => "holder's account expired",
        other => other,
    }
}

/// Rows a page key moves.
const PAGE: usize = 5;

/// What `key` does on `screen`: pure, so every screen's keys are unit-tested.
pub fn keymap(screen: &Screen, key: Key) -> Option<Action> {
    if key == Key::Quit {
        return Some(Action::Send(Command::Quit));
    }
    if screen.asleep {
        return Some(Action::Wake);
    }
    let rows = |len: usize, cursor: usize| -> Option<Action> {
        let last = len.checked_sub(1)?;
        let to = match key {
            Key::Up => cursor.saturating_sub(1),
            Key::Down => (cursor + 1).min(last),
            Key::PageUp => cursor.saturating_sub(PAGE),
            Key::PageDown => (cursor + PAGE).min(last),
            Key::Home => 0,
            Key::End => last,
            _ => return None,
        };
        Some(Action::Select(to))
    };
    let cancel = (key == Key::Esc).then_some(Action::Send(Command::Cancel));
    match &screen.body {
        Body::PickKey { keys, cursor, .. } => match key {
            Key::Enter => keys
                .get(*cursor)
                .map(|k| Action::Send(Command::ChooseKey(k.label.clone()))),
            Key::Esc => cancel,
            _ => rows(keys.len(), *cursor),
        },
        Body::PickReason {
            reasons, cursor, ..
        } => match key {
            Key::Enter => reasons
                .get(*cursor)
                .map(|r| Action::Send(Command::ChooseReason(r.code.clone()))),
            Key::Esc => cancel,
            _ => rows(reasons.len(), *cursor),
        },
        Body::Pin { .. }
        | Body::Checking { .. }
        | Body::SecondPerson { .. }
        | Body::Return { .. } => cancel,
        // A released slot stays released until taken or lapsed; nothing to cancel. Results,
        // refusals and idle screens have no keys.
        Body::TakeKey { .. }
        | Body::Unavailable { .. }
        | Body::OutOfService { .. }
        | Body::Idle { .. }
        | Body::Denied { .. }
        | Body::Lockout { .. }
        | Body::Message { .. } => None,
    }
}
