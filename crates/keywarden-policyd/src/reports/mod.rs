//! Reports over the records: keys out now, the unit report (one key's history), one employee's
//! activity, checkouts by reason code, overdue history, alarms, denials.
//!
//! **One report = one SQL statement.** Each kind's statement is a `pub const` here (and
//! [`sql`]), with named parameters only, so the very same text can be run in the `sqlite3` CLI
//! on the same file to compare (`.parameter set :from_ms 0` ...). The adapter ([`run`]) binds
//! the parameters the statement names and streams the rows into a [`ReportWriter`]: no
//! filtering, sorting or joining happens in Rust.
//!
//! Parameters (every statement uses a subset; an absent filter is bound as NULL):
//! - `:from_ms`, `:to_ms`: the time range, Unix milliseconds, half-open `[from, to)`; all time
//!   is `0` and `9223372036854775807`. History reports range over the event's audit time;
//!   `keys-out` over the grant time.
//! - `:key` (key label), `:user` (login name), `:reason` (reason code): filters; NULL = any.
//!   Required (never NULL) for the kind they name: `:key` in [`KEY_SQL`], `:user` in
//!   [`USER_SQL`], `:reason` in [`REASON_SQL`].
//! - `:now_ms`: "now" for the overdue flags and the minutes late of keys still out.
//! - `:limit`: at most this many rows; `-1` = no limit.
//!
//! **Sources.** History comes from the audit trail (`audit`), which is hash-chained and signed:
//! a report shows what the tamper-evident record says. Keys out *now* come from the `loans`
//! table, the current state, written in the same transaction as the audit entry of each grant,
//! removal and return. Times in the audit details are Unix seconds as strings (`"due_at"`); the
//! statements turn every time into Unix milliseconds. Migration 2
//! (`store/schema/v2-reports.sql`) holds the indexes these statements seek on; the test
//! `every_report_seeks_instead_of_scanning_the_audit_table` checks their query plans.
//!
//! - `format`: pure formatting of rows (table, CSV, JSON), no SQLite.
//! - `query`: the read-only connection, parameter binding and row streaming.

mod format;
mod query;

#[cfg(test)]
mod tests;

pub use format::{Cell, Column, ColumnType, Format, ReportWriter};
pub use query::{open_read_only, run, run_to_file};

use std::fmt;

/// The largest number of columns a report has.
pub const MAX_COLUMNS: usize = 10;

/// A report kind, named on the wire and on the command line as [`ReportKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// `keys-out`: every key out now (or granted and not yet taken): who, since when, reason,
    /// due, overdue flag.
    KeysOut,
    /// `key`: the unit report: every event about one key (grants, removals, returns, denials,
    /// alarms, admin changes), with who and why.
    Key,
    /// `user`: every event one person caused at the cabinet.
    User,
    /// `reasons`: checkouts per reason code (count, people, keys, first and last).
    Reasons,
    /// `reason`: every checkout with one reason code, with its return.
    Reason,
    /// `overdue`: every key that went overdue: holder, due, returned when and by whom, minutes
    /// late.
    Overdue,
    /// `alarms`: every alarm raised, with when it cleared.
    Alarms,
    /// `denials`: every refused request.
    Denials,
}

/// A filter a report may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `:key`, a key label.
    Key,
    /// `:user`, a login name.
    User,
    /// `:reason`, a reason code.
    Reason,
}

impl Filter {
    /// The option / flag name.
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Key => "key",
            Filter::User => "user",
            Filter::Reason => "reason",
        }
    }
}

impl ReportKind {
    /// Every kind.
    pub const ALL: [ReportKind; 8] = [
        ReportKind::KeysOut,
        ReportKind::Key,
        ReportKind::User,
        ReportKind::Reasons,
        ReportKind::Reason,
        ReportKind::Overdue,
        ReportKind::Alarms,
        ReportKind::Denials,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::KeysOut => "keys-out",
            ReportKind::Key => "key",
            ReportKind::User => "user",
            ReportKind::Reasons => "reasons",
            ReportKind::Reason => "reason",
            ReportKind::Overdue => "overdue",
            ReportKind::Alarms => "alarms",
            ReportKind::Denials => "denials",
        }
    }

    /// Parse a wire name.
    pub fn parse(text: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The filter this kind cannot run without.
    pub fn required(self) -> Option<Filter> {
        match self {
            ReportKind::Key => Some(Filter::Key),
            ReportKind::User => Some(Filter::User),
            ReportKind::Reason => Some(Filter::Reason),
            _ => None,
        }
    }

    /// The filters this kind takes (including the required one).
    pub fn filters(self) -> &'static [Filter] {
        match self {
            ReportKind::KeysOut | ReportKind::Reasons | ReportKind::Reason => {
                &[Filter::Key, Filter::User, Filter::Reason]
            }
            ReportKind::Key | ReportKind::User | ReportKind::Overdue | ReportKind::Denials => {
                &[Filter::Key, Filter::User]
            }
            ReportKind::Alarms => &[Filter::Key],
        }
    }

    /// The report's columns, in the order of its statement's result columns.
    pub fn columns(self) -> &'static [Column] {
        match self {
            ReportKind::KeysOut => KEYS_OUT_COLUMNS,
            ReportKind::Key | ReportKind::User | ReportKind::Denials => EVENT_COLUMNS,
            ReportKind::Reasons => REASONS_COLUMNS,
            ReportKind::Reason => CHECKOUT_COLUMNS,
            ReportKind::Overdue => OVERDUE_COLUMNS,
            ReportKind::Alarms => ALARM_COLUMNS,
        }
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statement of a report kind.
pub fn sql(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::KeysOut => KEYS_OUT_SQL,
        ReportKind::Key => KEY_SQL,
        ReportKind::User => USER_SQL,
        ReportKind::Reasons => REASONS_SQL,
        ReportKind::Reason => REASON_SQL,
        ReportKind::Overdue => OVERDUE_SQL,
        ReportKind::Alarms => ALARMS_SQL,
        ReportKind::Denials => DENIALS_SQL,
    }
}

/// Every named parameter a statement may use, in the order the adapter binds them.
pub const PARAMETERS: &[&str] = &[
    ":from_ms", ":to_ms", ":key", ":user", ":reason", ":now_ms", ":limit",
];

const fn col(name: &'static str, kind: ColumnType) -> Column {
    Column { name, kind }
}
use ColumnType::{Flag, Int, Text, Time};

/// `keys-out`: key, holder, state (`out`, or `granted` while the key is still in its slot), since
/// (taken, else granted), reason, due, overdue, second person, slot.
pub const KEYS_OUT_COLUMNS: &[Column] = &[
    col("key", Text),
    col("holder", Text),
    col("state", Text),
    col("since", Time),
    col("reason", Text),
    col("due", Time),
    col("overdue", Flag),
    col("witness", Text),
    col("slot", Int),
];

/// Keys out now, from the `loans` table (open loan = `closed_at IS NULL`), soonest due first.
/// Parameters: `:from_ms`, `:to_ms` (grant time), `:key`, `:user`, `:reason`, `:now_ms`,
/// `:limit`.
pub const KEYS_OUT_SQL: &str = "\
SELECT k.label AS key, u.name AS holder,
       CASE WHEN l.taken_at IS NULL THEN 'granted' ELSE 'out' END AS state,
       coalesce(l.taken_at, l.granted_at) * 1000 AS since,
       l.reason AS reason,
       l.due_at * 1000 AS due,
       l.due_at * 1000 <= :now_ms AS overdue,
       w.name AS witness,
       l.slot AS slot
FROM loans AS l
JOIN keys AS k ON k.id = l.key_id
JOIN users AS u ON u.id = l.user_id
LEFT JOIN users AS w ON w.id = l.witness_id
WHERE l.closed_at IS NULL
  AND l.granted_at * 1000 >= :from_ms AND l.granted_at * 1000 < :to_ms
  AND (:key IS NULL OR k.label = :key)
  AND (:user IS NULL OR u.name = :user)
  AND (:reason IS NULL OR l.reason = :reason)
ORDER BY l.due_at, k.label
LIMIT :limit";

/// Event reports (`key`, `user`, `denials`): at, event (audit kind), who (login name, or
/// `uid:N(name)` for an admin change, empty for the cabinet itself), subject (`key:LABEL`,
/// `slot:N`, `door`, `user:NAME`, `cabinet`), reason (the checkout's reason code: the one
/// granted, or for a removal, return or lapse the one of the grant it belongs to, or for a
/// denial the one asked for), due, slot, note (denial code and message; `late`, `for HOLDER`
/// on a return; the second person of a grant; otherwise the entry's details).
pub const EVENT_COLUMNS: &[Column] = &[
    col("at", Time),
    col("event", Text),
    col("who", Text),
    col("subject", Text),
    col("reason", Text),
    col("due", Time),
    col("slot", Text),
    col("note", Text),
];

/// The result columns of the event reports, over `audit AS a` (see [`EVENT_COLUMNS`]).
macro_rules! event_select {
    () => {
        "\
SELECT a.at_ms AS at, a.kind AS event, a.actor AS who, a.subject AS subject,
       CASE
         WHEN a.kind = 'granted' THEN json_extract(a.detail, '$.reason')
         WHEN a.kind = 'denied' THEN json_extract(a.detail, '$.request_reason')
         WHEN a.kind IN ('removed', 'grant-lapsed')
           OR (a.kind = 'returned' AND json_extract(a.detail, '$.taken_by') <> '')
         THEN (SELECT json_extract(g.detail, '$.reason') FROM audit AS g
               WHERE g.kind = 'granted' AND g.subject = a.subject AND g.seq < a.seq
               ORDER BY g.seq DESC LIMIT 1)
       END AS reason,
       CAST(json_extract(a.detail, '$.due_at') AS INTEGER) * 1000 AS due,
       nullif(json_extract(a.detail, '$.slot'), '') AS slot,
       CASE a.kind
         WHEN 'denied' THEN json_extract(a.detail, '$.reason') || ': '
                            || json_extract(a.detail, '$.message')
         WHEN 'returned' THEN nullif(trim(
               iif(json_extract(a.detail, '$.late') = 'true', 'late ', '')
               || iif(json_extract(a.detail, '$.different_user') = 'true',
                      'for ' || json_extract(a.detail, '$.taken_by'), '')), '')
         WHEN 'granted' THEN 'second person ' || json_extract(a.detail, '$.second_person')
         WHEN 'removed' THEN 'seen ' || json_extract(a.detail, '$.seen')
         WHEN 'grant-lapsed' THEN 'not taken'
         ELSE nullif(json_remove(a.detail, '$.slot', '$.due_at'), '{}')
       END AS note
FROM audit AS a
"
    };
}

/// The unit report: every audit entry about key `:key` ("who entered my home and why"), in time
/// order. Parameters: `:key` (required), `:user` (optional: only this person's entries),
/// `:from_ms`, `:to_ms`, `:limit`.
pub const KEY_SQL: &str = concat!(
    event_select!(),
    "\
WHERE a.subject = 'key:' || :key
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:user IS NULL OR a.actor = :user)
ORDER BY a.at_ms, a.seq
LIMIT :limit"
);

/// One employee's activity: every audit entry whose actor is `:user`, in time order.
/// Parameters: `:user` (required), `:key` (optional: only entries about this key), `:from_ms`,
/// `:to_ms`, `:limit`.
pub const USER_SQL: &str = concat!(
    event_select!(),
    "\
WHERE a.actor = :user
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:key IS NULL OR a.subject = 'key:' || :key)
ORDER BY a.at_ms, a.seq
LIMIT :limit"
);

/// Every refused request, in time order. Parameters: `:from_ms`, `:to_ms`, `:key`, `:user`,
/// `:limit`.
pub const DENIALS_SQL: &str = concat!(
    event_select!(),
    "\
WHERE a.kind = 'denied'
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:key IS NULL OR a.subject = 'key:' || :key)
  AND (:user IS NULL OR a.actor = :user)
ORDER BY a.at_ms, a.seq
LIMIT :limit"
);

/// `reasons`: reason code, its description, checkouts, distinct people, distinct keys, first and
/// last checkout.
pub const REASONS_COLUMNS: &[Column] = &[
    col("reason", Text),
    col("description", Text),
    col("checkouts", Int),
    col("people", Int),
    col("keys", Int),
    col("first", Time),
    col("last", Time),
];

/// Checkouts (grants) per reason code, most used first. Parameters: `:from_ms`, `:to_ms`,
/// `:key`, `:user`, `:reason`, `:limit`.
pub const REASONS_SQL: &str = "\
SELECT s.reason AS reason, r.description AS description, s.checkouts AS checkouts,
       s.people AS people, s.keys AS keys, s.first AS first, s.last AS last
FROM (SELECT json_extract(a.detail, '$.reason') AS reason, count(*) AS checkouts,
             count(DISTINCT a.actor) AS people, count(DISTINCT a.subject) AS keys,
             min(a.at_ms) AS first, max(a.at_ms) AS last
      FROM audit AS a
      WHERE a.kind = 'granted'
        AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
        AND (:key IS NULL OR a.subject = 'key:' || :key)
        AND (:user IS NULL OR a.actor = :user)
        AND (:reason IS NULL OR json_extract(a.detail, '$.reason') = :reason)
      GROUP BY 1) AS s
LEFT JOIN reasons AS r ON r.code = s.reason
ORDER BY s.checkouts DESC, s.reason
LIMIT :limit";

/// Checkouts: granted, key, who, reason, due, ended (returned or lapsed at), outcome
/// (`returned`, `lapsed`, `out`), returned by, late (returned after due, or still out past
/// due).
pub const CHECKOUT_COLUMNS: &[Column] = &[
    col("granted", Time),
    col("key", Text),
    col("who", Text),
    col("reason", Text),
    col("due", Time),
    col("ended", Time),
    col("outcome", Text),
    col("returned_by", Text),
    col("late", Flag),
];

/// Every checkout with reason code `:reason`, in time order, each with the end of its loan (the
/// first return or lapse of that key after the grant). Parameters: `:reason` (required),
/// `:from_ms`, `:to_ms`, `:key`, `:user`, `:now_ms`, `:limit`.
pub const REASON_SQL: &str = "\
SELECT a.at_ms AS granted, substr(a.subject, 5) AS key, a.actor AS who,
       json_extract(a.detail, '$.reason') AS reason,
       CAST(json_extract(a.detail, '$.due_at') AS INTEGER) * 1000 AS due,
       e.at_ms AS ended,
       CASE e.kind WHEN 'returned' THEN 'returned' WHEN 'grant-lapsed' THEN 'lapsed'
            ELSE 'out' END AS outcome,
       CASE e.kind WHEN 'returned' THEN e.actor END AS returned_by,
       CASE WHEN e.kind = 'grant-lapsed' THEN 0
            ELSE coalesce(e.at_ms, :now_ms)
                 > CAST(json_extract(a.detail, '$.due_at') AS INTEGER) * 1000 END AS late
FROM audit AS a
LEFT JOIN audit AS e ON e.seq = (
    SELECT x.seq FROM audit AS x
    WHERE x.kind IN ('returned', 'grant-lapsed') AND x.subject = a.subject AND x.seq > a.seq
    ORDER BY x.seq LIMIT 1)
WHERE a.kind = 'granted' AND json_extract(a.detail, '$.reason') = :reason
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:key IS NULL OR a.subject = 'key:' || :key)
  AND (:user IS NULL OR a.actor = :user)
ORDER BY a.at_ms, a.seq
LIMIT :limit";

/// `overdue`: since (when the overdue alarm was raised), key, holder, due, returned, returned
/// by, minutes late (until the return, or until now), still out.
pub const OVERDUE_COLUMNS: &[Column] = &[
    col("since", Time),
    col("key", Text),
    col("holder", Text),
    col("due", Time),
    col("returned", Time),
    col("returned_by", Text),
    col("minutes_late", Int),
    col("still_out", Flag),
];

/// Every key that went overdue (an `overdue` alarm raised), in time order, with its return.
/// Parameters: `:from_ms`, `:to_ms` (when it went overdue), `:key`, `:user` (the holder),
/// `:now_ms`, `:limit`.
pub const OVERDUE_SQL: &str = "\
SELECT a.at_ms AS since, substr(a.subject, 5) AS key,
       json_extract(a.detail, '$.holder') AS holder,
       CAST(json_extract(a.detail, '$.due_at') AS INTEGER) * 1000 AS due,
       e.at_ms AS returned, e.actor AS returned_by,
       (coalesce(e.at_ms, :now_ms)
        - CAST(json_extract(a.detail, '$.due_at') AS INTEGER) * 1000) / 60000 AS minutes_late,
       e.seq IS NULL AS still_out
FROM audit AS a
LEFT JOIN audit AS e ON e.seq = (
    SELECT x.seq FROM audit AS x
    WHERE x.kind IN ('returned', 'grant-lapsed') AND x.subject = a.subject AND x.seq > a.seq
    ORDER BY x.seq LIMIT 1)
WHERE a.kind = 'alarm-raised' AND json_extract(a.detail, '$.alarm') = 'overdue'
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:key IS NULL OR a.subject = 'key:' || :key)
  AND (:user IS NULL OR json_extract(a.detail, '$.holder') = :user)
ORDER BY a.at_ms, a.seq
LIMIT :limit";

/// `alarms`: raised, alarm kind, subject, details, cleared (empty = still active).
pub const ALARM_COLUMNS: &[Column] = &[
    col("raised", Time),
    col("alarm", Text),
    col("subject", Text),
    col("detail", Text),
    col("cleared", Time),
];

/// Every alarm raised, in time order, with the first clearing of the same alarm on the same
/// subject after it. Parameters: `:from_ms`, `:to_ms`, `:key` (alarms about that key), `:limit`.
pub const ALARMS_SQL: &str = "\
SELECT a.at_ms AS raised, json_extract(a.detail, '$.alarm') AS alarm, a.subject AS subject,
       nullif(json_remove(a.detail, '$.alarm'), '{}') AS detail,
       (SELECT c.at_ms FROM audit AS c
        WHERE c.kind = 'alarm-cleared' AND c.subject = a.subject AND c.seq > a.seq
          AND json_extract(c.detail, '$.alarm') = json_extract(a.detail, '$.alarm')
        ORDER BY c.seq LIMIT 1) AS cleared
FROM audit AS a
WHERE a.kind = 'alarm-raised'
  AND a.at_ms >= :from_ms AND a.at_ms < :to_ms
  AND (:key IS NULL OR a.subject = 'key:' || :key)
ORDER BY a.at_ms, a.seq
LIMIT :limit";

/// What to report: the kind, its range and filters, the output format and a row limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The report.
    pub kind: ReportKind,
    /// From (Unix ms, inclusive); `None` = the beginning.
    pub from_ms: Option<i64>,
    /// To (Unix ms, exclusive); `None` = no end.
    pub to_ms: Option<i64>,
    /// Key label.
    pub key: Option<String>,
    /// Login name.
    pub user: Option<String>,
    /// Reason code.
    pub reason: Option<String>,
    /// Output format.
    pub format: Format,
    /// At most this many rows; `None` = all.
    pub limit: Option<u64>,
}

impl Query {
    /// A query for `kind` over all time, no filter, table output, no limit.
    pub fn new(kind: ReportKind) -> Query {
        Query {
            kind,
            from_ms: None,
            to_ms: None,
            key: None,
            user: None,
            reason: None,
            format: Format::Table,
            limit: None,
        }
    }

    /// The value of a filter.
    pub fn filter(&self, filter: Filter) -> Option<&str> {
        match filter {
            Filter::Key => self.key.as_deref(),
            Filter::User => self.user.as_deref(),
            Filter::Reason => self.reason.as_deref(),
        }
    }

    /// Check the range and the filters against the kind: a range that ends before it starts,
    /// a filter the kind does not take, an empty filter and a missing required one are
    /// [`Error::Invalid`](crate::error::Error::Invalid).
    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        let what = || format!("report {}", self.kind);
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms) {
            if to <= from {
                return Err(Error::invalid(
                    what(),
                    "the time range ends before it starts",
                ));
            }
        }
        for filter in [Filter::Key, Filter::User, Filter::Reason] {
            let Some(value) = self.filter(filter) else {
                continue;
            };
            if !self.kind.filters().contains(&filter) {
                return Err(Error::invalid(
                    what(),
                    format!("it takes no {} filter", filter.as_str()),
                ));
            }
            if value.is_empty() {
                return Err(Error::invalid(
                    what(),
                    format!("empty {} filter", filter.as_str()),
                ));
            }
        }
        if let Some(required) = self.kind.required() {
            if self.filter(required).is_none() {
                return Err(Error::invalid(
                    what(),
                    format!("it needs a {}", required.as_str()),
                ));
            }
        }
        Ok(())
    }
}
