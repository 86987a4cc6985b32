//! The pure checkout decision: (state, request, now) → decision with reasons. No IO, no clock, no
//! randomness; every branch is a [`Denial`] with a stable code.

use std::fmt;

use crate::model::{KeyId, KeyKind, PolicyState, Schedule, Target, UnixTime, User, UserId};

use super::Now;

/// Why a request is refused. `code()` is the stable wire code (the `Denied` signal's `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The wall clock is not set (before the firmware's build), so times cannot be judged.
    ClockNotSet,
    /// The service cannot open anything (database unusable).
    OutOfService(String),
    /// No user has this badge.
    UnknownBadge,
    /// No user has this fingerprint template.
    UnknownFingerprint,
    /// The user must identify with the other factor.
    WrongFactor,
    /// The user has no PIN set.
    NoPin,
    /// The user is deactivated.
    Inactive,
    /// The user's validity has not started.
    NotYetValid(UnixTime),
    /// The user's validity has ended.
    Expired(UnixTime),
    /// Locked out after wrong PINs.
    LockedOut(UnixTime),
    /// Wrong PIN, with tries left before a lockout.
    WrongPin(u32),
    /// No such key.
    UnknownKey,
    /// The key is retired.
    KeyInactive,
    /// The key is out.
    KeyOut,
    /// The records do not place the key in any slot.
    NotInCabinet,
    /// No permission covers the key.
    NotPermitted,
    /// A permission covers the key, but not now.
    OutsideSchedule,
    /// Booked for someone else until then.
    Reserved(UnixTime),
    /// The user already holds this many keys.
    TooManyKeys(u32),
    /// No such (active) reason code.
    UnknownReason,
    /// The second person is the first person.
    SecondPersonSame,
    /// The second person may not take this key either.
    SecondPersonNotPermitted,
    /// No free slot to return the key to.
    NoFreeSlot,
    /// The key is already in the cabinet.
    AlreadyInCabinet,
    /// The record could not be written, so nothing opened.
    Storage,
}

impl Denial {
    /// The stable code sent on the bus and stored in the audit detail.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::ClockNotSet => "clock-not-set",
            Denial::OutOfService(_) => "out-of-service",
            Denial::UnknownBadge => "unknown-badge",
            Denial::UnknownFingerprint => "unknown-fingerprint",
            Denial::WrongFactor => "wrong-factor",
            Denial::NoPin => "no-pin",
            Denial::Inactive => "inactive",
            Denial::NotYetValid(_) => "not-yet-valid",
            Denial::Expired(_) => "expired",
            Denial::LockedOut(_) => "locked-out",
            Denial::WrongPin(_) => "wrong-pin",
            Denial::UnknownKey => "unknown-key",
            Denial::KeyInactive => "key-inactive",
            Denial::KeyOut => "key-out",
            Denial::NotInCabinet => "not-in-cabinet",
            Denial::NotPermitted => "not-permitted",
            Denial::OutsideSchedule => "outside-schedule",
            Denial::Reserved(_) => "reserved",
            Denial::TooManyKeys(_) => "too-many-keys",
            Denial::UnknownReason => "unknown-reason",
            Denial::SecondPersonSame => "second-person-same",
            Denial::SecondPersonNotPermitted => "second-person-not-permitted",
            Denial::NoFreeSlot => "no-free-slot",
            Denial::AlreadyInCabinet => "already-in-cabinet",
            Denial::Storage => "storage",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::ClockNotSet => f.write_str("the cabinet's clock is not set"),
            Denial::OutOfService(why) => write!(f, "out of service: {why}"),
            Denial::UnknownBadge => f.write_str("badge not recognised"),
            Denial::UnknownFingerprint => f.write_str("fingerprint not recognised"),
            Denial::WrongFactor => f.write_str("use your other credential (badge or fingerprint)"),
            Denial::NoPin => f.write_str("no PIN set; see an administrator"),
            Denial::Inactive => f.write_str("account inactive"),
            Denial::NotYetValid(t) => write!(f, "account valid from {}", show_time(*t)),
            Denial::Expired(t) => write!(f, "account expired at {}", show_time(*t)),
            Denial::LockedOut(t) => write!(f, "locked out until {}", show_time(*t)),
            Denial::WrongPin(left) => write!(f, "wrong PIN, {left} tries left"),
            Denial::UnknownKey => f.write_str("no such key"),
            Denial::KeyInactive => f.write_str("key retired"),
            Denial::KeyOut => f.write_str("key is out"),
            Denial::NotInCabinet => f.write_str("key is not in the cabinet"),
            Denial::NotPermitted => f.write_str("not permitted to take this key"),
            Denial::OutsideSchedule => f.write_str("not permitted at this time"),
            Denial::Reserved(t) => write!(f, "reserved for someone else until {}", show_time(*t)),
            Denial::TooManyKeys(n) => write!(f, "already holding {n} keys, the limit"),
            Denial::UnknownReason => f.write_str("no such reason code"),
            Denial::SecondPersonSame => f.write_str("the second person must be someone else"),
            Denial::SecondPersonNotPermitted => {
                f.write_str("the second person may not take this key")
            }
            Denial::NoFreeSlot => f.write_str("no free slot"),
            Denial::AlreadyInCabinet => f.write_str("that key is already in the cabinet"),
            Denial::Storage => f.write_str("cannot record the event; nothing opened"),
        }
    }
}

fn show_time(t: UnixTime) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// A checkout request, all names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// Who.
    pub user: UserId,
    /// Which key.
    pub key: KeyId,
    /// Reason code.
    pub reason: String,
    /// Second person (critical keys).
    pub witness: Option<UserId>,
}

/// The outcome of [`decide_checkout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Granted: due back at this time.
    Grant {
        /// Due time.
        due_at: UnixTime,
    },
    /// Everything else is fine, but the key is critical and needs a second person.
    NeedsSecondPerson,
    /// Refused, every reason that applies (first = the one to show).
    Deny(Vec<Denial>),
}

/// Whether a user may use the cabinet at all right now.
pub fn check_user(user: &User, now: &Now) -> Result<(), Denial> {
    if !now.clock_valid {
        return Err(Denial::ClockNotSet);
    }
    if !user.active {
        return Err(Denial::Inactive);
    }
    if let Some(from) = user.valid_from {
        if now.wall < from {
            return Err(Denial::NotYetValid(from));
        }
    }
    if let Some(until) = user.valid_until {
        if now.wall >= until {
            return Err(Denial::Expired(until));
        }
    }
    if let Some(until) = user.locked_until {
        if now.wall < until {
            return Err(Denial::LockedOut(until));
        }
    }
    Ok(())
}

/// Whether the schedule is open at `now` (local time).
pub fn schedule_open(schedule: &Schedule, state: &PolicyState, now: &Now) -> bool {
    if !schedule.on_holidays && state.holidays.contains(&now.local.date) {
        return false;
    }
    let day_bit = 1u8 << now.local.weekday.min(6);
    schedule
        .windows
        .iter()
        .any(|w| w.days & day_bit != 0 && w.start <= now.local.minute && now.local.minute < w.end)
}

/// Whether a permission lets `user` take `key` now: `NotPermitted` if none covers it,
/// `OutsideSchedule` if some do but none is open.
pub fn permitted(state: &PolicyState, user: &User, key: KeyId, now: &Now) -> Result<(), Denial> {
    let Some(k) = state.keys.get(&key) else {
        return Err(Denial::UnknownKey);
    };
    let mut covered = false;
    for p in &state.permissions {
        let subject_ok = match p.subject {
            crate::model::Subject::User(u) => u == user.id,
            crate::model::Subject::Group(g) => user.groups.contains(&g),
        };
        let target_ok = match p.target {
            Target::Key(id) => id == key,
            Target::Kind(kind) => kind == k.kind && kind != KeyKind::Restricted,
        };
        if !(subject_ok && target_ok) {
            continue;
        }
        covered = true;
        let open = match p.schedule {
            None => true,
            Some(id) => state
                .schedules
                .get(&id)
                .is_some_and(|s| schedule_open(s, state, now)),
        };
        if open {
            return Ok(());
        }
    }
    Err(if covered {
        Denial::OutsideSchedule
    } else {
        Denial::NotPermitted
    })
}

/// Why `user` cannot take `key` now, ignoring reasons and the second person; `Ok` if they can.
pub fn key_available(
    state: &PolicyState,
    user: &User,
    key: KeyId,
    now: &Now,
) -> Result<(), Denial> {
    let Some(k) = state.keys.get(&key) else {
        return Err(Denial::UnknownKey);
    };
    if !k.active {
        return Err(Denial::KeyInactive);
    }
    if state.loans.contains_key(&key) {
        return Err(Denial::KeyOut);
    }
    if state.slot_of(key).is_none() {
        return Err(Denial::NotInCabinet);
    }
    permitted(state, user, key, now)?;
    if let Some(r) = state
        .reservations
        .iter()
        .find(|r| r.key == key && r.user != user.id && r.from <= now.wall && now.wall < r.until)
    {
        return Err(Denial::Reserved(r.until));
    }
    Ok(())
}

/// The checkout decision.
pub fn decide_checkout(state: &PolicyState, req: &CheckoutRequest, now: &Now) -> Decision {
    let mut denials = Vec::new();
    let Some(user) = state.users.get(&req.user) else {
        return Decision::Deny(vec![Denial::UnknownBadge]);
    };
    if let Err(d) = check_user(user, now) {
        denials.push(d);
    }
    if let Err(d) = key_available(state, user, req.key, now) {
        denials.push(d);
    }
    let reason = state.reasons.get(&req.reason).filter(|r| r.active);
    if reason.is_none() {
        denials.push(Denial::UnknownReason);
    }
    let limit = user.max_keys_out.unwrap_or(state.settings.max_keys_out);
    if state.loans_of(user.id).count() as u32 >= limit {
        denials.push(Denial::TooManyKeys(limit));
    }
    // A reservation for this user that starts before the key would be due blocks nobody but
    // others; reservations of others starting soon shorten nothing here (kept simple, documented).
    let critical = state.keys.get(&req.key).is_some_and(|k| k.critical);
    if critical && denials.is_empty() {
        match req.witness.and_then(|w| state.users.get(&w)) {
            None => return Decision::NeedsSecondPerson,
            Some(w) if w.id == user.id => denials.push(Denial::SecondPersonSame),
            Some(w) => {
                if let Err(d) = check_user(w, now) {
                    denials.push(d);
                } else if permitted(state, w, req.key, now).is_err() {
                    denials.push(Denial::SecondPersonNotPermitted);
                }
            }
        }
    }
    if !denials.is_empty() {
        return Decision::Deny(denials);
    }
    let minutes = [
        Some(state.settings.max_checkout_minutes),
        user.max_checkout_minutes,
        reason.and_then(|r| r.max_minutes),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(state.settings.max_checkout_minutes);
    let mut due_at = now.wall + i64::from(minutes) * 60;
    if let Some(curfew) = state.settings.return_by {
        due_at = due_at.min(next_local_time(now, curfew));
    }
    if let Some(until) = user.valid_until {
        due_at = due_at.min(until);
    }
    Decision::Grant { due_at }
}

/// The next time (after `now`) the local clock shows `minute` (minutes after midnight). A DST
/// change in between shifts the result by the change; the curfew is a policy, not a timer.
pub fn next_local_time(now: &Now, minute: u16) -> UnixTime {
    let start_of_minute = now.wall - now.wall.rem_euclid(60);
    let ahead = if minute > now.local.minute {
        i64::from(minute - now.local.minute)
    } else {
        i64::from(1440 - now.local.minute + minute)
    };
    start_of_minute + ahead * 60
}
