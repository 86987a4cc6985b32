//! What the core asks its driver to do: persist a [`Commit`] (data changes and audit events in one
//! transaction, then the actuations that depend on it), give feedback, or check a PIN.

use zeroize::Zeroizing;

use crate::model::{AlarmKind, KeyId, SlotNumber, UnixTime, UserId};

/// Audit event kinds the core records. Admin changes are recorded by the store as `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A checkout was granted (written before anything opens).
    Granted,
    /// A request was refused; `reason` in the detail.
    Denied,
    /// A granted key left its slot.
    Removed,
    /// A key came back.
    Returned,
    /// A grant ran out before the key was taken.
    GrantLapsed,
    /// A slot (or the door) was released for a return.
    ReturnStarted,
    /// A user proved who they are.
    Authenticated,
    /// A wrong PIN.
    PinWrong,
    /// A badge reader rejected a scan (garbled, too long, incomplete) or the code is unknown.
    ScanRejected,
    /// An alarm was raised.
    AlarmRaised,
    /// An alarm's condition ended.
    AlarmCleared,
    /// A lockout ended by time.
    LockoutEnded,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Granted => "granted",
            EventKind::Denied => "denied",
            EventKind::Removed => "removed",
            EventKind::Returned => "returned",
            EventKind::GrantLapsed => "grant-lapsed",
            EventKind::ReturnStarted => "return-started",
            EventKind::Authenticated => "authenticated",
            EventKind::PinWrong => "pin-wrong",
            EventKind::ScanRejected => "scan-rejected",
            EventKind::AlarmRaised => "alarm-raised",
            EventKind::AlarmCleared => "alarm-cleared",
            EventKind::LockoutEnded => "lockout-ended",
        }
    }
}

/// One audit event as the core describes it. The store turns it into a chained record:
/// `actor` is the cabinet user's login name (or empty), `subject` what it is about
/// (`key:204`, `slot:3`, `door`, `user:alice`), `detail` ordered name/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Who (login name), empty for the cabinet itself.
    pub actor: String,
    /// What it is about.
    pub subject: String,
    /// Details, in a fixed order.
    pub detail: Vec<(&'static str, String)>,
}

/// A change to persisted state that goes with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A grant: a new open loan (not yet taken).
    OpenLoan {
        /// Key.
        key: KeyId,
        /// Holder.
        user: UserId,
        /// Second person.
        witness: Option<UserId>,
        /// Reason code.
        reason: String,
        /// Granted at.
        granted_at: UnixTime,
        /// Due back.
        due_at: UnixTime,
        /// Slot released for it (`None`: door cabinet).
        slot: Option<SlotNumber>,
    },
    /// The granted key left its slot.
    TakeLoan {
        /// Key.
        key: KeyId,
        /// When.
        at: UnixTime,
    },
    /// The loan ends: returned, or the grant lapsed untaken.
    CloseLoan {
        /// Key.
        key: KeyId,
        /// When.
        at: UnixTime,
        /// Who brought it back (`None`: unidentified, or lapsed).
        returned_by: Option<UserId>,
    },
    /// The records now say this slot holds this key (`None`: empty).
    SlotContents {
        /// Slot.
        slot: SlotNumber,
        /// Key in it.
        key: Option<KeyId>,
    },
    /// A wrong PIN: the new count and, when it reached the limit, the lockout end.
    PinFailed {
        /// User.
        user: UserId,
        /// Wrong PINs since the last good one.
        count: u32,
        /// Locked out until.
        locked_until: Option<UnixTime>,
    },
    /// A good PIN (or the lockout ended): count back to zero, lockout cleared.
    PinReset {
        /// User.
        user: UserId,
    },
    /// An alarm was raised.
    RaiseAlarm {
        /// Kind.
        kind: AlarmKind,
        /// What it is about (`door`, `slot:3`, `key:204`, `user:alice`).
        subject: String,
        /// When.
        at: UnixTime,
    },
    /// An alarm's condition ended.
    ClearAlarm {
        /// Kind.
        kind: AlarmKind,
        /// Subject as raised.
        subject: String,
        /// When.
        at: UnixTime,
    },
}

/// A hardware request to hwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actuation {
    /// Release a slot for this many seconds.
    ReleaseSlot(SlotNumber, u32),
    /// Unlock the door for this many seconds.
    UnlockDoor(u32),
    /// Lock the door now.
    LockDoor,
    /// Set a slot LED: `off`, `on`, `blink`.
    Indicator(SlotNumber, &'static str),
    /// Buzzer: `ack`, `error`, `attention`, `alarm`.
    Beep(&'static str),
}

impl Actuation {
    /// Whether this opens something (and so must only follow a committed record).
    pub fn opens(&self) -> bool {
        matches!(self, Actuation::ReleaseSlot(..) | Actuation::UnlockDoor(_))
    }
}

/// Persist `changes` and `events` in one transaction; only if that commits, perform `then`.
/// If it fails, the driver calls `Core::handle_commit_failed` and performs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// State changes.
    pub changes: Vec<Change>,
    /// Audit events, in order.
    pub events: Vec<Event>,
    /// Actuations that depend on the commit.
    pub then: Vec<Actuation>,
}

/// What the driver must do next, drained with `Core::poll_effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Persist, then actuate.
    Commit(Commit),
    /// Feedback that opens nothing and needs no record (LEDs off, beeps).
    Feedback(Actuation),
    /// Check this PIN against the user's stored hash (slow: Argon2id) and call
    /// `Core::handle_pin_checked` with the result and this `attempt`.
    CheckPin {
        /// User.
        user: UserId,
        /// The digits; zeroed on drop.
        pin: Zeroizing<String>,
        /// Attempt number, echoed back so a late answer for an abandoned entry is ignored.
        attempt: u64,
    },
}

/// Identifiers used in subjects.
pub fn key_subject(label: &str) -> String {
    format!("key:{label}")
}

/// Identifiers used in subjects.
pub fn slot_subject(slot: SlotNumber) -> String {
    format!("slot:{slot}")
}

/// Identifiers used in subjects.
pub fn user_subject(name: &str) -> String {
    format!("user:{name}")
}
