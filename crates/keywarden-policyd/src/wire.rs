//! Conversions between the bus's wire types (`keywarden_dbus::policy`) and the crate's own
//! types: option dictionaries into admin fields, the in-memory state into listings. Kept apart so
//! core and model types never derive zvariant traits.

use std::collections::HashMap;

use keywarden_dbus::policy::{
    options, GroupInfo, HolidayInfo, KeyChoice, KeyInfo, PermissionInfo, PolicyError, ReasonInfo,
    ReservationInfo, ScheduleInfo, SlotInfo, UserInfo, WindowSpec,
};
use zbus::zvariant::OwnedValue;

use crate::admin::{KeyField, SubjectName, TargetName, UserField};
use crate::core::decision::Denial;
use crate::core::KeyOffer;
use crate::model::{Factors, KeyKind, PolicyState, Role, Subject, Target, Window};

/// An `a{sv}` options argument.
pub type Options = HashMap<String, OwnedValue>;

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::InvalidArgument(message.into())
}

fn get<T>(options: &Options, key: &str) -> Result<Option<T>, PolicyError>
where
    T: TryFrom<OwnedValue>,
{
    match options.get(key) {
        None => Ok(None),
        Some(v) => {
            let sig = v.value_signature().to_string();
            v.try_clone()
                .ok()
                .and_then(|v| T::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| invalid(format!("option {key:?} has the wrong type ({sig})")))
        }
    }
}

fn refuse_unknown(options: &Options, allowed: &[&str]) -> Result<(), PolicyError> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!(
            "unknown option {k:?}; allowed: {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn time(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

fn minutes(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

/// Parse a role name.
pub fn role(text: &str) -> Result<Role, PolicyError> {
    text.parse()
        .map_err(|e: crate::model::UnknownName| invalid(e.to_string()))
}

/// Parse a key kind.
pub fn kind(text: &str) -> Result<KeyKind, PolicyError> {
    text.parse()
        .map_err(|e: crate::model::UnknownName| invalid(e.to_string()))
}

/// User options (`AddUser`, `UpdateUser`) into fields.
pub fn user_fields(options: &Options, update: bool) -> Result<Vec<UserField>, PolicyError> {
    refuse_unknown(
        options,
        if update {
            options::UPDATE_USER
        } else {
            options::ADD_USER
        },
    )?;
    let mut fields = Vec::new();
    if let Some(v) = get::<String>(options, options::DISPLAY_NAME)? {
        fields.push(UserField::DisplayName(v));
    }
    if let Some(v) = get::<String>(options, options::ROLE)? {
        fields.push(UserField::Role(role(&v)?));
    }
    if let Some(v) = get::<bool>(options, options::ACTIVE)? {
        fields.push(UserField::Active(v));
    }
    if let Some(v) = get::<i64>(options, options::VALID_FROM)? {
        fields.push(UserField::ValidFrom(time(v)));
    }
    if let Some(v) = get::<i64>(options, options::VALID_UNTIL)? {
        fields.push(UserField::ValidUntil(time(v)));
    }
    if let Some(v) = get::<String>(options, options::FACTORS)? {
        let f: Factors = v
            .parse()
            .map_err(|e: crate::model::UnknownName| invalid(e.to_string()))?;
        fields.push(UserField::Factors(f));
    }
    if let Some(v) = get::<u32>(options, options::MAX_KEYS_OUT)? {
        fields.push(UserField::MaxKeysOut(minutes(v)));
    }
    if let Some(v) = get::<u32>(options, options::MAX_CHECKOUT_MINUTES)? {
        fields.push(UserField::MaxCheckoutMinutes(minutes(v)));
    }
    Ok(fields)
}

/// Key options (`AddKey`, `UpdateKey`) into fields.
pub fn key_fields(options: &Options, update: bool) -> Result<Vec<KeyField>, PolicyError> {
    refuse_unknown(
        options,
        if update {
            options::UPDATE_KEY
        } else {
            options::ADD_KEY
        },
    )?;
    let mut fields = Vec::new();
    if let Some(v) = get::<String>(options, options::LABEL)? {
        fields.push(KeyField::Label(v));
    }
    if let Some(v) = get::<String>(options, options::TAG)? {
        fields.push(KeyField::Tag(v));
    }
    if let Some(v) = get::<String>(options, options::KIND)? {
        fields.push(KeyField::Kind(kind(&v)?));
    }
    if let Some(v) = get::<String>(options, options::NOTES)? {
        fields.push(KeyField::Notes(v));
    }
    if let Some(v) = get::<u32>(options, options::HOME_SLOT)? {
        fields.push(KeyField::HomeSlot((v != 0).then_some(v)));
    }
    if let Some(v) = get::<bool>(options, options::CRITICAL)? {
        fields.push(KeyField::Critical(v));
    }
    if let Some(v) = get::<bool>(options, options::ACTIVE)? {
        fields.push(KeyField::Active(v));
    }
    Ok(fields)
}

/// `user:NAME` / `group:NAME`.
pub fn subject(text: &str) -> Result<SubjectName, PolicyError> {
    if let Some(name) = text.strip_prefix("user:") {
        Ok(SubjectName::User(name.to_owned()))
    } else if let Some(name) = text.strip_prefix("group:") {
        Ok(SubjectName::Group(name.to_owned()))
    } else {
        Err(invalid(format!(
            "subject {text:?} must be user:NAME or group:NAME"
        )))
    }
}

/// `key:LABEL` / `kind:KIND`.
pub fn target(text: &str) -> Result<TargetName, PolicyError> {
    if let Some(label) = text.strip_prefix("key:") {
        Ok(TargetName::Key(label.to_owned()))
    } else if let Some(k) = text.strip_prefix("kind:") {
        Ok(TargetName::Kind(kind(k)?))
    } else {
        Err(invalid(format!(
            "target {text:?} must be key:LABEL or kind:KIND"
        )))
    }
}

/// Wire windows into model windows (validated by the store).
pub fn windows(specs: &[WindowSpec]) -> Vec<Window> {
    specs
        .iter()
        .map(|w| Window {
            days: w.days,
            start: w.start,
            end: w.end,
        })
        .collect()
}

/// The status word shown for a key offer.
pub fn offer_status(availability: &Result<(), Denial>) -> &'static str {
    match availability {
        Ok(()) => "available",
        Err(Denial::KeyOut) => "out",
        Err(Denial::Reserved(_)) => "reserved",
        Err(Denial::OutsideSchedule) => "outside-schedule",
        Err(Denial::KeyInactive) => "inactive",
        Err(Denial::NotInCabinet) => "not-in-cabinet",
        Err(_) => "not-permitted",
    }
}

/// `ListKeys` for the console: keys the user may take first, then the rest.
pub fn key_choices(state: &PolicyState, offers: &[KeyOffer]) -> Vec<KeyChoice> {
    let mut list: Vec<KeyChoice> = offers
        .iter()
        .filter_map(|o| {
            let k = state.keys.get(&o.key)?;
            Some(KeyChoice {
                label: k.label.clone(),
                kind: k.kind.as_str().to_owned(),
                notes: k.notes.clone(),
                status: offer_status(&o.availability).to_owned(),
                available: o.availability.is_ok(),
                slot: state.slot_of(k.id).unwrap_or(0),
            })
        })
        .collect();
    list.sort_by(|a, b| b.available.cmp(&a.available).then(a.label.cmp(&b.label)));
    list
}

/// `ListReasons`.
pub fn reasons(state: &PolicyState) -> Vec<ReasonInfo> {
    state
        .reasons
        .values()
        .filter(|r| r.active)
        .map(|r| ReasonInfo {
            code: r.code.clone(),
            description: r.description.clone(),
            max_minutes: r.max_minutes.unwrap_or(0),
        })
        .collect()
}

/// `ListUsers`.
pub fn users(state: &PolicyState) -> Vec<UserInfo> {
    state
        .users
        .values()
        .map(|u| UserInfo {
            name: u.name.clone(),
            display_name: u.display_name.clone(),
            role: u.role.as_str().to_owned(),
            active: u.active,
            valid_from: u.valid_from.unwrap_or(0),
            valid_until: u.valid_until.unwrap_or(0),
            factors: u.factors.as_str().to_owned(),
            has_pin: u.has_pin,
            badges: state.badges.values().filter(|id| **id == u.id).count() as u32,
            fingerprints: u.fingerprints.iter().copied().collect(),
            groups: u
                .groups
                .iter()
                .filter_map(|g| state.groups.get(g).map(|g| g.name.clone()))
                .collect(),
            locked_until: u.locked_until.unwrap_or(0),
            keys_out: state.loans_of(u.id).count() as u32,
        })
        .collect::<Vec<_>>()
        .tap_sort(|a, b| a.name.cmp(&b.name))
}

/// `ListGroups`.
pub fn groups(state: &PolicyState) -> Vec<GroupInfo> {
    state
        .groups
        .values()
        .map(|g| GroupInfo {
            name: g.name.clone(),
            members: state
                .users
                .values()
                .filter(|u| u.groups.contains(&g.id))
                .map(|u| u.name.clone())
                .collect(),
        })
        .collect::<Vec<_>>()
        .tap_sort(|a, b| a.name.cmp(&b.name))
}

/// `ListAllKeys`.
pub fn all_keys(state: &PolicyState) -> Vec<KeyInfo> {
    state
        .keys
        .values()
        .map(|k| {
            let loan = state.loans.get(&k.id);
            KeyInfo {
                label: k.label.clone(),
                tag: k.tag.clone(),
                kind: k.kind.as_str().to_owned(),
                notes: k.notes.clone(),
                home_slot: k.home_slot.unwrap_or(0),
                critical: k.critical,
                active: k.active,
                slot: state.slot_of(k.id).unwrap_or(0),
                holder: loan
                    .and_then(|l| state.users.get(&l.user))
                    .map(|u| u.name.clone())
                    .unwrap_or_default(),
                taken_at: loan.and_then(|l| l.taken_at).unwrap_or(0),
                due_at: loan.map(|l| l.due_at).unwrap_or(0),
            }
        })
        .collect::<Vec<_>>()
        .tap_sort(|a, b| a.label.cmp(&b.label))
}

/// `ListSlots`.
pub fn slots(state: &PolicyState) -> Vec<SlotInfo> {
    state
        .slots
        .iter()
        .map(|&n| {
            let key = state.slot_contents.get(&n).and_then(|k| state.keys.get(k));
            SlotInfo {
                number: n,
                occupied: key.is_some(),
                key: key.map(|k| k.label.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// `ListPermissions`.
pub fn permissions(state: &PolicyState) -> Vec<PermissionInfo> {
    state
        .permissions
        .iter()
        .map(|p| PermissionInfo {
            id: p.id,
            subject: match p.subject {
                Subject::User(id) => format!(
                    "user:{}",
                    state.users.get(&id).map(|u| u.name.as_str()).unwrap_or("?")
                ),
                Subject::Group(id) => format!(
                    "group:{}",
                    state
                        .groups
                        .get(&id)
                        .map(|g| g.name.as_str())
                        .unwrap_or("?")
                ),
            },
            target: match p.target {
                Target::Key(id) => format!(
                    "key:{}",
                    state.keys.get(&id).map(|k| k.label.as_str()).unwrap_or("?")
                ),
                Target::Kind(k) => format!("kind:{k}"),
            },
            schedule: p
                .schedule
                .and_then(|s| state.schedules.get(&s))
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// `ListSchedules`.
pub fn schedules(state: &PolicyState) -> Vec<ScheduleInfo> {
    state
        .schedules
        .values()
        .map(|s| ScheduleInfo {
            name: s.name.clone(),
            windows: s
                .windows
                .iter()
                .map(|w| WindowSpec {
                    days: w.days,
                    start: w.start,
                    end: w.end,
                })
                .collect(),
            on_holidays: s.on_holidays,
        })
        .collect::<Vec<_>>()
        .tap_sort(|a, b| a.name.cmp(&b.name))
}

/// `ListHolidays` (names are not kept in memory; the store has them).
pub fn holidays(rows: Vec<(String, String)>) -> Vec<HolidayInfo> {
    rows.into_iter()
        .map(|(date, name)| HolidayInfo { date, name })
        .collect()
}

/// `ListReservations`: current and future ones, by start.
pub fn reservations(state: &PolicyState, now: crate::model::UnixTime) -> Vec<ReservationInfo> {
    let mut list: Vec<&crate::model::Reservation> = state
        .reservations
        .iter()
        .filter(|r| r.until > now)
        .collect();
    list.sort_by_key(|r| (r.from, r.id));
    list.into_iter()
        .map(|r| ReservationInfo {
            id: r.id,
            key: state
                .keys
                .get(&r.key)
                .map(|k| k.label.clone())
                .unwrap_or_default(),
            user: state
                .users
                .get(&r.user)
                .map(|u| u.name.clone())
                .unwrap_or_default(),
            from: r.from,
            until: r.until,
        })
        .collect()
}

/// Sort a listing in place and hand it back.
trait TapSort<T> {
    fn tap_sort(self, by: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Self;
}

impl<T> TapSort<T> for Vec<T> {
    fn tap_sort(mut self, by: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Self {
        self.sort_by(by);
        self
    }
}

/// `DiagnosticBundle`'s options at `now` (Unix seconds).
pub fn diag_request(opts: &Options, now: i64) -> Result<crate::diag::Request, PolicyError> {
    refuse_unknown(opts, options::DIAGNOSTIC_BUNDLE)?;
    let since = get::<i64>(opts, options::SINCE)?.unwrap_or(now - 72 * 3600);
    if since > now {
        return Err(invalid(format!(
            "option \"since\" ({since}) is in the future"
        )));
    }
    Ok(crate::diag::Request {
        since,
        self_test: get::<bool>(opts, options::SELF_TEST)?.unwrap_or(true),
        now,
    })
}

/// `Report`'s kind and options into a report query. Times on the wire are Unix seconds.
pub fn report_query(kind: &str, opts: &Options) -> Result<crate::reports::Query, PolicyError> {
    use crate::reports::{Format, Query, ReportKind};
    refuse_unknown(opts, options::REPORT)?;
    let kind = ReportKind::parse(kind).ok_or_else(|| {
        let all: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
        invalid(format!(
            "unknown report {kind:?}; one of: {}",
            all.join(", ")
        ))
    })?;
    let mut query = Query::new(kind);
    let ms = |key: &str, seconds: i64| {
        seconds
            .checked_mul(1000)
            .ok_or_else(|| invalid(format!("option {key:?}: time {seconds} out of range")))
    };
    if let Some(v) = get::<i64>(opts, options::FROM)? {
        query.from_ms = Some(ms(options::FROM, v)?);
    }
    if let Some(v) = get::<i64>(opts, options::TO)? {
        query.to_ms = Some(ms(options::TO, v)?);
    }
    query.key = get::<String>(opts, options::KEY)?;
    query.user = get::<String>(opts, options::USER)?;
    query.reason = get::<String>(opts, options::REASON)?;
    if let Some(f) = get::<String>(opts, options::FORMAT)? {
        query.format = Format::parse(&f).ok_or_else(|| {
            invalid(format!(
                "unknown report format {f:?}; one of: table, csv, json"
            ))
        })?;
    }
    query.limit = get::<u64>(opts, options::LIMIT)?.filter(|n| *n > 0);
    query.validate().map_err(PolicyError::from)?;
    Ok(query)
}
