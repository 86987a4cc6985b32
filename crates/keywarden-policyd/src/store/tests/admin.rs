//! Admin ops: every op round-trips through `load_state`; every rule refuses with its error and
//! writes nothing; audit rows never hold credentials.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use super::{add_key, add_user, Fixture, T0};
use crate::admin::{AdminOp, KeyField, SubjectName, TargetName, UserField};
use crate::core::effects::{Change, Commit};
use crate::error::Error;
use crate::model::{
    AlarmKind, Factors, Group, Key, KeyKind, Permission, PolicyState, Reason, Reservation, Role,
    Schedule, Subject, Target, User, Window,
};
use crate::store::{verify_pin, AdminOutcome};

fn w(days: u8, start: u16, end: u16) -> Window {
    Window { days, start, end }
}

fn set_pin(user: &str, pin: &str) -> AdminOp {
    AdminOp::SetPin {
        user: user.to_owned(),
        pin: Zeroizing::new(pin.to_owned()),
    }
}

fn add_badge(user: &str, code: &str) -> AdminOp {
    AdminOp::AddBadge {
        user: user.to_owned(),
        code: Zeroizing::new(code.to_owned()),
    }
}

fn grant(subject: SubjectName, target: TargetName, schedule: Option<&str>) -> AdminOp {
    AdminOp::Grant {
        subject,
        target,
        schedule: schedule.map(str::to_owned),
    }
}

fn user(name: &str) -> SubjectName {
    SubjectName::User(name.to_owned())
}

fn key(label: &str) -> TargetName {
    TargetName::Key(label.to_owned())
}

/// Every op, in an order that exercises create, change and delete paths.
fn populate(f: &mut Fixture) {
    let s = |x: &str| x.to_owned();
    f.ok(AdminOp::AddUser {
        name: s("alice"),
        role: Role::Staff,
        fields: vec![
            UserField::DisplayName(s("Alice Martin")),
            UserField::ValidFrom(Some(T0)),
            UserField::ValidUntil(Some(T0 + 365 * 86400)),
            UserField::Factors(Factors::AnyPin),
            UserField::MaxKeysOut(Some(2)),
            UserField::MaxCheckoutMinutes(Some(120)),
        ],
    });
    f.ok(AdminOp::AddUser {
        name: s("bob"),
        role: Role::Vendor,
        fields: vec![],
    });
    f.ok(AdminOp::AddUser {
        name: s("carol"),
        role: Role::Manager,
        fields: vec![],
    });
    f.ok(AdminOp::UpdateUser {
        name: s("bob"),
        fields: vec![
            UserField::DisplayName(s("Bob Contractor")),
            UserField::ValidUntil(Some(T0 + 3600)),
            UserField::MaxKeysOut(Some(1)),
        ],
    });
    f.ok(AdminOp::UpdateUser {
        name: s("bob"),
        fields: vec![UserField::MaxKeysOut(None)],
    });
    f.ok(set_pin("alice", "480315"));
    f.ok(add_badge("alice", "0004217356"));
    f.ok(add_badge("alice", "0004217357"));
    f.ok(add_badge("bob", "0009999999"));
    f.ok(AdminOp::ClearBadges { user: s("bob") });
    f.ok(AdminOp::AddFingerprint {
        user: s("alice"),
        template: 3,
    });
    f.ok(AdminOp::AddFingerprint {
        user: s("carol"),
        template: 4,
    });
    f.ok(AdminOp::AddFingerprint {
        user: s("carol"),
        template: 5,
    });
    f.ok(AdminOp::RemoveFingerprint { template: 5 });
    f.ok(AdminOp::AddGroup { name: s("night") });
    f.ok(AdminOp::AddGroup { name: s("temp") });
    f.ok(AdminOp::AddMember {
        group: s("night"),
        user: s("alice"),
    });
    f.ok(AdminOp::AddMember {
        group: s("night"),
        user: s("carol"),
    });
    f.ok(AdminOp::AddMember {
        group: s("temp"),
        user: s("bob"),
    });
    f.ok(AdminOp::RemoveMember {
        group: s("night"),
        user: s("carol"),
    });
    f.ok(AdminOp::AddKey {
        label: s("204"),
        tag: s("04A1"),
        kind: KeyKind::Unit,
        fields: vec![
            KeyField::Notes(s("resident has a dog")),
            KeyField::HomeSlot(Some(1)),
        ],
    });
    f.ok(AdminOp::AddKey {
        label: s("Pool"),
        tag: s("04A2"),
        kind: KeyKind::Amenity,
        fields: vec![],
    });
    f.ok(AdminOp::AddKey {
        label: s("Pharmacy"),
        tag: s("04A3"),
        kind: KeyKind::Restricted,
        fields: vec![KeyField::Critical(true), KeyField::HomeSlot(Some(3))],
    });
    f.ok(add_key("Old", "04A4"));
    f.ok(AdminOp::UpdateKey {
        label: s("Pool"),
        fields: vec![KeyField::Label(s("Pool gate")), KeyField::HomeSlot(Some(2))],
    });
    f.ok(AdminOp::RemoveKey { label: s("Old") });
    f.ok(AdminOp::PlaceKey {
        label: s("204"),
        slot: 1,
    });
    f.ok(AdminOp::PlaceKey {
        label: s("Pool gate"),
        slot: 2,
    });
    f.ok(AdminOp::PlaceKey {
        label: s("Pharmacy"),
        slot: 5,
    });
    f.ok(AdminOp::PlaceKey {
        label: s("Pharmacy"),
        slot: 3,
    });
    f.ok(AdminOp::SetSchedule {
        name: s("office"),
        windows: vec![w(0x1f, 480, 1080)],
        on_holidays: false,
    });
    f.ok(AdminOp::SetSchedule {
        name: s("office"),
        windows: vec![w(0x1f, 420, 1140), w(0x60, 600, 720)],
        on_holidays: true,
    });
    f.ok(AdminOp::SetSchedule {
        name: s("weekend"),
        windows: vec![w(0x60, 0, 1440)],
        on_holidays: false,
    });
    f.ok(AdminOp::RemoveSchedule { name: s("weekend") });
    assert_eq!(
        f.ok(grant(user("alice"), key("Pharmacy"), None)),
        AdminOutcome::Created(1)
    );
    assert_eq!(
        f.ok(grant(
            SubjectName::Group(s("night")),
            TargetName::Kind(KeyKind::Unit),
            Some("office")
        )),
        AdminOutcome::Created(2)
    );
    assert_eq!(
        f.ok(grant(
            SubjectName::Group(s("temp")),
            TargetName::Kind(KeyKind::Amenity),
            None
        )),
        AdminOutcome::Created(3)
    );
    f.ok(AdminOp::RemoveGroup { name: s("temp") });
    assert_eq!(
        f.ok(grant(user("bob"), key("204"), None)),
        AdminOutcome::Created(4)
    );
    f.ok(AdminOp::Revoke { id: 4 });
    f.ok(AdminOp::AddHoliday {
        date: s("2025-12-25"),
        name: s("Christmas"),
    });
    f.ok(AdminOp::AddHoliday {
        date: s("2026-01-01"),
        name: s("New Year"),
    });
    f.ok(AdminOp::RemoveHoliday {
        date: s("2026-01-01"),
    });
    f.ok(AdminOp::SetReason {
        code: s("MAINT"),
        description: s("Maintenance"),
        max_minutes: Some(60),
    });
    f.ok(AdminOp::SetReason {
        code: s("SHOW"),
        description: s("Showing"),
        max_minutes: None,
    });
    f.ok(AdminOp::SetReason {
        code: s("SHOW"),
        description: s("Showing a unit"),
        max_minutes: Some(30),
    });
    f.ok(AdminOp::SetReason {
        code: s("OLD"),
        description: s("Retired"),
        max_minutes: None,
    });
    f.ok(AdminOp::RemoveReason { code: s("OLD") });
    assert_eq!(
        f.ok(AdminOp::Reserve {
            key: s("204"),
            user: s("alice"),
            from: T0 + 7200,
            until: T0 + 10800,
        }),
        AdminOutcome::Created(1)
    );
    assert_eq!(
        f.ok(AdminOp::Reserve {
            key: s("Pool gate"),
            user: s("carol"),
            from: T0 + 3600,
            until: T0 + 7200,
        }),
        AdminOutcome::Created(2)
    );
    f.ok(AdminOp::CancelReservation { id: 2 });
    f.ok(AdminOp::Unlock { user: s("alice") });
}

/// Number of ops `populate` applies.
const POPULATE_OPS: usize = 52;

fn expected(f: &Fixture) -> PolicyState {
    let user = |id, name: &str, display: &str, role| User {
        id,
        name: name.to_owned(),
        display_name: display.to_owned(),
        role,
        active: true,
        valid_from: None,
        valid_until: None,
        factors: Factors::BadgePin,
        max_keys_out: None,
        max_checkout_minutes: None,
        locked_until: None,
        failed_pins: 0,
        has_pin: false,
        fingerprints: BTreeSet::new(),
        groups: BTreeSet::new(),
    };
    let alice = User {
        valid_from: Some(T0),
        valid_until: Some(T0 + 365 * 86400),
        factors: Factors::AnyPin,
        max_keys_out: Some(2),
        max_checkout_minutes: Some(120),
        has_pin: true,
        fingerprints: [3].into(),
        groups: [1].into(),
        ..user(1, "alice", "Alice Martin", Role::Staff)
    };
    let bob = User {
        valid_until: Some(T0 + 3600),
        ..user(2, "bob", "Bob Contractor", Role::Vendor)
    };
    let carol = User {
        fingerprints: [4].into(),
        ..user(3, "carol", "carol", Role::Manager)
    };
    let key = |id, tag: &str, label: &str, kind| Key {
        id,
        tag: tag.to_owned(),
        label: label.to_owned(),
        kind,
        notes: String::new(),
        home_slot: None,
        critical: false,
        active: true,
    };
    let reason = |code: &str, description: &str, max_minutes| {
        (
            code.to_owned(),
            Reason {
                code: code.to_owned(),
                description: description.to_owned(),
                max_minutes,
                active: true,
            },
        )
    };
    PolicyState {
        users: [(1, alice), (2, bob), (3, carol)].into(),
        badges: [
            (f.store.badge_hash("0004217356"), 1),
            (f.store.badge_hash("0004217357"), 1),
        ]
        .into(),
        keys: [
            (
                1,
                Key {
                    notes: "resident has a dog".to_owned(),
                    home_slot: Some(1),
                    ..key(1, "04A1", "204", KeyKind::Unit)
                },
            ),
            (
                2,
                Key {
                    home_slot: Some(2),
                    ..key(2, "04A2", "Pool gate", KeyKind::Amenity)
                },
            ),
            (
                3,
                Key {
                    home_slot: Some(3),
                    critical: true,
                    ..key(3, "04A3", "Pharmacy", KeyKind::Restricted)
                },
            ),
            (
                4,
                Key {
                    active: false,
                    ..key(4, "04A4", "Old", KeyKind::Unit)
                },
            ),
        ]
        .into(),
        groups: [(
            1,
            Group {
                id: 1,
                name: "night".to_owned(),
            },
        )]
        .into(),
        permissions: vec![
            Permission {
                id: 1,
                subject: Subject::User(1),
                target: Target::Key(3),
                schedule: None,
            },
            Permission {
                id: 2,
                subject: Subject::Group(1),
                target: Target::Kind(KeyKind::Unit),
                schedule: Some(1),
            },
        ],
        schedules: [(
            1,
            Schedule {
                id: 1,
                name: "office".to_owned(),
                windows: vec![w(0x1f, 420, 1140), w(0x60, 600, 720)],
                on_holidays: true,
            },
        )]
        .into(),
        holidays: ["2025-12-25".to_owned()].into(),
        reasons: [
            reason("MAINT", "Maintenance", Some(60)),
            reason("SHOW", "Showing a unit", Some(30)),
        ]
        .into(),
        reservations: vec![Reservation {
            id: 1,
            key: 1,
            user: 1,
            from: T0 + 7200,
            until: T0 + 10800,
        }],
        loans: BTreeMap::new(),
        slot_contents: [(1, 1), (2, 2), (3, 3)].into(),
        slots: (1..=8).collect(),
        settings: f.settings.clone(),
    }
}

#[test]
fn every_admin_op_round_trips_through_load_state() {
    let mut f = Fixture::new();
    populate(&mut f);
    let want = expected(&f);
    assert_eq!(f.state(), want);
    f.reopen();
    assert_eq!(f.state(), want);
    assert_eq!(
        f.store.list_holidays().unwrap(),
        vec![("2025-12-25".to_owned(), "Christmas".to_owned())]
    );
    // One audit entry per op, kind `admin`, by the caller.
    let rows = f.audit_rows();
    assert_eq!(rows.len(), POPULATE_OPS);
    for (i, (seq, kind, actor, _, detail)) in rows.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(kind, "admin");
        assert_eq!(actor, "uid:1000(admin)");
        assert!(detail.starts_with("{\"op\":\""), "{detail}");
        serde_json::from_str::<serde_json::Value>(detail).expect("detail is JSON");
    }
    let subjects: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    for s in [
        "user:alice",
        "user:bob",
        "group:night",
        "key:204",
        "key:Pool",
        "schedule:office",
        "permission:1",
        "holiday:2025-12-25",
        "reason:MAINT",
        "reservation:1",
    ] {
        assert!(subjects.contains(&s), "no audit subject {s}");
    }
    let update = &rows[3].4;
    assert_eq!(
        update,
        r#"{"op":"update-user","display_name":"Bob Contractor","valid_until":1700003600,"max_keys_out":1}"#
    );
}

#[test]
fn remove_user_deactivates_and_drops_credentials_but_keeps_history() {
    let mut f = Fixture::new();
    populate(&mut f);
    let alice = 1;
    f.store
        .commit(
            &Commit {
                changes: vec![
                    Change::OpenLoan {
                        key: 1,
                        user: alice,
                        witness: None,
                        reason: "MAINT".to_owned(),
                        granted_at: T0,
                        due_at: T0 + 3600,
                        slot: Some(1),
                    },
                    Change::CloseLoan {
                        key: 1,
                        at: T0 + 60,
                        returned_by: Some(alice),
                    },
                ],
                events: vec![],
                then: vec![],
            },
            f.now_ms,
        )
        .unwrap();
    f.ok(AdminOp::RemoveUser {
        name: "alice".to_owned(),
    });
    let state = f.state();
    let a = &state.users[&alice];
    assert!(!a.active);
    assert!(!a.has_pin);
    assert!(a.fingerprints.is_empty());
    assert!(state.badges.is_empty());
    assert_eq!(f.store.pin_hash(alice).unwrap(), None);
    assert_eq!(f.count("loans"), 1, "history kept");
    assert_eq!(
        state.permissions.len(),
        2,
        "permissions stay (the user is inactive)"
    );
    let last = f.audit_rows().pop().unwrap();
    assert_eq!(
        (last.3.as_str(), last.4.as_str()),
        (
            "user:alice",
            r#"{"op":"remove-user","badges_removed":2,"fingerprints_removed":[3]}"#
        )
    );
}

#[test]
fn audit_rows_never_hold_a_pin_a_badge_code_or_their_hashes() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.ok(set_pin("alice", "480315"));
    f.ok(add_badge("alice", "0004217356"));
    let phc = f.store.pin_hash(1).unwrap().expect("a PIN is set");
    assert!(verify_pin(&phc, "480315"));
    let badge_hash = f.store.badge_hash("0004217356");
    let phc_hash = phc.rsplit('$').next().unwrap().to_owned();
    let salt = phc.rsplit('$').nth(1).unwrap().to_owned();
    let rows = f.audit_rows();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].4, r#"{"op":"set-pin"}"#);
    assert_eq!(rows[2].4, r#"{"op":"add-badge","badges":1}"#);
    for (_, kind, actor, subject, detail) in &rows {
        let text = format!("{kind} {actor} {subject} {detail}");
        for secret in [
            "480315",
            "0004217356",
            badge_hash.as_str(),
            phc.as_str(),
            phc_hash.as_str(),
            salt.as_str(),
        ] {
            assert!(!text.contains(secret), "audit row {text:?} holds a secret");
        }
    }
    // A refused duplicate says nothing about whose badge it is.
    f.ok(add_user("bob"));
    let e = f.admin(add_badge("bob", "0004217356")).unwrap_err();
    assert!(
        matches!(e, Error::AlreadyExists { what: "badge", .. }),
        "{e:?}"
    );
    let message = e.to_string();
    assert_eq!(message, "badge already belongs to a user");
    assert!(!format!("{e:?}").contains("alice") && !format!("{e:?}").contains("0004217356"));
}

/// Apply `op`, expect it refused, and check nothing was written.
fn refused(f: &mut Fixture, op: AdminOp) -> Error {
    let before = f.state();
    let audit = f.count("audit");
    let head = f.store.audit_head();
    let text = format!("{op:?}");
    let e = match f.admin(op) {
        Err(e) => e,
        Ok(outcome) => panic!("{text} was accepted: {outcome:?}"),
    };
    assert!(e.is_caller_misuse(), "{text}: {e:?}");
    assert_eq!(f.state(), before, "{text} changed the state");
    assert_eq!(f.count("audit"), audit, "{text} wrote an audit row");
    assert_eq!(f.store.audit_head(), head);
    e
}

macro_rules! assert_refused {
    ($f:expr, $op:expr, $pat:pat) => {{
        let e = refused($f, $op);
        assert!(matches!(e, $pat), "{}: got {e:?}", stringify!($op));
        e
    }};
}

#[test]
fn unknown_names_are_not_found() {
    let mut f = Fixture::new();
    populate(&mut f);
    let s = |x: &str| x.to_owned();
    let f = &mut f;
    assert_refused!(
        f,
        set_pin("zed", "480315"),
        Error::NotFound { what: "user", .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateUser {
            name: s("zed"),
            fields: vec![UserField::Active(false)]
        },
        Error::NotFound { what: "user", .. }
    );
    assert_refused!(
        f,
        AdminOp::RemoveUser { name: s("zed") },
        Error::NotFound { what: "user", .. }
    );
    assert_refused!(
        f,
        add_badge("zed", "1"),
        Error::NotFound { what: "user", .. }
    );
    assert_refused!(
        f,
        AdminOp::AddMember {
            group: s("day"),
            user: s("alice")
        },
        Error::NotFound { what: "group", .. }
    );
    assert_refused!(
        f,
        AdminOp::RemoveMember {
            group: s("night"),
            user: s("bob")
        },
        Error::NotFound {
            what: "group member",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::RemoveGroup { name: s("day") },
        Error::NotFound { what: "group", .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("999"),
            fields: vec![KeyField::Active(false)]
        },
        Error::NotFound { what: "key", .. }
    );
    assert_refused!(
        f,
        AdminOp::PlaceKey {
            label: s("999"),
            slot: 1
        },
        Error::NotFound { what: "key", .. }
    );
    assert_refused!(
        f,
        grant(user("alice"), key("204"), Some("nights")),
        Error::NotFound {
            what: "schedule",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::RemoveSchedule { name: s("nights") },
        Error::NotFound {
            what: "schedule",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::RemoveReason { code: s("NOPE") },
        Error::NotFound { what: "reason", .. }
    );
    assert_refused!(
        f,
        AdminOp::Revoke { id: 99 },
        Error::NotFound {
            what: "permission",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::AcknowledgeAlarm {
            id: 99,
            note: s("")
        },
        Error::NotFound { what: "alarm", .. }
    );
    assert_refused!(
        f,
        AdminOp::CancelReservation { id: 99 },
        Error::NotFound {
            what: "reservation",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::RemoveHoliday {
            date: s("2025-12-24")
        },
        Error::NotFound {
            what: "holiday",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::RemoveFingerprint { template: 99 },
        Error::NotFound {
            what: "fingerprint template",
            ..
        }
    );
    let e = assert_refused!(
        f,
        AdminOp::Reserve {
            key: s("204"),
            user: s("zed"),
            from: T0 + 86400,
            until: T0 + 90000
        },
        Error::NotFound { .. }
    );
    assert_eq!(e.to_string(), "no user \"zed\"");
}

#[test]
fn duplicates_already_exist() {
    let mut f = Fixture::new();
    populate(&mut f);
    let s = |x: &str| x.to_owned();
    let f = &mut f;
    assert_refused!(
        f,
        add_user("alice"),
        Error::AlreadyExists { what: "user", .. }
    );
    assert_refused!(
        f,
        AdminOp::AddGroup { name: s("night") },
        Error::AlreadyExists { what: "group", .. }
    );
    assert_refused!(
        f,
        add_key("204", "FFFF"),
        Error::AlreadyExists { what: "key", .. }
    );
    assert_refused!(
        f,
        add_key("205", "04A1"),
        Error::AlreadyExists {
            what: "key tag",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("204"),
            fields: vec![KeyField::Tag(s("04A2"))]
        },
        Error::AlreadyExists {
            what: "key tag",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("204"),
            fields: vec![KeyField::Label(s("Pharmacy"))]
        },
        Error::AlreadyExists { what: "key", .. }
    );
    assert_refused!(
        f,
        add_badge("bob", "0004217357"),
        Error::AlreadyExists { what: "badge", .. }
    );
    assert_refused!(
        f,
        AdminOp::AddFingerprint {
            user: s("bob"),
            template: 3
        },
        Error::AlreadyExists {
            what: "fingerprint",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::AddHoliday {
            date: s("2025-12-25"),
            name: s("Xmas")
        },
        Error::AlreadyExists {
            what: "holiday",
            ..
        }
    );
    assert_refused!(
        f,
        grant(user("alice"), key("Pharmacy"), None),
        Error::AlreadyExists {
            what: "permission",
            ..
        }
    );
    assert_refused!(
        f,
        AdminOp::AddMember {
            group: s("night"),
            user: s("alice")
        },
        Error::AlreadyExists {
            what: "group member",
            ..
        }
    );
    // The same permission with another schedule is a different permission.
    f.ok(grant(user("alice"), key("Pharmacy"), Some("office")));
}

#[test]
fn bad_values_are_invalid() {
    let mut f = Fixture::new();
    populate(&mut f);
    let s = |x: &str| x.to_owned();
    let f = &mut f;
    assert_refused!(f, add_user("Alice"), Error::Invalid { .. });
    assert_refused!(f, add_user(""), Error::Invalid { .. });
    assert_refused!(f, add_user(&"a".repeat(65)), Error::Invalid { .. });
    assert_refused!(
        f,
        AdminOp::AddUser {
            name: s("dave"),
            role: Role::Staff,
            fields: vec![UserField::DisplayName(s("Dave\nAdmin"))]
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::AddUser {
            name: s("dave"),
            role: Role::Staff,
            fields: vec![
                UserField::ValidFrom(Some(T0)),
                UserField::ValidUntil(Some(T0))
            ]
        },
        Error::Invalid { .. }
    );
    // valid_until before the stored valid_from.
    let e = assert_refused!(
        f,
        AdminOp::UpdateUser {
            name: s("alice"),
            fields: vec![UserField::ValidUntil(Some(T0 - 1))]
        },
        Error::Invalid { .. }
    );
    assert!(e.to_string().contains("valid_until"), "{e}");
    assert_refused!(
        f,
        AdminOp::UpdateUser {
            name: s("alice"),
            fields: vec![]
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateUser {
            name: s("alice"),
            fields: vec![UserField::MaxCheckoutMinutes(Some(0))]
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::SetReason {
            code: s("maint"),
            description: s("x"),
            max_minutes: None
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::SetReason {
            code: s("TOO-LONG-REASON-CODE"),
            description: s("x"),
            max_minutes: None
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::SetReason {
            code: s("X"),
            description: s(""),
            max_minutes: None
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::SetReason {
            code: s("X"),
            description: s("x"),
            max_minutes: Some(0)
        },
        Error::Invalid { .. }
    );
    assert_refused!(f, add_key("", "AA"), Error::Invalid { .. });
    assert_refused!(f, add_key(&"k".repeat(65), "AA"), Error::Invalid { .. });
    assert_refused!(f, add_key("205", "04 A5"), Error::Invalid { .. });
    assert_refused!(f, add_key("205", "04_A5"), Error::Invalid { .. });
    assert_refused!(
        f,
        AdminOp::AddGroup {
            name: s("night shift")
        },
        Error::Invalid { .. }
    );
    assert_refused!(f, add_badge("bob", ""), Error::Invalid { .. });
    for date in ["2025-02-30", "25-12-2025", "20251226", "2025-12-26 "] {
        assert_refused!(
            f,
            AdminOp::AddHoliday {
                date: s(date),
                name: s("x")
            },
            Error::Invalid { .. }
        );
    }
    assert_refused!(
        f,
        AdminOp::AddHoliday {
            date: s("2025-12-26"),
            name: s("")
        },
        Error::Invalid { .. }
    );
    for windows in [
        vec![w(0, 480, 1080)],
        vec![w(0x80, 480, 1080)],
        vec![w(0x1f, 1080, 480)],
        vec![w(0x1f, 480, 480)],
        vec![w(0x1f, 480, 1441)],
        vec![w(0x1f, 480, 1080), w(0x10, 1000, 1100)],
    ] {
        assert_refused!(
            f,
            AdminOp::SetSchedule {
                name: s("office"),
                windows,
                on_holidays: false
            },
            Error::Invalid { .. }
        );
    }
    assert_refused!(
        f,
        AdminOp::SetSchedule {
            name: s("late shift"),
            windows: vec![],
            on_holidays: false
        },
        Error::Invalid { .. }
    );
    let e = assert_refused!(
        f,
        grant(
            SubjectName::Group(s("night")),
            TargetName::Kind(KeyKind::Restricted),
            None
        ),
        Error::Invalid { .. }
    );
    assert!(e.to_string().contains("restricted"), "{e}");
    assert_refused!(
        f,
        AdminOp::PlaceKey {
            label: s("204"),
            slot: 9
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::PlaceKey {
            label: s("204"),
            slot: 0
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("204"),
            fields: vec![KeyField::HomeSlot(Some(9))]
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::Reserve {
            key: s("204"),
            user: s("bob"),
            from: T0 + 90000,
            until: T0 + 90000
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::Reserve {
            key: s("204"),
            user: s("bob"),
            from: T0 - 7200,
            until: T0 - 3600
        },
        Error::Invalid { .. }
    );
    assert_refused!(
        f,
        AdminOp::AcknowledgeAlarm {
            id: 1,
            note: s("bad\u{7}note")
        },
        Error::Invalid { .. }
    );
}

#[test]
fn weak_pins_are_refused() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    let f = &mut f;
    for pin in ["123", "1234", "4321", "0000", "12a4", "1234567890123"] {
        let e = assert_refused!(f, set_pin("alice", pin), Error::WeakPin { .. });
        assert!(!e.to_string().contains(pin), "{e}");
    }
    f.ok(set_pin("alice", "7351"));
}

#[test]
fn clashes_with_the_current_state_are_conflicts() {
    let mut f = Fixture::new();
    populate(&mut f);
    let s = |x: &str| x.to_owned();
    // Key 204 is out.
    f.store
        .commit(
            &Commit {
                changes: vec![Change::OpenLoan {
                    key: 1,
                    user: 1,
                    witness: None,
                    reason: s("MAINT"),
                    granted_at: T0,
                    due_at: T0 + 3600,
                    slot: Some(1),
                }],
                events: vec![],
                then: vec![],
            },
            f.now_ms,
        )
        .unwrap();
    let f = &mut f;
    assert_refused!(
        f,
        AdminOp::RemoveKey { label: s("204") },
        Error::Conflict { .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("204"),
            fields: vec![KeyField::Active(false)]
        },
        Error::Conflict { .. }
    );
    assert_refused!(
        f,
        AdminOp::PlaceKey {
            label: s("204"),
            slot: 4
        },
        Error::Conflict { .. }
    );
    let e = assert_refused!(
        f,
        AdminOp::RemoveSchedule { name: s("office") },
        Error::Conflict { .. }
    );
    assert!(e.to_string().contains("1 permission"), "{e}");
    // Reservation 1: 204 for alice, T0+7200 .. T0+10800.
    for (from, until) in [
        (T0 + 7200, T0 + 10800),
        (T0 + 3600, T0 + 7201),
        (T0 + 10799, T0 + 20000),
        (T0 + 8000, T0 + 9000),
        (T0 + 3600, T0 + 20000),
    ] {
        assert_refused!(
            f,
            AdminOp::Reserve {
                key: s("204"),
                user: s("bob"),
                from,
                until
            },
            Error::Conflict { .. }
        );
    }
    // Adjacent is fine, and other keys are independent.
    f.ok(AdminOp::Reserve {
        key: s("204"),
        user: s("bob"),
        from: T0 + 10800,
        until: T0 + 14400,
    });
    f.ok(AdminOp::Reserve {
        key: s("Pool gate"),
        user: s("bob"),
        from: T0 + 7200,
        until: T0 + 10800,
    });
    // Slot 2 holds Pool gate; a home slot is one key's.
    assert_refused!(
        f,
        AdminOp::PlaceKey {
            label: s("Pharmacy"),
            slot: 2
        },
        Error::Conflict { .. }
    );
    assert_refused!(
        f,
        AdminOp::UpdateKey {
            label: s("Pharmacy"),
            fields: vec![KeyField::HomeSlot(Some(1))]
        },
        Error::Conflict { .. }
    );
    // An alarm is acknowledged once.
    f.store
        .commit(
            &Commit {
                changes: vec![Change::RaiseAlarm {
                    kind: AlarmKind::DoorForced,
                    subject: s("door"),
                    at: T0 + 100,
                }],
                events: vec![],
                then: vec![],
            },
            f.now_ms,
        )
        .unwrap();
    f.ok(AdminOp::AcknowledgeAlarm {
        id: 1,
        note: s("checked, wind"),
    });
    assert_refused!(
        f,
        AdminOp::AcknowledgeAlarm {
            id: 1,
            note: s("again")
        },
        Error::Conflict { .. }
    );
}

#[test]
fn alarms_are_raised_cleared_listed_and_acknowledged() {
    let mut f = Fixture::new();
    let s = |x: &str| x.to_owned();
    let raise = |kind, subject: &str, at| Change::RaiseAlarm {
        kind,
        subject: subject.to_owned(),
        at,
    };
    let commit = |changes| Commit {
        changes,
        events: vec![],
        then: vec![],
    };
    f.store
        .commit(
            &commit(vec![
                raise(AlarmKind::DoorForced, "door", T0),
                raise(AlarmKind::Tamper, "cabinet", T0 + 1),
                // Raising an active alarm again is a no-op.
                raise(AlarmKind::DoorForced, "door", T0 + 2),
            ]),
            T0 * 1000,
        )
        .unwrap();
    assert_eq!(
        f.store.active_alarms().unwrap(),
        vec![
            (AlarmKind::DoorForced, s("door")),
            (AlarmKind::Tamper, s("cabinet"))
        ]
    );
    f.ok(AdminOp::AcknowledgeAlarm {
        id: 2,
        note: s("cover replaced"),
    });
    f.store
        .commit(
            &commit(vec![Change::ClearAlarm {
                kind: AlarmKind::DoorForced,
                subject: s("door"),
                at: T0 + 50,
            }]),
            T0 * 1000,
        )
        .unwrap();
    let active = f.store.list_alarms(true).unwrap();
    assert_eq!(active.len(), 1);
    let tamper = &active[0];
    assert_eq!(
        (
            tamper.id,
            tamper.kind,
            tamper.acknowledged_by.as_deref(),
            tamper.note.as_deref()
        ),
        (
            2,
            AlarmKind::Tamper,
            Some("uid:1000(admin)"),
            Some("cover replaced")
        )
    );
    assert_eq!(tamper.acknowledged_at, Some(T0));
    let all = f.store.list_alarms(false).unwrap();
    assert_eq!(all.len(), 2);
    let door = all.iter().find(|a| a.id == 1).unwrap();
    assert_eq!((door.raised_at, door.cleared_at), (T0, Some(T0 + 50)));
    // The same condition again is a new alarm.
    f.store
        .commit(
            &commit(vec![raise(AlarmKind::DoorForced, "door", T0 + 60)]),
            T0 * 1000,
        )
        .unwrap();
    assert_eq!(f.store.list_alarms(false).unwrap().len(), 3);
    assert_eq!(f.store.active_alarms().unwrap().len(), 2);
}
