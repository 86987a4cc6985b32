//! Core commits: changes and audit entries together or not at all.

use super::{add_key, add_user, Fixture, T0};
use crate::admin::AdminOp;
use crate::core::effects::{Change, Commit, Event, EventKind};
use crate::error::Error;
use crate::model::AlarmKind;

fn event(kind: EventKind, subject: &str, detail: Vec<(&'static str, String)>) -> Event {
    Event {
        kind,
        actor: "alice".to_owned(),
        subject: subject.to_owned(),
        detail,
    }
}

fn open_loan(key: i64, user: i64) -> Change {
    Change::OpenLoan {
        key,
        user,
        witness: None,
        reason: "MAINT".to_owned(),
        granted_at: T0,
        due_at: T0 + 3600,
        slot: Some(1),
    }
}

/// alice (1), bob (2), keys 204 (1, slot 1) and 205 (2, slot 2).
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.ok(add_user("bob"));
    f.ok(add_key("204", "04A1"));
    f.ok(add_key("205", "04A2"));
    f.ok(AdminOp::PlaceKey {
        label: "204".to_owned(),
        slot: 1,
    });
    f.ok(AdminOp::PlaceKey {
        label: "205".to_owned(),
        slot: 2,
    });
    f
}

#[test]
fn a_grant_take_and_return_are_stored_with_their_events() {
    let mut f = fixture();
    let base = f.store.audit_head().0;
    let seqs = f
        .store
        .commit(
            &Commit {
                changes: vec![open_loan(1, 1)],
                events: vec![event(
                    EventKind::Granted,
                    "key:204",
                    vec![
                        ("slot", "1".to_owned()),
                        ("reason", "MAINT".to_owned()),
                        ("due", "\"soon\"".to_owned()),
                    ],
                )],
                then: vec![],
            },
            T0 * 1000 + 5,
        )
        .unwrap();
    assert_eq!(seqs, vec![base + 1]);
    let state = f.state();
    let loan = &state.loans[&1];
    assert_eq!((loan.user, loan.taken_at, loan.slot), (1, None, Some(1)));
    let row = f.audit_rows().pop().unwrap();
    assert_eq!(
        (
            row.1.as_str(),
            row.2.as_str(),
            row.3.as_str(),
            row.4.as_str()
        ),
        (
            "granted",
            "alice",
            "key:204",
            r#"{"slot":"1","reason":"MAINT","due":"\"soon\""}"#
        )
    );
    let seqs = f
        .store
        .commit(
            &Commit {
                changes: vec![
                    Change::TakeLoan {
                        key: 1,
                        at: T0 + 10,
                    },
                    Change::SlotContents { slot: 1, key: None },
                ],
                events: vec![
                    event(EventKind::Removed, "key:204", vec![]),
                    event(EventKind::Authenticated, "user:alice", vec![]),
                ],
                then: vec![],
            },
            T0 * 1000 + 10_000,
        )
        .unwrap();
    assert_eq!(seqs, vec![base + 2, base + 3]);
    let state = f.state();
    assert_eq!(state.loans[&1].taken_at, Some(T0 + 10));
    assert_eq!(state.slot_of(1), None);
    // Returned into slot 3 (a floating key).
    f.store
        .commit(
            &Commit {
                changes: vec![
                    Change::CloseLoan {
                        key: 1,
                        at: T0 + 100,
                        returned_by: Some(1),
                    },
                    Change::SlotContents {
                        slot: 3,
                        key: Some(1),
                    },
                ],
                events: vec![event(
                    EventKind::Returned,
                    "key:204",
                    vec![("slot", "3".to_owned())],
                )],
                then: vec![],
            },
            T0 * 1000 + 100_000,
        )
        .unwrap();
    let state = f.state();
    assert!(state.loans.is_empty());
    assert_eq!(state.slot_of(1), Some(3));
    // Putting a key in a slot takes it out of the one the records had it in.
    f.store
        .commit(
            &Commit {
                changes: vec![Change::SlotContents {
                    slot: 4,
                    key: Some(1),
                }],
                events: vec![],
                then: vec![],
            },
            T0 * 1000,
        )
        .unwrap();
    assert_eq!(f.state().slot_contents, [(2, 2), (4, 1)].into());
}

#[test]
fn pin_failures_and_resets_are_stored() {
    let mut f = fixture();
    let commit = |changes| Commit {
        changes,
        events: vec![],
        then: vec![],
    };
    f.store
        .commit(
            &commit(vec![Change::PinFailed {
                user: 1,
                count: 5,
                locked_until: Some(T0 + 900),
            }]),
            T0 * 1000,
        )
        .unwrap();
    let alice = f.state().users[&1].clone();
    assert_eq!((alice.failed_pins, alice.locked_until), (5, Some(T0 + 900)));
    f.store
        .commit(&commit(vec![Change::PinReset { user: 1 }]), T0 * 1000)
        .unwrap();
    let alice = f.state().users[&1].clone();
    assert_eq!((alice.failed_pins, alice.locked_until), (0, None));
    assert!(matches!(
        f.store
            .commit(&commit(vec![Change::PinReset { user: 99 }]), T0 * 1000),
        Err(Error::NotFound { what: "user", .. })
    ));
}

#[test]
fn a_failing_change_leaves_neither_changes_nor_audit_rows() {
    let mut f = fixture();
    let before = f.state();
    let audit = f.count("audit");
    let head = f.store.audit_head();
    let bad = [
        // A key has at most one open loan.
        vec![open_loan(2, 1), open_loan(2, 2)],
        // Unknown key (foreign key).
        vec![open_loan(2, 1), open_loan(99, 1)],
        // Taking a loan that is not open.
        vec![open_loan(2, 1), Change::TakeLoan { key: 1, at: T0 }],
        // Closing a loan that is not open.
        vec![
            Change::SlotContents { slot: 1, key: None },
            Change::CloseLoan {
                key: 1,
                at: T0,
                returned_by: None,
            },
        ],
        // A wrong-PIN count for an unknown user, after an alarm.
        vec![
            Change::RaiseAlarm {
                kind: AlarmKind::Tamper,
                subject: "cabinet".to_owned(),
                at: T0,
            },
            Change::PinFailed {
                user: 99,
                count: 1,
                locked_until: None,
            },
        ],
    ];
    for changes in bad {
        let text = format!("{changes:?}");
        let result = f.store.commit(
            &Commit {
                changes,
                events: vec![
                    event(EventKind::Granted, "key:205", vec![]),
                    event(EventKind::AlarmRaised, "cabinet", vec![]),
                ],
                then: vec![],
            },
            T0 * 1000,
        );
        assert!(result.is_err(), "{text} was stored");
        assert_eq!(f.state(), before, "{text} left a change");
        assert_eq!(f.count("audit"), audit, "{text} left audit rows");
        assert_eq!(f.count("alarms"), 0, "{text} left an alarm");
        assert_eq!(f.store.audit_head(), head, "{text} moved the chain head");
    }
    // The chain continues where it was.
    let seqs = f
        .store
        .commit(
            &Commit {
                changes: vec![open_loan(2, 1)],
                events: vec![event(EventKind::Granted, "key:205", vec![])],
                then: vec![],
            },
            T0 * 1000,
        )
        .unwrap();
    assert_eq!(seqs, vec![head.0 + 1]);
    f.store.checkpoint_now(T0 * 1000).unwrap();
    assert_eq!(f.store.verify_audit().unwrap().entries, head.0 + 1);
}

#[test]
fn a_full_disk_refuses_the_commit_and_loses_nothing() {
    let mut f = fixture();
    f.store
        .commit(
            &Commit {
                changes: vec![open_loan(1, 1)],
                events: vec![event(EventKind::Granted, "key:204", vec![])],
                then: vec![],
            },
            T0 * 1000,
        )
        .unwrap();
    let before = f.state();
    let head = f.store.audit_head();
    let conn = f.store.conn();
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "max_page_count", pages).unwrap();
    let big = "x".repeat(64 * 1024);
    let result = f.store.commit(
        &Commit {
            changes: vec![open_loan(2, 2)],
            events: vec![event(
                EventKind::Granted,
                "key:205",
                vec![("note", big.clone())],
            )],
            then: vec![],
        },
        T0 * 1000,
    );
    assert!(
        matches!(result, Err(Error::StorageFull { .. })),
        "{result:?}"
    );
    assert_eq!(f.state(), before);
    assert_eq!(f.store.audit_head(), head);
    // Space again (a new connection has no page limit): everything committed before is there
    // and the chain continues where it was.
    f.reopen();
    assert_eq!(f.state(), before);
    assert_eq!(f.store.audit_head(), head);
    let seqs = f
        .store
        .commit(
            &Commit {
                changes: vec![open_loan(2, 2)],
                events: vec![event(EventKind::Granted, "key:205", vec![("note", big)])],
                then: vec![],
            },
            T0 * 1000,
        )
        .unwrap();
    assert_eq!(seqs, vec![head.0 + 1]);
    f.store.checkpoint_now(T0 * 1000).unwrap();
    f.store.verify_audit().unwrap();
}

#[test]
fn admin_changes_on_a_full_disk_fail_whole() {
    let mut f = fixture();
    let pages: i64 = f
        .store
        .conn()
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    f.store
        .conn()
        .pragma_update(None, "max_page_count", pages + 2)
        .unwrap();
    let notes = "n".repeat(1000);
    let mut added = 0;
    let error = loop {
        let state = f.state();
        let audit = f.count("audit");
        let result = f.admin(AdminOp::AddKey {
            label: format!("k{added}"),
            tag: format!("T{added}"),
            kind: crate::model::KeyKind::Unit,
            fields: vec![crate::admin::KeyField::Notes(notes.clone())],
        });
        match result {
            Ok(_) => added += 1,
            Err(e) => {
                assert_eq!(f.state(), state, "the failed change left something");
                assert_eq!(
                    f.count("audit"),
                    audit,
                    "the failed change left an audit row"
                );
                break e;
            }
        }
        assert!(added < 1000, "never filled up");
    };
    assert!(matches!(error, Error::StorageFull { .. }), "{error:?}");
    assert!(added > 0);
    f.reopen();
    assert_eq!(f.state().keys.len(), 2 + added);
    f.store.checkpoint_now(f.now_ms).unwrap();
    assert_eq!(f.store.verify_audit().unwrap().entries, 6 + added as u64);
}
