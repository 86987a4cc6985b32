//! Session states at the cabinet and the view the console sees (never credentials).

use std::time::Instant;

use zeroize::Zeroizing;

use crate::model::{KeyId, SlotNumber, UserId};

/// How a user identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A badge scan.
    Badge,
    /// A fingerprint match.
    Fingerprint,
}

impl Factor {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Badge => "badge",
            Factor::Fingerprint => "fingerprint",
        }
    }
}

/// A checkout waiting for its second person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCritical {
    /// First person.
    pub user: UserId,
    /// Key.
    pub key: KeyId,
    /// Reason code.
    pub reason: String,
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Nobody at the cabinet.
    Idle,
    /// Identified; typing the PIN. `second` is set when this is the second person.
    Pin {
        /// Who.
        user: UserId,
        /// How they identified.
        factor: Factor,
        /// Digits so far.
        digits: Zeroizing<String>,
        /// The critical checkout this PIN is the second person's for.
        second: Option<PendingCritical>,
        /// Message to show above the prompt (e.g. wrong PIN).
        notice: Option<String>,
        /// Back to idle at.
        deadline: Instant,
    },
    /// PIN handed to the driver; waiting for `handle_pin_checked`.
    CheckingPin {
        /// Who.
        user: UserId,
        /// How they identified.
        factor: Factor,
        /// Echo of the attempt number.
        attempt: u64,
        /// Second person's PIN for this checkout.
        second: Option<PendingCritical>,
        /// Back to idle at.
        deadline: Instant,
    },
    /// Authenticated; picking a key (or scanning a key's tag to return it).
    ChooseKey {
        /// Who.
        user: UserId,
        /// Digits typed on the keypad.
        entry: String,
        /// Message to show above the prompt.
        notice: Option<String>,
        /// Back to idle at.
        deadline: Instant,
    },
    /// Picking a reason.
    ChooseReason {
        /// Who.
        user: UserId,
        /// Key.
        key: KeyId,
        /// Digits typed on the keypad (1-based index into the reason list).
        entry: String,
        /// Back to idle at.
        deadline: Instant,
    },
    /// Waiting for a second person to identify.
    SecondPerson {
        /// The checkout.
        pending: PendingCritical,
        /// Back to idle at.
        deadline: Instant,
    },
    /// Granted; waiting for the key to leave its slot (or the door to be used).
    TakeKey {
        /// Who.
        user: UserId,
        /// Key.
        key: KeyId,
        /// Slot released (`None`: door cabinet).
        slot: Option<SlotNumber>,
        /// The grant lapses at.
        deadline: Instant,
    },
    /// Returning a key; waiting for it to go into `slot`.
    Return {
        /// Who, if someone is authenticated.
        user: Option<UserId>,
        /// Key.
        key: KeyId,
        /// Slot to use.
        slot: SlotNumber,
        /// The key went into this other slot instead.
        wrong: Option<SlotNumber>,
        /// The loan is closed (the key is in some slot).
        returned: bool,
        /// Gives up at.
        deadline: Instant,
    },
    /// Showing a result; back to idle at the deadline.
    Message {
        /// What to show.
        text: String,
        /// Back to idle at.
        deadline: Instant,
    },
}

impl Session {
    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Session::Idle => None,
            Session::Pin { deadline, .. }
            | Session::CheckingPin { deadline, .. }
            | Session::ChooseKey { deadline, .. }
            | Session::ChooseReason { deadline, .. }
            | Session::SecondPerson { deadline, .. }
            | Session::TakeKey { deadline, .. }
            | Session::Return { deadline, .. }
            | Session::Message { deadline, .. } => Some(*deadline),
        }
    }

    /// The wire name of the state (`SessionState` property).
    pub fn name(&self) -> &'static str {
        match self {
            Session::Idle => "idle",
            Session::Pin { second: None, .. } | Session::CheckingPin { second: None, .. } => "pin",
            Session::Pin { .. } | Session::CheckingPin { .. } => "second-pin",
            Session::ChooseKey { .. } => "choose-key",
            Session::ChooseReason { .. } => "choose-reason",
            Session::SecondPerson { .. } => "second-person",
            Session::TakeKey { .. } => "take-key",
            Session::Return { .. } => "return-key",
            Session::Message { .. } => "message",
        }
    }
}

/// What the console may see of the session: no PIN digits, no badge codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionView {
    /// State name.
    pub state: &'static str,
    /// Display name of the user at the cabinet.
    pub user: String,
    /// One line for the display.
    pub prompt: String,
    /// Chosen key's label.
    pub key: String,
    /// Chosen key's notes and restrictions.
    pub notes: String,
    /// Slot to use (0 = none or the door).
    pub slot: u32,
    /// Digits typed to pick a key or reason.
    pub entry: String,
    /// PIN digits typed so far.
    pub pin_length: u32,
}
