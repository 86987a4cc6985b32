//! Keywarden's tamper-evident audit trail: entry encoding, hash chain, signed checkpoints, the
//! export file and its verification.
//!
//! Every event (grant, denial, removal, return, alarm, admin change) is one [`Entry`]. Entries
//! form a SHA-256 hash chain; periodic [`Checkpoint`]s (seq, hash, time) are signed with the
//! device's ed25519 [`DeviceKey`]. The policy service stores entries and checkpoints in SQLite and
//! appends through a [`Chain`]; `keywarden audit verify` checks an export anywhere with
//! [`verify_export`]. The crate reads no clock: every time is passed in.
//!
//! # Entry hash
//!
//! `hash(seq) = SHA-256(tag ‖ hash(seq − 1) ‖ seq ‖ at_ms ‖ len(kind) ‖ kind ‖ len(actor) ‖ actor
//! ‖ len(subject) ‖ subject ‖ len(detail) ‖ detail)` where `tag` is `b"keywarden-audit-entry-v1\0"`,
//! `hash(0)` is [`GENESIS`] (32 zero bytes), `seq` is u64 and `at_ms` i64 big-endian, and each
//! `len` is the field's UTF-8 byte length as u32 big-endian. `detail` is a JSON object's text,
//! hashed as its exact bytes (never re-canonicalised). See [`entry_hash`].
//!
//! # Checkpoints
//!
//! A checkpoint signs `b"keywarden-audit-checkpoint-v1\0" ‖ seq ‖ hash(seq) ‖ at_ms` (u64, 32 bytes,
//! i64 big-endian; see [`Checkpoint::message`]) with the device key. Since every hash commits to
//! all before it, a checkpoint at `seq` vouches for entries `1..=seq`. The store signs one every
//! so often and the exporter signs one at the head when exporting, so an export ends covered.
//!
//! # Export file
//!
//! JSON Lines, UTF-8, every line ending in `\n`. Line 1 is the header:
//!
//! ```text
//! {"format":"keywarden-audit","version":1,"device_key":"<64 hex>","first_seq":1,"prev_hash":"<64 hex>","exported_at_ms":1700000000000}
//! ```
//!
//! `first_seq` is the first entry's seq (1 for the whole trail) and `prev_hash` the hash it chains
//! after ([`GENESIS`] for seq 1). Then one line per entry, in seq order:
//!
//! ```text
//! {"entry":{"seq":1,"at_ms":1700000000000,"kind":"grant","actor":"user:7","subject":"slot:3","detail":"{\"via\":\"badge\"}","hash":"<64 hex>"}}
//! ```
//!
//! with `detail` the JSON text as a string, and each checkpoint right after the entry with its seq:
//!
//! ```text
//! {"checkpoint":{"seq":1,"hash":"<64 hex>","at_ms":1700000000000,"signature":"<128 hex>"}}
//! ```
//!
//! Unknown fields are errors; hex may be either case (written lowercase); lines are at most
//! [`MAX_LINE_LEN`] bytes. [`ExportWriter`] writes the format, [`verify_export`] checks it in
//! constant memory with the sans-IO [`Verifier`], which can also check rows from the store.
//!
//! # What tampering produces which error
//!
//! The error names the first point where the evidence shows ([`VerifyError`]):
//!
//! | tampering | error |
//! |---|---|
//! | a field of an entry edited, or its stored hash | [`EditedEntry`](VerifyError::EditedEntry) at that entry |
//! | an entry edited and its own stored hash recomputed | [`EditedEntry`](VerifyError::EditedEntry) at the next entry ([`CheckpointMismatch`](VerifyError::CheckpointMismatch) if the edited entry has a checkpoint) |
//! | an entry edited and every hash from there recomputed | [`CheckpointMismatch`](VerifyError::CheckpointMismatch) at the next checkpoint |
//! | the header's `prev_hash` edited | [`EditedEntry`](VerifyError::EditedEntry) at `first_seq` |
//! | entries deleted, with their checkpoint lines if any | [`MissingEntries`](VerifyError::MissingEntries) |
//! | an entry deleted, its checkpoint line left | [`CheckpointBeyondChain`](VerifyError::CheckpointBeyondChain) |
//! | entries deleted, the rest renumbered and re-hashed, checkpoints moved along their seq | [`CheckpointMismatch`](VerifyError::CheckpointMismatch) at the next checkpoint still in the file, else [`UnsignedTail`](VerifyError::UnsignedTail) |
//! | two entry lines swapped (with or without their checkpoint lines) | [`OutOfOrder`](VerifyError::OutOfOrder) |
//! | two entries swapped, renumbered and re-hashed | [`CheckpointMismatch`](VerifyError::CheckpointMismatch) |
//! | an entry line duplicated, or a forged entry inserted with a seq already used | [`OutOfOrder`](VerifyError::OutOfOrder) |
//! | a forged entry inserted, the rest renumbered and re-hashed, checkpoints moved along their seq | [`CheckpointMismatch`](VerifyError::CheckpointMismatch) at the next checkpoint |
//! | the same, checkpoint lines left after the entries they followed | [`OutOfOrder`](VerifyError::OutOfOrder) (a checkpoint behind the chain) |
//! | a checkpoint edited or forged | [`BadSignature`](VerifyError::BadSignature) |
//! | the tail cut (lines dropped) so the file ends with an entry, or entries appended | [`UnsignedTail`](VerifyError::UnsignedTail) |
//! | the tail cut right after a checkpoint | not detectable from the file: see the limits below |
//! | the file cut in the middle of a line | [`Malformed`](VerifyError::Malformed) ("incomplete last line") |
//! | every entry removed | [`Empty`](VerifyError::Empty) |
//! | the whole file re-signed with another key, `trusted` given | [`WrongKey`](VerifyError::WrongKey) |
//!
//! `tests/tamper.rs` checks each row (but the header ones, which are unit tests) as a property
//! over random trails.
//!
//! # Limits: what the file alone cannot show
//!
//! Compare the [`Report`] with what you know:
//!
//! - **Truncation at a checkpoint.** An export cut right after a checkpoint line is a valid,
//!   shorter export (it is exactly what an earlier export looked like). Check that
//!   [`Report::last_seq`] and [`Report::head`] reach the device's current head (or a later
//!   export's), and keep the previous export's head to compare with.
//! - **The start.** The header is not signed: dropping the first entries and rewriting
//!   `first_seq` and `prev_hash` yields a valid export of a later part of the trail. Check that
//!   [`Report::first_seq`] is 1 for a complete export.
//! - **The key.** Without a `trusted` key, [`verify_export`] uses the header's key, and someone
//!   who rewrites the whole file can re-sign it with their own key. Give the device's key, or have
//!   a person compare [`Report::key_hex`] with the key the device shows.
//! - **Time.** `at_ms` values are the device clock's and are not checked for order;
//!   `exported_at_ms` is informational and unsigned.
//!
//! # Collector copy
//!
//! The offsite copy a cabinet ships to a syslog collector is these same lines, with a header per
//! connection, heartbeats and the duplicates of at-least-once delivery: [`collector`] reads and
//! verifies it.
//!
//! # Example
//!
//! ```
//! use keywarden_audit::{verify_export, Chain, DeviceKey, ExportWriter, GENESIS};
//!
//! let key = DeviceKey::from_bytes(&[7; 32]);
//! let mut chain = Chain::new(0, GENESIS);
//! let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), 1, &GENESIS, 1_700_000_100_000)?;
//! for i in 0..3 {
//!     let (entry, hash) = chain.append(1_700_000_000_000 + i, "grant", "user:7", "slot:3", r#"{"via":"badge"}"#);
//!     out.entry(&entry, &hash)?;
//! }
//! let (seq, head) = chain.head();
//! out.checkpoint(&key.sign_checkpoint(seq, &head, 1_700_000_100_000))?;
//! let file = out.finish()?;
//!
//! let report = verify_export(file.as_slice(), Some(&key.verifying_key()))?;
//! assert_eq!((report.first_seq, report.last_seq, report.head), (1, 3, head));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
pub mod collector;
mod entry;
mod error;
mod export;
mod key;
mod pipeline;
mod verify;

pub use checkpoint::Checkpoint;
pub use collector::{verify_collector_copy, CollectorReport};
pub use entry::{entry_hash, Chain, Digest, Entry, GENESIS};
pub use error::{KeyError, VerifyError};
pub use export::{
    checkpoint_line, entry_line, header_line, verify_export, ExportWriter, FORMAT, MAX_LINE_LEN,
    VERSION,
};
pub use key::{parse_public_key, DeviceKey};
pub use verify::{Report, Verifier};

#[cfg(test)]
mod tests;
