//! The audit chain's rows: appending inside a write transaction, signed checkpoints, the export
//! file and verification of what is stored.
//!
//! Entry `seq` (1, 2, ...) stores `hash = entry_hash(hash of seq - 1, entry)`, the first one
//! chained to [`GENESIS`]. A checkpoint signs `(seq, hash, at_ms)` with the device key; one is
//! stored in the same transaction whenever the chain passes a multiple of
//! [`CHECKPOINT_EVERY`] entries, and [`Store::checkpoint_now`] signs
//! the head on demand (export, shutdown), so no export has an unsigned tail.

use std::io::Write;
use std::path::Path;

use keywarden_audit::{
    Chain, Checkpoint, DeviceKey, Digest, Entry, ExportWriter, Report, Verifier, GENESIS,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Store, CHECKPOINT_EVERY};
use crate::error::{Error, Result};

/// Appends entries to the chain inside one transaction. The store's own chain is replaced by
/// [`Appender::finish`]'s only once the transaction committed.
pub(super) struct Appender {
    chain: Chain,
    start: u64,
    seqs: Vec<u64>,
}

impl Appender {
    /// Start from the store's head.
    pub(super) fn new(head: (u64, Digest)) -> Appender {
        Appender {
            chain: Chain::new(head.0, head.1),
            start: head.0,
            seqs: Vec::new(),
        }
    }

    /// Chain and insert one entry; returns its seq.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append(
        &mut self,
        conn: &Connection,
        path: &Path,
        at_ms: i64,
        kind: &str,
        actor: &str,
        subject: &str,
        detail: &str,
    ) -> Result<u64> {
        let (entry, hash) = self.chain.append(at_ms, kind, actor, subject, detail);
        conn.prepare_cached(
            "INSERT INTO audit (seq, at_ms, kind, actor, subject, detail, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                seq_to_sql(entry.seq),
                entry.at_ms,
                entry.kind,
                entry.actor,
                entry.subject,
                entry.detail,
                &hash[..]
            ])
        })
        .map_err(|e| Error::sqlite(path, "append an audit entry", e))?;
        self.seqs.push(entry.seq);
        Ok(entry.seq)
    }

    /// Store a signed checkpoint at the head if this transaction's entries passed a multiple of
    /// [`CHECKPOINT_EVERY`]; hand back the new chain and the seqs appended.
    pub(super) fn finish(
        self,
        conn: &Connection,
        path: &Path,
        key: &DeviceKey,
        at_ms: i64,
    ) -> Result<(Chain, Vec<u64>)> {
        let (head, hash) = self.chain.head();
        if head / CHECKPOINT_EVERY > self.start / CHECKPOINT_EVERY {
            insert_checkpoint(conn, path, &key.sign_checkpoint(head, &hash, at_ms))?;
        }
        Ok((self.chain, self.seqs))
    }
}

/// Insert one checkpoint row.
fn insert_checkpoint(conn: &Connection, path: &Path, cp: &Checkpoint) -> Result<()> {
    conn.execute(
        "INSERT INTO checkpoints (seq, hash, at_ms, signature) VALUES (?1, ?2, ?3, ?4)",
        params![
            seq_to_sql(cp.seq),
            &cp.hash[..],
            cp.at_ms,
            &cp.signature[..]
        ],
    )
    .map_err(|e| Error::sqlite(path, "store an audit checkpoint", e))?;
    Ok(())
}

/// The JSON object of a detail list, keys in the given order (`serde_json::Map` would sort them).
pub(super) fn detail_json<'a, V>(pairs: impl IntoIterator<Item = (&'a str, V)>) -> String
where
    V: Into<serde_json::Value>,
{
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(name).to_string());
        out.push(':');
        out.push_str(&value.into().to_string());
    }
    out.push('}');
    out
}

/// A seq as SQLite stores it (seqs stay far below `i64::MAX`).
pub(super) fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A stored seq.
pub(super) fn seq_from_sql(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| Error::BadRecord {
        table: "audit",
        row: seq.to_string(),
        problem: "negative seq".to_owned(),
    })
}

/// A stored 32-byte digest.
pub(super) fn digest_from_sql(table: &'static str, seq: u64, bytes: &[u8]) -> Result<Digest> {
    Digest::try_from(bytes).map_err(|_| Error::BadRecord {
        table,
        row: seq.to_string(),
        problem: format!("hash of {} bytes", bytes.len()),
    })
}

/// One stored record, in chain order.
enum Record {
    Entry(Entry, Digest),
    Checkpoint(Checkpoint),
}

impl Store {
    /// The chain's head: last seq (0 when empty) and its hash ([`GENESIS`] when empty).
    pub fn audit_head(&self) -> (u64, Digest) {
        self.chain.head()
    }

    /// The device's public key (hex), as in exports.
    pub fn device_public_hex(&self) -> String {
        self.device_key.public_hex()
    }

    /// Sign the chain's head unless it is signed already (or the chain is empty). Returns the
    /// seq signed, if any. Called before an export and at shutdown.
    pub fn checkpoint_now(&mut self, at_ms: i64) -> Result<Option<u64>> {
        let (head, hash) = self.chain.head();
        if head == 0 {
            return Ok(None);
        }
        let last: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM checkpoints", [], |row| row.get(0))
            .map_err(self.sql("read the last checkpoint"))?;
        if last == Some(seq_to_sql(head)) {
            return Ok(None);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(&self.path, "begin a checkpoint", e))?;
        insert_checkpoint(
            &tx,
            &self.path,
            &self.device_key.sign_checkpoint(head, &hash, at_ms),
        )?;
        tx.commit()
            .map_err(|e| Error::sqlite(&self.path, "commit a checkpoint", e))?;
        Ok(Some(head))
    }

    /// Write the chain from `from_seq` (1 = everything) to `out` in the export format, after
    /// signing the head ([`Store::checkpoint_now`]). Rows are streamed, never all loaded.
    /// Returns the number of entries written.
    pub fn export_audit<W: Write>(&mut self, out: W, from_seq: u64, at_ms: i64) -> Result<u64> {
        self.checkpoint_now(at_ms)?;
        let from = from_seq.max(1);
        let (head, _) = self.chain.head();
        if from > head + 1 {
            return Err(Error::invalid(
                format!("export from audit entry {from}"),
                format!("the chain ends at {head}"),
            ));
        }
        let prev = self.hash_before(from)?;
        let mut writer = ExportWriter::new(out, &self.device_key.public_hex(), from, &prev, at_ms)
            .map_err(Error::Export)?;
        let mut entries = 0u64;
        self.for_each_record(from, |record| {
            match record {
                Record::Entry(entry, hash) => {
                    entries += 1;
                    writer.entry(&entry, &hash)
                }
                Record::Checkpoint(cp) => writer.checkpoint(&cp),
            }
            .map_err(Error::Export)
        })?;
        writer
            .finish()
            .map_err(Error::Export)?
            .flush()
            .map_err(Error::Export)?;
        Ok(entries)
    }

    /// Recompute the whole stored chain and check every checkpoint's signature against this
    /// device's key, streaming the rows (constant memory).
    ///
    /// Like an export, the stored chain verifies only if a checkpoint covers its last entry:
    /// between periodic checkpoints the tail is unsigned and this fails with
    /// [`VerifyError::UnsignedTail`](keywarden_audit::VerifyError::UnsignedTail) (naming the
    /// last checkpoint), after checking every hash up to the head. Call
    /// [`Store::checkpoint_now`] first for a verdict on the whole chain. An empty chain is
    /// [`VerifyError::Empty`](keywarden_audit::VerifyError::Empty).
    pub fn verify_audit(&self) -> Result<Report> {
        let mut verifier = Verifier::new(self.device_key.verifying_key(), 1, GENESIS);
        self.for_each_record(1, |record| {
            match record {
                Record::Entry(entry, hash) => verifier.entry(&entry, &hash)?,
                Record::Checkpoint(cp) => {
                    verifier.checkpoint(&cp)?;
                }
            }
            Ok(())
        })?;
        Ok(verifier.finish()?)
    }

    /// The hash the entry `seq` chains to.
    fn hash_before(&self, seq: u64) -> Result<Digest> {
        if seq <= 1 {
            return Ok(GENESIS);
        }
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM audit WHERE seq = ?1",
                [seq_to_sql(seq - 1)],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql("read an audit hash"))?;
        match bytes {
            Some(bytes) => digest_from_sql("audit", seq - 1, &bytes),
            None => Err(Error::not_found("audit entry", (seq - 1).to_string())),
        }
    }

    /// Every entry from `from`, each followed by the checkpoints at its seq.
    fn for_each_record(&self, from: u64, mut f: impl FnMut(Record) -> Result<()>) -> Result<()> {
        let sql = |op| move |e| Error::sqlite(&self.path, op, e);
        let mut entries = self
            .conn
            .prepare(
                "SELECT seq, at_ms, kind, actor, subject, detail, hash FROM audit
                 WHERE seq >= ?1 ORDER BY seq",
            )
            .map_err(sql("read the audit chain"))?;
        let mut checkpoints = self
            .conn
            .prepare(
                "SELECT seq, hash, at_ms, signature FROM checkpoints
                 WHERE seq >= ?1 ORDER BY seq",
            )
            .map_err(sql("read the audit checkpoints"))?;
        let mut entry_rows = entries
            .query([seq_to_sql(from)])
            .map_err(sql("read the audit chain"))?;
        let mut cp_rows = checkpoints
            .query([seq_to_sql(from)])
            .map_err(sql("read the audit checkpoints"))?;
        let mut next_cp =
            read_checkpoint(cp_rows.next().map_err(sql("read the audit checkpoints"))?)?;
        while let Some(row) = entry_rows.next().map_err(sql("read the audit chain"))? {
            let seq = seq_from_sql(row.get(0).map_err(sql("read the audit chain"))?)?;
            let entry = Entry {
                seq,
                at_ms: row.get(1).map_err(sql("read the audit chain"))?,
                kind: row.get(2).map_err(sql("read the audit chain"))?,
                actor: row.get(3).map_err(sql("read the audit chain"))?,
                subject: row.get(4).map_err(sql("read the audit chain"))?,
                detail: row.get(5).map_err(sql("read the audit chain"))?,
            };
            let hash: Vec<u8> = row.get(6).map_err(sql("read the audit chain"))?;
            f(Record::Entry(entry, digest_from_sql("audit", seq, &hash)?))?;
            while let Some(cp) = next_cp.take_if(|cp| cp.seq <= seq) {
                f(Record::Checkpoint(cp))?;
                next_cp =
                    read_checkpoint(cp_rows.next().map_err(sql("read the audit checkpoints"))?)?;
            }
        }
        // A checkpoint past the last entry cannot exist (foreign key); hand it over anyway so
        // the verifier reports it.
        while let Some(cp) = next_cp {
            f(Record::Checkpoint(cp))?;
            next_cp = read_checkpoint(cp_rows.next().map_err(sql("read the audit checkpoints"))?)?;
        }
        Ok(())
    }

    /// Warn if the last checkpoint does not verify with this device key (a replaced key file
    /// makes every older checkpoint unverifiable).
    pub(super) fn check_last_checkpoint(&self) {
        let last = self
            .conn
            .query_row(
                "SELECT seq, hash, at_ms, signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok(read_checkpoint(Some(row))),
            )
            .optional();
        match last {
            Ok(Some(Ok(Some(cp)))) => {
                if cp.verify(&self.device_key.verifying_key()).is_err() {
                    tracing::warn!(
                        seq = cp.seq,
                        key = %self.device_key.public_hex(),
                        "the last audit checkpoint does not verify with this device key"
                    );
                }
            }
            Ok(None) | Ok(Some(Ok(None))) => {}
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "unreadable audit checkpoint"),
            Err(e) => tracing::warn!(error = %e, "cannot read the last audit checkpoint"),
        }
    }
}

/// A checkpoint row (`seq, hash, at_ms, signature`), if any.
fn read_checkpoint(row: Option<&rusqlite::Row<'_>>) -> Result<Option<Checkpoint>> {
    let Some(row) = row else { return Ok(None) };
    let get = |e| Error::Sqlite {
        operation: "read the audit checkpoints",
        source: e,
    };
    let seq = seq_from_sql(row.get(0).map_err(get)?)?;
    let hash: Vec<u8> = row.get(1).map_err(get)?;
    let signature: Vec<u8> = row.get(3).map_err(get)?;
    let signature = <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| Error::BadRecord {
        table: "checkpoints",
        row: seq.to_string(),
        problem: format!("signature of {} bytes", signature.len()),
    })?;
    Ok(Some(Checkpoint {
        seq,
        hash: digest_from_sql("checkpoints", seq, &hash)?,
        at_ms: row.get(2).map_err(get)?,
        signature,
    }))
}
