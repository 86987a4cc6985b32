//! The policy's nouns: plain data, no IO, no serde or zvariant derives (wire types live in
//! `keywarden-dbus`, rows in `store`). Times are wall-clock Unix seconds ([`UnixTime`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Wall-clock time in seconds since the Unix epoch (UTC).
pub type UnixTime = i64;
/// Database id of a user.
pub type UserId = i64;
/// Database id of a key.
pub type KeyId = i64;
/// Database id of a group.
pub type GroupId = i64;
/// Database id of a schedule.
pub type ScheduleId = i64;
/// Database id of a loan (one checkout, open until the key is back).
pub type LoanId = i64;
/// Slot number as on the board file (1-based).
pub type SlotNumber = u32;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored and wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: stringify!($name), value: s.to_owned(), allowed: &[$($text),+] }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

/// A name that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not one of {allowed:?}")]
pub struct UnknownName {
    /// The kind of value.
    pub what: &'static str,
    /// What was given.
    pub value: String,
    /// What is allowed.
    pub allowed: &'static [&'static str],
}

text_enum! {
    /// What a user is.
    Role {
        /// Manages users, keys, permissions; may take any key the permissions allow.
        Admin = "admin",
        /// Sees reports and acknowledges alarms; takes keys by permission.
        Manager = "manager",
        /// Property staff.
        Staff = "staff",
        /// An outside contractor, normally with a validity window.
        Vendor = "vendor",
    }
}

text_enum! {
    /// Which factors a user proves at the cabinet.
    Factors {
        /// Badge, then PIN.
        BadgePin = "badge+pin",
        /// Fingerprint, then PIN.
        FingerprintPin = "fingerprint+pin",
        /// Either badge or fingerprint, then PIN.
        AnyPin = "any+pin",
    }
}

text_enum! {
    /// What a key opens, for permissions by kind.
    KeyKind {
        /// A dwelling unit.
        Unit = "unit",
        /// A master key.
        Master = "master",
        /// Pool, gym, laundry and the like.
        Amenity = "amenity",
        /// A vehicle.
        Vehicle = "vehicle",
        /// Pharmacy, server room: never granted by kind alone.
        Restricted = "restricted",
    }
}

text_enum! {
    /// Alarm kinds, raised and cleared as audit events.
    AlarmKind {
        /// The door stayed open past the board's limit.
        DoorHeldOpen = "door-held-open",
        /// The door opened while locked.
        DoorForced = "door-forced",
        /// The enclosure's tamper switch is active.
        Tamper = "tamper",
        /// A key left a slot without a grant for that slot.
        UnauthorisedRemoval = "unauthorised-removal",
        /// A key went into a slot other than the one it was sent to.
        WrongSlot = "wrong-slot",
        /// A key is out past its due time.
        Overdue = "overdue",
        /// Too many wrong PINs: the user is locked out.
        PinLockout = "pin-lockout",
        /// A key is still out after its holder's validity ended.
        HolderExpired = "holder-expired",
    }
}

/// A person who may use the cabinet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Database id.
    pub id: UserId,
    /// Unique login name (what admins type).
    pub name: String,
    /// Name shown on the console and in reports.
    pub display_name: String,
    /// What the user is.
    pub role: Role,
    /// Inactive users are refused.
    pub active: bool,
    /// Refused before this time.
    pub valid_from: Option<UnixTime>,
    /// Refused from this time on.
    pub valid_until: Option<UnixTime>,
    /// Which factors the user must present.
    pub factors: Factors,
    /// Most keys out at once; `None` = the site default.
    pub max_keys_out: Option<u32>,
    /// Longest checkout in minutes; `None` = the reason's or the site default.
    pub max_checkout_minutes: Option<u32>,
    /// Locked out after wrong PINs until this time.
    pub locked_until: Option<UnixTime>,
    /// Wrong PINs since the last good one.
    pub failed_pins: u32,
    /// Whether a PIN is set.
    pub has_pin: bool,
    /// Fingerprint template ids on the module.
    pub fingerprints: BTreeSet<u32>,
    /// Groups the user belongs to.
    pub groups: BTreeSet<GroupId>,
}

/// A key (or key ring) in the cabinet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Database id.
    pub id: KeyId,
    /// Anonymous tag code read from the key's fob; says nothing about the door it opens.
    pub tag: String,
    /// What staff call it: unit "204", "Pool".
    pub label: String,
    /// What it opens.
    pub kind: KeyKind,
    /// Notes and restrictions shown at checkout ("resident has a dog").
    pub notes: String,
    /// Fixed slot, or `None` for a floating key that goes back to any free slot.
    pub home_slot: Option<SlotNumber>,
    /// Needs a second authorised person at checkout.
    pub critical: bool,
    /// Inactive keys cannot be taken.
    pub active: bool,
}

/// A user group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Database id.
    pub id: GroupId,
    /// Unique name.
    pub name: String,
}

/// Who a permission is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// One user.
    User(UserId),
    /// Every member of a group.
    Group(GroupId),
}

/// What a permission covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// One key.
    Key(KeyId),
    /// Every key of a kind (never `restricted`: those need a per-key permission).
    Kind(KeyKind),
}

/// "Subject may take target, during schedule".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Database id.
    pub id: i64,
    /// Who.
    pub subject: Subject,
    /// What.
    pub target: Target,
    /// When; `None` = at any time.
    pub schedule: Option<ScheduleId>,
}

/// A weekly window: on the days in `days` (bit 0 = Monday ... bit 6 = Sunday), from `start` to `end`
/// minutes after local midnight (`start < end <= 1440`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Day mask, bit 0 = Monday.
    pub days: u8,
    /// First minute of the day inside the window.
    pub start: u16,
    /// First minute of the day after the window.
    pub end: u16,
}

/// A named weekly schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Database id.
    pub id: ScheduleId,
    /// Unique name.
    pub name: String,
    /// Windows; the schedule is open when any window is.
    pub windows: Vec<Window>,
    /// Whether the schedule is open on holidays (its windows then apply as on any day).
    pub on_holidays: bool,
}

/// A reason code chosen at checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Short code typed or picked ("MAINT").
    pub code: String,
    /// What it means.
    pub description: String,
    /// Longest checkout for this reason, in minutes; `None` = the site default.
    pub max_minutes: Option<u32>,
    /// Retired codes stay in history but cannot be chosen.
    pub active: bool,
}

/// A key booked for a user during a time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Database id.
    pub id: i64,
    /// The key.
    pub key: KeyId,
    /// Who it is for.
    pub user: UserId,
    /// From (inclusive).
    pub from: UnixTime,
    /// Until (exclusive).
    pub until: UnixTime,
}

/// One checkout, open until the key is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    /// Database id.
    pub id: LoanId,
    /// The key.
    pub key: KeyId,
    /// Who took it.
    pub user: UserId,
    /// Second person for a critical key.
    pub witness: Option<UserId>,
    /// Reason code.
    pub reason: String,
    /// When it was granted.
    pub granted_at: UnixTime,
    /// When the key left its slot (`None` while the grant waits for the removal).
    pub taken_at: Option<UnixTime>,
    /// When it is due back.
    pub due_at: UnixTime,
    /// The slot it was taken from.
    pub slot: Option<SlotNumber>,
}

/// Site-wide settings (policy file `/etc/keywarden/policy.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Wrong PINs before a lockout.
    pub pin_attempts: u32,
    /// Lockout length in seconds.
    pub lockout_seconds: u32,
    /// Shortest PIN accepted when an admin sets one.
    pub pin_min_length: u32,
    /// Longest PIN.
    pub pin_max_length: u32,
    /// Idle time before a session ends, in seconds.
    pub session_timeout_seconds: u32,
    /// How long a slot stays released (or the door unlocked) for a grant or return, in seconds.
    pub release_seconds: u32,
    /// How long the second person has to authenticate for a critical key, in seconds.
    pub dual_auth_window_seconds: u32,
    /// Default most keys out at once per user.
    pub max_keys_out: u32,
    /// Default longest checkout, in minutes.
    pub max_checkout_minutes: u32,
    /// Returned keys go to a random free slot instead of their home slot.
    pub random_return_slot: bool,
    /// The cabinet has per-slot locks; otherwise the door is unlocked for a grant.
    pub slot_locks: bool,
    /// Absolute curfew: every key is due back by this local time of day (minutes after
    /// midnight) at the latest, whatever the relative limits allow.
    pub return_by: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pin_attempts: 5,
            lockout_seconds: 15 * 60,
            pin_min_length: 4,
            pin_max_length: 12,
            session_timeout_seconds: 30,
            release_seconds: 10,
            dual_auth_window_seconds: 60,
            max_keys_out: 3,
            max_checkout_minutes: 8 * 60,
            random_return_slot: true,
            slot_locks: true,
            return_by: None,
        }
    }
}

/// Everything the decision functions read: the in-memory mirror of the database, rebuilt from
/// `store` at start and after every admin change. Small on any real property (hundreds of users and
/// keys), so the decisions stay pure and synchronous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Users by id.
    pub users: BTreeMap<UserId, User>,
    /// Keyed hash of a badge code (hex) → user.
    pub badges: BTreeMap<String, UserId>,
    /// Keys by id.
    pub keys: BTreeMap<KeyId, Key>,
    /// Groups by id.
    pub groups: BTreeMap<GroupId, Group>,
    /// Permissions.
    pub permissions: Vec<Permission>,
    /// Schedules by id.
    pub schedules: BTreeMap<ScheduleId, Schedule>,
    /// Holiday dates (`YYYY-MM-DD`, local).
    pub holidays: BTreeSet<String>,
    /// Reason codes by code.
    pub reasons: BTreeMap<String, Reason>,
    /// Reservations.
    pub reservations: Vec<Reservation>,
    /// Open loans by key.
    pub loans: BTreeMap<KeyId, Loan>,
    /// Which key each occupied slot holds, as far as the records go.
    pub slot_contents: BTreeMap<SlotNumber, KeyId>,
    /// Slots the board has.
    pub slots: BTreeSet<SlotNumber>,
    /// Site settings.
    pub settings: Settings,
}

impl PolicyState {
    /// The user with this login name.
    pub fn user_named(&self, name: &str) -> Option<&User> {
        self.users.values().find(|u| u.name == name)
    }

    /// The key with this label or tag code.
    pub fn key_by_label_or_tag(&self, text: &str) -> Option<&Key> {
        self.keys
            .values()
            .find(|k| k.label == text)
            .or_else(|| self.keys.values().find(|k| k.tag == text))
    }

    /// The key carrying this tag code.
    pub fn key_by_tag(&self, tag: &str) -> Option<&Key> {
        self.keys.values().find(|k| k.tag == tag)
    }

    /// The group with this name.
    pub fn group_named(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| g.name == name)
    }

    /// The schedule with this name.
    pub fn schedule_named(&self, name: &str) -> Option<&Schedule> {
        self.schedules.values().find(|s| s.name == name)
    }

    /// The user holding this fingerprint template.
    pub fn user_by_fingerprint(&self, template: u32) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.fingerprints.contains(&template))
    }

    /// The slot a key is in, by the records.
    pub fn slot_of(&self, key: KeyId) -> Option<SlotNumber> {
        self.slot_contents
            .iter()
            .find_map(|(slot, k)| (*k == key).then_some(*slot))
    }

    /// Slots with no key in them, by the records.
    pub fn free_slots(&self) -> impl Iterator<Item = SlotNumber> + '_ {
        self.slots
            .iter()
            .copied()
            .filter(|s| !self.slot_contents.contains_key(s))
    }

    /// Open loans of a user.
    pub fn loans_of(&self, user: UserId) -> impl Iterator<Item = &Loan> + '_ {
        self.loans.values().filter(move |l| l.user == user)
    }
}
