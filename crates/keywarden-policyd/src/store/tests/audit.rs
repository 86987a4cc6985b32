//! The stored chain: checkpoints, verification, export, append-only tables.

use keywarden_audit::{verify_export, VerifyError};

use super::{add_key, add_user, device_key, Fixture, T0_MS};
use crate::core::effects::{Commit, Event, EventKind};
use crate::error::Error;

fn events(n: usize) -> Commit {
    Commit {
        changes: vec![],
        events: (0..n)
            .map(|i| Event {
                kind: EventKind::Denied,
                actor: "alice".to_owned(),
                subject: "key:204".to_owned(),
                detail: vec![("reason", "schedule".to_owned()), ("n", i.to_string())],
            })
            .collect(),
        then: vec![],
    }
}

fn checkpoint_seqs(f: &Fixture) -> Vec<u64> {
    let mut stmt = f
        .store
        .conn()
        .prepare("SELECT seq FROM checkpoints ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn a_checkpoint_is_stored_whenever_the_chain_passes_a_multiple_of_64() {
    let mut f = Fixture::new();
    for i in 0..130 {
        f.store.commit(&events(1), T0_MS + i).unwrap();
    }
    assert_eq!(checkpoint_seqs(&f), vec![64, 128]);
    f.store.commit(&events(10), T0_MS + 200).unwrap();
    assert_eq!(
        checkpoint_seqs(&f),
        vec![64, 128],
        "130 -> 140 passes no multiple"
    );
    f.store.commit(&events(60), T0_MS + 300).unwrap();
    assert_eq!(
        checkpoint_seqs(&f),
        vec![64, 128, 200],
        "the head of the commit that passed 192"
    );
    // Admin changes count too.
    for i in 0..56 {
        f.ok(add_user(&format!("user{i}")));
    }
    assert_eq!(checkpoint_seqs(&f), vec![64, 128, 200, 256]);
}

#[test]
fn the_chain_verifies_after_many_commits_and_admin_ops() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.ok(add_key("204", "04A1"));
    for i in 0..150 {
        f.store.commit(&events(i % 3), T0_MS + i as i64).unwrap();
        if i % 10 == 0 {
            f.ok(add_user(&format!("user{i}")));
        }
    }
    let (head, hash) = f.store.audit_head();
    assert_eq!(head, f.count("audit") as u64);
    // Between checkpoints the tail is unsigned: the verifier says how far signatures reach.
    match f.store.verify_audit() {
        Err(Error::AuditVerify(VerifyError::UnsignedTail { last_entry, .. })) => {
            assert_eq!(last_entry, head)
        }
        other => panic!("expected UnsignedTail, got {other:?}"),
    }
    assert_eq!(f.store.checkpoint_now(f.now_ms).unwrap(), Some(head));
    assert_eq!(
        f.store.checkpoint_now(f.now_ms).unwrap(),
        None,
        "already signed"
    );
    let report = f.store.verify_audit().unwrap();
    assert_eq!(
        (report.first_seq, report.last_seq, report.entries),
        (1, head, head)
    );
    assert_eq!(report.head, hash);
    assert_eq!(report.checkpoints, head / 64 + 1);
    assert_eq!(report.key_hex, f.store.device_public_hex());
    assert_eq!(report.key_hex, device_key().public_hex());
}

#[test]
fn an_empty_chain_has_nothing_to_sign_or_verify() {
    let mut f = Fixture::new();
    assert_eq!(f.store.audit_head().0, 0);
    assert_eq!(f.store.checkpoint_now(T0_MS).unwrap(), None);
    assert!(matches!(
        f.store.verify_audit(),
        Err(Error::AuditVerify(VerifyError::Empty))
    ));
}

#[test]
fn an_export_verifies_off_the_device() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    for i in 0..100 {
        f.store.commit(&events(1), T0_MS + i).unwrap();
    }
    let (head, hash) = f.store.audit_head();
    let mut out = Vec::new();
    let n = f.store.export_audit(&mut out, 1, T0_MS + 1000).unwrap();
    assert_eq!(n, head);
    let trusted = device_key().verifying_key();
    let report = verify_export(out.as_slice(), Some(&trusted)).unwrap();
    assert_eq!(
        (report.first_seq, report.last_seq, report.head),
        (1, head, hash)
    );
    assert_eq!(
        report.checkpoints, 2,
        "64 and the head signed for the export"
    );
    // A later part of the trail.
    let mut out = Vec::new();
    assert_eq!(
        f.store.export_audit(&mut out, 60, T0_MS + 2000).unwrap(),
        head - 59
    );
    let report = verify_export(out.as_slice(), Some(&trusted)).unwrap();
    assert_eq!((report.first_seq, report.last_seq), (60, head));
    // Entries appended after the export get their own checkpoint at the next export.
    f.store.commit(&events(3), T0_MS + 3000).unwrap();
    let mut out = Vec::new();
    f.store.export_audit(&mut out, 0, T0_MS + 4000).unwrap();
    let report = verify_export(out.as_slice(), Some(&trusted)).unwrap();
    assert_eq!(report.last_seq, head + 3);
    // An edited line is caught.
    let text = String::from_utf8(out)
        .unwrap()
        .replacen("schedule", "scheduIe", 1);
    assert!(verify_export(text.as_bytes(), Some(&trusted)).is_err());
    // Past the end.
    assert!(matches!(
        f.store.export_audit(Vec::new(), head + 5, T0_MS),
        Err(Error::Invalid { .. })
    ));
    // Right after the head: an empty export (nothing to verify, but not an error to write).
    assert_eq!(
        f.store.export_audit(Vec::new(), head + 4, T0_MS).unwrap(),
        0
    );
}

#[test]
fn audit_and_checkpoints_are_append_only() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.store.checkpoint_now(T0_MS).unwrap();
    let conn = f.store.conn();
    for sql in [
        "UPDATE audit SET actor = 'mallory'",
        "DELETE FROM audit",
        "DELETE FROM audit WHERE seq = 1",
        "UPDATE checkpoints SET at_ms = 0",
        "DELETE FROM checkpoints",
    ] {
        let e = conn.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    // INSERT OR REPLACE deletes the old row without firing delete triggers: refused by the
    // insert trigger; so are gaps and checkpoints behind the last one.
    for sql in [
        "INSERT OR REPLACE INTO audit (seq, at_ms, kind, actor, subject, detail, hash)
         SELECT seq, at_ms, kind, 'mallory', subject, detail, hash FROM audit WHERE seq = 1",
        "INSERT INTO audit (seq, at_ms, kind, actor, subject, detail, hash)
         SELECT 3, at_ms, kind, actor, subject, detail, hash FROM audit WHERE seq = 1",
        "INSERT OR REPLACE INTO checkpoints SELECT * FROM checkpoints",
    ] {
        let e = conn.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(f.count("audit"), 1);
    assert_eq!(f.audit_rows()[0].2, "uid:1000(admin)");
    f.store.verify_audit().unwrap();
}

#[test]
fn an_edit_behind_the_triggers_is_caught_by_verification() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.ok(add_user("bob"));
    f.store.checkpoint_now(T0_MS).unwrap();
    f.store
        .conn()
        .execute_batch(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET subject = 'user:mallory' WHERE seq = 1;",
        )
        .unwrap();
    assert!(matches!(
        f.store.verify_audit(),
        Err(Error::AuditVerify(VerifyError::EditedEntry { seq: 1 }))
    ));
}
