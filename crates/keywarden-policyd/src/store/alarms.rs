//! The alarm list: raised and cleared by the core's commits, acknowledged by admins
//! (`AdminOp::AcknowledgeAlarm`). An alarm is active until its condition clears; acknowledging it
//! only records that someone saw it.

use rusqlite::Row;

use super::Store;
use crate::error::{Error, Result};
use crate::model::{AlarmKind, UnixTime};

/// One alarm as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    /// Database id (what `AcknowledgeAlarm` names).
    pub id: i64,
    /// Kind.
    pub kind: AlarmKind,
    /// What it is about (`door`, `slot:3`, `key:204`, `user:alice`).
    pub subject: String,
    /// When it was raised.
    pub raised_at: UnixTime,
    /// When its condition ended (`None` while active).
    pub cleared_at: Option<UnixTime>,
    /// Who acknowledged it (audit actor name, `uid:1000(alice)`).
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<UnixTime>,
    /// The acknowledger's note.
    pub note: Option<String>,
}

impl Store {
    /// Alarms, newest first; only the active ones if `active_only`.
    pub fn list_alarms(&self, active_only: bool) -> Result<Vec<AlarmRow>> {
        let sql = if active_only {
            "SELECT id, kind, subject, raised_at, cleared_at, acknowledged_by, acknowledged_at, note
             FROM alarms WHERE cleared_at IS NULL ORDER BY raised_at DESC, id DESC"
        } else {
            "SELECT id, kind, subject, raised_at, cleared_at, acknowledged_by, acknowledged_at, note
             FROM alarms ORDER BY raised_at DESC, id DESC"
        };
        let mut stmt = self.conn.prepare(sql).map_err(self.sql("list alarms"))?;
        let mut rows = stmt.query([]).map_err(self.sql("list alarms"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sql("list alarms"))? {
            out.push(alarm_row(row).map_err(|e| match e {
                Error::Sqlite { source, .. } => Error::sqlite(&self.path, "list alarms", source),
                other => other,
            })?);
        }
        Ok(out)
    }

    /// The active alarms as `(kind, subject)`, oldest first: what the core is told at start.
    pub fn active_alarms(&self) -> Result<Vec<(AlarmKind, String)>> {
        let mut alarms: Vec<_> = self
            .list_alarms(true)?
            .into_iter()
            .map(|a| (a.kind, a.subject))
            .collect();
        alarms.reverse();
        Ok(alarms)
    }
}

fn alarm_row(row: &Row<'_>) -> Result<AlarmRow> {
    let sqlite = |source| Error::Sqlite {
        operation: "list alarms",
        source,
    };
    let id: i64 = row.get(0).map_err(sqlite)?;
    let kind: String = row.get(1).map_err(sqlite)?;
    Ok(AlarmRow {
        id,
        kind: kind
            .parse()
            .map_err(|e: crate::model::UnknownName| Error::BadRecord {
                table: "alarms",
                row: id.to_string(),
                problem: e.to_string(),
            })?,
        subject: row.get(2).map_err(sqlite)?,
        raised_at: row.get(3).map_err(sqlite)?,
        cleared_at: row.get(4).map_err(sqlite)?,
        acknowledged_by: row.get(5).map_err(sqlite)?,
        acknowledged_at: row.get(6).map_err(sqlite)?,
        note: row.get(7).map_err(sqlite)?,
    })
}
