//! Store tests on temporary database files. Shared fixture here; one file per area.

mod admin;
mod audit;
mod commit;
mod credentials;
mod open;
mod rules;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keywarden_audit::DeviceKey;
use tempfile::TempDir;

use super::{AdminOutcome, BadgeKey, Store};
use crate::admin::{Actor, AdminOp};
use crate::error::Result;
use crate::model::{PolicyState, Settings, SlotNumber};

/// Audit time of the first change, ms.
pub(super) const T0_MS: i64 = 1_700_000_000_000;
/// The same in seconds.
pub(super) const T0: i64 = T0_MS / 1000;

pub(super) fn device_key() -> DeviceKey {
    DeviceKey::from_bytes(&[7; 32])
}

pub(super) fn badge_key() -> BadgeKey {
    BadgeKey::from_bytes(&[9; 32])
}

pub(super) fn open(path: &Path) -> Result<Store> {
    Store::open(path, device_key(), badge_key())
}

pub(super) fn board() -> BTreeSet<SlotNumber> {
    (1..=8).collect()
}

pub(super) fn actor() -> Actor {
    Actor {
        uid: 1000,
        name: "admin".to_owned(),
    }
}

/// A database in a temporary directory, its slots synced with an 8-slot board.
pub(super) struct Fixture {
    pub dir: TempDir,
    pub path: PathBuf,
    pub store: Store,
    pub settings: Settings,
    /// Audit time of the next change.
    pub now_ms: i64,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keywarden.db");
        let mut store = open(&path).expect("open");
        store.sync_slots(&board()).expect("sync slots");
        Fixture {
            dir,
            path,
            store,
            settings: Settings::default(),
            now_ms: T0_MS,
        }
    }

    /// Apply an admin op as `uid:1000(admin)`; time advances 1 s per call.
    pub fn admin(&mut self, op: AdminOp) -> Result<AdminOutcome> {
        let at = self.now_ms;
        self.now_ms += 1000;
        self.store.apply_admin(&actor(), &op, &self.settings, at)
    }

    /// Apply an admin op that must succeed.
    pub fn ok(&mut self, op: AdminOp) -> AdminOutcome {
        let text = format!("{op:?}");
        match self.admin(op) {
            Ok(outcome) => outcome,
            Err(e) => panic!("{text} failed: {e}"),
        }
    }

    pub fn state(&self) -> PolicyState {
        self.store
            .load_state(self.settings.clone(), &board())
            .expect("load state")
    }

    pub fn count(&self, table: &str) -> i64 {
        self.store
            .conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    /// Every audit row as (seq, kind, actor, subject, detail).
    pub fn audit_rows(&self) -> Vec<(u64, String, String, String, String)> {
        let mut stmt = self
            .store
            .conn()
            .prepare("SELECT seq, kind, actor, subject, detail FROM audit ORDER BY seq")
            .expect("prepare");
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
    }

    /// Reopen the same file (new connection, chain seeded from the rows).
    pub fn reopen(&mut self) {
        let store = open(&self.path).expect("reopen");
        self.store = store;
    }
}

/// Shorthand: `AdminOp::AddUser` with no extra fields.
pub(super) fn add_user(name: &str) -> AdminOp {
    AdminOp::AddUser {
        name: name.to_owned(),
        role: crate::model::Role::Staff,
        fields: vec![],
    }
}

/// Shorthand: `AdminOp::AddKey` of kind `unit` with no extra fields.
pub(super) fn add_key(label: &str, tag: &str) -> AdminOp {
    AdminOp::AddKey {
        label: label.to_owned(),
        tag: tag.to_owned(),
        kind: crate::model::KeyKind::Unit,
        fields: vec![],
    }
}
