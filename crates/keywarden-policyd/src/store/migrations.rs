//! Numbered schema migrations. `PRAGMA user_version` is the number of the last one applied; each
//! migration runs in its own immediate transaction together with the `user_version` bump, so a
//! crash or a full disk leaves the database at the previous version, never in between.
//!
//! Rules for adding one: append to [`MIGRATIONS`] (never edit a released one), keep it valid on a
//! database with rows in it, and add a test that opens a database of the previous version.
//! A database with a version above [`LATEST`] was written by newer firmware, which happens after
//! an OTA rollback (the newer system booted, migrated, then failed its health check or was
//! marked bad). It is never downgrade-migrated. It is used as it is when its `schema_compat`
//! row says this build can still read and write it (`readable_by <= LATEST`: every migration
//! since this build's schema only added things), so the cabinet keeps working after the
//! rollback and the audit records written by the newer firmware stay in the chain; otherwise it
//! is refused ([`Error::SchemaTooNew`]) and the service stays out of service.
//!
//! So each new migration must say whether older firmware can live with it: an additive one
//! (new tables, indexes, triggers, columns with defaults) leaves `readable_by` alone; one that
//! changes or removes what older code reads or writes sets `readable_by` to its own version.
//!
//! Ids that audit records name (`permission:7`, `reservation:3`) and rows that get deleted
//! (groups, schedules) use `AUTOINCREMENT`, so an id is never reused for another row.
//!
//! Times are Unix seconds, except `audit.at_ms` and `checkpoints.at_ms` (milliseconds, as the
//! audit chain hashes them). Users, keys and reasons are never deleted (history refers to them):
//! they are deactivated.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of a Keywarden database ("KWDB").
pub const APPLICATION_ID: i32 = 0x4B57_4442;

/// Schema migrations, in order: `MIGRATIONS[n]` brings version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// Version 2: indexes (and views) for reports.
const V2: &str = include_str!("schema/v2-reports.sql");

/// Version 3: the notification outbox.
const V3: &str = include_str!("schema/v3-outbox.sql");

/// Version 4: the offsite audit copy's acknowledged position.
const V4: &str = include_str!("schema/v4-offsite.sql");

/// Version 5: `schema_compat`, how old a firmware may still use the database (rollbacks).
const V5: &str = include_str!("schema/v5-compat.sql");

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Version 1: the whole model, the alarm list and the audit chain.
const V1: &str = r#"
PRAGMA application_id = 1264010306;

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'staff', 'vendor')),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    valid_from INTEGER,
    valid_until INTEGER,
    factors TEXT NOT NULL DEFAULT 'badge+pin'
        CHECK (factors IN ('badge+pin', 'fingerprint+pin', 'any+pin')),
    max_keys_out INTEGER CHECK (max_keys_out >= 0),
    max_checkout_minutes INTEGER CHECK (max_checkout_minutes > 0),
    locked_until INTEGER,
    failed_pins INTEGER NOT NULL DEFAULT 0 CHECK (failed_pins >= 0),
    pin_hash TEXT,
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_until > valid_from)
) STRICT;

-- Keyed hashes (HMAC-SHA256, hex) of badge codes; the codes are never stored.
CREATE TABLE badges (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE
) STRICT;
CREATE INDEX badges_user ON badges(user_id);

-- Template ids on the fingerprint module.
CREATE TABLE fingerprints (
    template INTEGER PRIMARY KEY CHECK (template >= 0),
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE
) STRICT;
CREATE INDEX fingerprints_user ON fingerprints(user_id);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64)
) STRICT;

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE keys (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL UNIQUE CHECK (length(label) BETWEEN 1 AND 64),
    tag TEXT NOT NULL UNIQUE CHECK (length(tag) BETWEEN 1 AND 64),
    kind TEXT NOT NULL CHECK (kind IN ('unit', 'master', 'amenity', 'vehicle', 'restricted')),
    notes TEXT NOT NULL DEFAULT '',
    home_slot INTEGER CHECK (home_slot >= 1),
    critical INTEGER NOT NULL DEFAULT 0 CHECK (critical IN (0, 1)),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
) STRICT;

-- One row per slot of the board (synced from the board file); key_id is what the records say
-- the slot holds.
CREATE TABLE slots (
    number INTEGER PRIMARY KEY CHECK (number >= 1),
    key_id INTEGER UNIQUE REFERENCES keys(id)
) STRICT;

CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    on_holidays INTEGER NOT NULL DEFAULT 0 CHECK (on_holidays IN (0, 1))
) STRICT;

-- days: bit 0 = Monday ... bit 6 = Sunday; minutes after local midnight.
CREATE TABLE schedule_windows (
    schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    days INTEGER NOT NULL CHECK (days BETWEEN 1 AND 127),
    start_minute INTEGER NOT NULL CHECK (start_minute >= 0),
    end_minute INTEGER NOT NULL CHECK (end_minute <= 1440),
    CHECK (start_minute < end_minute),
    PRIMARY KEY (schedule_id, position)
) WITHOUT ROWID, STRICT;

-- Exactly one subject (user or group) and one target (key or kind); never kind 'restricted'.
CREATE TABLE permissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES users(id),
    group_id INTEGER REFERENCES groups(id) ON DELETE CASCADE,
    key_id INTEGER REFERENCES keys(id),
    kind TEXT CHECK (kind IN ('unit', 'master', 'amenity', 'vehicle')),
    schedule_id INTEGER REFERENCES schedules(id),
    CHECK ((user_id IS NULL) <> (group_id IS NULL)),
    CHECK ((key_id IS NULL) <> (kind IS NULL))
) STRICT;
CREATE INDEX permissions_schedule ON permissions(schedule_id);

CREATE TABLE holidays (
    date TEXT PRIMARY KEY CHECK (date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    name TEXT NOT NULL
) STRICT;

CREATE TABLE reasons (
    code TEXT PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 16),
    description TEXT NOT NULL,
    max_minutes INTEGER CHECK (max_minutes > 0),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
) STRICT;

CREATE TABLE reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id INTEGER NOT NULL REFERENCES keys(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    from_at INTEGER NOT NULL,
    until_at INTEGER NOT NULL,
    CHECK (until_at > from_at)
) STRICT;
CREATE INDEX reservations_key ON reservations(key_id, from_at);

-- A loan is open while closed_at is NULL; a key has at most one open loan.
CREATE TABLE loans (
    id INTEGER PRIMARY KEY,
    key_id INTEGER NOT NULL REFERENCES keys(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    witness_id INTEGER REFERENCES users(id),
    reason TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    taken_at INTEGER,
    due_at INTEGER NOT NULL,
    slot INTEGER CHECK (slot >= 1),
    closed_at INTEGER,
    returned_by INTEGER REFERENCES users(id)
) STRICT;
CREATE UNIQUE INDEX loans_open_per_key ON loans(key_id) WHERE closed_at IS NULL;
CREATE INDEX loans_user ON loans(user_id);

-- An alarm is active while cleared_at is NULL; at most one active per kind and subject.
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('door-held-open', 'door-forced', 'tamper',
        'unauthorised-removal', 'wrong-slot', 'overdue', 'pin-lockout', 'holder-expired')),
    subject TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    cleared_at INTEGER,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    note TEXT
) STRICT;
CREATE UNIQUE INDEX alarms_active ON alarms(kind, subject) WHERE cleared_at IS NULL;

-- The hash chain: hash = keywarden_audit::entry_hash(hash of seq - 1, entry).
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY CHECK (seq >= 1),
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Signed heads of the chain (ed25519, device key).
CREATE TABLE checkpoints (
    seq INTEGER PRIMARY KEY REFERENCES audit(seq),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    at_ms INTEGER NOT NULL,
    signature BLOB NOT NULL CHECK (length(signature) = 64)
) STRICT;

-- Append-only: a guard against a wrong code path, not against someone holding the file (the
-- chain and the signed checkpoints are what detect that). Rows go in at the head only: an
-- entry's seq follows the last one, a checkpoint's is past the last checkpoint (this also
-- stops INSERT OR REPLACE, whose implicit delete fires no delete trigger).
CREATE TRIGGER audit_append_at_head BEFORE INSERT ON audit
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit)
BEGIN SELECT RAISE(ABORT, 'audit is append-only: seq must follow the last entry'); END;
CREATE TRIGGER checkpoints_append_at_head BEFORE INSERT ON checkpoints
WHEN NEW.seq <= (SELECT coalesce(max(seq), 0) FROM checkpoints)
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only: seq must pass the last checkpoint'); END;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"#;

/// The schema version of an open database.
pub fn user_version(conn: &Connection, path: &Path) -> Result<u32> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| Error::sqlite(path, "read the schema version", e))?;
    u32::try_from(version).map_err(|_| Error::NotOurDatabase {
        path: path.to_owned(),
        detail: format!("schema version {version}"),
    })
}

/// Bring the database to [`LATEST`]. Refuses a newer schema and a foreign SQLite file.
/// Returns the version found before migrating.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<u32> {
    let found = user_version(conn, path)?;
    if found > LATEST {
        check_ownership(conn, path, found)?;
        let readable_by = readable_by(conn, path)?;
        if readable_by.is_some_and(|v| v <= LATEST) {
            tracing::warn!(
                path = %path.display(),
                found,
                supported = LATEST,
                "database written by newer firmware (a rollback?); its later migrations only \
                 added things, so it is used as it is"
            );
            return Ok(found);
        }
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    check_ownership(conn, path, found)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as u32 + 1;
        apply(conn, path, version, sql)?;
        tracing::info!(path = %path.display(), version, "database migrated");
    }
    Ok(found)
}

/// The database's `schema_compat.readable_by`, or `None` if it has no such row (made before
/// version 5, or damaged).
fn readable_by(conn: &Connection, path: &Path) -> Result<Option<u32>> {
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_compat'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(|e| Error::sqlite(path, "read the schema compatibility", e))?;
    if !has_table {
        return Ok(None);
    }
    let value: Option<i64> = conn
        .query_row(
            "SELECT readable_by FROM schema_compat WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(|e| Error::sqlite(path, "read the schema compatibility", e))?;
    Ok(value.and_then(|v| u32::try_from(v).ok()))
}

/// Refuse a database some other program made: a non-empty database at version 0, or another
/// application id.
fn check_ownership(conn: &Connection, path: &Path, version: u32) -> Result<()> {
    let sql_err = |e| Error::sqlite(path, "read the database header", e);
    if version == 0 {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(sql_err)?;
        if objects > 0 {
            return Err(Error::NotOurDatabase {
                path: path.to_owned(),
                detail: format!("{objects} schema objects but no Keywarden schema version"),
            });
        }
        return Ok(());
    }
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(sql_err)?;
    if id != APPLICATION_ID {
        return Err(Error::NotOurDatabase {
            path: path.to_owned(),
            detail: format!("application id {id:#x}"),
        });
    }
    Ok(())
}

/// Run one migration and set `user_version` in the same transaction.
fn apply(conn: &mut Connection, path: &Path, version: u32, sql: &str) -> Result<()> {
    let fail = |source: rusqlite::Error| match Error::sqlite(path, "migrate the schema", source) {
        Error::Sqlite { source, .. } => Error::Migration {
            path: path.to_owned(),
            version,
            source,
        },
        other => other,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    tx.execute_batch(sql).map_err(fail)?;
    tx.pragma_update(None, "user_version", version)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}
