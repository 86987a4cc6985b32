//! Persisting a core [`Commit`]: its changes and its audit events in one transaction.
//!
//! Changes are strict where a mismatch means the core and the records disagree (taking or
//! closing a loan that is not open, a PIN count for an unknown user): the whole commit fails
//! and the core is told (`handle_commit_failed`), so nothing opens on an unrecorded grant.
//! Alarm changes are idempotent (raising an active alarm again, clearing a cleared one) so
//! that the event itself is always recorded.

use std::path::Path;

use rusqlite::{params, Connection, TransactionBehavior};

use super::audit::{detail_json, Appender};
use super::Store;
use crate::core::effects::{Change, Commit};
use crate::error::{Error, Result};

impl Store {
    /// Apply every change of `commit` and append every event as an audit entry (kind, actor,
    /// subject, detail as a JSON object in the given order), all in one transaction: on any
    /// failure nothing is stored and the chain head does not move. If the chain passes a
    /// multiple of [`CHECKPOINT_EVERY`](super::CHECKPOINT_EVERY), the same transaction stores a
    /// signed checkpoint. `at_ms` is the audit time of the events. Returns the entries' seqs.
    ///
    /// `commit.then` (the actuations) is the driver's business, after this returned `Ok`.
    pub fn commit(&mut self, commit: &Commit, at_ms: i64) -> Result<Vec<u64>> {
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(path, "begin a commit", e))?;
        for change in &commit.changes {
            apply_change(&tx, path, change)?;
        }
        let mut appender = Appender::new(self.chain.head());
        for event in &commit.events {
            let detail = detail_json(event.detail.iter().map(|(k, v)| (*k, v.as_str())));
            appender.append(
                &tx,
                path,
                at_ms,
                event.kind.as_str(),
                &event.actor,
                &event.subject,
                &detail,
            )?;
        }
        let (chain, seqs) = appender.finish(&tx, path, &self.device_key, at_ms)?;
        tx.commit().map_err(|e| Error::sqlite(path, "commit", e))?;
        self.chain = chain;
        Ok(seqs)
    }
}

/// One change, inside the commit's transaction.
fn apply_change(conn: &Connection, path: &Path, change: &Change) -> Result<()> {
    let sql = |operation| move |e| Error::sqlite(path, operation, e);
    match change {
        Change::OpenLoan {
            key,
            user,
            witness,
            reason,
            granted_at,
            due_at,
            slot,
        } => {
            conn.execute(
                "INSERT INTO loans (key_id, user_id, witness_id, reason, granted_at, due_at, slot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key, user, witness, reason, granted_at, due_at, slot],
            )
            .map_err(sql("open a loan"))?;
        }
        Change::TakeLoan { key, at } => {
            let n = conn
                .execute(
                    "UPDATE loans SET taken_at = ?2
                     WHERE key_id = ?1 AND closed_at IS NULL AND taken_at IS NULL",
                    params![key, at],
                )
                .map_err(sql("take a loan"))?;
            if n == 0 {
                return Err(Error::not_found(
                    "untaken open loan",
                    format!("key id {key}"),
                ));
            }
        }
        Change::CloseLoan {
            key,
            at,
            returned_by,
        } => {
            let n = conn
                .execute(
                    "UPDATE loans SET closed_at = ?2, returned_by = ?3
                     WHERE key_id = ?1 AND closed_at IS NULL",
                    params![key, at, returned_by],
                )
                .map_err(sql("close a loan"))?;
            if n == 0 {
                return Err(Error::not_found("open loan", format!("key id {key}")));
            }
        }
        Change::SlotContents { slot, key } => set_slot(conn, path, *slot, *key)?,
        Change::PinFailed {
            user,
            count,
            locked_until,
        } => {
            let n = conn
                .execute(
                    "UPDATE users SET failed_pins = ?2, locked_until = ?3 WHERE id = ?1",
                    params![user, count, locked_until],
                )
                .map_err(sql("count a wrong PIN"))?;
            if n == 0 {
                return Err(Error::not_found("user", format!("id {user}")));
            }
        }
        Change::PinReset { user } => {
            let n = conn
                .execute(
                    "UPDATE users SET failed_pins = 0, locked_until = NULL WHERE id = ?1",
                    params![user],
                )
                .map_err(sql("reset the wrong-PIN count"))?;
            if n == 0 {
                return Err(Error::not_found("user", format!("id {user}")));
            }
        }
        Change::RaiseAlarm { kind, subject, at } => {
            conn.execute(
                "INSERT INTO alarms (kind, subject, raised_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, subject) WHERE cleared_at IS NULL DO NOTHING",
                params![kind.as_str(), subject, at],
            )
            .map_err(sql("raise an alarm"))?;
        }
        Change::ClearAlarm { kind, subject, at } => {
            conn.execute(
                "UPDATE alarms SET cleared_at = ?3
                 WHERE kind = ?1 AND subject = ?2 AND cleared_at IS NULL",
                params![kind.as_str(), subject, at],
            )
            .map_err(sql("clear an alarm"))?;
        }
    }
    Ok(())
}

/// Record what a slot holds. A key is in one place only: putting it here empties the slot the
/// records had it in. Slots missing from the table (board not synced) are added.
pub(super) fn set_slot(conn: &Connection, path: &Path, slot: u32, key: Option<i64>) -> Result<()> {
    let sql = |e| Error::sqlite(path, "record slot contents", e);
    if let Some(key) = key {
        conn.execute(
            "UPDATE slots SET key_id = NULL WHERE key_id = ?1 AND number <> ?2",
            params![key, slot],
        )
        .map_err(sql)?;
    }
    conn.execute(
        "INSERT INTO slots (number, key_id) VALUES (?1, ?2)
         ON CONFLICT (number) DO UPDATE SET key_id = excluded.key_id",
        params![slot, key],
    )
    .map_err(sql)?;
    Ok(())
}
