//! The shipper's own SQLite connection: the acknowledged position, and batches of records read
//! after it. Blocking: the shipper calls these on `spawn_blocking`.

use std::path::{Path, PathBuf};

use keywarden_audit::{
    checkpoint_line, entry_line, header_line, Checkpoint, DeviceKey, Digest, Entry, GENESIS,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::syslog::MsgId;
use crate::error::{Error, Result};
use crate::store::BUSY_TIMEOUT;

/// What the collector acknowledged: the last entry and the last stored checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Last entry seq acknowledged (0: none).
    pub entry: u64,
    /// Last stored checkpoint seq acknowledged (0: none).
    pub checkpoint: u64,
}

/// One batch: its messages in order (MSGID, time, export line) and the position once it is
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Messages, starting with the header.
    pub messages: Vec<(MsgId, i64, String)>,
    /// The position after it.
    pub end: Position,
    /// Entries in it.
    pub entries: u64,
}

/// The connection, the database path (for errors) and the device key (to sign each batch's
/// tail).
pub struct Source {
    conn: Connection,
    path: PathBuf,
    key: DeviceKey,
}

impl Source {
    /// Open the database (which the store has created and migrated).
    pub fn open(path: &Path, key: DeviceKey) -> Result<Source> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| Error::sqlite(path, "configure the offsite connection", e))?;
        Ok(Source {
            conn,
            path: path.to_owned(),
            key,
        })
    }

    fn sql(&self, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |e| Error::sqlite(&self.path, operation, e)
    }

    /// The position acknowledged by `collector` (zero if it never acknowledged anything).
    pub fn position(&self, collector: &str) -> Result<Position> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT entry_seq, checkpoint_seq FROM offsite_position WHERE collector = ?1",
                [collector],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("read the offsite position"))?;
        Ok(row.map_or(Position::default(), |(e, c)| Position {
            entry: u64::try_from(e).unwrap_or(0),
            checkpoint: u64::try_from(c).unwrap_or(0),
        }))
    }

    /// Store what `collector` acknowledged.
    pub fn set_position(&self, collector: &str, pos: Position, at_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO offsite_position (collector, entry_seq, checkpoint_seq, acked_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collector) DO UPDATE SET entry_seq = ?2, checkpoint_seq = ?3,
                 acked_at_ms = ?4",
                params![collector, to_sql(pos.entry), to_sql(pos.checkpoint), at_ms],
            )
            .map_err(self.sql("store the offsite position"))?;
        Ok(())
    }

    /// The audit head (0 when empty).
    pub fn head(&self) -> Result<u64> {
        let head: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
            .map_err(self.sql("read the audit head"))?;
        Ok(head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
    }

    /// The records after `pos`, at most `max` entries, as one batch: a header (first seq
    /// `pos.entry + 1`, the hash it chains after, `now_ms`), then every stored checkpoint after
    /// `pos.checkpoint` and entry after `pos.entry` in chain order (each checkpoint after its
    /// entry), then, unless the last entry has a stored checkpoint, one signed now over it (at
    /// the entry's own time, so a resend signs the same line). `None` when there is nothing new.
    pub fn batch(&self, pos: Position, max: u32, now_ms: i64) -> Result<Option<Batch>> {
        let read = "read the audit chain for the offsite copy";
        let mut entries = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT seq, at_ms, kind, actor, subject, detail, hash FROM audit
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(self.sql(read))?;
            let mut rows = stmt
                .query(params![to_sql(pos.entry), max])
                .map_err(self.sql(read))?;
            while let Some(row) = rows.next().map_err(self.sql(read))? {
                let seq: i64 = row.get(0).map_err(self.sql(read))?;
                let hash: Vec<u8> = row.get(6).map_err(self.sql(read))?;
                let entry = Entry {
                    seq: u64::try_from(seq).unwrap_or(0),
                    at_ms: row.get(1).map_err(self.sql(read))?,
                    kind: row.get(2).map_err(self.sql(read))?,
                    actor: row.get(3).map_err(self.sql(read))?,
                    subject: row.get(4).map_err(self.sql(read))?,
                    detail: row.get(5).map_err(self.sql(read))?,
                };
                let hash = digest("audit", entry.seq, &hash)?;
                entries.push((entry, hash));
            }
        }
        let last_entry = entries.last().map_or(pos.entry, |(e, _)| e.seq);
        let mut checkpoints = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT seq, hash, at_ms, signature FROM checkpoints
                     WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                )
                .map_err(self.sql(read))?;
            let mut rows = stmt
                .query(params![to_sql(pos.checkpoint), to_sql(last_entry)])
                .map_err(self.sql(read))?;
            while let Some(row) = rows.next().map_err(self.sql(read))? {
                let seq = u64::try_from(row.get::<_, i64>(0).map_err(self.sql(read))?).unwrap_or(0);
                let hash: Vec<u8> = row.get(1).map_err(self.sql(read))?;
                let signature: Vec<u8> = row.get(3).map_err(self.sql(read))?;
                checkpoints.push(Checkpoint {
                    seq,
                    hash: digest("checkpoints", seq, &hash)?,
                    at_ms: row.get(2).map_err(self.sql(read))?,
                    signature: <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| {
                        Error::BadRecord {
                            table: "checkpoints",
                            row: seq.to_string(),
                            problem: "signature is not 64 bytes".to_owned(),
                        }
                    })?,
                });
            }
        }
        if entries.is_empty() && checkpoints.is_empty() {
            return Ok(None);
        }
        let prev = self.hash_of(pos.entry)?;
        let export = |e: std::io::Error| Error::Export(e);
        let mut messages = vec![(
            MsgId::Header,
            now_ms,
            header_line(&self.key.public_hex(), pos.entry + 1, &prev, now_ms).map_err(export)?,
        )];
        let mut end = pos;
        let mut cps = checkpoints.into_iter().peekable();
        // Checkpoints stored after their entry was shipped (at shutdown, before an export).
        while let Some(cp) = cps.next_if(|cp| cp.seq <= pos.entry) {
            messages.push((
                MsgId::Checkpoint,
                cp.at_ms,
                checkpoint_line(&cp).map_err(export)?,
            ));
            end.checkpoint = cp.seq;
        }
        let count = entries.len() as u64;
        let mut tail_signed = true;
        for (entry, hash) in &entries {
            messages.push((
                MsgId::Audit,
                entry.at_ms,
                entry_line(entry, hash).map_err(export)?,
            ));
            end.entry = entry.seq;
            tail_signed = false;
            while let Some(cp) = cps.next_if(|cp| cp.seq <= entry.seq) {
                messages.push((
                    MsgId::Checkpoint,
                    cp.at_ms,
                    checkpoint_line(&cp).map_err(export)?,
                ));
                end.checkpoint = cp.seq;
                tail_signed = cp.seq == entry.seq;
            }
        }
        if let (false, Some((entry, hash))) = (tail_signed, entries.last()) {
            let cp = self.key.sign_checkpoint(entry.seq, hash, entry.at_ms);
            messages.push((
                MsgId::Checkpoint,
                cp.at_ms,
                checkpoint_line(&cp).map_err(export)?,
            ));
        }
        Ok(Some(Batch {
            messages,
            end,
            entries: count,
        }))
    }

    /// The hash of entry `seq` ([`GENESIS`] for 0).
    fn hash_of(&self, seq: u64) -> Result<Digest> {
        if seq == 0 {
            return Ok(GENESIS);
        }
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM audit WHERE seq = ?1",
                [to_sql(seq)],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read an audit hash for the offsite copy"))?;
        match bytes {
            Some(b) => digest("audit", seq, &b),
            None => Err(Error::BadRecord {
                table: "offsite_position",
                row: seq.to_string(),
                problem: "the acknowledged entry is not in the audit chain (database replaced?)"
                    .to_owned(),
            }),
        }
    }
}

fn to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn digest(table: &'static str, seq: u64, bytes: &[u8]) -> Result<Digest> {
    Digest::try_from(bytes).map_err(|_| Error::BadRecord {
        table,
        row: seq.to_string(),
        problem: format!("hash of {} bytes", bytes.len()),
    })
}
