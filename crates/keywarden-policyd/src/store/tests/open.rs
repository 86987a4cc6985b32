//! Opening: migrations, pragmas, refusals of newer, foreign, garbage and damaged files.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use super::{add_user, open, Fixture};
use crate::error::Error;
use crate::store::migrations::{APPLICATION_ID, LATEST};

#[test]
fn a_new_database_gets_the_latest_schema_and_reopening_changes_nothing() {
    let mut f = Fixture::new();
    let conn = f.store.conn();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!((version, app), (LATEST, APPLICATION_ID));
    let schema = |conn: &rusqlite::Connection| -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let before = schema(conn);
    for table in [
        "users",
        "badges",
        "fingerprints",
        "groups",
        "group_members",
        "keys",
        "slots",
        "permissions",
        "schedules",
        "schedule_windows",
        "holidays",
        "reasons",
        "reservations",
        "loans",
        "alarms",
        "audit",
        "checkpoints",
    ] {
        assert!(
            before.iter().any(|(n, _)| n == table),
            "missing table {table}"
        );
    }
    f.ok(add_user("alice"));
    f.reopen();
    f.reopen();
    assert_eq!(schema(f.store.conn()), before);
    let version: u32 = f
        .store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST);
    assert!(f.state().user_named("alice").is_some());
}

#[test]
fn the_connection_is_configured() {
    let f = Fixture::new();
    let conn = f.store.conn();
    let text = |p: &str| -> String { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
    let num = |p: &str| -> i64 { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
    assert_eq!(text("journal_mode"), "wal");
    assert_eq!(num("synchronous"), 2, "FULL");
    assert_eq!(num("foreign_keys"), 1);
    assert_eq!(num("trusted_schema"), 0);
    assert!(num("busy_timeout") >= 1000);
}

#[test]
fn the_chain_is_seeded_from_the_last_row_on_reopen() {
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.ok(add_user("bob"));
    let head = f.store.audit_head();
    assert_eq!(head.0, 2);
    f.reopen();
    assert_eq!(f.store.audit_head(), head);
    f.ok(add_user("carol"));
    assert_eq!(f.store.audit_head().0, 3);
    f.store.checkpoint_now(f.now_ms).unwrap();
    let report = f.store.verify_audit().unwrap();
    assert_eq!((report.entries, report.last_seq), (3, 3));
}

#[test]
fn a_newer_additive_schema_is_used_as_it_is_after_a_rollback() {
    // The newer firmware's migration added a table (readable_by unchanged) and wrote records.
    let mut f = Fixture::new();
    f.ok(add_user("alice"));
    f.store
        .conn()
        .execute_batch("CREATE TABLE future_feature (x INTEGER);")
        .unwrap();
    f.store
        .conn()
        .pragma_update(None, "user_version", LATEST + 1)
        .unwrap();
    f.ok(add_user("bob"));
    let head = f.store.audit_head();
    // The rollback: this (older) build opens it, keeps it, and appends to the same chain.
    f.reopen();
    assert_eq!(f.store.audit_head(), head, "no audit record lost");
    f.ok(add_user("carol"));
    f.store.checkpoint_now(f.now_ms).unwrap();
    let report = f.store.verify_audit().unwrap();
    assert_eq!(report.entries, 3);
    let version: u32 = f
        .store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST + 1, "never downgraded");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let f = Fixture::new();
    // A breaking migration of newer firmware: this build may no longer touch the database.
    f.store
        .conn()
        .execute("UPDATE schema_compat SET readable_by = ?1", [LATEST + 1])
        .unwrap();
    f.store
        .conn()
        .pragma_update(None, "user_version", LATEST + 1)
        .unwrap();
    let path = f.path.clone();
    drop(f.store);
    match open(&path) {
        Err(Error::SchemaTooNew {
            found, supported, ..
        }) => assert_eq!((found, supported), (LATEST + 1, LATEST)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST + 1, "never downgraded");
    drop(f.dir);
}

#[test]
fn a_garbage_file_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywarden.db");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(&path, &garbage).unwrap();
    match open(&path) {
        Err(Error::Corrupt { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), garbage, "the file is not touched");
}

#[test]
fn a_text_file_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywarden.db");
    fs::write(&path, "[board]\nname = \"not a database\"\n".repeat(200)).unwrap();
    assert!(matches!(open(&path), Err(Error::Corrupt { .. })));
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywarden.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);")
            .unwrap();
    }
    assert!(matches!(open(&path), Err(Error::NotOurDatabase { .. })));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 1; PRAGMA application_id = 42;")
            .unwrap();
    }
    assert!(matches!(open(&path), Err(Error::NotOurDatabase { .. })));
}

/// A database of a few hundred KiB, closed cleanly (WAL folded into the main file).
fn populated_db() -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let mut f = Fixture::new();
    f.store
        .conn()
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO users (name, display_name, role)
             SELECT 'user' || i, printf('%.100c', 'x') || i, 'staff' FROM n;",
        )
        .unwrap();
    f.ok(add_user("alice"));
    let page_size: u64 = f
        .store
        .conn()
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    let Fixture {
        dir, path, store, ..
    } = f;
    drop(store);
    assert!(
        !path.with_extension("db-wal").exists(),
        "WAL folded in on close"
    );
    (dir, path, page_size)
}

#[test]
fn a_damaged_page_in_the_middle_is_refused_as_corrupt() {
    let (_dir, path, page_size) = populated_db();
    let len = fs::metadata(&path).unwrap().len();
    let pages = len / page_size;
    assert!(pages > 20, "{pages} pages");
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    let middle = pages / 2;
    file.seek(SeekFrom::Start(middle * page_size)).unwrap();
    let garbage: Vec<u8> = (0..page_size)
        .map(|i| (i * 31 % 256) as u8 ^ 0x5a)
        .collect();
    file.write_all(&garbage).unwrap();
    drop(file);
    match open(&path) {
        Err(Error::Corrupt { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_truncated_file_is_refused_as_corrupt() {
    let (_dir, path, page_size) = populated_db();
    let len = fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len((len / page_size / 2) * page_size).unwrap();
    drop(file);
    assert!(matches!(open(&path), Err(Error::Corrupt { .. })));
}

#[test]
fn a_missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("keywarden.db");
    assert!(matches!(open(&path), Err(Error::Open { .. })));
}

#[test]
fn a_lock_held_past_the_busy_timeout_is_database_busy() {
    let mut f = Fixture::new();
    f.store
        .conn()
        .busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let other = rusqlite::Connection::open(&f.path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let e = f.admin(add_user("alice")).unwrap_err();
    assert!(matches!(e, Error::DatabaseBusy { .. }), "{e:?}");
    other.execute_batch("ROLLBACK;").unwrap();
    f.ok(add_user("alice"));
    assert_eq!(
        f.store.audit_head().0,
        1,
        "the busy attempt left no gap in the chain"
    );
}

#[test]
fn the_store_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<crate::store::Store>();
}

#[test]
fn slots_follow_the_board_but_keep_where_keys_are() {
    let mut f = Fixture::new();
    f.ok(super::add_key("204", "04A1"));
    f.ok(crate::admin::AdminOp::PlaceKey {
        label: "204".to_owned(),
        slot: 8,
    });
    let smaller: std::collections::BTreeSet<u32> = (1..=4).collect();
    f.store.sync_slots(&smaller).unwrap();
    // Slots 5-7 are gone; slot 8 still records key 204, but the state (board 1-4) leaves it out.
    assert_eq!(f.count("slots"), 5);
    let state = f.store.load_state(f.settings.clone(), &smaller).unwrap();
    assert_eq!(state.slot_of(1), None);
    assert_eq!(state.slots, smaller);
    // PlaceKey is checked against the synced board.
    let e = f
        .admin(crate::admin::AdminOp::PlaceKey {
            label: "204".to_owned(),
            slot: 6,
        })
        .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    f.ok(crate::admin::AdminOp::PlaceKey {
        label: "204".to_owned(),
        slot: 2,
    });
    assert_eq!(f.count("slots"), 5);
    f.store.sync_slots(&smaller).unwrap();
    assert_eq!(
        f.count("slots"),
        4,
        "slot 8 is empty now, and not on the board"
    );
    let state = f.store.load_state(f.settings.clone(), &smaller).unwrap();
    assert_eq!(state.slot_of(1), Some(2));
}
