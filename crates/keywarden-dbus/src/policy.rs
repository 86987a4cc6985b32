//! `org.keywarden.Policy1`: the proxy, wire types, errors, option keys and the closed sets of
//! strings the interface uses. The XML in `interfaces/` documents every member.
//!
//! Times on the wire are Unix seconds (`x`), with 0 meaning "unset" wherever a time is optional.
//! Slots are numbered as on the board file (1-based); 0 means "none", "the door" or "not in the
//! cabinet" as each member says.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{Fd, OwnedValue, Type, Value};

use crate::string_enum::string_enum;

/// The `a{sv}` options argument of `AddUser`, `UpdateUser`, `AddKey` and `UpdateKey`, keyed by the
/// constants in [`options`].
pub type Options<'a> = HashMap<&'a str, Value<'a>>;

/// Keys of the `a{sv}` options arguments (kebab-case), with the value type each one carries.
pub mod options {
    /// `s`: the name shown on the console and in reports (users).
    pub const DISPLAY_NAME: &str = "display-name";
    /// `s`: `admin`, `manager`, `staff` or `vendor` (`UpdateUser` only; `AddUser` takes the role
    /// as an argument).
    pub const ROLE: &str = "role";
    /// `x`: refused before this time, Unix seconds; 0 clears (users).
    pub const VALID_FROM: &str = "valid-from";
    /// `x`: refused from this time on, Unix seconds; 0 clears (users).
    pub const VALID_UNTIL: &str = "valid-until";
    /// `s`: `badge+pin`, `fingerprint+pin` or `any+pin` (users).
    pub const FACTORS: &str = "factors";
    /// `u`: most keys out at once; 0 clears (the site default) (users).
    pub const MAX_KEYS_OUT: &str = "max-keys-out";
    /// `u`: longest checkout in minutes; 0 clears (the site default) (users).
    pub const MAX_CHECKOUT_MINUTES: &str = "max-checkout-minutes";
    /// `b`: inactive users and keys are refused (users and keys).
    pub const ACTIVE: &str = "active";
    /// `s`: notes and restrictions shown at checkout (keys).
    pub const NOTES: &str = "notes";
    /// `u`: the key's fixed slot; 0 = floating, goes back to any free slot (keys).
    pub const HOME_SLOT: &str = "home-slot";
    /// `b`: checkout needs a second authorised person (keys).
    pub const CRITICAL: &str = "critical";
    /// `s`: a new label (`UpdateKey` only).
    pub const LABEL: &str = "label";
    /// `s`: a new tag code (`UpdateKey` only).
    pub const TAG: &str = "tag";
    /// `s`: a new kind, one of [`KeyKind`](super::KeyKind) (`UpdateKey` only).
    pub const KIND: &str = "kind";

    /// Keys `AddUser` accepts.
    pub const ADD_USER: &[&str] = &[
        DISPLAY_NAME,
        VALID_FROM,
        VALID_UNTIL,
        FACTORS,
        MAX_KEYS_OUT,
        MAX_CHECKOUT_MINUTES,
        ACTIVE,
    ];
    /// Keys `UpdateUser` accepts.
    pub const UPDATE_USER: &[&str] = &[
        DISPLAY_NAME,
        ROLE,
        VALID_FROM,
        VALID_UNTIL,
        FACTORS,
        MAX_KEYS_OUT,
        MAX_CHECKOUT_MINUTES,
        ACTIVE,
    ];
    /// Keys `AddKey` accepts.
    pub const ADD_KEY: &[&str] = &[NOTES, HOME_SLOT, CRITICAL, ACTIVE];
    /// Keys `UpdateKey` accepts.
    pub const UPDATE_KEY: &[&str] = &[NOTES, HOME_SLOT, CRITICAL, ACTIVE, LABEL, TAG, KIND];

    /// `x`: the report's range starts here (inclusive), Unix seconds; absent = the beginning.
    pub const FROM: &str = "from";
    /// `x`: the report's range ends here (exclusive), Unix seconds; absent = no end.
    pub const TO: &str = "to";
    /// `s`: only this key (label) (`Report`; required by kind `key`).
    pub const KEY: &str = "key";
    /// `s`: only this person (login name) (`Report`; required by kind `user`).
    pub const USER: &str = "user";
    /// `s`: only this reason code (`Report`; required by kind `reason`).
    pub const REASON: &str = "reason";
    /// `s`: one of [`ReportFormat`](super::ReportFormat); absent = `table`.
    pub const FORMAT: &str = "format";
    /// `t`: at most this many rows; absent or 0 = all.
    pub const LIMIT: &str = "limit";

    /// Keys `Report` accepts.
    pub const REPORT: &[&str] = &[FROM, TO, KEY, USER, REASON, FORMAT, LIMIT];

    /// `x`: `DiagnosticBundle`: journal from this time (Unix seconds; default 72 hours ago).
    pub const SINCE: &str = "since";
    /// `b`: `DiagnosticBundle`: run hwd's non-actuating self-test (default true).
    pub const SELF_TEST: &str = "self-test";
    /// Keys `DiagnosticBundle` accepts.
    pub const DIAGNOSTIC_BUNDLE: &[&str] = &[SINCE, SELF_TEST];
}

/// Prefix of a permission subject naming a user: `user:NAME`.
pub const SUBJECT_USER: &str = "user:";
/// Prefix of a permission subject naming a group: `group:NAME`.
pub const SUBJECT_GROUP: &str = "group:";
/// Prefix of a permission target naming a key: `key:LABEL`.
pub const TARGET_KEY: &str = "key:";
/// Prefix of a permission target naming a kind: `kind:KIND`.
pub const TARGET_KIND: &str = "kind:";

/// Minutes in a day: the largest window end.
pub const MINUTES_PER_DAY: u16 = 1440;
/// Day-mask bit of Monday in a [`WindowSpec`]; Tuesday is `MONDAY << 1`, ... Sunday `MONDAY << 6`.
pub const MONDAY: u8 = 1;
/// A day mask with every day set.
pub const EVERY_DAY: u8 = 0x7f;

/// One key as the console lists it for the session's user (`ListKeys`): `(ssssbu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct KeyChoice {
    /// The key's label.
    pub label: String,
    /// One of [`KeyKind`].
    pub kind: String,
    /// Notes and restrictions.
    pub notes: String,
    /// One of [`KeyStatus`].
    pub status: String,
    /// Whether the user may take it now (`status` is `available`).
    pub available: bool,
    /// The slot it is in; 0 = not in the cabinet.
    pub slot: u32,
}

/// A reason code (`ListReasons`): `(ssu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct ReasonInfo {
    /// The code typed or picked.
    pub code: String,
    /// What it means.
    pub description: String,
    /// Longest checkout for this reason in minutes; 0 = the site default.
    pub max_minutes: u32,
}

/// A user (`ListUsers`): `(sssbxxsbuauasxu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Name shown on the console and in reports.
    pub display_name: String,
    /// One of [`Role`].
    pub role: String,
    /// Inactive users are refused.
    pub active: bool,
    /// Refused before this time (Unix seconds; 0 = unset).
    pub valid_from: i64,
    /// Refused from this time on (Unix seconds; 0 = unset).
    pub valid_until: i64,
    /// One of [`Factors`].
    pub factors: String,
    /// Whether a PIN is set.
    pub has_pin: bool,
    /// How many badges are enrolled (codes are stored hashed and never listed).
    pub badges: u32,
    /// Fingerprint template ids on the module.
    pub fingerprints: Vec<u32>,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
    /// Locked out after wrong PINs until this time (Unix seconds; 0 = not locked).
    pub locked_until: i64,
    /// Keys the user has out now.
    pub keys_out: u32,
}

/// A group and its members (`ListGroups`): `(sas)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Members' login names.
    pub members: Vec<String>,
}

/// A key with its whereabouts (`ListAllKeys`): `(ssssubbusxx)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct KeyInfo {
    /// What staff call it.
    pub label: String,
    /// The tag code on its fob.
    pub tag: String,
    /// One of [`KeyKind`].
    pub kind: String,
    /// Notes and restrictions shown at checkout.
    pub notes: String,
    /// Fixed slot; 0 = floating.
    pub home_slot: u32,
    /// Checkout needs a second authorised person.
    pub critical: bool,
    /// Inactive keys cannot be taken.
    pub active: bool,
    /// The slot it is in; 0 = not in the cabinet.
    pub slot: u32,
    /// Login name of whoever has it out; "" = none.
    pub holder: String,
    /// When it was taken (Unix seconds; 0 = not out).
    pub taken_at: i64,
    /// When it is due back (Unix seconds; 0 = not out).
    pub due_at: i64,
}

/// A slot as the records see it (`ListSlots`): `(ubs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct SlotInfo {
    /// Slot number (1-based).
    pub number: u32,
    /// Occupied according to the records.
    pub occupied: bool,
    /// Label of the key in it; "" = none.
    pub key: String,
}

/// A permission (`ListPermissions`): `(xsss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct PermissionInfo {
    /// Id, for `Revoke`.
    pub id: i64,
    /// `user:NAME` or `group:NAME`.
    pub subject: String,
    /// `key:LABEL` or `kind:KIND`.
    pub target: String,
    /// Schedule name; "" = at any time.
    pub schedule: String,
}

/// A weekly window: `(yqq)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Type, Value, OwnedValue,
)]
pub struct WindowSpec {
    /// Day mask: bit 0 = Monday ... bit 6 = Sunday.
    pub days: u8,
    /// First minute inside the window, after local midnight.
    pub start: u16,
    /// First minute after the window (`start < end <= 1440`).
    pub end: u16,
}

/// A named schedule (`ListSchedules`): `(sa(yqq)b)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct ScheduleInfo {
    /// Schedule name.
    pub name: String,
    /// Windows; the schedule is open when any is.
    pub windows: Vec<WindowSpec>,
    /// Whether the windows also apply on holidays.
    pub on_holidays: bool,
}

/// A holiday (`ListHolidays`): `(ss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct HolidayInfo {
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    /// What it is.
    pub name: String,
}

/// A reservation (`ListReservations`): `(xssxx)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct ReservationInfo {
    /// Id, for `CancelReservation`.
    pub id: i64,
    /// Key label.
    pub key: String,
    /// User login name.
    pub user: String,
    /// From (Unix seconds, inclusive).
    pub from: i64,
    /// Until (Unix seconds, exclusive).
    pub until: i64,
}

/// An alarm (`ListAlarms`): `(xssxxss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct AlarmInfo {
    /// Id, for `AcknowledgeAlarm`.
    pub id: i64,
    /// One of [`AlarmKind`].
    pub kind: String,
    /// What it is about: `door`, `slot:3`, `key:204`, `user:alice`.
    pub subject: String,
    /// When it was raised (Unix seconds).
    pub raised_at: i64,
    /// When its condition ended (Unix seconds; 0 = still active).
    pub cleared_at: i64,
    /// Who acknowledged it (login name of the caller); "" = not acknowledged.
    pub acknowledged_by: String,
    /// The acknowledgement's note.
    pub note: String,
}

/// The result of `VerifyAudit`: `(tts)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct AuditReport {
    /// Entries in the chain.
    pub entries: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Hash of the last entry, hex.
    pub head: String,
}

/// Errors of `org.keywarden.Policy1`, mapped to D-Bus error names in this one place:
/// `org.keywarden.Policy1.Error.<Variant>`. Each message names the thing
/// (`user "bob" already exists`).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.keywarden.Policy1.Error")]
pub enum PolicyError {
    /// A bus-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's uid and groups do not allow this method.
    AccessDenied(String),
    /// An argument or option is malformed, out of range or not one of the allowed values.
    InvalidArgument(String),
    /// The named user, group, key, slot, schedule, holiday, reason, reservation, permission or
    /// alarm does not exist.
    NotFound(String),
    /// Something with that name already exists.
    AlreadyExists(String),
    /// The PIN is too short, too long, not all digits or too easy to guess.
    WeakPin(String),
    /// The change contradicts the records (key out, slot taken, reservations overlap, ...).
    Conflict(String),
    /// A console call in the wrong session state, or with no session.
    WrongState(String),
    /// The service refuses to open anything now (see the `Status` property).
    NotReady(String),
    /// The database failed.
    Storage(String),
    /// The audit chain is broken: the message says at which entry and how.
    AuditBroken(String),
    /// The hardware service failed or could not be reached.
    Hardware(String),
}

string_enum! {
    /// The console session's state (`SessionState`).
    SessionState {
        /// Nobody at the cabinet: waiting for a badge or a finger.
        Idle = "idle",
        /// Identified: waiting for the PIN.
        Pin = "pin",
        /// Authenticated: picking a key.
        ChooseKey = "choose-key",
        /// Key chosen: picking a reason.
        ChooseReason = "choose-reason",
        /// A critical key: waiting for a second person's badge or finger.
        SecondPerson = "second-person",
        /// Waiting for the second person's PIN.
        SecondPin = "second-pin",
        /// Granted: the slot (or door) is released, waiting for the key to leave.
        TakeKey = "take-key",
        /// A return: the slot (or door) is released, waiting for the key to come back.
        ReturnKey = "return-key",
        /// Showing a message (denial, thanks) before going back to idle.
        Message = "message",
    }
}

string_enum! {
    /// Why a request was refused (`Denied.reason`): a stable code.
    DenialReason {
        /// The wall clock is not set, so times (schedules, validity) cannot be judged.
        ClockNotSet = "clock-not-set",
        /// The service cannot open anything (see the `Status` property).
        OutOfService = "out-of-service",
        /// No user has this badge.
        UnknownBadge = "unknown-badge",
        /// No user has this fingerprint.
        UnknownFingerprint = "unknown-fingerprint",
        /// The user must identify with their other factor (badge or finger).
        WrongFactor = "wrong-factor",
        /// The user has no PIN set.
        NoPin = "no-pin",
        /// The user is inactive.
        Inactive = "inactive",
        /// The user's validity has not started.
        NotYetValid = "not-yet-valid",
        /// The user's validity has ended.
        Expired = "expired",
        /// Too many wrong PINs: the user is locked out for a while.
        LockedOut = "locked-out",
        /// Wrong PIN.
        WrongPin = "wrong-pin",
        /// No key with that label or tag.
        UnknownKey = "unknown-key",
        /// The key is inactive.
        KeyInactive = "key-inactive",
        /// The key is already out.
        KeyOut = "key-out",
        /// The records do not place the key in any slot.
        NotInCabinet = "not-in-cabinet",
        /// No permission covers this key for this user.
        NotPermitted = "not-permitted",
        /// A permission covers it, but not at this time.
        OutsideSchedule = "outside-schedule",
        /// The key is reserved for someone else now.
        Reserved = "reserved",
        /// The user already has the most keys out they may.
        TooManyKeys = "too-many-keys",
        /// No such (active) reason code.
        UnknownReason = "unknown-reason",
        /// The second person for a critical key is the first person.
        SecondPersonSame = "second-person-same",
        /// The second person may not take this key either.
        SecondPersonNotPermitted = "second-person-not-permitted",
        /// No free slot to return the key to.
        NoFreeSlot = "no-free-slot",
        /// A key being returned is already in the cabinet.
        AlreadyInCabinet = "already-in-cabinet",
        /// The record could not be written, so nothing opened.
        Storage = "storage",
    }
}

string_enum! {
    /// A key's status for the session's user (`ListKeys`).
    KeyStatus {
        /// In the cabinet and the user may take it now.
        Available = "available",
        /// Someone has it out.
        Out = "out",
        /// Reserved for someone else now.
        Reserved = "reserved",
        /// The user has no permission for it.
        NotPermitted = "not-permitted",
        /// The user's permission does not cover this time.
        OutsideSchedule = "outside-schedule",
        /// The key is inactive.
        Inactive = "inactive",
        /// Not out, but not in the cabinet either (never placed, or misplaced).
        NotInCabinet = "not-in-cabinet",
    }
}

string_enum! {
    /// What a user is (`AddUser.role`, `UserInfo.role`).
    Role {
        /// Manages users, keys and permissions.
        Admin = "admin",
        /// Sees reports and acknowledges alarms.
        Manager = "manager",
        /// Property staff.
        Staff = "staff",
        /// An outside contractor, normally with a validity window.
        Vendor = "vendor",
    }
}

string_enum! {
    /// Report kinds (`Report.kind`).
    ReportKind {
        /// Every key out now (or granted, not yet taken): holder, since, reason, due, overdue.
        KeysOut = "keys-out",
        /// The unit report: every event about one key (option `key`), with who and why.
        Key = "key",
        /// Every event one person caused (option `user`).
        User = "user",
        /// Checkouts per reason code.
        Reasons = "reasons",
        /// Every checkout with one reason code (option `reason`), with its return.
        Reason = "reason",
        /// Every key that went overdue, with its return and minutes late.
        Overdue = "overdue",
        /// Every alarm raised, with when it cleared.
        Alarms = "alarms",
        /// Every refused request.
        Denials = "denials",
    }
}

string_enum! {
    /// Report output formats (the `format` option of `Report`).
    ReportFormat {
        /// Aligned text for people, times in the site's time zone.
        Table = "table",
        /// RFC 4180 CSV with a header line; times RFC 3339 UTC.
        Csv = "csv",
        /// One JSON array, one object per row and line; times RFC 3339 UTC.
        Json = "json",
    }
}

string_enum! {
    /// Which factors a user proves at the cabinet (the `factors` option).
    Factors {
        /// Badge, then PIN.
        BadgePin = "badge+pin",
        /// Fingerprint, then PIN.
        FingerprintPin = "fingerprint+pin",
        /// Either badge or fingerprint, then PIN.
        AnyPin = "any+pin",
    }
}

string_enum! {
    /// Alarm kinds (`AlarmChanged.kind`, `AlarmInfo.kind`).
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

string_enum! {
    /// What a key opens, for permissions by kind (`kind:KIND`).
    KeyKind {
        /// A dwelling unit.
        Unit = "unit",
        /// A master key.
        Master = "master",
        /// Pool, gym, laundry and the like.
        Amenity = "amenity",
        /// A vehicle.
        Vehicle = "vehicle",
        /// Never granted by kind alone: needs a per-key permission.
        Restricted = "restricted",
    }
}

/// Client proxy for `org.keywarden.Policy1`.
#[zbus::proxy(
    interface = "org.keywarden.Policy1",
    default_service = "org.keywarden.Policy1",
    default_path = "/org/keywarden/Policy1"
)]
pub trait Policy1 {
    // Console methods.

    /// See the interface XML.
    fn list_keys(&self) -> zbus::Result<Vec<KeyChoice>>;
    /// See the interface XML.
    fn list_reasons(&self) -> zbus::Result<Vec<ReasonInfo>>;
    /// See the interface XML.
    fn choose_key(&self, key: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn choose_reason(&self, code: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn cancel(&self) -> zbus::Result<()>;

    // Users.

    /// See the interface XML.
    fn add_user(&self, name: &str, role: &str, options: &Options<'_>) -> zbus::Result<()>;
    /// See the interface XML.
    fn update_user(&self, name: &str, options: &Options<'_>) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_user(&self, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn unlock_user(&self, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_users(&self) -> zbus::Result<Vec<UserInfo>>;
    /// See the interface XML.
    fn set_pin(&self, user: &str, pin: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn add_badge(&self, user: &str, code: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn clear_badges(&self, user: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn enroll_fingerprint(&self, user: &str) -> zbus::Result<u32>;
    /// See the interface XML.
    fn remove_fingerprint(&self, template: u32) -> zbus::Result<()>;

    // Groups.

    /// See the interface XML.
    fn add_group(&self, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_group(&self, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn add_member(&self, group: &str, user: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_member(&self, group: &str, user: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_groups(&self) -> zbus::Result<Vec<GroupInfo>>;

    // Keys and slots.

    /// See the interface XML.
    fn add_key(
        &self,
        label: &str,
        tag: &str,
        kind: &str,
        options: &Options<'_>,
    ) -> zbus::Result<()>;
    /// See the interface XML.
    fn update_key(&self, label: &str, options: &Options<'_>) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_key(&self, label: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn place_key(&self, label: &str, slot: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_all_keys(&self) -> zbus::Result<Vec<KeyInfo>>;
    /// See the interface XML.
    fn list_slots(&self) -> zbus::Result<Vec<SlotInfo>>;

    // Permissions, schedules, holidays, reasons.

    /// See the interface XML.
    fn grant(&self, subject: &str, target: &str, schedule: &str) -> zbus::Result<i64>;
    /// See the interface XML.
    fn revoke(&self, id: i64) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_permissions(&self) -> zbus::Result<Vec<PermissionInfo>>;
    /// See the interface XML.
    fn set_schedule(
        &self,
        name: &str,
        windows: &[WindowSpec],
        on_holidays: bool,
    ) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_schedule(&self, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_schedules(&self) -> zbus::Result<Vec<ScheduleInfo>>;
    /// See the interface XML.
    fn add_holiday(&self, date: &str, name: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_holiday(&self, date: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_holidays(&self) -> zbus::Result<Vec<HolidayInfo>>;
    /// See the interface XML.
    fn set_reason(&self, code: &str, description: &str, max_minutes: u32) -> zbus::Result<()>;
    /// See the interface XML.
    fn remove_reason(&self, code: &str) -> zbus::Result<()>;

    // Reservations.

    /// See the interface XML.
    fn reserve(&self, key: &str, user: &str, from: i64, until: i64) -> zbus::Result<i64>;
    /// See the interface XML.
    fn cancel_reservation(&self, id: i64) -> zbus::Result<()>;
    /// See the interface XML.
    fn list_reservations(&self) -> zbus::Result<Vec<ReservationInfo>>;

    // Alarms.

    /// See the interface XML.
    fn list_alarms(&self, active_only: bool) -> zbus::Result<Vec<AlarmInfo>>;
    /// See the interface XML.
    fn acknowledge_alarm(&self, id: i64, note: &str) -> zbus::Result<()>;

    // Audit.

    /// See the interface XML.
    fn export_audit(&self, fd: Fd<'_>, from_seq: u64) -> zbus::Result<u64>;
    /// See the interface XML.
    fn verify_audit(&self) -> zbus::Result<AuditReport>;
    /// See the interface XML.
    fn device_public_key(&self) -> zbus::Result<String>;

    // Reports.

    /// See the interface XML.
    fn report(&self, kind: &str, fd: Fd<'_>, options: &Options<'_>) -> zbus::Result<u64>;

    // Support.

    /// See the interface XML.
    fn diagnostic_bundle(&self, fd: Fd<'_>, options: &Options<'_>) -> zbus::Result<(u64, String)>;

    // Signals.

    /// See the interface XML.
    #[zbus(signal)]
    fn denied(&self, reason: String, message: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn granted(&self, key: String, slot: u32, due: i64) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(signal)]
    fn alarm_changed(&self, kind: String, subject: String, active: bool) -> zbus::Result<()>;

    // Properties.

    /// See the interface XML.
    #[zbus(property)]
    fn session_state(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_user(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_prompt(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_key(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_notes(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_slot(&self) -> zbus::Result<u32>;
    /// See the interface XML.
    #[zbus(property)]
    fn session_entry(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn pin_length(&self) -> zbus::Result<u32>;
    /// See the interface XML.
    #[zbus(property)]
    fn active_alarms(&self) -> zbus::Result<u32>;
    /// See the interface XML.
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn wire_types_have_the_documented_signatures() {
        assert_eq!(KeyChoice::SIGNATURE.to_string(), "(ssssbu)");
        assert_eq!(ReasonInfo::SIGNATURE.to_string(), "(ssu)");
        assert_eq!(UserInfo::SIGNATURE.to_string(), "(sssbxxsbuauasxu)");
        assert_eq!(GroupInfo::SIGNATURE.to_string(), "(sas)");
        assert_eq!(KeyInfo::SIGNATURE.to_string(), "(ssssubbusxx)");
        assert_eq!(SlotInfo::SIGNATURE.to_string(), "(ubs)");
        assert_eq!(PermissionInfo::SIGNATURE.to_string(), "(xsss)");
        assert_eq!(WindowSpec::SIGNATURE.to_string(), "(yqq)");
        assert_eq!(ScheduleInfo::SIGNATURE.to_string(), "(sa(yqq)b)");
        assert_eq!(HolidayInfo::SIGNATURE.to_string(), "(ss)");
        assert_eq!(ReservationInfo::SIGNATURE.to_string(), "(xssxx)");
        assert_eq!(AlarmInfo::SIGNATURE.to_string(), "(xssxxss)");
        assert_eq!(AuditReport::SIGNATURE.to_string(), "(tts)");
        assert_eq!(Options::SIGNATURE.to_string(), "a{sv}");
    }

    #[test]
    fn string_enums_round_trip_and_refuse_unknown_values() {
        for s in SessionState::ALL {
            assert_eq!(SessionState::from_str(s.as_str()), Ok(*s));
        }
        for r in DenialReason::ALL {
            assert_eq!(DenialReason::from_str(r.as_str()), Ok(*r));
        }
        for k in KeyStatus::ALL {
            assert_eq!(KeyStatus::from_str(k.as_str()), Ok(*k));
        }
        for k in KeyKind::ALL {
            assert_eq!(KeyKind::from_str(k.as_str()), Ok(*k));
        }
        for a in AlarmKind::ALL {
            assert_eq!(AlarmKind::from_str(a.as_str()), Ok(*a));
        }
        for r in Role::ALL {
            assert_eq!(Role::from_str(r.as_str()), Ok(*r));
        }
        for f in Factors::ALL {
            assert_eq!(Factors::from_str(f.as_str()), Ok(*f));
        }
        let err = KeyStatus::from_str("lost").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"KeyStatus "lost" is not one of ["available", "out", "reserved", "not-permitted", "outside-schedule", "inactive", "not-in-cabinet"]"#
        );
    }

    #[test]
    fn option_keys_are_kebab_case_and_listed_once() {
        for list in [
            options::ADD_USER,
            options::UPDATE_USER,
            options::ADD_KEY,
            options::UPDATE_KEY,
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for key in list {
                assert!(
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                    "{key}"
                );
                assert!(seen.insert(*key), "{key} listed twice");
            }
        }
    }

    #[test]
    fn errors_have_the_documented_names() {
        use zbus::DBusError;
        assert_eq!(
            PolicyError::AlreadyExists(String::new()).name().as_str(),
            "org.keywarden.Policy1.Error.AlreadyExists"
        );
        assert_eq!(
            PolicyError::WrongState(String::new()).name().as_str(),
            "org.keywarden.Policy1.Error.WrongState"
        );
    }
}
