//! Every report on a real database file written through the real [`Store`]: admin changes via
//! `apply_admin`, cabinet events via `commit` with the changes and details the core writes.

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use keywarden_audit::DeviceKey;
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

use super::*;
use crate::admin::{Actor, AdminOp};
use crate::core::effects::{Change, Commit, Event, EventKind};
use crate::error::Error;
use crate::model::{AlarmKind, KeyKind, Role, Settings};
use crate::store::{BadgeKey, Store};

/// 2026-11-23 10:00:00 UTC, seconds.
const T0: i64 = 1_795_428_000;
/// alice (1), bob (2); keys 204 (1, slot 1), 205 (2, slot 2).
const ALICE: i64 = 1;
const BOB: i64 = 2;
const K204: i64 = 1;
const K205: i64 = 2;

struct Db {
    _dir: TempDir,
    store: Store,
    conn: Connection,
}

fn event(kind: EventKind, actor: &str, subject: &str, detail: &[(&'static str, &str)]) -> Event {
    Event {
        kind,
        actor: actor.to_owned(),
        subject: subject.to_owned(),
        detail: detail.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    }
}

impl Db {
    fn commit(&mut self, at: i64, changes: Vec<Change>, events: Vec<Event>) {
        self.store
            .commit(
                &Commit {
                    changes,
                    events,
                    then: vec![],
                },
                at * 1000,
            )
            .expect("commit");
    }

    fn report(&self, query: &Query, now: i64) -> crate::error::Result<(u64, String)> {
        let mut out = Vec::new();
        let n = run(&self.conn, query, now * 1000, &TimeZone::UTC, &mut out)?;
        Ok((n, String::from_utf8(out).expect("utf-8")))
    }

    /// The report as JSON objects.
    fn json(&self, query: Query, now: i64) -> Vec<Value> {
        let query = Query {
            format: Format::Json,
            ..query
        };
        let (n, text) = self.report(&query, now).expect("report");
        let rows: Vec<Value> = serde_json::from_str::<Value>(&text)
            .expect("json")
            .as_array()
            .expect("array")
            .clone();
        assert_eq!(rows.len() as u64, n);
        rows
    }
}

fn q(kind: ReportKind) -> Query {
    Query::new(kind)
}

fn with(kind: ReportKind, filter: Filter, value: &str) -> Query {
    let mut query = Query::new(kind);
    match filter {
        Filter::Key => query.key = Some(value.into()),
        Filter::User => query.user = Some(value.into()),
        Filter::Reason => query.reason = Some(value.into()),
    }
    query
}

/// A property's day, as the core records it:
/// - +60 s alice is granted 204 for MAINT (due +1 h), +70 s takes it;
/// - +100 s bob is refused 204 (key out), asking for SHOW;
/// - +3700 s 204 is overdue; +4000 s bob returns it for alice, late; the alarm clears;
/// - +5000 s bob is granted 205 for SHOW (due +9000 s) and takes it: still out;
/// - +6000 s alice is granted 204 for SHOW and never takes it: the grant lapses;
/// - +7000 s the door is forced: the alarm stays active.
fn property() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keywarden.db");
    let mut store = Store::open(
        &path,
        DeviceKey::from_bytes(&[7; 32]),
        BadgeKey::from_bytes(&[9; 32]),
    )
    .expect("open");
    store
        .sync_slots(&(1..=4).collect::<BTreeSet<_>>())
        .expect("slots");
    let actor = Actor {
        uid: 1000,
        name: "admin".into(),
    };
    let settings = Settings::default();
    let ops = [
        AdminOp::AddUser {
            name: "alice".into(),
            role: Role::Staff,
            fields: vec![],
        },
        AdminOp::AddUser {
            name: "bob".into(),
            role: Role::Staff,
            fields: vec![],
        },
        AdminOp::AddKey {
            label: "204".into(),
            tag: "04A1".into(),
            kind: KeyKind::Unit,
            fields: vec![],
        },
        AdminOp::AddKey {
            label: "205".into(),
            tag: "04A2".into(),
            kind: KeyKind::Unit,
            fields: vec![],
        },
        AdminOp::PlaceKey {
            label: "204".into(),
            slot: 1,
        },
        AdminOp::PlaceKey {
            label: "205".into(),
            slot: 2,
        },
        AdminOp::SetReason {
            code: "MAINT".into(),
            description: "Maintenance".into(),
            max_minutes: None,
        },
        AdminOp::SetReason {
            code: "SHOW".into(),
            description: "Showing".into(),
            max_minutes: None,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        store
            .apply_admin(&actor, op, &settings, (T0 + i as i64) * 1000)
            .expect("admin");
    }
    let conn = open_read_only(&path).expect("read-only");
    let mut db = Db {
        _dir: dir,
        store,
        conn,
    };
    let grant = |key, user, reason: &str, at, due| Change::OpenLoan {
        key,
        user,
        witness: None,
        reason: reason.into(),
        granted_at: at,
        due_at: due,
        slot: Some(key as u32),
    };
    let due1 = (T0 + 3600).to_string();
    db.commit(
        T0 + 60,
        vec![grant(K204, ALICE, "MAINT", T0 + 60, T0 + 3600)],
        vec![event(
            EventKind::Granted,
            "alice",
            "key:204",
            &[("reason", "MAINT"), ("due_at", &due1), ("slot", "1")],
        )],
    );
    db.commit(
        T0 + 70,
        vec![
            Change::TakeLoan {
                key: K204,
                at: T0 + 70,
            },
            Change::SlotContents { slot: 1, key: None },
        ],
        vec![event(
            EventKind::Removed,
            "alice",
            "key:204",
            &[("slot", "1")],
        )],
    );
    db.commit(
        T0 + 100,
        vec![],
        vec![event(
            EventKind::Denied,
            "bob",
            "key:204",
            &[
                ("reason", "key-out"),
                ("message", "the key is out"),
                ("all_reasons", "key-out"),
                ("request_reason", "SHOW"),
            ],
        )],
    );
    db.commit(
        T0 + 3700,
        vec![Change::RaiseAlarm {
            kind: AlarmKind::Overdue,
            subject: "key:204".into(),
            at: T0 + 3700,
        }],
        vec![event(
            EventKind::AlarmRaised,
            "",
            "key:204",
            &[("alarm", "overdue"), ("holder", "alice"), ("due_at", &due1)],
        )],
    );
    db.commit(
        T0 + 4000,
        vec![
            Change::CloseLoan {
                key: K204,
                at: T0 + 4000,
                returned_by: Some(BOB),
            },
            Change::SlotContents {
                slot: 3,
                key: Some(K204),
            },
            Change::ClearAlarm {
                kind: AlarmKind::Overdue,
                subject: "key:204".into(),
                at: T0 + 4000,
            },
        ],
        vec![
            event(
                EventKind::Returned,
                "bob",
                "key:204",
                &[
                    ("slot", "3"),
                    ("taken_by", "alice"),
                    ("due_at", &due1),
                    ("late", "true"),
                    ("different_user", "true"),
                ],
            ),
            event(
                EventKind::AlarmCleared,
                "",
                "key:204",
                &[("alarm", "overdue")],
            ),
        ],
    );
    let due2 = (T0 + 9000).to_string();
    db.commit(
        T0 + 5000,
        vec![grant(K205, BOB, "SHOW", T0 + 5000, T0 + 9000)],
        vec![event(
            EventKind::Granted,
            "bob",
            "key:205",
            &[("reason", "SHOW"), ("due_at", &due2), ("slot", "2")],
        )],
    );
    db.commit(
        T0 + 5010,
        vec![
            Change::TakeLoan {
                key: K205,
                at: T0 + 5010,
            },
            Change::SlotContents { slot: 2, key: None },
        ],
        vec![event(
            EventKind::Removed,
            "bob",
            "key:205",
            &[("slot", "2")],
        )],
    );
    let due3 = (T0 + 9600).to_string();
    db.commit(
        T0 + 6000,
        vec![Change::OpenLoan {
            key: K204,
            user: ALICE,
            witness: None,
            reason: "SHOW".into(),
            granted_at: T0 + 6000,
            due_at: T0 + 9600,
            slot: Some(3),
        }],
        vec![event(
            EventKind::Granted,
            "alice",
            "key:204",
            &[("reason", "SHOW"), ("due_at", &due3), ("slot", "3")],
        )],
    );
    let granted = (T0 + 6000).to_string();
    db.commit(
        T0 + 6400,
        vec![Change::CloseLoan {
            key: K204,
            at: T0 + 6400,
            returned_by: None,
        }],
        vec![event(
            EventKind::GrantLapsed,
            "alice",
            "key:204",
            &[("granted_at", &granted), ("seen", "stale-grant")],
        )],
    );
    db.commit(
        T0 + 7000,
        vec![Change::RaiseAlarm {
            kind: AlarmKind::DoorForced,
            subject: "door".into(),
            at: T0 + 7000,
        }],
        vec![event(
            EventKind::AlarmRaised,
            "",
            "door",
            &[("alarm", "door-forced")],
        )],
    );
    db
}

/// RFC 3339 of T0 + `s` seconds.
fn at(s: i64) -> String {
    jiff::Timestamp::from_second(T0 + s).unwrap().to_string()
}

/// "Now" for the reports: T0 + 10000 s (205 is past due).
const NOW: i64 = T0 + 10_000;

fn pick(rows: &[Value], fields: &[&str]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            fields
                .iter()
                .map(|f| match &r[*f] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

#[test]
fn keys_out_lists_open_loans_with_holder_reason_due_and_overdue_flag() {
    let db = property();
    let rows = db.json(q(ReportKind::KeysOut), NOW);
    assert_eq!(
        pick(
            &rows,
            &["key", "holder", "state", "since", "reason", "due", "overdue", "slot"]
        ),
        vec![vec![
            "205".to_owned(),
            "bob".into(),
            "out".into(),
            at(5010),
            "SHOW".into(),
            at(9000),
            "true".into(),
            "2".into()
        ]]
    );
    // Before the due time the flag is down; a filter on another holder leaves nothing.
    let rows = db.json(q(ReportKind::KeysOut), T0 + 8000);
    assert_eq!(rows[0]["overdue"], Value::Bool(false));
    assert!(db
        .json(with(ReportKind::KeysOut, Filter::User, "alice"), NOW)
        .is_empty());
}

#[test]
fn the_unit_report_says_who_entered_and_why() {
    let db = property();
    let rows = db.json(with(ReportKind::Key, Filter::Key, "204"), NOW);
    assert_eq!(
        pick(&rows, &["event", "who", "reason", "slot"]),
        strings(&[
            &["admin", "uid:1000(admin)", "-", "-"],
            &["admin", "uid:1000(admin)", "-", "1"],
            &["granted", "alice", "MAINT", "1"],
            &["removed", "alice", "MAINT", "1"],
            &["denied", "bob", "SHOW", "-"],
            &["alarm-raised", "", "-", "-"],
            &["returned", "bob", "MAINT", "3"],
            &["alarm-cleared", "", "-", "-"],
            &["granted", "alice", "SHOW", "3"],
            &["grant-lapsed", "alice", "SHOW", "-"],
        ])
    );
    let notes = pick(&rows, &["note"]);
    assert!(notes[0][0].starts_with(r#"{"op":"add-key""#), "{notes:?}");
    assert_eq!(
        notes[2..],
        strings(&[
            &["-"],
            &["-"],
            &["key-out: the key is out"],
            &[r#"{"alarm":"overdue","holder":"alice"}"#],
            &["late for alice"],
            &[r#"{"alarm":"overdue"}"#],
            &["-"],
            &["not taken"],
        ])
    );
    assert_eq!(rows[2]["at"], Value::String(at(60)));
    assert_eq!(rows[2]["due"], Value::String(at(3600)));
    assert_eq!(rows[6]["due"], Value::String(at(3600)));
    // Only one person's entries, and a time range.
    let mut query = with(ReportKind::Key, Filter::Key, "204");
    query.user = Some("bob".into());
    assert_eq!(
        pick(&db.json(query, NOW), &["event"]),
        strings(&[&["denied"], &["returned"]])
    );
    let mut query = with(ReportKind::Key, Filter::Key, "204");
    query.from_ms = Some((T0 + 60) * 1000);
    query.to_ms = Some((T0 + 100) * 1000);
    assert_eq!(
        pick(&db.json(query, NOW), &["event"]),
        strings(&[&["granted"], &["removed"]])
    );
}

#[test]
fn the_unit_report_in_csv_and_table() {
    let db = property();
    let mut query = with(ReportKind::Key, Filter::Key, "204");
    query.format = Format::Csv;
    query.from_ms = Some((T0 + 60) * 1000);
    query.limit = Some(3);
    let (n, text) = db.report(&query, NOW).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        text,
        format!(
            "at,event,who,subject,reason,due,slot,note\r\n\
             {},granted,alice,key:204,MAINT,{},1,\r\n\
             {},removed,alice,key:204,MAINT,,1,\r\n\
             {},denied,bob,key:204,SHOW,,,key-out: the key is out\r\n",
            at(60),
            at(3600),
            at(70),
            at(100)
        )
    );
    query.format = Format::Table;
    let (_, text) = db.report(&query, NOW).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("AT                   EVENT    WHO    SUBJECT  REASON"));
    assert!(lines[1].starts_with("2026-11-23 10:01:00  granted  alice  key:204  MAINT"));
    assert!(lines[3].ends_with("key-out: the key is out"));
}

#[test]
fn the_employee_report_is_everything_they_did() {
    let db = property();
    let rows = db.json(with(ReportKind::User, Filter::User, "alice"), NOW);
    assert_eq!(
        pick(&rows, &["event", "subject", "reason"]),
        strings(&[
            &["granted", "key:204", "MAINT"],
            &["removed", "key:204", "MAINT"],
            &["granted", "key:204", "SHOW"],
            &["grant-lapsed", "key:204", "SHOW"],
        ])
    );
    let mut query = with(ReportKind::User, Filter::User, "bob");
    query.key = Some("205".into());
    assert_eq!(
        pick(&db.json(query, NOW), &["event"]),
        strings(&[&["granted"], &["removed"]])
    );
}

#[test]
fn reasons_summarise_and_one_reason_lists_its_checkouts_with_their_end() {
    let db = property();
    let rows = db.json(q(ReportKind::Reasons), NOW);
    assert_eq!(
        pick(
            &rows,
            &[
                "reason",
                "description",
                "checkouts",
                "people",
                "keys",
                "first",
                "last"
            ]
        ),
        vec![
            vec![
                "SHOW".to_owned(),
                "Showing".into(),
                "2".into(),
                "2".into(),
                "2".into(),
                at(5000),
                at(6000)
            ],
            vec![
                "MAINT".to_owned(),
                "Maintenance".into(),
                "1".into(),
                "1".into(),
                "1".into(),
                at(60),
                at(60)
            ],
        ]
    );
    let rows = db.json(with(ReportKind::Reason, Filter::Reason, "SHOW"), NOW);
    assert_eq!(
        pick(
            &rows,
            &["key", "who", "ended", "outcome", "returned_by", "late"]
        ),
        vec![
            vec![
                "205".to_owned(),
                "bob".into(),
                "-".into(),
                "out".into(),
                "-".into(),
                "true".into()
            ],
            vec![
                "204".to_owned(),
                "alice".into(),
                at(6400),
                "lapsed".into(),
                "-".into(),
                "false".into()
            ],
        ]
    );
    let rows = db.json(with(ReportKind::Reason, Filter::Reason, "MAINT"), NOW);
    assert_eq!(
        pick(&rows, &["key", "ended", "outcome", "returned_by", "late"]),
        vec![vec![
            "204".to_owned(),
            at(4000),
            "returned".into(),
            "bob".into(),
            "true".into()
        ]]
    );
}

#[test]
fn overdue_history_alarms_and_denials() {
    let db = property();
    let rows = db.json(q(ReportKind::Overdue), NOW);
    assert_eq!(
        pick(
            &rows,
            &[
                "since",
                "key",
                "holder",
                "due",
                "returned",
                "returned_by",
                "minutes_late",
                "still_out"
            ]
        ),
        vec![vec![
            at(3700),
            "204".into(),
            "alice".into(),
            at(3600),
            at(4000),
            "bob".into(),
            "6".into(),
            "false".into()
        ]]
    );
    let rows = db.json(q(ReportKind::Alarms), NOW);
    assert_eq!(
        pick(&rows, &["raised", "alarm", "subject", "detail", "cleared"]),
        vec![
            vec![
                at(3700),
                "overdue".into(),
                "key:204".into(),
                format!(r#"{{"holder":"alice","due_at":"{}"}}"#, T0 + 3600),
                at(4000)
            ],
            vec![
                at(7000),
                "door-forced".into(),
                "door".into(),
                "-".into(),
                "-".into()
            ],
        ]
    );
    assert_eq!(
        db.json(with(ReportKind::Alarms, Filter::Key, "205"), NOW),
        Vec::<Value>::new()
    );
    let rows = db.json(q(ReportKind::Denials), NOW);
    assert_eq!(
        pick(&rows, &["at", "who", "subject", "reason", "note"]),
        strings(&[&[
            &at(100),
            "bob",
            "key:204",
            "SHOW",
            "key-out: the key is out"
        ]])
    );
}

#[test]
fn bad_queries_are_refused_naming_the_problem() {
    let db = property();
    let refused = |query: Query| db.report(&query, NOW).unwrap_err();
    assert!(matches!(refused(q(ReportKind::Key)), Error::Invalid { .. }));
    assert!(matches!(
        refused(with(ReportKind::Alarms, Filter::User, "alice")),
        Error::Invalid { .. }
    ));
    assert!(matches!(
        refused(with(ReportKind::Key, Filter::Key, "")),
        Error::Invalid { .. }
    ));
    let mut backwards = q(ReportKind::Denials);
    backwards.from_ms = Some(2000);
    backwards.to_ms = Some(1000);
    let e = refused(backwards);
    assert!(e.to_string().contains("ends before it starts"), "{e}");
    let e = refused(with(ReportKind::Key, Filter::Key, "999"));
    assert!(matches!(&e, Error::NotFound { what: "key", .. }), "{e}");
    assert!(matches!(
        refused(with(ReportKind::User, Filter::User, "carol")),
        Error::NotFound { what: "user", .. }
    ));
    assert!(matches!(
        refused(with(ReportKind::Reason, Filter::Reason, "NOPE")),
        Error::NotFound { what: "reason", .. }
    ));
    for kind in ReportKind::ALL {
        assert_eq!(ReportKind::parse(kind.as_str()), Some(kind));
    }
}

#[test]
fn the_report_connection_cannot_write() {
    let db = property();
    let e = db
        .conn
        .execute("DELETE FROM loans", [])
        .expect_err("read-only");
    assert!(
        e.to_string().contains("readonly")
            || e.to_string().contains("read-only")
            || e.to_string().contains("query_only"),
        "{e}"
    );
}

/// The statements' plans on the migrated schema: the audit table is never scanned row by row
/// (each access to it searches an index), and every statement names only known parameters.
#[test]
fn every_report_seeks_instead_of_scanning_the_audit_table() {
    let db = property();
    for kind in ReportKind::ALL {
        let sql = sql(kind);
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        for i in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(i).expect("named");
            assert!(
                PARAMETERS.contains(&name),
                "{kind}: unknown parameter {name}"
            );
        }
        let mut plan: Vec<String> = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().expect("plan") {
            plan.push(row.get(3).expect("detail"));
        }
        for line in &plan {
            let audit_alias = ["a", "g", "e", "x", "c", "audit"]
                .iter()
                .any(|alias| line.starts_with(&format!("SCAN {alias}")));
            assert!(
                !audit_alias || line.contains("INDEX"),
                "{kind} scans the audit table: {plan:#?}"
            );
        }
        assert!(
            plan.iter()
                .any(|l| l.contains("INDEX") || l.contains("PRIMARY KEY")),
            "{kind}: {plan:#?}"
        );
        eprintln!("{kind}:\n  {}", plan.join("\n  "));
    }
}

/// A database written at schema version 1 (before the reports) gets the indexes at open.
#[test]
fn a_version_1_database_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(crate::store::migrations::MIGRATIONS[0])
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO audit (seq, at_ms, kind, actor, subject, detail, hash)
             VALUES (1, 5, 'denied', 'bob', 'key:1', '{}', zeroblob(32))",
            [],
        )
        .unwrap();
    }
    let store = Store::open(
        &path,
        DeviceKey::from_bytes(&[7; 32]),
        BadgeKey::from_bytes(&[9; 32]),
    )
    .unwrap();
    assert_eq!(store.audit_head().0, 1);
    let conn = open_read_only(&path).unwrap();
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'audit_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 7);
    let mut out = Vec::new();
    let n = run(&conn, &q(ReportKind::Denials), 0, &TimeZone::UTC, &mut out).unwrap();
    assert_eq!(n, 1);
}

/// The wire's closed sets (`keywarden-dbus`, used by the CLI) name exactly these kinds and
/// formats.
#[test]
fn the_wire_names_match() {
    use keywarden_dbus::policy::{ReportFormat, ReportKind as WireKind};
    let wire: Vec<&str> = WireKind::ALL.iter().map(|k| k.as_str()).collect();
    let ours: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(wire, ours);
    for f in ReportFormat::ALL {
        assert_eq!(
            Format::parse(f.as_str()).map(|f| f.as_str()),
            Some(f.as_str())
        );
    }
}
