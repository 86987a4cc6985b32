//! SQLite storage: the one place that reads and writes `/var/lib/keywarden/keywarden.db`.
//!
//! - [`migrations`]: the numbered schema (`PRAGMA user_version`), each step one transaction.
//! - `load`: [`Store::load_state`] rebuilds the core's [`PolicyState`](crate::model::PolicyState).
//! - `commit`: [`Store::commit`] persists a core [`Commit`](crate::core::effects::Commit): its
//!   changes and its audit events in one transaction.
//! - `admin`: [`Store::apply_admin`] validates and writes an [`AdminOp`](crate::admin::AdminOp)
//!   with its audit record, in one transaction.
//! - `audit`: the hash chain's rows, signed checkpoints, export and verification.
//! - `credentials`: the badge key ([`BadgeKey`]), PIN hashing (Argon2id) and PIN rules.
//! - `alarms`: the alarm list.
//! - `rules`: the value rules of admin changes (names, codes, windows, dates).
//!
//! Start-up order for the driver: [`Store::open`], [`Store::sync_slots`] (board file),
//! [`Store::load_state`], [`Store::active_alarms`]. At shutdown: [`Store::checkpoint_now`].
//!
//! **Invariants.** Every write is one `IMMEDIATE` transaction holding both the data change and
//! its audit rows: neither is ever stored without the other. The in-memory chain head advances
//! only after SQLite reported the commit. The database never holds a PIN or a badge code (only
//! an Argon2id PHC string and an HMAC), and no audit row holds either, nor their hashes.
//! `audit` and `checkpoints` are append-only (triggers refuse UPDATE, DELETE and any insert
//! that is not at the head). The store never reads a clock: every time is a parameter.

mod admin;
mod alarms;
mod audit;
mod commit;
mod credentials;
mod load;
pub mod migrations;
mod rules;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keywarden_audit::{Chain, DeviceKey, GENESIS};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::SlotNumber;

pub use admin::AdminOutcome;
pub use alarms::AlarmRow;
pub use credentials::{
    check_pin_strength, hash_pin, verify_pin, BadgeKey, PIN_ARGON2_M_KIB, PIN_ARGON2_P,
    PIN_ARGON2_T,
};

/// Where the appliance keeps its database (data partition; survives updates).
pub const DEFAULT_PATH: &str = "/var/lib/keywarden/keywarden.db";

/// How long a statement waits for another connection's lock before failing with
/// [`Error::DatabaseBusy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The audit chain gets a signed checkpoint whenever its length passes a multiple of this.
pub const CHECKPOINT_EVERY: u64 = 64;

/// The open database, the device key that signs audit checkpoints, the badge key that hashes
/// badge codes, and the audit chain's head.
///
/// One `Store` per process; it is not `Sync` (one connection). Every method that writes takes
/// `&mut self` and is one transaction.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    device_key: DeviceKey,
    badge_key: BadgeKey,
    /// Head of the stored chain; replaced only after a commit succeeded.
    chain: Chain,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("audit_head", &self.chain.head().0)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the database at `path`: set the connection up (WAL, `synchronous=FULL`,
    /// foreign keys, busy timeout, `trusted_schema=OFF`), run `PRAGMA quick_check`, apply the
    /// migrations and seed the audit chain from its last row.
    ///
    /// Refuses a file that is not an SQLite database or is damaged ([`Error::Corrupt`]), another
    /// program's database ([`Error::NotOurDatabase`]) and a newer schema
    /// ([`Error::SchemaTooNew`]). The parent directory must exist.
    pub fn open(path: &Path, device_key: DeviceKey, badge_key: BadgeKey) -> Result<Store> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|source| {
            match Error::sqlite(path, "open", source) {
                Error::Sqlite { source, .. } => Error::Open {
                    path: path.to_owned(),
                    source,
                },
                other => other,
            }
        })?;
        configure(&conn, path)?;
        quick_check(&conn, path)?;
        migrations::migrate(&mut conn, path)?;
        let chain = load_chain(&conn, path)?;
        let store = Store {
            conn,
            path: path.to_owned(),
            device_key,
            badge_key,
            chain,
        };
        store.check_last_checkpoint();
        tracing::info!(path = %path.display(), audit_head = store.chain.head().0, "database open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make the `slots` table match the board file: add its slots, drop empty rows of slots it
    /// no longer has (a row that still holds a key is kept, and logged, so the record of where
    /// that key is survives a board-file mistake). Call at start, before
    /// [`Store::load_state`]; `PlaceKey` and home slots are checked against this table. Not an
    /// audited change: the board file is configuration.
    pub fn sync_slots(&mut self, board_slots: &BTreeSet<SlotNumber>) -> Result<()> {
        let path = self.path.as_path();
        let sql = |e| Error::sqlite(path, "sync the slots with the board", e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for slot in board_slots {
            tx.execute(
                "INSERT INTO slots (number) VALUES (?1) ON CONFLICT DO NOTHING",
                [slot],
            )
            .map_err(sql)?;
        }
        let stale: Vec<(u32, Option<i64>)> = {
            let mut stmt = tx
                .prepare("SELECT number, key_id FROM slots ORDER BY number")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql)?
                .into_iter()
                .filter(|(number, _)| !board_slots.contains(number))
                .collect()
        };
        for (number, key) in stale {
            match key {
                None => {
                    tx.execute("DELETE FROM slots WHERE number = ?1", params![number])
                        .map_err(sql)?;
                }
                Some(key) => tracing::warn!(
                    slot = number,
                    key,
                    "the board has no such slot, but the records place a key in it"
                ),
            }
        }
        tx.commit().map_err(sql)
    }

    /// Map an SQLite error of `operation` on this database.
    fn sql(&self, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |e| Error::sqlite(&self.path, operation, e)
    }

    /// The test suite's handle on the raw connection (to break things on purpose).
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Per-connection settings. `journal_mode` must come back as `wal`.
fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let sql = |e| Error::sqlite(path, "configure the connection", e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    // The first statement that reads the file: a non-database fails here with NOTADB.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::JournalMode {
            path: path.to_owned(),
            got: mode,
        });
    }
    for (pragma, value) in [
        ("synchronous", "FULL"),
        ("foreign_keys", "ON"),
        ("trusted_schema", "OFF"),
        ("cell_size_check", "ON"),
    ] {
        conn.pragma_update(None, pragma, value).map_err(sql)?;
    }
    Ok(())
}

/// `PRAGMA quick_check`: anything but a single `ok` row is corruption.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let mut problems = Vec::new();
    conn.pragma_query(None, "quick_check", |row| {
        let line: String = row.get(0)?;
        if line != "ok" && problems.len() < 5 {
            problems.push(line);
        }
        Ok(())
    })
    .map_err(|e| Error::sqlite(path, "quick_check", e))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Corrupt {
            path: path.to_owned(),
            detail: format!("quick_check: {}", problems.join("; ")),
        })
    }
}

/// The chain's head from the last audit row (or the genesis for an empty chain).
fn load_chain(conn: &Connection, path: &Path) -> Result<Chain> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| Error::sqlite(path, "read the audit head", e))?;
    match last {
        None => Ok(Chain::new(0, GENESIS)),
        Some((seq, hash)) => {
            let seq = audit::seq_from_sql(seq)?;
            let hash = audit::digest_from_sql("audit", seq, &hash)?;
            Ok(Chain::new(seq, hash))
        }
    }
}
