//! Admin operations: every change an administrator can make, as one closed enum. The D-Bus adapter
//! turns each admin method into an [`AdminOp`]; `store::Store::apply_admin` validates it, writes it
//! and its audit record (with who made it) in one transaction, and the driver then reloads the
//! in-memory [`PolicyState`](crate::model::PolicyState). There is no other path that changes users,
//! credentials, keys or permissions.

use crate::model::{Factors, KeyKind, Role, SlotNumber, UnixTime, Window};

/// A user field to change; `None` inside clears an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserField {
    /// Display name.
    DisplayName(String),
    /// Role.
    Role(Role),
    /// Active flag.
    Active(bool),
    /// Validity start.
    ValidFrom(Option<UnixTime>),
    /// Validity end.
    ValidUntil(Option<UnixTime>),
    /// Required factors.
    Factors(Factors),
    /// Per-user key limit.
    MaxKeysOut(Option<u32>),
    /// Per-user longest checkout in minutes.
    MaxCheckoutMinutes(Option<u32>),
}

/// A key field to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyField {
    /// Label.
    Label(String),
    /// Tag code.
    Tag(String),
    /// Kind.
    Kind(KeyKind),
    /// Notes and restrictions.
    Notes(String),
    /// Home slot (`None` = floating).
    HomeSlot(Option<SlotNumber>),
    /// Critical (dual authorisation).
    Critical(bool),
    /// Active flag.
    Active(bool),
}

/// Who or what a permission names, by name as admins type it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectName {
    /// `user:NAME`.
    User(String),
    /// `group:NAME`.
    Group(String),
}

/// What a permission covers, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetName {
    /// `key:LABEL`.
    Key(String),
    /// `kind:KIND`.
    Kind(KeyKind),
}

/// Every admin change. Users, groups, keys, schedules and reasons are named by their unique name
/// (login name, group name, key label, schedule name, reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Create a user.
    AddUser {
        /// Login name: 1-64 of `[a-z0-9._-]`.
        name: String,
        /// Role.
        role: Role,
        /// Further fields.
        fields: Vec<UserField>,
    },
    /// Change a user.
    UpdateUser {
        /// Login name.
        name: String,
        /// Fields to change.
        fields: Vec<UserField>,
    },
    /// Deactivate a user and remove their credentials; history is kept.
    RemoveUser {
        /// Login name.
        name: String,
    },
    /// Set (or replace) a user's PIN. Refused if too short, too long, not digits, or trivial.
    SetPin {
        /// Login name.
        user: String,
        /// The PIN digits; never stored or logged.
        pin: zeroize::Zeroizing<String>,
    },
    /// Add a badge code. Refused if any user already has it.
    AddBadge {
        /// Login name.
        user: String,
        /// The code as the reader sends it; only its keyed hash is stored.
        code: zeroize::Zeroizing<String>,
    },
    /// Remove every badge of a user.
    ClearBadges {
        /// Login name.
        user: String,
    },
    /// Record a fingerprint template id (enrolled on the module) for a user.
    AddFingerprint {
        /// Login name.
        user: String,
        /// Template id on the module.
        template: u32,
    },
    /// Forget a fingerprint template id.
    RemoveFingerprint {
        /// Template id.
        template: u32,
    },
    /// End a PIN lockout and reset the wrong-PIN count.
    Unlock {
        /// Login name.
        user: String,
    },
    /// Create a group.
    AddGroup {
        /// Name.
        name: String,
    },
    /// Delete a group and its permissions.
    RemoveGroup {
        /// Name.
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
    /// Create a key.
    AddKey {
        /// Label, unique.
        label: String,
        /// Tag code, unique.
        tag: String,
        /// Kind.
        kind: KeyKind,
        /// Further fields.
        fields: Vec<KeyField>,
    },
    /// Change a key.
    UpdateKey {
        /// Label.
        label: String,
        /// Fields to change.
        fields: Vec<KeyField>,
    },
    /// Retire a key (inactive); refused while it is out.
    RemoveKey {
        /// Label.
        label: String,
    },
    /// Record that a key is in a slot (initial loading of the cabinet).
    PlaceKey {
        /// Label.
        label: String,
        /// Slot.
        slot: SlotNumber,
    },
    /// Grant a permission.
    Grant {
        /// Who.
        subject: SubjectName,
        /// What.
        target: TargetName,
        /// When (schedule name), or at any time.
        schedule: Option<String>,
    },
    /// Revoke a permission by id.
    Revoke {
        /// Permission id.
        id: i64,
    },
    /// Create or replace a schedule.
    SetSchedule {
        /// Name.
        name: String,
        /// Windows.
        windows: Vec<Window>,
        /// Open on holidays.
        on_holidays: bool,
    },
    /// Delete a schedule; refused while a permission uses it.
    RemoveSchedule {
        /// Name.
        name: String,
    },
    /// Add a holiday.
    AddHoliday {
        /// `YYYY-MM-DD`.
        date: String,
        /// Name.
        name: String,
    },
    /// Remove a holiday.
    RemoveHoliday {
        /// `YYYY-MM-DD`.
        date: String,
    },
    /// Create or change a reason code.
    SetReason {
        /// Code: 1-16 of `[A-Z0-9-]`.
        code: String,
        /// Description.
        description: String,
        /// Longest checkout for this reason, in minutes.
        max_minutes: Option<u32>,
    },
    /// Retire a reason code.
    RemoveReason {
        /// Code.
        code: String,
    },
    /// Book a key for a user; refused if it overlaps another reservation of the key.
    Reserve {
        /// Key label.
        key: String,
        /// Login name.
        user: String,
        /// From.
        from: UnixTime,
        /// Until (after `from`).
        until: UnixTime,
    },
    /// Cancel a reservation.
    CancelReservation {
        /// Reservation id.
        id: i64,
    },
    /// Acknowledge an alarm (does not clear its condition).
    AcknowledgeAlarm {
        /// Alarm id.
        id: i64,
        /// Note.
        note: String,
    },
}

/// Who made a change: the caller's uid and, where known, the Unix user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Caller's uid.
    pub uid: u32,
    /// Unix user name of the uid, or the uid in decimal.
    pub name: String,
}

impl Actor {
    /// The audit actor string: `uid:1000(alice)`.
    pub fn audit_name(&self) -> String {
        format!("uid:{}({})", self.uid, self.name)
    }
}
